#!/usr/bin/env bash
# bench-passthrough.sh: memcached itself vs nutcracker vs objcache, in ONE run
# (DESIGN.md, "What the numbers are measured against").
#
# Starts, on free random loopback ports:
#   - memcached "ref": the direct target (the limit);
#   - two memcached nodes, and in front of both of them
#   - nutcracker (twemproxy; md5 + ketama, auto_eject_hosts false) and
#   - objcache (serve --backends node1,node2 $OBJCACHE_FLAGS).
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

die() { echo "bench-passthrough: $*" >&2; exit 1; }
log() { echo "bench-passthrough: $*" >&2; }

# seconds of a memaslap-style duration (Ns, Nm, N)
secs() {
	case $1 in
	*s) echo "${1%s}" ;;
	*m) echo $((${1%m} * 60)) ;;
	*) echo "$1" ;;
	esac
}
[[ $DURATION =~ ^[0-9]+[sm]?$ ]] || die "DURATION must look like 10s or 1m, not $DURATION"
[[ $WARMUP =~ ^[0-9]+[sm]?$ ]] || die "WARMUP must look like 3s, not $WARMUP"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not $ROUNDS"
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

HELPER=$SCRATCH/helper.py
cat >"$HELPER" <<'PY'
import json, re, socket, statistics, sys, time

def free_ports(n):
    socks, ports = [], []
    avoid = {21211, 21212, 21213, 22122, 21311}
    while len(ports) < n:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        socks.append(s)
        if p not in avoid:
            ports.append(p)
    for s in socks:
        s.close()
    print(" ".join(map(str, ports)))

def mc(addr, cmd, timeout=3.0):
    """Send one memcached text command; print its reply up to END/ERROR.

    "version" goes first on the connection: objcache (cmux HTTP1Fast matcher)
    does not answer a connection whose first bytes are shorter than 8 (like
    "stats\\r\\n") until more bytes arrive."""
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    s.settimeout(timeout)
    s.sendall(b"version\r\n" + cmd.encode() + b"\r\n")
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
        i = buf.find(b"\r\n")
        if i < 0:
            continue
        rest = buf[i + 2:]
        if re.search(rb"(^|\r\n)(END|RESET|ERROR|CLIENT_ERROR[^\r\n]*|SERVER_ERROR[^\r\n]*)\r\n$", rest):
            buf = rest
            break
    s.close()
    sys.stdout.write(buf.decode(errors="replace"))

def wait_version(addr, deadline_s):
    end = time.time() + float(deadline_s)
    last = None
    while time.time() < end:
        try:
            host, port = addr.rsplit(":", 1)
            s = socket.create_connection((host, int(port)), timeout=1)
            s.settimeout(1)
            s.sendall(b"version\r\n")
            r = s.recv(200)
            s.close()
            if r.startswith(b"VERSION "):
                print(r.decode().strip())
                return
            last = r
        except OSError as e:
            last = e
        time.sleep(0.1)
    print("no VERSION from %s within %ss (last: %r)" % (addr, deadline_s, last), file=sys.stderr)
    sys.exit(1)

def parse_memaslap(path):
    """tps avg_us p99_us_le get_miss ops from one memaslap output."""
    text = open(path, errors="replace").read()
    m = re.search(r"Run time:\s*\S+\s+Ops:\s*(\d+)\s+TPS:\s*(\d+)", text)
    if not m:
        print("NA NA NA NA NA")
        return
    ops, tps = int(m.group(1)), int(m.group(2))
    t = text[text.rfind("Total Statistics ("):]
    avg = re.search(r"Avg:\s*(\d+)", t)
    dist = {}
    sec = t[t.find("Log2 Dist:"):]
    for line in sec.splitlines()[1:]:
        line = line.strip()
        if not line:
            break
        mm = re.match(r"(\d+):\s*(.*)", line)
        if not mm:
            break
        k = int(mm.group(1))
        for i, c in enumerate(mm.group(2).split()):
            dist[k + i] = int(c)
    # memaslap (ms_stats.c ms_local_log2) puts a latency v in bucket
    # b = ceil(log2 v), i.e. 2^(b-1) < v <= 2^b us: 2^b is the bucket's upper bound.
    total = sum(dist.values())
    p99 = "NA"
    if total:
        acc = 0
        for b in sorted(dist):
            acc += dist[b]
            if acc >= 0.99 * total:
                p99 = 2 ** b
                break
    gm = re.search(r"Get Statistics\n.*\n.*\nGlobal\s+\S+\s+\d+\s+\d+\s+\S+\s+(\d+)", text)
    print(tps, avg.group(1) if avg else "NA", p99, gm.group(1) if gm else "NA", ops)

def flatten(o, prefix=""):
    if isinstance(o, dict):
        for k, v in o.items():
            yield from flatten(v, prefix + str(k) + ".")
    elif isinstance(o, list):
        for i, v in enumerate(o):
            yield from flatten(v, prefix + str(i) + ".")
    elif isinstance(o, (int, float)) and not isinstance(o, bool):
        yield prefix[:-1], o

def parse_loadtest(path):
    """ops/s, p99, p99.9 from the loadtest JSON; prints key=value (key names carry the units)."""
    try:
        doc = json.load(open(path))
        # objcache loadtest's report: top-level ops_per_sec, p99_us, p999_us
        if isinstance(doc, dict) and all(k in doc for k in ("ops_per_sec", "p99_us", "p999_us")):
            print("ops_s=%.0f p99=%s p999=%s keys=ops_per_sec,p99_us,p999_us errors=%s timeouts=%s misses=%s" % (
                doc["ops_per_sec"], doc["p99_us"], doc["p999_us"],
                doc.get("errors", "NA"), doc.get("timeouts", "NA"), doc.get("misses", "NA")))
            return
        flat = list(flatten(doc))
    except Exception as e:
        print("ops_s=NA p99=NA p999=NA (bad JSON: %s)" % e)
        return
    def pick(pred):
        for k, v in flat:
            if pred(k.lower()):
                return k, v
        return None, "NA"
    leaf = lambda k: k.rsplit(".", 1)[-1]
    ok, ov = pick(lambda k: re.search(r"(ops|req|rps|qps|throughput)", leaf(k)) and re.search(r"(per_?s|/s|_s$|ps$|rate|throughput|sec)", leaf(k)))
    pk, pv = pick(lambda k: re.search(r"p99(?![._]?9)", leaf(k)))
    qk, qv = pick(lambda k: re.search(r"p99[._]?9", leaf(k)))
    fmt = lambda v: ("%.0f" % v) if isinstance(v, (int, float)) and v >= 100 else str(v)
    print("ops_s=%s p99=%s p999=%s keys=%s,%s,%s" % (fmt(ov), fmt(pv), fmt(qv), ok, pk, qk))

def median(xs):
    return statistics.median(xs)

def summary(path, dur, rounds):
    rows = [l.split("\t") for l in open(path).read().splitlines() if l]
    names = ["memcached", "nutcracker", "objcache"]
    by = {n: [r for r in rows if r[1] == n] for n in names}
    def num(v):
        try:
            return float(v)
        except ValueError:
            return None
    med = {}
    print("| target | median TPS | TPS per round | median avg latency (us) | median p99 (us, log2 bound) | p99 per round (us) | get misses | host busy % | memaslap % | target % | nodes % | other % | host CPU us/op | target CPU us/op |")
    print("|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in names:
        rs = by[n]
        col = lambda i: [num(r[i]) for r in rs if num(r[i]) is not None]
        tps = col(2)
        med[n] = median(tps) if tps else None
        f = lambda xs: ("%.0f" % median(xs)) if xs else "NA"
        gm = sum(int(r[5]) for r in rs if r[5].isdigit())
        # CPU time per request: % of a core / 100 * 1e6 us / ops per second
        per_op = lambda i: [num(r[i]) * 1e4 / num(r[2]) for r in rs if num(r[i]) is not None and num(r[2])]
        f1 = lambda xs: ("%.1f" % median(xs)) if xs else "NA"
        print("| %s | %s | %s | %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s |" % (
            n, f(tps), " / ".join(r[2] for r in rs), f(col(3)), f(col(4)),
            " / ".join(r[4] for r in rs), gm, f(col(7)), f(col(10)), f(col(8)),
            f(col(9)) if n != "memcached" else "-", f(col(11)), f1(per_op(7)), f1(per_op(8))))
    print()
    o, nc, m = med.get("objcache"), med.get("nutcracker"), med.get("memcached")
    if o and nc:
        print("- objcache / nutcracker (median TPS): **%.2f×** (goal ≥ 1.25×)" % (o / nc))
    if o and m:
        print("- objcache / memcached  (median TPS): **%.2f×** (goal ≥ 0.80×)" % (o / m))
    if nc and m:
        print("- nutcracker / memcached (median TPS): %.2f×" % (nc / m))

def lt_summary(path):
    rows = [l.split("\t") for l in open(path).read().splitlines() if l]
    if not rows:
        return
    print("| target | ops/s per round | median ops/s | p99 per round | p99.9 per round |")
    print("|---|---|---:|---|---|")
    med = {}
    for n in ["memcached", "nutcracker", "objcache"]:
        rs = [r for r in rows if r[1] == n]
        ops = []
        for r in rs:
            try:
                ops.append(float(r[2]))
            except ValueError:
                pass
        med[n] = median(ops) if ops else None
        print("| %s | %s | %s | %s | %s |" % (n, " / ".join(r[2] for r in rs),
              "%.0f" % med[n] if med[n] else "NA",
              " / ".join(r[3] for r in rs), " / ".join(r[4] for r in rs)))
    print()
    if rows and len(rows[0]) > 5:
        print("(JSON keys used: %s)" % rows[0][5])
    o, nc, m = med["objcache"], med["nutcracker"], med["memcached"]
    if o and nc:
        print("- loadtest objcache / nutcracker: %.2f×" % (o / nc))
    if o and m:
        print("- loadtest objcache / memcached: %.2f×" % (o / m))

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"free_ports": lambda: free_ports(int(args[0])),
     "mc": lambda: mc(args[0], args[1]),
     "wait_version": lambda: wait_version(args[0], args[1]),
     "memaslap": lambda: parse_memaslap(args[0]),
     "loadtest": lambda: parse_loadtest(args[0]),
     "summary": lambda: summary(args[0], args[1], args[2]),
     "lt_summary": lambda: lt_summary(args[0]),
     }[cmd]()
PY
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

read -r P_REF P_N1 P_N2 P_NC P_NCSTATS P_OC < <(py free_ports 6)

start_memcached ref "$P_REF"
start_memcached node1 "$P_N1"
start_memcached node2 "$P_N2"
for t in "ref $P_REF" "node1 $P_N1" "node2 $P_N2"; do
	set -- $t
	py wait_version "127.0.0.1:$2" 10 >/dev/null || die "memcached $1 did not answer version on :$2: $(tail -n 5 "$SCRATCH/$1.log")"
done

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

# a server that failed to bind would leave someone else's answering on its port
for pid in "${PIDS[@]}"; do
	kill -0 "$pid" 2>/dev/null || die "a server exited right after starting (port taken?); logs in $SCRATCH: $(tail -n 3 "$SCRATCH"/*.log)"
done

echo "- ports: memcached ref :$P_REF; nodes :$P_N1 :$P_N2; nutcracker :$P_NC (stats :$P_NCSTATS); objcache :$P_OC"
echo

declare -A ADDR=([memcached]="127.0.0.1:$P_REF" [nutcracker]="127.0.0.1:$P_NC" [objcache]="127.0.0.1:$P_OC")
declare -A TPID=([memcached]=$PID_ref [nutcracker]=$PID_nutcracker [objcache]=$PID_objcache)
TARGETS=(memcached nutcracker objcache)

printf 'key\n64 64 1\nvalue\n200 200 1\ncmd\n0 0.1\n1 0.9\n' >"$SCRATCH/memaslap.cfg"

# --- CPU accounting ------------------------------------------------------------

CLK_TCK=$(getconf CLK_TCK)
host_ticks() { # busy total irq+softirq, from /proc/stat
	awk '/^cpu /{b=$2+$3+$4+$7+$8+$9; print b, b+$5+$6, $7+$8; exit}' /proc/stat
}
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
echo "the target process (memcached ref / nutcracker / objcache), the two nodes, and other = host busy"
echo "minus those (kernel softirq work not charged to a process, and anything else running on the host)."
echo "CPU us/op: that CPU divided by the run's TPS (host: everything on the machine; target: the"
echo "memcached ref, nutcracker or objcache process alone)."
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
