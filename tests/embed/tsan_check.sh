#!/usr/bin/env bash
# tests/embed/tsan_check.sh PREFIX — the TSan flavour as an embedder meets it, after
# `./zigw build install-tsan --prefix PREFIX` (docs/embedding.md, "Hunting races in your server with TSan"):
#
#   1. neither libouro-tsan.so nor libouro-tsan.a carries a sanitizer runtime: __tsan_* are only
#      referenced, and the shared library needs no sanitizer library;
#   2. tests/embed/tsan_server.c is built by gcc and by clang with -fsanitize=thread, against the shared
#      library (pkg-config ouro-tsan) and the static one, the suppressions linked in
#      (lib/ouro-tsan-defaults.o) or passed at run time (TSAN_OPTIONS=suppressions=share/ouro/tsan.supp);
#   3. each build runs once and must print the server's own "ok", exit with TSan's status 66, and make
#      exactly one report: the data race planted in planted_race(), no frame of which is ouro's or
#      liburcu's.
#
# Needs gcc, libtsan2, clang, libclang-rt-14-dev and llvm-14 (clang's TSan runtime symbolizes with
# llvm-symbolizer-14: without it the inlined liburcu frames the suppressions name have no names).
# ./zigw installs them for install-tsan.
set -euo pipefail

prefix=$(cd "${1:?usage: tsan_check.sh PREFIX (where ./zigw build install-tsan installed)}" && pwd)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"

failed=0
say() { printf 'tsan_check: %s\n' "$*"; }
fail() { say "FAIL $*"; failed=1; }

# ---- 1. no runtime inside ---------------------------------------------------------------------------
runtime='^[0-9a-f]* [A-Za-z] (__tsan_|__asan_|__ubsan_|__msan_|__sanitizer_|__interceptor_)'
so="$prefix/lib/libouro-tsan.so"
a="$prefix/lib/libouro-tsan.a"
nm -D --defined-only "$so" >"$work/so.defined"
nm -g --defined-only "$a" >"$work/a.defined" 2>/dev/null
nm -D --undefined-only "$so" >"$work/so.undefined"
readelf -d "$so" | grep NEEDED >"$work/so.needed"
if grep -Eq "$runtime" "$work/so.defined"; then fail "$so defines sanitizer runtime symbols"; fi
if grep -Eq "$runtime" "$work/a.defined"; then fail "$a defines sanitizer runtime symbols"; fi
if grep -Eiq 'tsan|asan|ubsan|clang_rt' "$work/so.needed"; then fail "$so needs a sanitizer library"; fi
grep -q ' __tsan_func_entry$' "$work/so.undefined" || fail "$so is not instrumented (no __tsan_func_entry)"
say "libraries: no sanitizer runtime inside; $(grep -c ' __tsan_' "$work/so.undefined") __tsan_* entry points referenced"

# ---- 2. and 3. the server, four ways ------------------------------------------------------------------
supp=$(pkg-config --variable=tsan_supp ouro-tsan)
defaults=$(pkg-config --variable=tsan_defaults ouro-tsan)
warn=(-std=c11 -Wall -Wextra -pedantic -Werror -g -O1)
# compiler, library, how the suppressions come in
cases=("gcc shared linked" "gcc static file" "clang shared file" "clang static linked")
for c in "${cases[@]}"; do
    read -r cc linkage supps <<<"$c"
    name="$cc-$linkage"
    exe="$work/$name"
    objs=()
    opts="print_suppressions=1"
    if [ "$supps" = linked ]; then objs=("$defaults"); else opts="suppressions=$supp $opts"; fi
    if [ "$linkage" = shared ]; then
        # shellcheck disable=SC2046 # pkg-config's words
        "$cc" "${warn[@]}" $(pkg-config --cflags ouro-tsan) "$here/tsan_server.c" "${objs[@]}" \
            $(pkg-config --libs ouro-tsan) -Wl,-rpath,"$prefix/lib" -o "$exe"
    else
        "$cc" "${warn[@]}" -fsanitize=thread -I"$prefix/include/ouro-tsan" "$here/tsan_server.c" "${objs[@]}" \
            "$a" -lurcu-qsbr -lurcu-cds -lurcu-common -lpthread -lm -o "$exe"
    fi
    out="$work/$name.txt"
    start=$(date +%s.%N)
    set +e
    TSAN_OPTIONS="$opts" "$exe" >"$out" 2>&1
    rc=$?
    set -e
    secs=$(echo "$(date +%s.%N) - $start" | bc | xargs printf %.1f)
    # The reports: from each WARNING line to the ====== line that closes it.
    awk '/^WARNING: ThreadSanitizer:/ { on = 1 } on { print } on && /^==================$/ { on = 0 }' "$out" >"$work/$name.reports"
    reports=$(grep -c '^WARNING: ThreadSanitizer:' "$out" || true)
    races=$(grep -c '^WARNING: ThreadSanitizer: data race' "$out" || true)
    # A frame: "    #3 function file:line (module+0x...)"; ouro's or liburcu's by function or module.
    ours=$(grep -E '^ +#[0-9]+ ' "$work/$name.reports" | grep -Ec ' #[0-9]+ (_?_?ouro|urcu_|cds_|rcu_)|libouro|liburcu' || true)
    # print_suppressions=1: "ThreadSanitizer: Matched 1 suppressions", then "HITS TYPE:PATTERN" lines.
    matched=$(grep -E '^[0-9]+ [a-z_]+:' "$out" | paste -sd, - | sed 's/,/, /g' || true)
    what="$cc, $linkage library, suppressions $([ "$supps" = linked ] && echo "linked ($defaults)" || echo "from $supp")"
    ok=1
    grep -q '^tsan_server: ok' "$out" || { fail "$what: the server failed (status $rc)"; ok=0; }
    [ "$rc" = 66 ] || { fail "$what: status $rc, not TSan's 66 for its one report"; ok=0; }
    [ "$reports" = 1 ] && [ "$races" = 1 ] || { fail "$what: $reports reports ($races data races), not the one planted"; ok=0; }
    grep -q 'planted_race' "$work/$name.reports" || { fail "$what: no report names planted_race"; ok=0; }
    [ "$ours" = 0 ] || { fail "$what: $ours frames of ouro or liburcu in the reports"; ok=0; }
    if [ $ok = 0 ]; then sed 's/^/    /' "$out" >&2; continue; fi
    say "$what: ok: 1 report, the data race in planted_race; suppressed: ${matched:-none}; ${secs}s"
done

if [ $failed != 0 ]; then say "FAILED"; exit 1; fi
say "all builds ok"
