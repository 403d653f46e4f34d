#!/usr/bin/env bash
# bench-objects.sh: hot object reads through objcache against memcached itself,
# in ONE run (DESIGN.md, "What the numbers are measured against": objects
# against memcached itself holding the same keys).
#
# Starts, on free random loopback ports, in a scratch directory:
#   - PostgreSQL: its own cluster (initdb as the postgres user when run as
#     root), fsync=off, pg_stat_statements preloaded if installed; database
#     "app" with scripts/devstack.sh's users table ($ROWS rows: id bigint pk,
#     name, email, active, created_at, score);
#   - two memcached nodes and a memcached "ref" (the direct target), each
#     -l 127.0.0.1 -U 0 -m 256 -t 2 (-u root when run as root);
#   - two objcache instances in front of the same two nodes, from generated
#     YAML configs that differ only in the hot tier's ttl:
#       hot_tier: {max_bytes: 67108864, ttl: 2s}   (DESIGN.md's example)
#       hot_tier: {max_bytes: 67108864, ttl: 60s}
#     models: User: {table: users, key: id, ttl: 5m, negative_ttl: 30s}.
#
# Then:
#   1. a fill pass through each objcache: every id 1..$ROWS once, in
#      multi-gets of 100 on one connection, checking that every row came back;
#   2. ROUNDS interleaved rounds (memcached, objcache ttl 2s, objcache ttl 60s)
#      of `objcache loadtest --prefix User: --keys $ROWS --zipf 0.99 --get 1
#      --set 0 --conns 32 --duration $DURATION --warmup $WARMUP --stats`;
#      against the ref memcached with --fill --value-size 200 (every key set to
#      a 200-byte value before the run). memaslap has no Zipf key
#      distribution, so objcache's own loadtest is the generator.
#      With FLOOR=1, a fourth target in each round: scripts/floor (the least
#      a Go server does to answer a get: parse it, answer from a map), filled
#      like the ref. It bounds what objcache's hot tier can reach here.
#
# Prints RAW lines as it goes, then a markdown summary: ops/s, p50/p99/p99.9
# (loadtest's HDR histogram), the objcache/memcached ratios of the medians,
# hot_hits / node_hits from objcache's stats over each measured run, and CPU
# per process over the steady middle of each run. Everything it started is
# stopped on exit (also on Ctrl-C, or after MAX_SECONDS); the scratch
# directory is removed.
#
# Environment:
#   OBJCACHE_BIN  objcache binary (default: bin/objcache)
#   DURATION      measured time per run, Go duration in s, >= 4s (default: 10s)
#   WARMUP        loadtest warm-up per run (default: 2s)
#   ROUNDS        measured rounds (default: 3)
#   ROWS          rows in users, keys in the runs (default: 100000)
#   IDLE_WAIT     seconds to wait at most for the host to be >= 90% idle
#                 before the rounds (default: 120; 0: don't wait)
#   MAX_SECONDS   hard bound on the whole script (default: 1200)
#   KEEP_LOGS     if set, a directory to copy the raw outputs and logs into
#   FLOOR         1: also measure scripts/floor, built with go (default: 1; 0: don't)
#   TMPDIR        where the scratch directory goes (default: /tmp)
#
# Example: go build -o /tmp/objcache-objbench ./cmd/objcache &&
#          OBJCACHE_BIN=/tmp/objcache-objbench scripts/bench-objects.sh | tee /tmp/bench-objects.md
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

cd "$(dirname "$0")/.."

OBJCACHE_BIN=${OBJCACHE_BIN:-bin/objcache}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-3}
ROWS=${ROWS:-100000}
IDLE_WAIT=${IDLE_WAIT:-120}
MAX_SECONDS=${MAX_SECONDS:-1200}
KEEP_LOGS=${KEEP_LOGS:-}
FLOOR=${FLOOR:-1}

die() { echo "bench-objects: $*" >&2; exit 1; }
log() { echo "bench-objects: $*" >&2; }

[[ $DURATION =~ ^[0-9]+s$ ]] || die "DURATION must look like 10s, not $DURATION"
[[ $WARMUP =~ ^[0-9]+s$ ]] || die "WARMUP must look like 2s, not $WARMUP"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not $ROUNDS"
[[ $ROWS =~ ^[1-9][0-9]*$ ]] || die "ROWS must be a positive integer, not $ROWS"
[[ $FLOOR =~ ^[01]$ ]] || die "FLOOR must be 0 or 1, not $FLOOR"
[[ $IDLE_WAIT =~ ^[0-9]+$ ]] || die "IDLE_WAIT must be a number of seconds, not $IDLE_WAIT"
[[ $MAX_SECONDS =~ ^[1-9][0-9]*$ ]] || die "MAX_SECONDS must be a positive number of seconds, not $MAX_SECONDS"
DUR_S=${DURATION%s}
WARM_S=${WARMUP%s}
# CPU is sampled over the run less 1 s at each end: shorter runs have no
# steady middle to sample.
((DUR_S >= 4)) || die "DURATION must be 4s or more, not $DURATION"

# --- preflight -------------------------------------------------------------------

MEMCACHED=$(find_bin memcached) || die "memcached not found (scripts/ensure-deps.sh)"
PGBIN=$(pg_bin_dir) || die "PostgreSQL (initdb, pg_ctl) not found (scripts/ensure-deps.sh)"
PSQL=$PGBIN/psql
[[ -x $PSQL ]] || PSQL=$(command -v psql) || die "psql not found; apt-get install -y postgresql-client"
command -v python3 >/dev/null || die "python3 not found"
[[ -x $OBJCACHE_BIN ]] || die "$OBJCACHE_BIN not found or not executable; build it: go build -o /tmp/objcache-objbench ./cmd/objcache and set OBJCACHE_BIN"
timeout 10 "$OBJCACHE_BIN" loadtest --help >/dev/null 2>&1 || die "$OBJCACHE_BIN has no working loadtest subcommand"

as_pg() { "$@"; }
if [[ $(id -u) == 0 ]]; then
	id postgres >/dev/null 2>&1 || die "running as root, but there is no user postgres to run PostgreSQL"
	as_pg() { runuser -u postgres -- "$@"; }
fi

# --- scratch dir, cleanup, time bound ----------------------------------------------

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/bench-objects.XXXX")
chmod 755 "$SCRATCH"
PGDATA_DIR=$SCRATCH/pgdata
PIDS=()        # everything this script started (not PostgreSQL), in start order
PG_STARTED=
CUR_JOB=
WATCHDOG=

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	# Output may go to a pipe whose reader Ctrl-C already ended (make run | tee):
	# a write there must not kill the cleanup.
	trap "" PIPE
	set +e
	local i pid
	[[ -n $WATCHDOG ]] && kill "$WATCHDOG" 2>/dev/null && wait "$WATCHDOG" 2>/dev/null
	if [[ -n $CUR_JOB ]]; then
		kill -TERM "$CUR_JOB" 2>/dev/null
		wait "$CUR_JOB" 2>/dev/null
	fi
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		kill -TERM "${PIDS[$i]}" 2>/dev/null
	done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	if [[ -n $PG_STARTED ]]; then
		(cd "$SCRATCH" && as_pg "$PGBIN/pg_ctl" stop -D "$PGDATA_DIR" -m immediate -w -t 30 >/dev/null 2>&1)
	fi
	if [[ -n $KEEP_LOGS ]]; then
		mkdir -p "$KEEP_LOGS" && cp -r "$SCRATCH"/. "$KEEP_LOGS"/ 2>/dev/null
		rm -rf "$KEEP_LOGS/pgdata"
	fi
	rm -rf "$SCRATCH"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'log "stopped after MAX_SECONDS=$MAX_SECONDS"; exit 143' TERM

# The watchdog signals only this script; its trap stops the rest (every
# foreground command below is itself bounded by timeout).
(sleep "$MAX_SECONDS" && kill -TERM $$) >/dev/null 2>&1 &
WATCHDOG=$!

# --- helper (sockets, JSON, summary) ----------------------------------------------

HELPER=$PWD/scripts/bench_objects.py
py() { timeout -k 5 300 python3 "$HELPER" "$@"; }

# --- host ----------------------------------------------------------------------------

CLK_TCK=$(getconf CLK_TCK)
NPROC=$(nproc)
idle_pct() { # host idle % over $1 seconds
	local a b
	read -r -a a < <(host_ticks)
	sleep "$1"
	read -r -a b < <(host_ticks)
	python3 -c "d = ${b[1]} - ${a[1]}; print('%.0f' % (100.0 - 100.0 * (${b[0]} - ${a[0]}) / d if d else 0))"
}
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
pg_pids() { # the postmaster and its children (backends, background workers)
	local pm
	pm=$(head -1 "$PGDATA_DIR/postmaster.pid" 2>/dev/null) || return 0
	echo "$pm" $(cat /proc/"$pm"/task/*/children 2>/dev/null)
}

echo "# bench-objects $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo
echo "- host: nproc=$NPROC, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), kernel $(uname -r), $(awk '/MemTotal/{printf "%.0f GB RAM", $2/1048576}' /proc/meminfo)"
echo "- versions: $("$MEMCACHED" -V), PostgreSQL $("$PGBIN/postgres" -V | awk '{print $3}'), $("$OBJCACHE_BIN" version 2>&1 | head -1), $(go version 2>/dev/null | awk '{print $3}' || true)"
echo "- load average at start: $(loadavg)"
echo "- workload: objcache loadtest --prefix User: --keys $ROWS --zipf 0.99 --get 1 --set 0 --conns 32 --duration $DURATION --warmup $WARMUP --stats; $ROUNDS interleaved rounds"
echo

# --- servers -------------------------------------------------------------------------

read -r P_PG P_REF P_N1 P_N2 P_OC2 P_OC60 P_FLOOR < <(py free_ports 7)

start_ref_and_nodes "$P_REF" "$P_N1" "$P_N2"
if ((FLOOR)); then
	start_floor floor "$P_FLOOR"
	py wait_version "127.0.0.1:$P_FLOOR" 10 >/dev/null || die "floor did not answer version: $(tail -n 5 "$SCRATCH/floor.log")"
fi

[[ $(id -u) == 0 ]] && chown postgres: "$SCRATCH"
log "initdb in $PGDATA_DIR"
(cd "$SCRATCH" && as_pg env LC_ALL=C timeout 120 "$PGBIN/initdb" -D "$PGDATA_DIR" -A trust -U postgres -E UTF8 --locale=C --no-sync >"$SCRATCH/initdb.log" 2>&1) ||
	die "initdb failed: $(tail -n 20 "$SCRATCH/initdb.log")"
pg_opts="-c listen_addresses=127.0.0.1 -p $P_PG -c unix_socket_directories=$SCRATCH -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
pg_share=$("$PGBIN/pg_config" --sharedir 2>/dev/null || echo "/usr/share/postgresql/$(basename "$(dirname "$PGBIN")")")
STATSTMT=0
if [[ -f $pg_share/extension/pg_stat_statements.control ]]; then
	pg_opts+=" -c shared_preload_libraries=pg_stat_statements"
	STATSTMT=1
fi
PG_STARTED=1
(cd "$SCRATCH" && as_pg env LC_ALL=C "$PGBIN/pg_ctl" start -D "$PGDATA_DIR" -l "$SCRATCH/postgres.log" -w -t 60 -o "$pg_opts" >/dev/null) ||
	die "PostgreSQL did not start: $(tail -n 20 "$SCRATCH/postgres.log")"

psql_do() { # database, then psql arguments
	local db=$1; shift
	timeout -k 5 300 "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$P_PG" -U postgres -d "$db" "$@"
}
log "seeding app.users with $ROWS rows"
psql_do postgres <<'SQL'
CREATE ROLE app LOGIN;
CREATE DATABASE app OWNER app;
SQL
((STATSTMT)) && psql_do app -c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements'
psql_do app -U app -v rows="$ROWS" <scripts/users.sql
ROW_BYTES=$(psql_do app -At -c 'SELECT round(avg(length(row_to_json(t)::text)))::int || chr(32) || min(length(row_to_json(t)::text)) || chr(32) || max(length(row_to_json(t)::text)) FROM users t')

write_config() { # file port hot_ttl
	cat >"$1" <<YAML
listen: 127.0.0.1:$2
backends:
  - 127.0.0.1:$P_N1
  - 127.0.0.1:$P_N2
postgres: "postgres://app@127.0.0.1:$P_PG/app?sslmode=disable"
tombstone_ttl: 10s
hot_tier: {max_bytes: 67108864, ttl: $3}
models:
  User: {table: users, key: id, ttl: 5m, negative_ttl: 30s}
YAML
}
write_config "$SCRATCH/objcache-ttl2s.yaml" "$P_OC2" 2s
write_config "$SCRATCH/objcache-ttl60s.yaml" "$P_OC60" 60s
for name in ttl2s ttl60s; do
	"$OBJCACHE_BIN" serve --config "$SCRATCH/objcache-$name.yaml" >"$SCRATCH/objcache-$name.log" 2>&1 &
	PIDS+=($!)
	eval "PID_oc_$name=$!"
done
py wait_version "127.0.0.1:$P_OC2" 20 >/dev/null || die "objcache (ttl 2s) did not answer version: $(tail -n 5 "$SCRATCH/objcache-ttl2s.log")"
py wait_version "127.0.0.1:$P_OC60" 20 >/dev/null || die "objcache (ttl 60s) did not answer version: $(tail -n 5 "$SCRATCH/objcache-ttl60s.log")"
all_alive

echo "- ports: PostgreSQL :$P_PG (fsync=off, pg_stat_statements $( ((STATSTMT)) && echo preloaded || echo 'not installed')); memcached ref :$P_REF; nodes :$P_N1 :$P_N2; objcache hot ttl 2s :$P_OC2, hot ttl 60s :$P_OC60"
echo "- users: $ROWS rows; row_to_json length avg/min/max: $ROW_BYTES bytes (the ref memcached holds 200-byte values)"
echo "- objcache config (ttl 2s instance; the other differs only in hot_tier.ttl: 60s):"
echo
echo '```yaml'
cat "$SCRATCH/objcache-ttl2s.yaml"
echo '```'
echo

# --- fill pass -------------------------------------------------------------------------

echo "## fill pass (every id once, get of 100 keys, one connection)"
echo
for name in ttl2s ttl60s; do
	p=P_OC${name#ttl}; p=${p%s}
	line=$(py fillpass "127.0.0.1:${!p}" User: "$ROWS" 100) || die "fill pass through objcache $name failed: $line"
	echo "- objcache $name: $line"
done
st=$(py stats "127.0.0.1:$P_OC2")
echo "- objcache ttl2s stats after both passes: $(tr ' ' '\n' <<<"$st" | grep -E '^(db_queries|db_ids_queried|loads|fills_stored|node_hits|node_misses|hot_hits)=' | tr '\n' ' ')"
st=$(py stats "127.0.0.1:$P_OC60")
echo "- objcache ttl60s stats after both passes: $(tr ' ' '\n' <<<"$st" | grep -E '^(db_queries|db_ids_queried|loads|fills_stored|node_hits|node_misses|hot_hits)=' | tr '\n' ' ')"
echo

# --- wait for a quiet host -----------------------------------------------------------------

# wait_quiet: wait (at most IDLE_WAIT s) until the host was >= 90% idle in
# two consecutive 5 s samples; prints what it saw. Other processes on a shared
# host can still start during a run: the "other" CPU column shows it.
wait_quiet() {
	local waited=0 quiet=0 idle=NA
	while ((waited < IDLE_WAIT)); do
		idle=$(idle_pct 5)
		waited=$((waited + 5))
		if ((idle >= 90)); then
			quiet=$((quiet + 1))
			((quiet >= 2)) && break
		else
			quiet=0
		fi
	done
	echo "host idle ${idle}% over the last 5 s (waited ${waited}s; quiet: $( ((quiet >= 2)) && echo yes || echo NO)); load average $(loadavg)"
}
if ((IDLE_WAIT > 0)); then
	echo "- before the rounds: $(wait_quiet)"
	echo "- busiest processes (1 s sample): $(busiest)"
	echo
fi

# --- runs ------------------------------------------------------------------------------------

declare -A ADDR=([memcached]="127.0.0.1:$P_REF" [objcache-ttl2s]="127.0.0.1:$P_OC2" [objcache-ttl60s]="127.0.0.1:$P_OC60")
declare -A TPID=([memcached]=$PID_ref [objcache-ttl2s]=$PID_oc_ttl2s [objcache-ttl60s]=$PID_oc_ttl60s)
TARGETS=(memcached objcache-ttl2s objcache-ttl60s)
if ((FLOOR)); then
	ADDR[floor]="127.0.0.1:$P_FLOOR"
	TPID[floor]=$PID_floor
	TARGETS+=(floor)
fi
RESULTS=$SCRATCH/results.tsv
: >"$RESULTS"

measure() { # round target
	local r=$1 t=$2 json="$SCRATCH/loadtest-r$1-$2.json" out="$SCRATCH/loadtest-r$1-$2.txt"
	local extra=() rc=0 lead win h0 h1 tp0 tp1 n0 n1 g0 g1 pg0 pg1 gen pgp la
	[[ $t == memcached || $t == floor ]] && extra=(--fill --value-size 200)
	la=$(loadavg)
	timeout -k 5 $((DUR_S + WARM_S + 120)) "$OBJCACHE_BIN" loadtest --addr "${ADDR[$t]}" --prefix User: --keys "$ROWS" \
		--zipf 0.99 --get 1 --set 0 --conns 32 --duration "$DURATION" --warmup "$WARMUP" --json "$json" --stats \
		"${extra[@]}" >"$out" 2>&1 &
	CUR_JOB=$!
	# The measured part starts after the fill (ref only) and the warm-up: wait
	# for the generator's "measuring" moment by time: warm-up + 1 s lead, and
	# for the ref, until its fill is done (the log says so, or 20 s at most).
	sleep 0.3
	gen=$(cat "/proc/$CUR_JOB/task/$CUR_JOB/children" 2>/dev/null | awk '{print $1}')
	if [[ $t == memcached || $t == floor ]]; then
		for _ in $(seq 200); do
			grep -q '^filled ' "$out" 2>/dev/null && break
			sleep 0.1
		done
	fi
	sleep $((WARM_S + 1))
	lead=1
	win=$((DUR_S - 2 * lead))
	pgp=$(pg_pids)
	read -r -a h0 < <(host_ticks)
	tp0=$(proc_ticks "${TPID[$t]}")
	n0=$(proc_ticks "$PID_node1" "$PID_node2")
	g0=$(proc_ticks $gen)
	pg0=$(proc_ticks $pgp)
	sleep "$win"
	read -r -a h1 < <(host_ticks)
	tp1=$(proc_ticks "${TPID[$t]}")
	n1=$(proc_ticks "$PID_node1" "$PID_node2")
	g1=$(proc_ticks $gen)
	pg1=$(proc_ticks $pgp)
	wait "$CUR_JOB" || rc=$?
	CUR_JOB=
	local busy tcpu ncpu gcpu pcpu other
	read -r busy gcpu tcpu ncpu pcpu other < <(python3 -c "
hz = $CLK_TCK * $win
d = ${h1[1]} - ${h0[1]}
busy = $NPROC * 100.0 * (${h1[0]} - ${h0[0]}) / d if d else 0
g, t, n, p = [100.0 * x / hz for x in ($((g1 - g0)), $((tp1 - tp0)), $((n1 - n0)), $((pg1 - pg0)))]
print('%.0f %.0f %.0f %.0f %.0f %.0f' % (busy, g, t, n, p, busy - g - t - n - p))")
	if ((rc != 0)) || [[ ! -s $json ]]; then
		log "loadtest against $t exited $rc (round $r); tail: $(tail -n 5 "$out" | tr '\n' ' ')"
		printf '%s\t%s\tNA\tNA\tNA\tNA\tNA\t0\t0\t0\t0\tNA\tNA\tNA\tNA\tNA\tNA\tNA\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$t" "$la" "$busy" "$gcpu" "$tcpu" "$ncpu" "$pcpu" "$other" >>"$RESULTS"
		echo "RAW round=$r target=$t FAILED rc=$rc"
		return
	fi
	local res
	res=$(py loadtest "$json")
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$t" "$res" "$la" "$busy" "$gcpu" "$tcpu" "$ncpu" "$pcpu" "$other" >>"$RESULTS"
	local f
	IFS=$'\t' read -r -a f <<<"$res"
	echo "RAW round=$r target=$t ops_s=${f[0]} p50_us=${f[1]} p99_us=${f[2]} p999_us=${f[3]} max_us=${f[4]} errors=${f[5]} timeouts=${f[6]} misses=${f[7]} ops=${f[8]} hot_hits=${f[9]} node_hits=${f[10]} hot/node=${f[11]} get_hits=${f[13]} get_misses=${f[14]} seed=${f[15]} load_at_start=\"$la\" cpu_pct(${win}s window): host_busy=$busy loadtest=$gcpu target=$tcpu nodes=$ncpu postgres=$pcpu other=$other"
}

echo "## raw per-round results"
echo
echo '```'
for ((r = 1; r <= ROUNDS; r++)); do
	((r > 1 && IDLE_WAIT > 0)) && echo "# before round $r: $(wait_quiet)"
	for t in "${TARGETS[@]}"; do
		measure "$r" "$t"
	done
done
echo '```'
echo

echo "## summary: objcache loadtest, $ROUNDS rounds of $DURATION (+ $WARMUP warm-up), Zipf 0.99 over User:1..User:$ROWS, 32 conns, gets only"
echo
py summary "$RESULTS" "$(IFS=,; echo "${TARGETS[*]}")"
echo
echo "Latencies are loadtest's HDR histogram percentiles of the measured part of each run; ops/s and"
echo "the percentiles in the table are medians over the rounds. hot_hits / node_hits are the deltas of"
echo "objcache's own stats over each measured run (--stats): object keys answered by the hot tier /"
echo "found on their memcached node."
echo

echo "## at the end"
echo
echo "- RSS: objcache ttl2s $(rss "$PID_oc_ttl2s"), objcache ttl60s $(rss "$PID_oc_ttl60s"), memcached ref $(rss "$PID_ref"), node1 $(rss "$PID_node1"), node2 $(rss "$PID_node2")"
for name in ttl2s ttl60s; do
	p=P_OC${name#ttl}; p=${p%s}
	st=$(py stats "127.0.0.1:${!p}")
	echo "- objcache $name stats: $(tr ' ' '\n' <<<"$st" | grep -E '^(hot_hits|hot_misses|node_hits|node_misses|loads|db_queries|db_ids_queried|fills_stored|backend_requests|backend_writes|backend_errors)=' | tr '\n' ' ')"
done
echo "- load average at end: $(loadavg)"
echo "- busiest processes at end (1 s sample): $(busiest)"
