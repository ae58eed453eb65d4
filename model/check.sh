#!/usr/bin/env bash
# model/check.sh — model-checks ouro's concurrency protocols with spin (docs/threads.md, "Model checking").
#
# For each model and each property: spin generates the verifier (pan.c), gcc compiles it, pan searches
# the whole state space (no bitstate hashing: every search here is exhaustive), with 2 and 3 threads.
# Safety properties compile with -DSAFETY (assertions, ltl safety claims); liveness properties run with
# -a -f (acceptance cycles under weak fairness). Prints one row per run and exits non-zero when a
# property does not give its expected result: "holds", or "violated" for a known finding (the row names
# it), so that a fix of a finding is noticed too.
#
#   bash model/check.sh            every run (about two minutes on one core)
#   bash model/check.sh stw        only the runs of one model (stw, remote_free, brc)
# Needs spin (Debian: apt-get install spin) and gcc. Generated files go to a temporary directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
only=${1:-}
for tool in spin gcc; do
    command -v "$tool" >/dev/null 2>&1 || { echo "model/check.sh: $tool is needed (./zigw build model installs it)" >&2; exit 1; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/ouro-model.XXXXXX")
trap 'rm -rf "$work"' EXIT

failed=0
printf '%-15s %-16s %3s %11s %12s %9s %7s  %s\n' model property thr states transitions "mem MB" "time s" result
printf '%s\n' "--------------- ---------------- --- ----------- ------------ --------- -------  ------"

# run MODEL PROPERTY THREADS EXPECT KIND SPIN_DEFS [PAN_CC_DEFS] [PAN_ARGS]
#   PROPERTY: an ltl name, or "asserts" (assertions and invalid end states, no claim)
#   EXPECT:   holds | violated:<finding> (an acceptance cycle: a known liveness finding)
#   KIND:     safety | liveness
run() {
    local model=$1 prop=$2 n=$3 expect=$4 kind=$5 sdefs=${6:-} cdefs=${7:-} pargs=${8:-}
    [ -z "$only" ] || [ "$only" = "$model" ] || return 0
    local dir="$work/$model-$prop-$n"
    mkdir -p "$dir"
    cp "$here/$model.pml" "$dir/"
    local out="$dir/pan.out"
    (
        cd "$dir"
        # shellcheck disable=SC2086
        spin -DN="$n" $sdefs -a "$model.pml" >spin.out 2>&1 || { cat spin.out; exit 2; }
        local cc=(-O2 -w -DCOLLAPSE -DVECTORSZ=2048)
        if [ "$kind" = safety ]; then cc+=(-DSAFETY); fi
        if [ "$prop" = asserts ]; then cc+=(-DNOCLAIM); fi
        # shellcheck disable=SC2086
        gcc "${cc[@]}" $cdefs -o pan pan.c >cc.out 2>&1 || { cat cc.out; exit 2; }
        local args=(-m2000000)   # the deepest search (stw, 3 threads) reaches 1.23e6
        if [ "$kind" = liveness ]; then args+=(-a -f); fi
        if [ "$prop" != asserts ]; then args+=(-N "$prop"); fi
        local t0 t1
        t0=$(date +%s.%N)
        # shellcheck disable=SC2086
        ./pan "${args[@]}" $pargs >"$out" 2>&1 || true
        t1=$(date +%s.%N)
        echo "$t0 $t1" >time.out
    ) || { echo "model/check.sh: $model ($prop, $n threads) did not build" >&2; failed=1; return 0; }
    local states trans mem errors secs incomplete result
    states=$(awk '/states, stored/ {print $1; exit}' "$out")
    trans=$(awk '/transitions \(= / {print $1; exit}' "$out")
    mem=$(awk '/total actual memory usage/ {print $1; exit}' "$out")
    errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$out" | head -1)
    secs=$(awk '{printf "%.1f", $2 - $1}' "$dir/time.out")
    incomplete=0
    grep -q 'max search depth too small' "$out" && incomplete=1
    grep -q 'Search not completed' "$out" && [ "${errors:-1}" = 0 ] && incomplete=1
    if [ -z "$errors" ]; then
        result="ERROR (pan gave no result)"; failed=1; cat "$out" >&2
    elif [ "$errors" = 0 ] && [ "$incomplete" = 0 ] && [ "$expect" = holds ]; then
        result="holds"
    elif [ "$errors" != 0 ] && [ "${expect%%:*}" = violated ] && grep -q 'acceptance cycle' "$out" && ! grep -q 'assertion violated' "$out"; then
        result="violated (expected: ${expect#violated:})"
    elif [ "$errors" = 0 ] && [ "$incomplete" = 1 ]; then
        result="INCOMPLETE (search depth)"; failed=1
    elif [ "$errors" = 0 ]; then
        result="HOLDS, expected a violation (${expect#violated:} fixed? update model/ and docs/threads.md)"; failed=1
    else
        result="VIOLATED"; failed=1
        grep -E 'violated|cycle|invalid end state' "$out" | head -3 >&2 || true
        if [ -f "$dir/$model.pml.trail" ]; then
            local keep="${TMPDIR:-/tmp}/ouro-model-$model-$prop-$n.trail"
            cp "$dir/$model.pml.trail" "$keep"
            echo "  trail: $keep (replay: cd model && spin -DN=$n $sdefs -t -p $model.pml, with the trail copied next to it)" >&2
        fi
    fi
    printf '%-15s %-16s %3s %11s %12s %9s %7s  %s\n' "$model" "$prop" "$n" "${states:-?}" "${trans:-?}" "${mem:-?}" "$secs" "$result"
}

for n in 2 3; do
    run stw asserts        "$n" holds         safety
    run stw stop_excludes  "$n" holds         safety
    run stw one_stopper    "$n" holds         safety
    run stw no_lost_stop   "$n" holds         safety
    run stw stop_completes "$n" holds         liveness
    run stw no_starve      "$n" holds         liveness   # F1, fixed by stw_wait_for_waking
done
run remote_free asserts 2 holds safety "-DK=6"
run remote_free asserts 3 holds safety "-DK=3"
run brc asserts 2 holds safety "-DK=6"
run brc asserts 3 holds safety "-DK=4"

if [ "$failed" != 0 ]; then
    echo "model/check.sh: FAILED" >&2
    exit 1
fi
echo "model/check.sh: every property gave its expected result"
