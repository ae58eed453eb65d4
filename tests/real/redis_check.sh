#!/usr/bin/env bash
# tests/real/redis_check.sh — redis-server on ouro's malloc under redis-benchmark's default run.
#
#     tests/real/redis_check.sh LIBOURO_MALLOC_SO [--short]
#
# Starts Debian's redis-server with LD_PRELOAD=LIBOURO_MALLOC_SO on a unix socket in a fresh folder
# (no TCP port, no persistence), checks that the library is mapped in the server, runs redis-benchmark
# with every test of its default run (20 000 requests each; --short: 2 000), then checks that every
# test reported a result, that the server still answers and stores what it is given (SET/GET,
# RPUSH/LRANGE, INCR, HSET/HGETALL), and that it exits with status 0 on SHUTDOWN. The benchmark client
# runs without the preload: only the server is on ouro. Exits 1 on the first failed check.
set -euo pipefail

lib=${1:?usage: redis_check.sh LIBOURO_MALLOC_SO [--short]}
requests=20000
[ "${2:-}" = --short ] && requests=2000
lib=$(cd "$(dirname "$lib")" && pwd)/$(basename "$lib")
[ -e "$lib" ] || { echo "redis_check: $lib not found (./zigw build installs it)" >&2; exit 2; }
for p in redis-server redis-benchmark redis-cli; do
    command -v "$p" >/dev/null || { echo "redis_check: $p missing (Debian packages redis-server, redis-tools)" >&2; exit 2; }
done

dir=$(mktemp -d /tmp/ouro-redis-check-XXXXXX)
sock=$dir/redis.sock
server=
cleanup() {
    [ -n "$server" ] && kill -9 "$server" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "redis_check: FAIL: $*" >&2; [ -s "$dir/server.log" ] && sed 's/^/  server: /' "$dir/server.log" >&2; exit 1; }
cli() { redis-cli -s "$sock" "$@"; }

LD_PRELOAD=$lib redis-server --port 0 --unixsocket "$sock" --unixsocketperm 700 --save '' --appendonly no \
    --dir "$dir" --daemonize no --loglevel warning --logfile "$dir/server.log" &
server=$!
for _ in $(seq 1 200); do
    [ -S "$sock" ] && cli ping >/dev/null 2>&1 && break
    kill -0 "$server" 2>/dev/null || fail "redis-server ended before it was ready"
    sleep 0.05
done
[ "$(cli ping)" = PONG ] || fail "redis-server does not answer PING"
grep -q "$(basename "$lib")" "/proc/$server/maps" || fail "$lib is not mapped in redis-server"

echo "redis_check: redis-server (pid $server) on $(basename "$lib"); redis-benchmark's default run, -n $requests"
redis-benchmark -s "$sock" -n "$requests" --csv > "$dir/bench.csv" 2> "$dir/bench.err" ||
    fail "redis-benchmark exited with status $?: $(tail -3 "$dir/bench.err")"
# redis 7.0's default run: every test must have a line (the header is line 1)
for t in PING_INLINE PING_MBULK SET GET INCR LPUSH RPUSH LPOP RPOP SADD HSET SPOP ZADD ZPOPMIN \
         'LPUSH (needed to benchmark LRANGE)' 'LRANGE_100 (first 100 elements)' 'LRANGE_300 (first 300 elements)' \
         'LRANGE_500 (first 500 elements)' 'LRANGE_600 (first 600 elements)' 'MSET (10 keys)'; do
    grep -q "^\"$t\"," "$dir/bench.csv" || fail "redis-benchmark reported no result for $t"
done
kill -0 "$server" 2>/dev/null || fail "redis-server died during the benchmark"
sed 's/^/  /' "$dir/bench.csv"

# the server still stores and returns what it is given
[ "$(cli set ouro:k "$(printf 'v%.0s' $(seq 1 300))")" = OK ] || fail "SET"
[ "$(cli strlen ouro:k)" = 300 ] || fail "STRLEN after SET"
cli del ouro:l >/dev/null
cli rpush ouro:l $(seq 1 1000) >/dev/null
[ "$(cli lrange ouro:l 0 -1 | tr '\n' ' ')" = "$(seq 1 1000 | tr '\n' ' ')" ] || fail "LRANGE of 1..1000"
[ "$(cli incrby ouro:n 41)" = 41 ] && [ "$(cli incr ouro:n)" = 42 ] || fail "INCR"
cli hset ouro:h a 1 b 2 c 3 >/dev/null
[ "$(cli hgetall ouro:h | tr '\n' ' ')" = "a 1 b 2 c 3 " ] || fail "HGETALL"
[ "$(cli dbsize)" -gt 4 ] || fail "DBSIZE"
cli flushall >/dev/null
[ "$(cli dbsize)" = 0 ] || fail "FLUSHALL"

cli shutdown nosave >/dev/null 2>&1 || true
status=0
wait "$server" || status=$?
server=
[ "$status" = 0 ] || fail "redis-server exited with status $status"
! grep -qiE 'crash|BUG REPORT|Guru|assert' "$dir/server.log" || fail "the server's log reports a crash"
echo "redis_check: every test of the default run reported, data checks passed, redis-server exited 0"
