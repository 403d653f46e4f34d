#!/usr/bin/env bash
# ensure-deps.sh: make sure the servers objcache's tests and devstack start
# are installed: memcached, nutcracker (twemproxy), memcslap
# (libmemcached-tools) and PostgreSQL with its contrib extensions
# (pg_stat_statements).
#
# Missing ones are installed with apt-get when this runs as root or with
# password-less sudo; otherwise it prints what to install and exits 1.
# Package services are not started by the install (the tests and devstack
# start their own servers on their own ports).
set -euo pipefail

PACKAGES=(memcached nutcracker libmemcached-tools postgresql postgresql-contrib)

have() { # name: in PATH or an sbin dir
	command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 || -x /usr/local/sbin/$1 || -x /sbin/$1 ]]
}

have_initdb() {
	have initdb && return 0
	compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

have_pg_stat_statements() {
	compgen -G '/usr/share/postgresql/*/extension/pg_stat_statements.control' >/dev/null && return 0
	local share
	share=$(pg_config --sharedir 2>/dev/null) && [[ -f $share/extension/pg_stat_statements.control ]]
}

missing=()
have memcached || missing+=("memcached (package memcached)")
have nutcracker || missing+=("nutcracker (package nutcracker)")
have memcslap || missing+=("memcslap (package libmemcached-tools)")
have_initdb || missing+=("initdb (package postgresql)")
have_initdb && { have_pg_stat_statements || missing+=("pg_stat_statements (package postgresql-contrib)"); }

if ((${#missing[@]} == 0)); then
	echo "ensure-deps: memcached, nutcracker, memcslap and PostgreSQL are installed"
	exit 0
fi

echo "ensure-deps: missing: ${missing[*]}" >&2

sudo=()
if [[ $(id -u) != 0 ]]; then
	if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo=(sudo -n)
	else
		sudo=(none)
	fi
fi
if [[ ${sudo[0]:-} == none ]] || ! command -v apt-get >/dev/null 2>&1; then
	echo "ensure-deps: install them as root, then rerun:" >&2
	echo "  apt-get update && apt-get install -y ${PACKAGES[*]}" >&2
	exit 1
fi

# A policy-rc.d that answers 101 keeps the packages' services (memcached on
# :11211, a PostgreSQL cluster on :5432) from starting during the install.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
	"${sudo[@]}" sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
	trap '"${sudo[@]}" rm -f "$policy"' EXIT
fi

echo "ensure-deps: apt-get install -y ${PACKAGES[*]}" >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"

for bin in memcached nutcracker memcslap; do
	have "$bin" || { echo "ensure-deps: $bin still missing after apt-get install" >&2; exit 1; }
done
have_initdb || { echo "ensure-deps: initdb still missing after apt-get install" >&2; exit 1; }
echo "ensure-deps: installed ${PACKAGES[*]}"
