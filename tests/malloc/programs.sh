#!/bin/sh
# tests/malloc/programs.sh SHIM — real programs with LD_PRELOAD=SHIM (libouro-malloc.so): their output
# must be what it is without the preload, and OURO_STATS must show that their blocks were ouro's.
set -u
shim=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")   # absolute: the programs may change directory
fails=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "FAIL programs.sh: $*" >&2; fails=$((fails + 1)); }

# same OUTPUT of CMD... with and without the preload
same() {
    "$@" >"$tmp/plain" 2>&1
    LD_PRELOAD=$shim "$@" >"$tmp/ouro" 2>&1 || fail "exit status $? under the preload: $*"
    cmp -s "$tmp/plain" "$tmp/ouro" || { fail "output differs under the preload: $*"; diff "$tmp/plain" "$tmp/ouro" | head -5 >&2; }
}

same /bin/ls -la /usr/bin
same /bin/sh -c 'for i in 1 2 3; do x=$(echo "$i$i"); echo "$x"; done | sort -r'
py=$(command -v python3 || true)
if [ -n "$py" ]; then
    # an allocation-heavy loop, threads allocating and freeing each other's objects, and os.fork
    same "$py" -c '
import threading, os
d = {}
for i in range(200000):
    d[str(i)] = [i] * (i % 7)
print(sum(len(v) for v in d.values()))
out = []
def work(n):
    out.append(sum(len(str(j) * 3) for j in range(n)))
ts = [threading.Thread(target=work, args=(50000,)) for _ in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
print(sorted(out))
pid = os.fork()
if pid == 0:
    os._exit(0 if len([bytes(1000) for _ in range(1000)]) == 1000 else 1)
print(os.waitpid(pid, 0)[1])
'
else
    echo "programs.sh: no python3, skipped" >&2
fi

# OURO_STATS=1: the report at exit, on stderr, with blocks in use (ls closes stderr before it exits)
OURO_STATS=1 LD_PRELOAD=$shim /bin/ls / >/dev/null 2>"$tmp/stats" || fail "ls with OURO_STATS=1"
grep -q '^ouro-malloc: allocator statistics at exit (pid [0-9]*)$' "$tmp/stats" || fail "no OURO_STATS report from ls"
grep -q '^# bytes mapped now / peak' "$tmp/stats" || fail "OURO_STATS report of ls incomplete"
awk '/^class/ {t = 1; next} t && /^ *[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+/ {n += $4} END {exit n > 0 ? 0 : 1}' "$tmp/stats" ||
    fail "OURO_STATS report of ls shows no block in use"
if [ -n "$py" ]; then
    OURO_STATS=json LD_PRELOAD=$shim "$py" -c 'x = [str(i) for i in range(1000)]' 2>"$tmp/json" >/dev/null || fail "python3 with OURO_STATS=json"
    "$py" -c '
import json, sys
lines = open(sys.argv[1]).read().splitlines()
i = lines.index(next(l for l in lines if l.startswith("ouro-malloc: allocator statistics at exit")))
st = json.loads(lines[i + 1])
assert sum(c["blocks_in_use"] for c in st["classes"]) > 1000, st
assert st["bytes_mapped"] > 0 and st["heaps"] >= 1, st
' "$tmp/json" || fail "OURO_STATS=json report of python3"
fi
if [ -n "$py" ]; then # a program that closes every descriptor, then opens its data file under stderr's copy's number
    OURO_STATS=1 LD_PRELOAD=$shim "$py" -c 'import os, sys; os.closerange(3, 4096); fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC); os.write(fd, b"payload\n")' "$tmp/data" 2>/dev/null ||
        fail "python3 with OURO_STATS=1 after closerange"
    [ "$(cat "$tmp/data")" = payload ] || fail "OURO_STATS=1 wrote its report into the program's own file"
fi
OURO_STATS=0 LD_PRELOAD=$shim /bin/ls / >/dev/null 2>"$tmp/none"
[ ! -s "$tmp/none" ] || fail "OURO_STATS=0 printed something"

[ "$fails" = 0 ] && echo "programs.sh: all passed"
exit "$fails"
