#!/usr/bin/env bash
# clusters/pg-standby.sh -- a PostgreSQL primary and a hot standby that applies
# the primary's changes 2 seconds late, on 127.0.0.1, for
# tests/cluster/test_pg_standby.py (nox -s pg_standby) and for trying a
# read-replica set-up by hand.
#
#   clusters/pg-standby.sh start    create what is missing, start both, wait until the
#                                   standby streams and has the database
#   clusters/pg-standby.sh stop     stop the standby, then the primary
#   clusters/pg-standby.sh status   each server's state, role and port
#   clusters/pg-standby.sh env      the tests' settings:  eval "$(clusters/pg-standby.sh env)"
#
# Environment (all optional):
#   PG_PRIMARY_PORT   5452    ports on 127.0.0.1; checked free before a server starts
#   PG_STANDBY_PORT   5453
#   PG_STANDBY_DELAY  2s      the standby's recovery_min_apply_delay
#   PG_BINDIR                 PostgreSQL's programs (default: pg_config --bindir, or
#                             the newest /usr/lib/postgresql/*/bin)
#   SQL_SESSIONS_CLUSTER_DIR  where the data lives, under pg-standby/
#                             (default ${TMPDIR:-/tmp}/django-sql-sessions-clusters)
#
# Throw-away test servers: trust authentication on 127.0.0.1 (user postgres,
# no password) and fsync off. Nothing outside the data directory is read or
# written (no /etc, no system service), and the system server on 5432 is never
# touched. Run as root, the servers run as the postgres user; otherwise as you.
#
# "start" is idempotent: a running server is left as it is, a missing one is
# created or started; a standby copied from another primary (the primary's data
# was deleted) is copied again. "stop" stops every server of this directory.
set -euo pipefail

PRIMARY_PORT=${PG_PRIMARY_PORT:-5452}
STANDBY_PORT=${PG_STANDBY_PORT:-5453}
DELAY=${PG_STANDBY_DELAY:-2s}
BASE=${SQL_SESSIONS_CLUSTER_DIR:-${TMPDIR:-/tmp}/django-sql-sessions-clusters}/pg-standby
PRIMARY=$BASE/primary
STANDBY=$BASE/standby
HOST=127.0.0.1
SUPERUSER=postgres
DATABASE=sql_sessions
SLOT=sql_sessions_standby

log() { printf '[pg-standby %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

find_bindir() {
    local dir=${PG_BINDIR:-}
    if [ -z "$dir" ] && command -v pg_config >/dev/null 2>&1; then
        dir=$(pg_config --bindir)
        [ -x "$dir/initdb" ] || dir=""  # a client-only pg_config
    fi
    if [ -z "$dir" ]; then
        dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5n | tail -1 || true)
    fi
    for program in initdb pg_ctl pg_basebackup pg_controldata psql; do
        [ -x "$dir/$program" ] || die "no PostgreSQL server programs found (looked for $program in" \
            "'${dir:-nothing}'); install the server package (Debian: postgresql) or set PG_BINDIR"
    done
    echo "$dir"
}

# As root the servers run as postgres, which refuses to run as root.
if [ "$(id -u)" = 0 ]; then
    RUN_USER=postgres
    id "$RUN_USER" >/dev/null 2>&1 || die "running as root needs a '$RUN_USER' user to run the servers"
    as_owner() { (cd / && runuser -u "$RUN_USER" -- "$@"); }
else
    RUN_USER=$(id -un)
    as_owner() { "$@"; }
fi

sql() {   # sql PORT DATABASE STATEMENT: one value per line, no headers
    as_owner "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$1" -U "$SUPERUSER" -d "$2" -Atc "$3"
}

pid_of() { head -1 "$1/data/postmaster.pid" 2>/dev/null; }
port_of() { sed -n 4p "$1/data/postmaster.pid" 2>/dev/null; }

running() {   # running DIR: its postmaster is alive (right after kill -9 it can linger as a zombie)
    local pid
    pid=$(pid_of "$1") && [ -n "$pid" ] || return 1
    if [ -r "/proc/$pid/stat" ]; then
        [ "$(awk '{print $3}' "/proc/$pid/stat")" != Z ] || return 1
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$1/data" || return 1
    else
        kill -0 "$pid" 2>/dev/null || return 1
    fi
}

port_taken() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

system_id() { as_owner "$BINDIR/pg_controldata" -D "$1/data" | awk -F': *' '/system identifier/ {print $2}'; }

write_settings() {   # write_settings DIR primary|standby PORT: rewritten before each start
    local file=$1/data/pg_standby_node.conf
    {
        echo "# Written by clusters/pg-standby.sh before each start."
        echo "port = $3"
        echo "listen_addresses = '$HOST'"
        echo "unix_socket_directories = '$1'"
        echo "shared_buffers = '32MB'"
        echo "max_connections = 50"
        echo "fsync = off  # test data only"
        echo "log_line_prefix = '%m [%p] $2 '"
        if [ "$2" = primary ]; then
            echo "wal_level = replica"
            echo "max_wal_senders = 4"
            echo "max_replication_slots = 4"
        else
            echo "hot_standby = on"
            echo "hot_standby_feedback = on"
            echo "primary_conninfo = 'host=$HOST port=$PRIMARY_PORT user=$SUPERUSER application_name=$SLOT'"
            echo "primary_slot_name = '$SLOT'"
            echo "recovery_min_apply_delay = '$DELAY'"
        fi
    } >"$file"
    chown "$RUN_USER" "$file"
    grep -qxF "include = 'pg_standby_node.conf'" "$1/data/postgresql.conf" \
        || echo "include = 'pg_standby_node.conf'" >>"$1/data/postgresql.conf"
}

start_server() {   # start_server DIR NAME PORT
    local dir=$1 name=$2 port=$3 try
    if running "$dir"; then
        [ "$(port_of "$dir")" = "$port" ] \
            || die "the $name already runs on port $(port_of "$dir"), not $port: stop it first to change ports"
        log "$name already running on port $port (pid $(pid_of "$dir"))"
        return 0
    fi
    port_taken "$port" && die "port $port is taken by another server; choose another with PG_${name^^}_PORT"
    write_settings "$dir" "$name" "$port"
    for try in 1 2 3; do
        if as_owner "$BINDIR/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null; then
            STARTED+=("$dir")
            log "$name accepting connections on port $port (pid $(pid_of "$dir"))"
            return 0
        fi
        # After a kill -9 the old server's children can hold its shared memory a moment longer.
        log "$name did not start (try $try); retrying in 2 s"
        sleep 2
    done
    tail -20 "$dir/server.log" >&2
    die "the $name did not start; see $dir/server.log"
}

stop_server() {   # stop_server DIR NAME
    if running "$1"; then
        as_owner "$BINDIR/pg_ctl" -D "$1/data" -m fast -w -t 60 stop >/dev/null
        log "$2 stopped"
    else
        log "$2 not running"
    fi
}

make_dir() { mkdir -p "$1" && chown "$RUN_USER" "$1" && chmod 700 "$1"; }

start_primary() {
    make_dir "$PRIMARY"
    if [ ! -f "$PRIMARY/data/PG_VERSION" ]; then
        log "primary: initdb in $PRIMARY/data"
        as_owner "$BINDIR/initdb" -D "$PRIMARY/data" -U "$SUPERUSER" -E UTF8 --locale=C \
            --auth=trust --no-sync >"$PRIMARY/initdb.log" 2>&1 \
            || { tail -20 "$PRIMARY/initdb.log" >&2; die "initdb failed; see $PRIMARY/initdb.log"; }
    fi
    start_server "$PRIMARY" primary "$PRIMARY_PORT"
    if [ -z "$(sql "$PRIMARY_PORT" postgres "SELECT 1 FROM pg_replication_slots WHERE slot_name = '$SLOT'")" ]; then
        sql "$PRIMARY_PORT" postgres "SELECT pg_create_physical_replication_slot('$SLOT')" >/dev/null
    fi
}

start_standby() {
    make_dir "$STANDBY"
    if [ -f "$STANDBY/data/PG_VERSION" ] && [ "$(system_id "$STANDBY")" != "$(system_id "$PRIMARY")" ]; then
        log "standby: a copy of another primary (its data was deleted); copying again"
        stop_server "$STANDBY" standby
        rm -rf "$STANDBY/data"
    fi
    if [ ! -f "$STANDBY/data/PG_VERSION" ]; then
        log "standby: pg_basebackup from port $PRIMARY_PORT into $STANDBY/data"
        rm -rf "$STANDBY/data"
        as_owner "$BINDIR/pg_basebackup" -h "$HOST" -p "$PRIMARY_PORT" -U "$SUPERUSER" \
            -D "$STANDBY/data" -X stream -S "$SLOT" -c fast --no-sync >"$STANDBY/basebackup.log" 2>&1 \
            || { tail -20 "$STANDBY/basebackup.log" >&2; die "pg_basebackup failed"; }
        as_owner touch "$STANDBY/data/standby.signal"
    fi
    start_server "$STANDBY" standby "$STANDBY_PORT"
}

wait_for() {   # wait_for WHAT COMMAND...: until COMMAND prints "t", for up to 60 s
    local what=$1 t0
    shift
    t0=$(now)
    for _ in $(seq 600); do
        [ "$("$@" 2>/dev/null || true)" = t ] && { log "$what after $(since "$t0") s"; return 0; }
        sleep 0.1
    done
    die "no $what after 60 s; see $STANDBY/server.log"
}

stop_started() {   # on a failed start: stop what this run started, newest first
    local i
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
        as_owner "$BINDIR/pg_ctl" -D "${STARTED[i]}/data" -m fast -w -t 60 stop >/dev/null || true
    done
}

cmd_start() {
    local t0
    t0=$(now)
    [ "$PRIMARY_PORT" != "$STANDBY_PORT" ] || die "PG_PRIMARY_PORT and PG_STANDBY_PORT are both $PRIMARY_PORT"
    for port in "$PRIMARY_PORT" "$STANDBY_PORT"; do
        [ "$port" != 5432 ] || die "port 5432 belongs to the system server; choose another"
    done
    STARTED=()
    trap stop_started EXIT
    mkdir -p "$BASE"
    as_owner test -w "$BASE" 2>/dev/null || chown "$RUN_USER" "$BASE"
    as_owner test -w "$BASE" || die "$RUN_USER cannot reach $BASE (a parent directory closed to it?)"
    start_primary
    start_standby
    wait_for "standby streaming" sql "$PRIMARY_PORT" postgres \
        "SELECT state = 'streaming' FROM pg_stat_replication WHERE application_name = '$SLOT'"
    if [ -z "$(sql "$PRIMARY_PORT" postgres "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" ]; then
        sql "$PRIMARY_PORT" postgres "CREATE DATABASE $DATABASE"
    fi
    # Created on the primary only: the standby has it once it has replayed that far.
    wait_for "database $DATABASE on the standby" sql "$STANDBY_PORT" postgres \
        "SELECT count(*) = 1 FROM pg_database WHERE datname = '$DATABASE'"
    trap - EXIT
    log "primary (port $PRIMARY_PORT) and standby (port $STANDBY_PORT, $DELAY behind) up in $(since "$t0") s"
}

cmd_stop() {
    stop_server "$STANDBY" standby
    stop_server "$PRIMARY" primary
}

cmd_status() {
    local dir name port
    for name in primary standby; do
        dir=$PRIMARY port=$PRIMARY_PORT
        [ "$name" = standby ] && dir=$STANDBY port=$STANDBY_PORT
        if running "$dir"; then
            port=$(port_of "$dir")
            echo "$name: running, port $port, pid $(pid_of "$dir"), in recovery: $(sql "$port" postgres 'SELECT pg_is_in_recovery()')"
        else
            echo "$name: stopped (port $port, data $dir/data)"
        fi
    done
    if running "$PRIMARY"; then
        sql "$(port_of "$PRIMARY")" postgres "SELECT 'replication: ' || state || ', replay lag ' || coalesce(replay_lag::text, '-') FROM pg_stat_replication WHERE application_name = '$SLOT'"
    fi
}

cmd_env() {
    local primary=$PRIMARY_PORT standby=$STANDBY_PORT
    running "$PRIMARY" && primary=$(port_of "$PRIMARY")
    running "$STANDBY" && standby=$(port_of "$STANDBY")
    cat <<EOF
export PG_PRIMARY_HOST=$HOST PG_PRIMARY_PORT=$primary PG_PRIMARY_USER=$SUPERUSER PG_PRIMARY_DATABASE=$DATABASE
export PG_STANDBY_HOST=$HOST PG_STANDBY_PORT=$standby PG_STANDBY_USER=$SUPERUSER
EOF
}

case "${1:-}" in
    start) BINDIR=$(find_bindir); cmd_start ;;
    stop) BINDIR=$(find_bindir); cmd_stop ;;
    status) BINDIR=$(find_bindir); cmd_status ;;
    env) cmd_env ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
