#!/usr/bin/env bash
# Starts and stops a throwaway PostgreSQL server for the issuer store tests
# (issuer/store runs its conformance suite against it when ATHENZ_MESH_TEST_POSTGRES_DSN is set).
#
# Usage:
#   scripts/postgres.sh start DIR   initdb a cluster in DIR, start it, create a database, and
#                                   print its DSN on stdout (everything else goes to stderr)
#   scripts/postgres.sh stop DIR    stop that server and remove DIR (safe to call twice, or
#                                   when start failed halfway)
#
# The server listens on a Unix socket in DIR only (listen_addresses is empty), so it opens no
# TCP port and cannot collide with another PostgreSQL on this machine. It trusts every local
# connection: it is for tests, never for data. PostgreSQL refuses to run as root, so when this
# script runs as root (as CI does) the server runs as the `postgres` user (created by the
# Debian package); otherwise it runs as the calling user. When no PostgreSQL binaries are
# found and the caller is root, it installs Debian's `postgresql` package.
#
# Typical use (this is what .ci/run does):
#   pgdir=$(mktemp -d)
#   trap 'scripts/postgres.sh stop "$pgdir"' EXIT
#   dsn=$(scripts/postgres.sh start "$pgdir")
#   export ATHENZ_MESH_TEST_POSTGRES_DSN=$dsn
set -euo pipefail

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# bindir prints the bin directory of the newest installed PostgreSQL, or nothing.
bindir() {
	local d
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then
			echo "$d"
			return
		fi
	done
	if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
		dirname "$(command -v pg_ctl)"
	fi
}

# as_owner runs a command as the user that owns the cluster.
as_owner() {
	if [[ $EUID -eq 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

start() {
	local dir=$1 bin
	[[ -d "$dir" ]] || die "$dir is not a directory (create it first, e.g. with mktemp -d)"
	dir=$(cd "$dir" && pwd)
	[[ "$dir" != *[[:space:]]* ]] || die "$dir contains white space, which PostgreSQL's socket path option cannot take"
	[[ ! -e "$dir/data" ]] || die "$dir/data already exists; stop that server first"

	bin=$(bindir)
	if [[ -z "$bin" ]]; then
		[[ $EUID -eq 0 ]] || die "no PostgreSQL binaries found (install Debian's postgresql package)"
		log "installing PostgreSQL (apt-get install postgresql)"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq >&2
		apt-get install -y -qq --no-install-recommends postgresql >&2
		bin=$(bindir)
		[[ -n "$bin" ]] || die "PostgreSQL binaries still missing after apt-get install"
		# The package creates and may start a default cluster; PostgreSQL was not installed
		# before, so that cluster is only the package's doing: stop it (we use our own).
		if command -v pg_lsclusters >/dev/null; then
			pg_lsclusters --no-header 2>/dev/null | awk '$4 == "online" {print $1, $2}' |
				while read -r ver name; do
					log "stopping the cluster $ver/$name that the package started"
					pg_ctlcluster "$ver" "$name" stop >&2 || true
				done
		fi
	fi
	if [[ $EUID -eq 0 ]]; then
		id -u postgres >/dev/null 2>&1 || die "running as root but there is no postgres user to run the server as"
		chown postgres: "$dir"
	fi
	chmod 0700 "$dir"

	log "initdb with $bin into $dir/data"
	as_owner "$bin/initdb" --pgdata="$dir/data" --username=postgres --auth=trust \
		--encoding=UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log" >&2; die "initdb failed"; }

	# Unix socket in $dir only; modest memory; fsync stays on so that benchmarks against this
	# server measure what a real deployment pays per commit.
	as_owner "$bin/pg_ctl" --pgdata="$dir/data" --log="$dir/server.log" --wait --timeout=60 \
		-o "-c listen_addresses= -c unix_socket_directories=$dir -c port=5432 -c max_connections=100 -c shared_buffers=64MB" \
		start >&2 || { cat "$dir/server.log" >&2 || true; die "pg_ctl start failed"; }

	"$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p 5432 -U postgres -d postgres \
		-c 'CREATE DATABASE athenz_mesh_test' >&2 || die "create database failed"
	log "$("$bin/postgres" --version) running on socket $dir/.s.PGSQL.5432"
	echo "host=$dir port=5432 user=postgres dbname=athenz_mesh_test sslmode=disable"
}

stop() {
	local dir=$1 bin
	[[ -d "$dir" ]] || return 0
	dir=$(cd "$dir" && pwd)
	if [[ -f "$dir/data/postmaster.pid" ]]; then
		bin=$(bindir)
		[[ -n "$bin" ]] || die "cannot stop the server in $dir: no pg_ctl found"
		as_owner "$bin/pg_ctl" --pgdata="$dir/data" --mode=fast --wait --timeout=60 stop >&2 ||
			log "warning: pg_ctl stop failed; see $dir/server.log"
	fi
	# Only remove what start created, and only if it looks like ours.
	if [[ -e "$dir/data/PG_VERSION" || ! -e "$dir/data" ]]; then
		rm -rf "$dir"
		log "stopped and removed $dir"
	else
		log "warning: $dir/data does not look like a cluster this script made; left in place"
	fi
}

case "${1:-}" in
start) [[ $# -eq 2 ]] || die "usage: $0 start DIR"; start "$2" ;;
stop) [[ $# -eq 2 ]] || die "usage: $0 stop DIR"; stop "$2" ;;
*) die "usage: $0 start|stop DIR" ;;
esac
