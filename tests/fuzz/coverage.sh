#!/bin/sh
# tests/fuzz/coverage.sh EXE OUTDIR CORPUS... — the fuzz-cov step (build.zig): replays the corpora
# (directories or files; missing ones are skipped) with EXE, a replay driver built with
# -fprofile-instr-generate -fcoverage-mapping, then prints llvm-cov's report for the library's files
# and the lines covered per module folder. Fork children leave through _exit and write no profile:
# what only a child runs counts as not covered.
set -eu
exe=$1 out=$2
shift 2
rm -rf "$out"
mkdir -p "$out"
set --  $(for d in "$@"; do [ -e "$d" ] && printf '%s\n' "$d"; done)
[ $# -gt 0 ] || { echo "fuzz-cov: no corpus to replay" >&2; exit 1; }
LLVM_PROFILE_FILE="$out/replay-%p.profraw" "$exe" "$@" > "$out/replay.log" || { tail -5 "$out/replay.log"; exit 1; }
tail -1 "$out/replay.log"
llvm-profdata-14 merge -sparse "$out"/*.profraw -o "$out/ouro.profdata"
llvm-cov-14 report "$exe" -instr-profile="$out/ouro.profdata" > "$out/report.txt"
# Columns of llvm-cov 14's report: file, regions, missed, cover, functions, missed, executed,
# lines ($8), missed lines ($9), cover, branches...
awk '
    NR <= 2 { print; next }
    $1 ~ /(^|\/)(core|alloc|gc|threads)\/[^\/]+\.[ch]$/ {
        print
        n = split($1, p, "/"); mod = p[n - 1]
        lines[mod] += $8; missed[mod] += $9
    }
    END {
        print ""
        printf "%-10s %8s %8s %8s\n", "module", "lines", "covered", "cover"
        for (m in lines)
            printf "%-10s %8d %8d %7.1f%%\n", m "/", lines[m], lines[m] - missed[m], 100 * (lines[m] - missed[m]) / lines[m]
    }' "$out/report.txt" | tee "$out/summary.txt"
