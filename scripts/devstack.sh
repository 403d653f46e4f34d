#!/usr/bin/env bash
# devstack.sh: run objcache on this machine with everything it talks to
# (`make run`).
#
# Starts two memcached nodes (127.0.0.1:11211, :11212), a PostgreSQL cluster
# (127.0.0.1:15432, database "app", a seeded "users" table of 100000 rows),
# writes a config in DESIGN.md's shape and runs `objcache serve --config FILE`
# on 127.0.0.1:11311 in the foreground. Ctrl-C (SIGINT), SIGTERM or objcache
# exiting stops everything and removes the scratch directory.
#
# Environment:
#   OBJCACHE_BIN  the objcache binary (default: bin/objcache)
#   TMPDIR        where the scratch directory goes (default: /tmp)
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

cd "$(dirname "$0")/.."

OBJCACHE_BIN=${OBJCACHE_BIN:-bin/objcache}
LISTEN_PORT=11311
MC_PORTS=(11211 11212)
# Below the kernel's ephemeral port range (32768-60999 on Linux), so that no
# outgoing connection of this host can hold the port when PostgreSQL binds it.
PG_PORT=15432
ROWS=100000

die() { echo "devstack: $*" >&2; exit 1; }
log() { echo "devstack: $*" >&2; }

# --- preflight: binaries and ports, before anything starts -------------------

[[ -x $OBJCACHE_BIN ]] || die "$OBJCACHE_BIN not found or not executable; build it with: make build"

MEMCACHED=$(find_bin memcached) || die "memcached not found; run scripts/ensure-deps.sh (apt-get install -y memcached)"
PGBIN=$(pg_bin_dir) || die "PostgreSQL (initdb, pg_ctl) not found; run scripts/ensure-deps.sh (apt-get install -y postgresql postgresql-contrib)"
PSQL=$PGBIN/psql
[[ -x $PSQL ]] || PSQL=$(command -v psql) || die "psql not found; apt-get install -y postgresql-client"

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "${MC_PORTS[@]}" "$PG_PORT" "$LISTEN_PORT"; do
	if port_taken "$port"; then
		die "127.0.0.1:$port is already in use (another devstack, or the memcached/postgresql service: try 'service memcached stop'); free it and retry"
	fi
done

# PostgreSQL refuses to run as root: then its programs run as postgres.
as_pg() { "$@"; }
if [[ $(id -u) == 0 ]]; then
	id postgres >/dev/null 2>&1 || die "running as root, but there is no user postgres to run PostgreSQL (apt-get install -y postgresql makes it)"
	as_pg() { runuser -u postgres -- "$@"; }
fi

# --- scratch dir and cleanup ------------------------------------------------

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/objcache-dev.XXXX")
PGDATA_DIR=$SCRATCH/pgdata
CONFIG=$SCRATCH/objcache.yaml
MC_PIDS=()
OBJCACHE_PID=
PG_STARTED=

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	# Output may go to a pipe whose reader Ctrl-C already ended (make run | tee):
	# a write there must not kill the cleanup.
	trap "" PIPE
	set +e
	echo >&2
	if [[ -n $OBJCACHE_PID ]] && kill -0 "$OBJCACHE_PID" 2>/dev/null; then
		log "stopping objcache"
		kill -TERM "$OBJCACHE_PID" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$OBJCACHE_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$OBJCACHE_PID" 2>/dev/null
		wait "$OBJCACHE_PID" 2>/dev/null
	fi
	if ((${#MC_PIDS[@]})); then
		log "stopping memcached"
		kill -KILL "${MC_PIDS[@]}" 2>/dev/null
		wait "${MC_PIDS[@]}" 2>/dev/null
	fi
	if [[ -n $PG_STARTED ]]; then
		log "stopping PostgreSQL"
		(cd "$SCRATCH" && as_pg "$PGBIN/pg_ctl" stop -D "$PGDATA_DIR" -m fast -w -t 30 >/dev/null 2>&1)
	fi
	rm -rf "$SCRATCH"
	log "removed $SCRATCH"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ $(id -u) == 0 ]]; then
	chown postgres: "$SCRATCH"
fi

# --- memcached ------------------------------------------------------------

mc_user=()
[[ $(id -u) == 0 ]] && mc_user=(-u nobody)
for port in "${MC_PORTS[@]}"; do
	"$MEMCACHED" -l 127.0.0.1 -p "$port" -U 0 -m 64 "${mc_user[@]}" >"$SCRATCH/memcached-$port.log" 2>&1 &
	MC_PIDS+=($!)
done

wait_port() { # port name pid
	for _ in $(seq 100); do
		port_taken "$1" && return 0
		kill -0 "$3" 2>/dev/null || break
		sleep 0.1
	done
	die "$2 did not start on 127.0.0.1:$1; its log: $(tail -n 5 "$SCRATCH/$2.log" 2>/dev/null)"
}
for i in "${!MC_PORTS[@]}"; do
	wait_port "${MC_PORTS[$i]}" "memcached-${MC_PORTS[$i]}" "${MC_PIDS[$i]}"
done

# --- PostgreSQL ------------------------------------------------------------

log "initdb in $PGDATA_DIR"
(cd "$SCRATCH" && as_pg env LC_ALL=C "$PGBIN/initdb" -D "$PGDATA_DIR" -A trust -U postgres -E UTF8 --locale=C --no-sync >"$SCRATCH/initdb.log" 2>&1) ||
	die "initdb failed: $(tail -n 20 "$SCRATCH/initdb.log")"

pg_opts="-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$SCRATCH -c fsync=off"
pg_share=$("$PGBIN/pg_config" --sharedir 2>/dev/null || echo "/usr/share/postgresql/$(basename "$(dirname "$PGBIN")")")
if [[ -f $pg_share/extension/pg_stat_statements.control ]]; then
	pg_opts+=" -c shared_preload_libraries=pg_stat_statements"
fi
PG_STARTED=1
(cd "$SCRATCH" && as_pg env LC_ALL=C "$PGBIN/pg_ctl" start -D "$PGDATA_DIR" -l "$SCRATCH/postgres.log" -w -t 30 -o "$pg_opts" >/dev/null) ||
	die "PostgreSQL did not start: $(tail -n 20 "$SCRATCH/postgres.log")"

psql_do() { # database, then psql arguments
	local db=$1; shift
	"$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$db" "$@"
}

log "seeding app.users with $ROWS rows"
psql_do postgres <<'SQL'
CREATE ROLE app LOGIN;
CREATE DATABASE app OWNER app;
SQL
if [[ $pg_opts == *pg_stat_statements* ]]; then
	psql_do app -c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements'
fi
psql_do app -U app -v rows="$ROWS" <scripts/users.sql

# --- config and objcache ----------------------------------------------------

cat >"$CONFIG" <<YAML
listen: 127.0.0.1:$LISTEN_PORT          # memcached text protocol and HTTP (/healthz, /metrics) on one port
backends:                        # memcached nodes, host:port (optional " weight")
  - 127.0.0.1:${MC_PORTS[0]}
  - 127.0.0.1:${MC_PORTS[1]}
postgres: "postgres://app@127.0.0.1:$PG_PORT/app?sslmode=disable"
tombstone_ttl: 10s
hot_tier: {max_bytes: 67108864, ttl: 2s}   # max_bytes 0 or ttl 0 turns the hot tier off
models:
  User: {table: users, key: id, ttl: 5m, negative_ttl: 30s}
YAML

cat >&2 <<BANNER

objcache devstack (scratch dir $SCRATCH)
  objcache     127.0.0.1:$LISTEN_PORT   $OBJCACHE_BIN serve --config $CONFIG
  memcached    127.0.0.1:${MC_PORTS[0]}, 127.0.0.1:${MC_PORTS[1]}
  PostgreSQL   postgres://app@127.0.0.1:$PG_PORT/app  (users: ids 1..$ROWS; every 10th email is NULL)
Try it:
  printf 'get User:1\r\n' | nc -q1 127.0.0.1 $LISTEN_PORT       (or: telnet 127.0.0.1 $LISTEN_PORT, then: get User:1 User:2)
  printf 'set greeting 0 0 5\r\nhello\r\nget greeting\r\n' | nc -q1 127.0.0.1 $LISTEN_PORT
  curl -s http://127.0.0.1:$LISTEN_PORT/metrics | head
  $PSQL -h 127.0.0.1 -p $PG_PORT -U app app
Ctrl-C stops everything and removes the scratch dir.

BANNER

# In the background so that a signal to this script runs the trap at once
# (bash runs traps only between foreground commands, but `wait` returns).
"$OBJCACHE_BIN" serve --config "$CONFIG" &
OBJCACHE_PID=$!
set +e
wait "$OBJCACHE_PID"
rc=$?
set -e
OBJCACHE_PID=
log "objcache exited with status $rc"
exit "$rc"
