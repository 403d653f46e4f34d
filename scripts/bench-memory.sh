#!/usr/bin/env bash
# bench-memory.sh: objcache's RSS under a sustained load, for hot tiers of
# several sizes (BENCHMARKS.md, "Memory under sustained load").
#
# Needs `make run` going (its memcached nodes on :11211/:11212, PostgreSQL on
# :15432). Grows make run's users table to $ROWS rows (more than any tier
# below holds, so the bound is what holds the tier), then for each size in
# $SIZES starts an objcache on 127.0.0.1:$PORT with make run's config but
# hot_tier: {max_bytes: SIZE, ttl: 60s}, drives it with
#
#   objcache loadtest --prefix User: --keys $ROWS --get 0.8 --mget 0.2
#     --mget-k 10 --set 0 --conns 32 --duration $DURATION --warmup 2s
#
# (uniform keys: the tier churns), samples VmRSS every 5 s, and prints one
# line per size: the samples, the peak (VmHWM), the Go heap from /metrics at
# the end, hot-tier stats and loadtest's summary. Extra environment for the
# server (GOMEMLIMIT=..., say) goes in SERVER_ENV.
#
# Environment:
#   OBJCACHE_BIN  objcache binary (default: bin/objcache)
#   SIZES         hot_tier.max_bytes values (default: "8388608 33554432 134217728")
#   ROWS          rows in users, keys of the load (default: 1000000)
#   DURATION      load per size (default: 60s)
#   PORT          the measured objcache's port (default: 11411)
#   SERVER_ENV    extra environment for objcache serve (default: none)
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

cd "$(dirname "$0")/.."

OBJCACHE_BIN=${OBJCACHE_BIN:-bin/objcache}
SIZES=${SIZES:-8388608 33554432 134217728}
ROWS=${ROWS:-1000000}
DURATION=${DURATION:-60s}
PORT=${PORT:-11411}
SERVER_ENV=${SERVER_ENV:-}

die() { echo "bench-memory: $*" >&2; exit 1; }

[[ -x $OBJCACHE_BIN ]] || die "$OBJCACHE_BIN not found; build it with: make build"
[[ $ROWS =~ ^[1-9][0-9]*$ ]] || die "ROWS must be a positive integer, not $ROWS"
DEV_CONFIG=$(ls /tmp/objcache-dev.*/objcache.yaml "${TMPDIR:-/tmp}"/objcache-dev.*/objcache.yaml 2>/dev/null | head -1) ||
	true
[[ -n $DEV_CONFIG ]] || die "no make run stack found (its config is \$TMPDIR/objcache-dev.*/objcache.yaml); start make run first"
PSQL=$(pg_bin_dir)/psql
[[ -x $PSQL ]] || PSQL=$(command -v psql) || die "psql not found"

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/bench-memory.XXXX")
SERVER_PID=
cleanup() {
	trap "" PIPE
	[[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
	rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 15432 -U app app -v rows="$ROWS" <<'SQL'
INSERT INTO users (id, name, email, active, created_at, score)
SELECT i, 'user ' || i, 'user' || i || '@example.com', true, now(), i % 1000
FROM generate_series(1, :rows) AS i
ON CONFLICT (id) DO NOTHING;
ANALYZE users;
SQL
echo "# bench-memory $(date -u '+%Y-%m-%d %H:%M UTC'): users has $("$PSQL" -X -At -h 127.0.0.1 -p 15432 -U app app -c 'SELECT count(*) FROM users') rows; server env: ${SERVER_ENV:-(none)}"

stats() { # the hot tier's counters, from the stats command
	python3 - "$PORT" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"version\r\nstats\r\n")
b = b""
while not b.endswith(b"END\r\n"):
    b += s.recv(65536)
d = dict(l.split()[1:3] for l in b.decode().split("\r\n") if l.startswith("STAT "))
print("hot_hits=%s hot_misses=%s loads=%s" % (d["hot_hits"], d["hot_misses"], d["loads"]))
PY
}

for size in $SIZES; do
	sed -e "s/^listen: [^ ]*/listen: 127.0.0.1:$PORT/" \
		-e "s/hot_tier: {max_bytes: [0-9]*, ttl: [0-9a-z]*}/hot_tier: {max_bytes: $size, ttl: 60s}/" \
		"$DEV_CONFIG" >"$SCRATCH/objcache.yaml"
	# shellcheck disable=SC2086 # SERVER_ENV is a list of NAME=value
	env $SERVER_ENV "$OBJCACHE_BIN" serve --config "$SCRATCH/objcache.yaml" >"$SCRATCH/serve.log" 2>&1 &
	SERVER_PID=$!
	sleep 1
	kill -0 "$SERVER_PID" 2>/dev/null || die "objcache did not start: $(tail -n 3 "$SCRATCH/serve.log")"
	"$OBJCACHE_BIN" loadtest --addr "127.0.0.1:$PORT" --prefix User: --keys "$ROWS" --get 0.8 --mget 0.2 --mget-k 10 \
		--set 0 --conns 32 --duration "$DURATION" --warmup 2s >"$SCRATCH/loadtest.txt" 2>&1 &
	lt=$!
	samples=""
	while kill -0 "$lt" 2>/dev/null; do
		sleep 5
		samples+=" $(awk '/^VmRSS/{printf "%.1f", $2/1024}' "/proc/$SERVER_PID/status")"
	done
	wait "$lt" || die "loadtest failed: $(tail -n 3 "$SCRATCH/loadtest.txt")"
	hwm=$(awk '/^VmHWM/{printf "%.1f", $2/1024}' "/proc/$SERVER_PID/status")
	heap=$(curl -s "127.0.0.1:$PORT/metrics" | awk '/^go_memstats_heap_inuse_bytes /{printf "%.1f", $2/1048576}')
	echo "max_bytes=$size RSS MB every 5 s:$samples; peak $hwm MB; heap in use $heap MiB; $(stats); loadtest: $(tail -n 1 "$SCRATCH/loadtest.txt")"
	kill "$SERVER_PID"
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=
done
