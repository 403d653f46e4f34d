#!/usr/bin/env bash
# bench-passthrough.sh: memcached itself vs nutcracker vs objcache, in ONE run
# (DESIGN.md, "What the numbers are measured against").
#
# Starts, on free random loopback ports:
#   - memcached "ref": the direct target (the limit);
#   - two memcached nodes, and in front of both of them
#   - nutcracker (twemproxy; md5 + ketama, auto_eject_hosts false) and
#   - objcache (serve --backends node1,node2 $OBJCACHE_FLAGS);
#   - with FLOOR=1, scripts/floor: the least a Go server does to answer get
#     and set (parse, answer from a map, no backend), the bound on what a
#     proxy in Go reaches on these cores. It is measured after objcache in
#     each round, like the others.
# Each memcached: -l 127.0.0.1 -U 0 -m 256 -t 2 (-u root when run as root).
#
# Workload: memcaslap (memaslap), 90% get / 10% set, 64-byte keys, 200-byte
# values, -T 2 -c 32, for $DURATION against each target; ROUNDS rounds
# interleaved (ref, nutcracker, objcache, ref, ...) so drift hits all three
# alike, after one 3 s warm-up per target. If `$OBJCACHE_BIN loadtest --help`
# exits 0, objcache's own load generator also runs once per target per round.
#
# Prints per-run RAW lines as it goes, then a markdown summary (median TPS per
# target, ratios of the medians, p99 and avg latency, loadtest results), RSS of
# both proxies and objcache's backend batching (backend_requests /
# backend_writes). Everything it started is stopped on exit; its scratch
# directory is removed.
#
# Environment:
#   OBJCACHE_BIN    objcache binary (default: bin/objcache)
#   OBJCACHE_FLAGS  extra flags for objcache serve (default: --backend-connections 1)
#   DURATION        length of each measured run, memaslap syntax: Ns or Nm (default: 10s)
#   ROUNDS          measured rounds (default: 3)
#   WARMUP          warm-up run per target (default: 3s)
#   KEEP_LOGS       if set, a directory to copy the raw outputs and logs into
#   FLOOR           1: also measure scripts/floor, built with go (default: 1; 0: don't)
#   TMPDIR          where the scratch directory goes (default: /tmp)
#
# Example: go build -o /tmp/objcache-bench ./cmd/objcache &&
#          OBJCACHE_BIN=/tmp/objcache-bench DURATION=10s ROUNDS=3 scripts/bench-passthrough.sh
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

cd "$(dirname "$0")/.."

OBJCACHE_BIN=${OBJCACHE_BIN:-bin/objcache}
OBJCACHE_FLAGS=${OBJCACHE_FLAGS-"--backend-connections 1"}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-3s}
KEEP_LOGS=${KEEP_LOGS:-}
FLOOR=${FLOOR:-1}

die() { echo "bench-passthrough: $*" >&2; exit 1; }
log() { echo "bench-passthrough: $*" >&2; }

[[ $DURATION =~ ^[0-9]+[sm]?$ ]] || die "DURATION must look like 10s or 1m, not $DURATION"
[[ $WARMUP =~ ^[0-9]+[sm]?$ ]] || die "WARMUP must look like 3s, not $WARMUP"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not $ROUNDS"
[[ $FLOOR =~ ^[01]$ ]] || die "FLOOR must be 0 or 1, not $FLOOR"
DUR_S=$(secs "$DURATION")
WARM_S=$(secs "$WARMUP")

MEMCACHED=$(find_bin memcached) || die "memcached not found (scripts/ensure-deps.sh)"
NUTCRACKER=$(find_bin nutcracker) || die "nutcracker not found (scripts/ensure-deps.sh)"
MEMASLAP=$(find_bin memcaslap || find_bin memaslap) || die "memcaslap not found (apt-get install libmemcached-tools)"
command -v python3 >/dev/null || die "python3 not found"
[[ -x $OBJCACHE_BIN ]] || die "$OBJCACHE_BIN not found or not executable; build it: go build -o /tmp/objcache-bench ./cmd/objcache and set OBJCACHE_BIN"

# --- scratch dir and cleanup -------------------------------------------------

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/bench-passthrough.XXXX")
PIDS=()   # everything this script started, in start order

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	# Output may go to a pipe whose reader Ctrl-C already ended (make run | tee):
	# a write there must not kill the cleanup.
	trap "" PIPE
	set +e
	local i pid
	if [[ -n ${CUR_JOB:-} ]]; then
		kill -TERM "$CUR_JOB" 2>/dev/null
		wait "$CUR_JOB" 2>/dev/null
	fi
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		pid=${PIDS[$i]}
		kill -TERM "$pid" 2>/dev/null
	done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	if [[ -n $KEEP_LOGS ]]; then
		mkdir -p "$KEEP_LOGS" && cp -r "$SCRATCH"/. "$KEEP_LOGS"/ 2>/dev/null
	fi
	rm -rf "$SCRATCH"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helper (parsing, sockets) ----------------------------------------------

HELPER=$PWD/scripts/bench_passthrough.py
py() { python3 "$HELPER" "$@"; }

# --- host --------------------------------------------------------------------


echo "# bench-passthrough $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo
echo "- host: nproc=$(nproc), $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), kernel $(uname -r)"
echo "- versions: $("$MEMCACHED" -V), $("$NUTCRACKER" -V 2>&1 | head -1 | sed 's/This is //'), memaslap $("$MEMASLAP" -V 2>&1 | head -1 | awk '{print $NF}'), $("$OBJCACHE_BIN" version 2>&1 | head -1), $(go version 2>/dev/null | awk '{print $3}' || true)"
echo "- load at start: $(uptime | sed 's/.*load average/load average/')"
echo "- busiest processes at start (1 s sample): $(busiest)"
echo "- workload: memaslap -T 2 -c 32, 90% get / 10% set, key 64 B, value 200 B, $DURATION per run, $ROUNDS rounds, warm-up $WARMUP per target"
echo "- objcache flags: ${OBJCACHE_FLAGS:-(none)}"
echo

# --- servers -----------------------------------------------------------------

read -r P_REF P_N1 P_N2 P_NC P_NCSTATS P_OC P_FLOOR < <(py free_ports 7)

start_ref_and_nodes "$P_REF" "$P_N1" "$P_N2"
if ((FLOOR)); then
	start_floor floor "$P_FLOOR"
	py wait_version "127.0.0.1:$P_FLOOR" 10 >/dev/null || die "floor did not answer version: $(tail -n 5 "$SCRATCH/floor.log")"
fi

cat >"$SCRATCH/nutcracker.yml" <<YAML
pool:
  listen: 127.0.0.1:$P_NC
  hash: md5
  distribution: ketama
  auto_eject_hosts: false
  servers:
    - 127.0.0.1:$P_N1:1
    - 127.0.0.1:$P_N2:1
YAML
"$NUTCRACKER" -c "$SCRATCH/nutcracker.yml" -p "$SCRATCH/nutcracker.pid" -s "$P_NCSTATS" -a 127.0.0.1 \
	-o "$SCRATCH/nutcracker.log" >/dev/null 2>&1 &
PIDS+=($!)
PID_nutcracker=$!

# shellcheck disable=SC2086 # OBJCACHE_FLAGS is a list of flags
"$OBJCACHE_BIN" serve --listen "127.0.0.1:$P_OC" --backends "127.0.0.1:$P_N1,127.0.0.1:$P_N2" $OBJCACHE_FLAGS \
	>"$SCRATCH/objcache.log" 2>&1 &
PIDS+=($!)
PID_objcache=$!

py wait_version "127.0.0.1:$P_NC" 10 >/dev/null || die "nutcracker did not answer version: $(tail -n 5 "$SCRATCH/nutcracker.log")"
py wait_version "127.0.0.1:$P_OC" 10 >/dev/null || die "objcache did not answer version: $(tail -n 5 "$SCRATCH/objcache.log")"

all_alive

echo "- ports: memcached ref :$P_REF; nodes :$P_N1 :$P_N2; nutcracker :$P_NC (stats :$P_NCSTATS); objcache :$P_OC"
echo

declare -A ADDR=([memcached]="127.0.0.1:$P_REF" [nutcracker]="127.0.0.1:$P_NC" [objcache]="127.0.0.1:$P_OC")
declare -A TPID=([memcached]=$PID_ref [nutcracker]=$PID_nutcracker [objcache]=$PID_objcache)
TARGETS=(memcached nutcracker objcache)
if ((FLOOR)); then
	ADDR[floor]="127.0.0.1:$P_FLOOR"
	TPID[floor]=$PID_floor
	TARGETS+=(floor)
fi

printf 'key\n64 64 1\nvalue\n200 200 1\ncmd\n0 0.1\n1 0.9\n' >"$SCRATCH/memaslap.cfg"

# --- CPU accounting ------------------------------------------------------------

CLK_TCK=$(getconf CLK_TCK)
NPROC=$(nproc)
CUR_JOB=

# --- runs --------------------------------------------------------------------

RESULTS=$SCRATCH/results.tsv   # round target tps avg p99 get_miss ops host_busy target_cpu nodes_cpu memaslap_cpu other_cpu
LT_RESULTS=$SCRATCH/loadtest.tsv
: >"$RESULTS"
: >"$LT_RESULTS"

run_memaslap() { # target duration outfile (warm-up)
	timeout -k 5 $(($(secs "$2") + 60)) "$MEMASLAP" -s "${ADDR[$1]}" -F "$SCRATCH/memaslap.cfg" \
		-T 2 -c 32 -t "$2" -S "$2" >"$3" 2>&1
}

measure() { # round target
	local r=$1 t=$2 out="$SCRATCH/memaslap-r$1-$2.txt"
	local h0 h1 tp0 tp1 n0 n1 g0 g1 s0 s1 rc=0 gen lead win
	# CPU is sampled over the steady part of the run: from $lead s after the
	# start to $lead s before the end (memaslap spends the first moments
	# connecting and the last ones reporting).
	if ((DUR_S >= 4)); then lead=1; else lead=0.5; fi
	win=$(python3 -c "print(max(0.5, $DUR_S - 2 * $lead))")
	s0=$(date +%s.%N)
	timeout -k 5 $((DUR_S + 60)) "$MEMASLAP" -s "${ADDR[$t]}" -F "$SCRATCH/memaslap.cfg" \
		-T 2 -c 32 -t "$DURATION" -S "$DURATION" >"$out" 2>&1 &
	CUR_JOB=$!
	sleep "$lead"
	gen=$(cat "/proc/$CUR_JOB/task/$CUR_JOB/children" 2>/dev/null | awk '{print $1}')
	read -r -a h0 < <(host_ticks)
	tp0=$(proc_ticks "${TPID[$t]}")
	n0=$(proc_ticks "$PID_node1" "$PID_node2")
	g0=$(proc_ticks $gen)
	sleep "$win"
	read -r -a h1 < <(host_ticks)
	tp1=$(proc_ticks "${TPID[$t]}")
	n1=$(proc_ticks "$PID_node1" "$PID_node2")
	g1=$(proc_ticks $gen)
	wait "$CUR_JOB" || rc=$?
	CUR_JOB=
	s1=$(date +%s.%N)
	local el busy tcpu ncpu gcpu other sirq
	el=$(python3 -c "print('%.2f' % ($s1 - $s0))")
	# all in % of one core; the host has $(nproc) cores
	read -r busy tcpu ncpu gcpu other sirq < <(python3 -c "
hz = $CLK_TCK * $win
d = ${h1[1]} - ${h0[1]}
busy = $NPROC * 100.0 * (${h1[0]} - ${h0[0]}) / d if d else 0
t, n, g = [100.0 * x / hz for x in ($((tp1 - tp0)), $((n1 - n0)), $((g1 - g0)))]
sirq = $NPROC * 100.0 * (${h1[2]} - ${h0[2]}) / d if d else 0
print('%.0f %.0f %.0f %.0f %.0f %.0f' % (busy, t, n, g, busy - t - n - g, sirq))")
	local tps avg p99 gm ops
	read -r tps avg p99 gm ops < <(py memaslap "$out")
	if ((rc != 0)); then
		log "memaslap against $t exited $rc (round $r); tail: $(tail -n 3 "$out" | tr '\n' ' ')"
		tps=NA
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$t" "$tps" "$avg" "$p99" "$gm" "$ops" "$busy" "$tcpu" "$ncpu" "$gcpu" "$other" >>"$RESULTS"
	echo "RAW memaslap round=$r target=$t tps=$tps avg_us=$avg p99_us_le=$p99 get_miss=$gm ops=$ops elapsed_s=$el cpu_pct(${win}s window): host_busy=$busy target=$tcpu nodes=$ncpu memaslap=$gcpu other=$other (host irq+softirq=$sirq)"
}

HAVE_LOADTEST=0
if timeout 10 "$OBJCACHE_BIN" loadtest --help >/dev/null 2>&1; then
	HAVE_LOADTEST=1
fi

loadtest() { # round target
	local r=$1 t=$2 json="$SCRATCH/loadtest-r$1-$2.json" rc=0
	timeout -k 5 $((DUR_S * 3 + 120)) "$OBJCACHE_BIN" loadtest --addr "${ADDR[$t]}" --conns 32 --value-size 200 \
		--get 0.9 --set 0.1 --keys 100000 --fill --duration "$DURATION" --json "$json" \
		>"$SCRATCH/loadtest-r$1-$2.txt" 2>&1 || rc=$?
	local line
	if ((rc != 0)) || [[ ! -s $json ]]; then
		log "loadtest against $t exited $rc (round $r); tail: $(tail -n 3 "$SCRATCH/loadtest-r$1-$2.txt" | tr '\n' ' ')"
		line="ops_s=NA p99=NA p999=NA keys=failed(rc=$rc)"
	else
		line=$(py loadtest "$json")
	fi
	echo "RAW loadtest round=$r target=$t $line"
	local ops p99 p999 keys
	ops=$(sed -n 's/.*ops_s=\([^ ]*\).*/\1/p' <<<"$line")
	p99=$(sed -n 's/.* p99=\([^ ]*\).*/\1/p' <<<"$line")
	p999=$(sed -n 's/.* p999=\([^ ]*\).*/\1/p' <<<"$line")
	keys=$(sed -n 's/.* keys=\([^ ]*\).*/\1/p' <<<"$line")
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$t" "$ops" "$p99" "$p999" "$keys" >>"$LT_RESULTS"
}

echo "## warm-up ($WARMUP per target)"
for t in "${TARGETS[@]}"; do
	run_memaslap "$t" "$WARMUP" "$SCRATCH/memaslap-warmup-$t.txt" ||
		die "warm-up memaslap against $t failed: $(tail -n 5 "$SCRATCH/memaslap-warmup-$t.txt")"
	read -r tps _ < <(py memaslap "$SCRATCH/memaslap-warmup-$t.txt")
	echo "warm-up target=$t tps=$tps"
done
echo

echo "## raw per-round results"
echo
echo '```'
for ((r = 1; r <= ROUNDS; r++)); do
	for t in "${TARGETS[@]}"; do
		measure "$r" "$t"
	done
	if ((HAVE_LOADTEST)); then
		for t in "${TARGETS[@]}"; do
			loadtest "$r" "$t"
		done
	fi
done
echo '```'
echo

# --- summary -------------------------------------------------------------------

echo "## summary: memaslap, median over $ROUNDS rounds of $DURATION"
echo
py summary "$RESULTS" "$DUR_S" "$ROUNDS"
echo
echo "p99 is memaslap's own Log2 Dist resolution: memaslap counts a latency v (us) in bucket"
echo "b = ceil(log2 v), i.e. 2^(b-1) < v <= 2^b; the p99 shown is the upper bound 2^b of the"
echo "bucket holding the 99th percentile of the Total Statistics histogram, not an exact value."
echo "CPU columns (medians, % of one core; the host has $NPROC cores, so $((NPROC * 100)) = all busy), sampled"
echo "over the steady middle of each run from /proc: host busy (all processes, /proc/stat), memaslap,"
echo "the target process (memcached ref / nutcracker / objcache / floor), the two nodes, and other = host busy"
echo "minus those (kernel softirq work not charged to a process, and anything else running on the host)."
echo "CPU us/op: that CPU divided by the run's TPS (host: everything on the machine; target: the"
echo "memcached ref, nutcracker, objcache or floor process alone)."
echo

echo "## objcache loadtest"
echo
if ((HAVE_LOADTEST)); then
	py lt_summary "$LT_RESULTS"
else
	echo "skipped: \`$OBJCACHE_BIN loadtest --help\` did not exit 0 (the loadtest subcommand is not in this binary)."
fi
echo

# --- memory and batching ----------------------------------------------------------

echo "## memory and batching at the end"
echo
echo "- RSS: objcache $(rss "$PID_objcache"), nutcracker $(rss "$PID_nutcracker"), memcached ref $(rss "$PID_ref"), node1 $(rss "$PID_node1"), node2 $(rss "$PID_node2")"
ocstats=$(py mc "127.0.0.1:$P_OC" stats 2>/dev/null || true)
breq=$(awk '$2=="backend_requests"{print $3}' <<<"${ocstats//$'\r'/}")
bwr=$(awk '$2=="backend_writes"{print $3}' <<<"${ocstats//$'\r'/}")
if [[ -n $breq && -n $bwr && $bwr != 0 ]]; then
	echo "- objcache stats: backend_requests=$breq backend_writes=$bwr => $(python3 -c "print('%.2f' % ($breq / $bwr))") requests per backend write"
else
	echo "- objcache stats: backend_requests/backend_writes not reported (stats reply: $(head -c 300 <<<"$ocstats" | tr '\r\n' '  '))"
fi
for n in node1 node2; do
	p=P_N${n#node}
	st=$(py mc "127.0.0.1:${!p}" stats 2>/dev/null | tr -d '\r' || true)
	echo "- $n: $(awk '$2=="cmd_get"||$2=="cmd_set"||$2=="get_hits"||$2=="get_misses"||$2=="curr_connections"||$2=="total_connections"{printf "%s=%s ", $2, $3}' <<<"$st")"
done
echo "- load at end: $(uptime | sed 's/.*load average/load average/')"
echo "- busiest processes at end (1 s sample): $(busiest)"
