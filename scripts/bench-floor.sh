#!/usr/bin/env bash
# bench-floor.sh: the floor under the speed goals. What the least a server
# written in Go can do (scripts/floor: parse get/set, answer from a map, no
# backend) reaches against memcached itself, in ONE run, under the loads of
# bench-passthrough.sh and bench-objects.sh.
#
# Starts, on free random loopback ports, in a scratch directory:
#   - a memcached "ref" (-l 127.0.0.1 -U 0 -m 256 -t 2, -u root when root),
#     as in the other bench scripts;
#   - floor -mode goroutines (a goroutine per connection on net.Conn, the way
#     objcache serves) and floor -mode epoll -loops 2 (an edge-triggered epoll
#     loop per thread on raw descriptors, the way memcached serves), built
#     from scripts/floor into the scratch directory.
#
# Then ROUNDS interleaved rounds (memcached, floor-goroutines, floor-epoll) of
#   1. passthrough's load: memaslap -T 2 -c 32, 90% get / 10% set, 64-byte
#      keys, 200-byte values, $DURATION;
#   2. hot reads' load: objcache loadtest --prefix User: --keys $ROWS
#      --zipf 0.99 --get 1 --set 0 --conns 32 --fill --value-size 200
#      --duration $DURATION --warmup $WARMUP.
# and a markdown summary: median throughput, each target's ratio to memcached
# (per round and of the medians), and CPU per op of the target process and
# of the whole host over the steady middle of each run.
#
# Last, what a node costs per request behind a proxy: a fresh memcached
# "node" (same flags) driven by `floor -batched` over 2 connections with
# 1, 4, 16 and 64 requests per write, $DURATION each; its CPU per request.
#
# Environment:
#   OBJCACHE_BIN  objcache binary, for its loadtest (default: bin/objcache)
#   DURATION      measured time per run, >= 4s (default: 10s)
#   WARMUP        loadtest warm-up per run (default: 2s)
#   ROUNDS        rounds (default: 5)
#   ROWS          keys of the hot-read load (default: 100000)
#   TMPDIR        where the scratch directory goes (default: /tmp)
#
# Example: go build -o /tmp/objcache-bench ./cmd/objcache &&
#          OBJCACHE_BIN=/tmp/objcache-bench scripts/bench-floor.sh | tee /tmp/bench-floor.md
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

cd "$(dirname "$0")/.."

OBJCACHE_BIN=${OBJCACHE_BIN:-bin/objcache}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-5}
ROWS=${ROWS:-100000}

die() { echo "bench-floor: $*" >&2; exit 1; }

[[ $DURATION =~ ^[0-9]+[sm]?$ ]] || die "DURATION must look like 10s or 1m, not $DURATION"
[[ $WARMUP =~ ^[0-9]+[sm]?$ ]] || die "WARMUP must look like 2s, not $WARMUP"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not $ROUNDS"
[[ $ROWS =~ ^[1-9][0-9]*$ ]] || die "ROWS must be a positive integer, not $ROWS"
DUR_S=$(secs "$DURATION")
WARM_S=$(secs "$WARMUP")
((DUR_S >= 4)) || die "DURATION must be at least 4s"

MEMCACHED=$(find_bin memcached) || die "memcached not found (scripts/ensure-deps.sh)"
MEMASLAP=$(find_bin memcaslap || find_bin memaslap) || die "memcaslap not found (apt-get install libmemcached-tools)"
[[ -x $OBJCACHE_BIN ]] || die "$OBJCACHE_BIN not found or not executable; build it: go build -o /tmp/objcache-bench ./cmd/objcache and set OBJCACHE_BIN"

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/bench-floor.XXXX")
PIDS=()
CUR_JOB=
cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	trap "" PIPE
	set +e
	[[ -n $CUR_JOB ]] && kill -TERM "$CUR_JOB" 2>/dev/null
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
	rm -rf "$SCRATCH"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

py() { python3 scripts/bench_floor.py "$@"; }

read -r P_REF P_FG P_FE P_NODE < <(py free_ports 4)
start_memcached ref "$P_REF"
start_memcached node "$P_NODE"
start_floor floor-goroutines "$P_FG" -mode goroutines
start_floor floor-epoll "$P_FE" -mode epoll -loops 2
for p in "$P_REF" "$P_FG" "$P_FE" "$P_NODE"; do
	py wait_version "127.0.0.1:$p" 10 >/dev/null || die "nothing answered version on :$p: $(tail -n 3 "$SCRATCH"/*.log)"
done
all_alive

declare -A ADDR=([memcached]="127.0.0.1:$P_REF" [floor-goroutines]="127.0.0.1:$P_FG" [floor-epoll]="127.0.0.1:$P_FE")
declare -A TPID=([memcached]=$PID_ref [floor-goroutines]=$PID_floor_goroutines [floor-epoll]=$PID_floor_epoll)
TARGETS=(memcached floor-goroutines floor-epoll)
CLK_TCK=$(getconf CLK_TCK)
NPROC=$(nproc)
RESULTS=$SCRATCH/results.tsv # load round target ops/s host_busy% target% generator%
: >"$RESULTS"
printf 'key\n64 64 1\nvalue\n200 200 1\ncmd\n0 0.1\n1 0.9\n' >"$SCRATCH/memaslap.cfg"

echo "# bench-floor $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo
echo "- host: nproc=$NPROC, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), kernel $(uname -r); $(go version | awk '{print $3}'); $("$MEMCACHED" -V)"
echo "- load at start: $(uptime | sed 's/.*load average/load average/')"
echo "- $ROUNDS rounds of $DURATION per target and load"
echo

# sample LOAD ROUND TARGET START_DELAY OUT: CPU over the steady middle of the
# running generator $CUR_JOB, then its result.
sample() {
	local load=$1 r=$2 t=$3 delay=$4 out=$5 rc=0 h0 h1 tp0 tp1 g0 g1 gen win=$((DUR_S - 2))
	sleep "$delay"
	gen=$(cat "/proc/$CUR_JOB/task/$CUR_JOB/children" 2>/dev/null | awk '{print $1}')
	read -r -a h0 < <(host_ticks)
	tp0=$(proc_ticks "${TPID[$t]}")
	g0=$(proc_ticks $gen)
	sleep "$win"
	read -r -a h1 < <(host_ticks)
	tp1=$(proc_ticks "${TPID[$t]}")
	g1=$(proc_ticks $gen)
	wait "$CUR_JOB" || rc=$?
	CUR_JOB=
	local ops
	if ((rc != 0)); then
		echo "RAW load=$load round=$r target=$t FAILED rc=$rc: $(tail -n 3 "$out" | tr '\n' ' ')"
		ops=NA
	else
		ops=$(py ops "$load" "$out")
	fi
	read -r busy tcpu gcpu < <(python3 -c "
hz = $CLK_TCK * $win
d = ${h1[1]} - ${h0[1]}
busy = $NPROC * 100.0 * (${h1[0]} - ${h0[0]}) / d if d else 0
print('%.0f %.0f %.0f' % (busy, 100.0 * $((tp1 - tp0)) / hz, 100.0 * $((g1 - g0)) / hz))")
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$load" "$r" "$t" "$ops" "$busy" "$tcpu" "$gcpu" >>"$RESULTS"
	echo "RAW load=$load round=$r target=$t ops_s=$ops cpu_pct(${win}s window): host_busy=$busy target=$tcpu generator=$gcpu"
}

passthrough() { # round target
	local out="$SCRATCH/memaslap-r$1-$2.txt"
	timeout -k 5 $((DUR_S + 60)) "$MEMASLAP" -s "${ADDR[$2]}" -F "$SCRATCH/memaslap.cfg" \
		-T 2 -c 32 -t "$DURATION" -S "$DURATION" >"$out" 2>&1 &
	CUR_JOB=$!
	sample passthrough "$1" "$2" 1 "$out"
}

hotreads() { # round target
	local out="$SCRATCH/loadtest-r$1-$2.txt" json="$SCRATCH/loadtest-r$1-$2.json"
	timeout -k 5 $((DUR_S + WARM_S + 120)) "$OBJCACHE_BIN" loadtest --addr "${ADDR[$2]}" --prefix User: --keys "$ROWS" \
		--zipf 0.99 --get 1 --set 0 --conns 32 --fill --value-size 200 --duration "$DURATION" --warmup "$WARMUP" \
		--json "$json" >"$out" 2>&1 &
	CUR_JOB=$!
	# The measured part starts after the fill and the warm-up.
	for _ in $(seq 200); do
		grep -q '^filled ' "$out" 2>/dev/null && break
		sleep 0.1
	done
	sample hotreads "$1" "$2" $((WARM_S + 1)) "$json"
}

echo "## raw per-round results"
echo
echo '```'
for t in "${TARGETS[@]}"; do # warm-up: connections, the first sets
	timeout 60 "$MEMASLAP" -s "${ADDR[$t]}" -F "$SCRATCH/memaslap.cfg" -T 2 -c 32 -t 2s >/dev/null 2>&1 ||
		die "warm-up memaslap against $t failed"
done
for ((r = 1; r <= ROUNDS; r++)); do
	for t in "${TARGETS[@]}"; do passthrough "$r" "$t"; done
	for t in "${TARGETS[@]}"; do hotreads "$r" "$t"; done
done
echo '```'
echo
py summary "$RESULTS" "$(IFS=,; echo "${TARGETS[*]}")"
echo "## a node's CPU per request, by requests per write (floor -batched, 2 connections, $DURATION each)"
echo
echo '```'
for b in 1 4 16 64; do
	"$SCRATCH/floor" -batched "127.0.0.1:$P_NODE" -pid "$PID_node" -batch "$b" -conns 2 -duration "$DURATION" ||
		die "floor -batched $b against the node failed"
done
echo '```'
echo
echo "- load at end: $(uptime | sed 's/.*load average/load average/')"
