# lib.sh: shell functions shared by devstack.sh and the bench-*.sh scripts.
# Source it; it defines functions only.

# find_bin NAME: the path of NAME in PATH or the sbin directories.
find_bin() {
	local p
	if p=$(command -v "$1" 2>/dev/null); then echo "$p"; return 0; fi
	for p in /usr/sbin/"$1" /usr/local/sbin/"$1" /sbin/"$1"; do
		[[ -x $p ]] && { echo "$p"; return 0; }
	done
	return 1
}

# pg_bin_dir: the directory of the initdb in PATH (symlinks resolved), else
# the newest /usr/lib/postgresql/*/bin.
pg_bin_dir() {
	local p d
	if p=$(command -v initdb 2>/dev/null); then
		d=$(dirname "$(readlink -f "$p")")
		[[ -x $d/pg_ctl ]] && { echo "$d"; return 0; }
	fi
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -rn); do
		[[ -x $d/initdb && -x $d/pg_ctl ]] && { echo "$d"; return 0; }
	done
	return 1
}

# start_memcached NAME PORT: starts "$MEMCACHED" on 127.0.0.1:PORT (as root
# with -u root, which memcached requires), logging to $SCRATCH/NAME.log;
# appends its pid to PIDS and sets PID_NAME.
start_memcached() {
	local user=()
	[[ $(id -u) == 0 ]] && user=(-u root)
	"$MEMCACHED" "${user[@]}" -l 127.0.0.1 -p "$2" -U 0 -m 256 -t 2 >"$SCRATCH/$1.log" 2>&1 &
	PIDS+=($!)
	eval "PID_$1=$!"
}

# start_ref_and_nodes REF_PORT NODE1_PORT NODE2_PORT: the benchmarks'
# memcached "ref" (the direct target) and the two nodes behind the proxies;
# returns once each answers version (the caller's py and die).
start_ref_and_nodes() {
	start_memcached ref "$1"
	start_memcached node1 "$2"
	start_memcached node2 "$3"
	local t
	for t in "ref $1" "node1 $2" "node2 $3"; do
		set -- $t
		py wait_version "127.0.0.1:$2" 10 >/dev/null || die "memcached $1 did not answer version on :$2: $(tail -n 5 "$SCRATCH/$1.log")"
	done
}

# all_alive: dies (the caller's die) unless every process in PIDS still runs:
# a server that failed to bind would leave someone else's answering on its
# port.
all_alive() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -0 "$pid" 2>/dev/null || die "a server exited right after starting (port taken?); logs in $SCRATCH: $(tail -n 3 "$SCRATCH"/*.log)"
	done
}

# host_ticks: the host's busy and total CPU ticks, then irq+softirq ticks,
# from /proc/stat.
host_ticks() {
	awk '/^cpu /{b=$2+$3+$4+$7+$8+$9; print b, b+$5+$6, $7+$8; exit}' /proc/stat
}

# busiest: the 5 busiest processes over one second (top's second sample).
busiest() {
	top -b -n 2 -d 1 -w 200 2>/dev/null |
		awk '/^top -/{n++} n==2 && /^ *PID/{h=1; next} n==2 && h && NF && c<5 {printf "%s %s%%; ", $12, $9; c++}'
}

# proc_ticks PID...: utime+stime of the processes, in clock ticks.
proc_ticks() {
	local t=0 pid f
	for pid in "$@"; do
		f=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null) || continue
		set -- $f
		t=$((t + ${12} + ${13}))
	done
	echo "$t"
}

# rss PID: the process's resident set size, "N kB".
rss() { awk '/^VmRSS/{print $2, $3}' "/proc/$1/status" 2>/dev/null || echo NA; }

# secs DURATION: the seconds of a memaslap-style duration (Ns, Nm, N).
secs() {
	case $1 in
	*s) echo "${1%s}" ;;
	*m) echo $((${1%m} * 60)) ;;
	*) echo "$1" ;;
	esac
}

# start_floor NAME PORT [FLOOR_ARGS...]: builds scripts/floor into $SCRATCH
# (once) and starts it on 127.0.0.1:PORT, logging to $SCRATCH/NAME.log;
# appends its pid to PIDS and sets PID_NAME (dashes as underscores). It serves
# a goroutine per connection unless FLOOR_ARGS say -mode epoll. The caller
# waits for it to answer version; die is the caller's.
start_floor() {
	local name=$1 port=$2
	shift 2
	if [[ ! -x $SCRATCH/floor ]]; then
		command -v go >/dev/null || die "go not found: the floor target is built from scripts/floor (FLOOR=0 skips it)"
		go build -o "$SCRATCH/floor" ./scripts/floor || die "building scripts/floor failed"
	fi
	"$SCRATCH/floor" -listen "127.0.0.1:$port" "$@" >"$SCRATCH/$name.log" 2>&1 &
	PIDS+=($!)
	eval "PID_${name//-/_}=$!"
}
