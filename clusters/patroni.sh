#!/usr/bin/env bash
# A PostgreSQL 15 cluster of three nodes managed by Patroni, with one etcd
# and an HAProxy that sends connections to the current leader, on this
# machine, for the failover tests (tests/cluster/test_patroni_failover.py,
# nox -s patroni) and for trying the sessions on a high-availability set-up.
#
#   patroni.sh start         create what is missing, start etcd, the nodes and HAProxy,
#                            and wait until the cluster is whole (no-op if it is)
#   patroni.sh stop          stop HAProxy, the replicas, the leader, then etcd; the data stays
#   patroni.sh status        each node's role, state and lag, and HAProxy's view
#                            (exit status 0: all up, 3: all stopped, 1: anything in between)
#   patroni.sh wait          wait until the cluster is whole: a leader that HAProxy routes
#                            to, two running replicas caught up, and in synchronous mode
#                            a synchronous standby
#   patroni.sh leader        the leader's node number (1, 2 or 3)
#   patroni.sh kill-leader   SIGKILL the leader's postmaster, as a crash would; prints its
#                            node number. Patroni fails over at once (primary_start_timeout 0)
#                            and brings the old leader back as a replica (pg_rewind if needed)
#   patroni.sh sync on|off   switch synchronous replication (synchronous_mode) on or off
#   patroni.sh env           the shell exports the tests read: eval "$(clusters/patroni.sh env)"
#   patroni.sh destroy       stop, then delete the data directory
#
# SQL_SESSIONS_PATRONI_DIR   the data directory (default ${TMPDIR:-/tmp}/django-sql-sessions-patroni)
# SQL_SESSIONS_PATRONI_PORT  base port P (default 15400); the cluster uses P to P+21:
#     P       HAProxy, the clients' port (the leader)   P+4     HAProxy's statistics page (HTTP)
#     P+N     node N's PostgreSQL (N = 1, 2, 3)         P+10+N  node N's Patroni REST API
#     P+20    etcd's client port                        P+21    etcd's peer port
#   (the tests also run their gunicorn on P+30)
# SQL_SESSIONS_PATRONI_SYNC  on (default) or off: synchronous_mode of a new cluster; for a
#                            running one, start switches to it when the variable is set
# PG_BINDIR                  PostgreSQL's programs (default /usr/lib/postgresql/15/bin)
#
# Throw-away test servers: trust authentication on 127.0.0.1 (user postgres, no
# password) and fsync off (a killed process loses nothing the OS has; a machine
# crash would). Nothing outside the data directory is read or written: Patroni,
# etcd and HAProxy run with configuration files of their own, and the system
# PostgreSQL (5432) is never touched. Run as root, the servers run as the
# postgres user (PostgreSQL refuses root) and missing Debian packages
# (patroni, etcd-server, haproxy) are installed; as another user, they run as
# that user and the packages must be there already.
set -euo pipefail

SELF=$(readlink -f "$0")
DIR="${SQL_SESSIONS_PATRONI_DIR:-${TMPDIR:-/tmp}/django-sql-sessions-patroni}"
PORT="${SQL_SESSIONS_PATRONI_PORT:-15400}"
BINDIR="${PG_BINDIR:-/usr/lib/postgresql/15/bin}"
NODES=(1 2 3)
SCOPE=django_sql_sessions
SUPERUSER=postgres
START_TIMEOUT=120  # seconds for the cluster to become whole (three fresh copies on a slow machine)
STOP_TIMEOUT=60

case "$PORT" in
    '' | *[!0-9]*) echo "SQL_SESSIONS_PATRONI_PORT must be a port number, not '$PORT'" >&2; exit 2 ;;
esac
((PORT >= 1024 && PORT + 30 <= 65535)) || {
    echo "SQL_SESSIONS_PATRONI_PORT must be from 1024 to 65505, not $PORT" >&2; exit 2
}
case "${SQL_SESSIONS_PATRONI_SYNC:-on}" in
    on | off) ;;
    *) echo "SQL_SESSIONS_PATRONI_SYNC must be on or off, not '$SQL_SESSIONS_PATRONI_SYNC'" >&2; exit 2 ;;
esac

export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
# Patroni reads its configuration from PATRONI_* variables too (PATRONI_NAME,
# PATRONI_<user>_PASSWORD, ...): none of the caller's may reach it.
for name in $(compgen -e | grep '^PATRONI_' || true); do unset "$name"; done
unset PGHOST PGPORT PGUSER PGDATABASE PGSERVICE PGPASSFILE

if [ "$(id -u)" = 0 ]; then RUN_USER=postgres; else RUN_USER=$(id -un); fi

# run_in_background LOG PIDFILE PROGRAM ARG...: start a server in a session of its own,
# as the run user, and write its pid (the server's own: every step execs the next).
run_in_background() {
    local out=$1 pidfile=$2
    shift 2
    # 9>&-: the server must not hold this command's lock (see the end).
    (cd / && exec setsid bash "$SELF" --exec-as-run-user "$@") >>"$out" 2>&1 </dev/null 9>&- &
    echo $! >"$pidfile"
}

haproxy_port() { echo "$PORT"; }
stats_port() { echo $((PORT + 4)); }
node_port() { echo $((PORT + $1)); }
api_port() { echo $((PORT + 10 + $1)); }
etcd_port() { echo $((PORT + 20)); }
etcd_peer_port() { echo $((PORT + 21)); }
node_dir() { echo "$DIR/node$1"; }
node_yml() { echo "$DIR/node$1/patroni.yml"; }
node_pidfile() { echo "$DIR/node$1/patroni.pid"; }
ETCD_DIR="$DIR/etcd"
ETCD_PIDFILE="$DIR/etcd.pid"
HAPROXY_CFG="$DIR/haproxy.cfg"
HAPROXY_PIDFILE="$DIR/haproxy.pid"
HAPROXY_SOCKET="$DIR/haproxy.sock"

log() { printf '[patroni %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ------------------------------------------------------------------ packages

ensure_packages() {
    local missing=()
    command -v patroni >/dev/null || missing+=(patroni)
    command -v etcd >/dev/null || missing+=(etcd-server)
    command -v haproxy >/dev/null || missing+=(haproxy)
    [ -x "$BINDIR/postgres" ] || missing+=(postgresql-15)
    ((${#missing[@]})) || return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        die "missing packages: ${missing[*]} (as root: apt-get install -y ${missing[*]})"
    fi
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
    # Debian starts the packaged services where it can: not ours, left alone.
}

# ------------------------------------------------------------------ helpers

# The PID of a process whose command line names our file $2, from pid file $1.
# A stale pid file, or a PID reused by another process, gives nothing.
owned_pid() {
    local pid
    [ -s "$1" ] || return 1
    pid=$(cat "$1")
    [ -r "/proc/$pid/cmdline" ] || return 1
    grep -qF -e "$2" < <(tr '\0' '\n' <"/proc/$pid/cmdline") || return 1
    # A killed process lingers as a zombie until reaped; it is not running.
    [ "$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null)" != Z ] || return 1
    echo "$pid"
}
patroni_pid() { owned_pid "$(node_pidfile "$1")" "$(node_yml "$1")"; }
etcd_pid() { owned_pid "$ETCD_PIDFILE" "$ETCD_DIR"; }
haproxy_pid() { owned_pid "$HAPROXY_PIDFILE" "$HAPROXY_CFG"; }
postmaster_pid() { # node N's postmaster, if it runs
    local data pid
    data="$(node_dir "$1")/data"
    pid=$(head -1 "$data/postmaster.pid" 2>/dev/null) && [ -n "$pid" ] || return 1
    [ -r "/proc/$pid/cmdline" ] || return 1
    grep -qF -e "$data" < <(tr '\0' '\n' <"/proc/$pid/cmdline") || return 1
    [ "$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null)" != Z ] || return 1
    echo "$pid"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

require_free() { # require_free WHAT PORT...
    local what=$1 port
    shift
    for port in "$@"; do
        port_in_use "$port" && die "port $port ($what) is already in use;" \
            "stop that, or choose other ports with SQL_SESSIONS_PATRONI_PORT (now $PORT)"
    done
    return 0
}

stop_pid() { # stop_pid WHAT PID SIGNAL
    local what=$1 pid=$2 signal=$3 t0=$SECONDS
    kill -"$signal" "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && [ "$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null)" != Z ]; do
        ((SECONDS - t0 < STOP_TIMEOUT)) || die "$what (pid $pid) is still running after ${STOP_TIMEOUT}s"
        sleep 0.2
    done
    log "$what: stopped (SIG$signal)"
}

# HTTP to a Patroni REST API or HAProxy, with the Python Patroni runs on:
# http METHOD URL [JSON BODY] prints the body (any status), fails if nothing answers.
http() {
    python3 - "$@" <<'EOF'
import sys, urllib.error, urllib.request
method, url, body = sys.argv[1], sys.argv[2], (sys.argv[3] if len(sys.argv) > 3 else None)
request = urllib.request.Request(url, method=method, data=body.encode() if body else None,
                                 headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=3) as response:
        print(response.read().decode())
except urllib.error.HTTPError as error:
    print(error.read().decode())
EOF
}

# The cluster as the first Patroni that answers sees it, one member per line:
# "name role state lag timeline" (role: leader, sync_standby or replica), then
# "synchronous_mode true|false". Nothing if no Patroni answers.
members() {
    local n out
    for n in "${NODES[@]}"; do
        out=$(http GET "http://127.0.0.1:$(api_port "$n")/cluster" 2>/dev/null) || continue
        config=$(http GET "http://127.0.0.1:$(api_port "$n")/config" 2>/dev/null) || config='{}'
        python3 -c '
import json, sys
cluster, config = json.loads(sys.argv[1]), json.loads(sys.argv[2] or "{}")
for m in cluster.get("members", []):
    print(m["name"], m.get("role", "-"), m.get("state", "-") or "-", m.get("lag", 0), m.get("timeline", "-"))
print("synchronous_mode", str(bool(config.get("synchronous_mode"))).lower())
' "$out" "$config" 2>/dev/null && return 0
    done
    return 0
}

leader_node() { # the leader's node number, or nothing
    members | awk '$2 == "leader" { sub("node", "", $1); print $1 }'
}

# ------------------------------------------------------------------ etcd

start_etcd() {
    local pid
    etcd_pid >/dev/null && return 0
    require_free etcd "$(etcd_port)" "$(etcd_peer_port)"
    mkdir -p "$ETCD_DIR"
    chown "$RUN_USER" "$ETCD_DIR"
    chmod 700 "$ETCD_DIR"
    run_in_background "$DIR/etcd.log" "$ETCD_PIDFILE" etcd --name etcd0 --data-dir "$ETCD_DIR" \
        --listen-client-urls "http://127.0.0.1:$(etcd_port)" \
        --advertise-client-urls "http://127.0.0.1:$(etcd_port)" \
        --listen-peer-urls "http://127.0.0.1:$(etcd_peer_port)" \
        --initial-advertise-peer-urls "http://127.0.0.1:$(etcd_peer_port)" \
        --initial-cluster "etcd0=http://127.0.0.1:$(etcd_peer_port)" \
        --initial-cluster-state new --initial-cluster-token "$SCOPE"
    for _ in $(seq 100); do
        pid=$(cat "$ETCD_PIDFILE")
        kill -0 "$pid" 2>/dev/null || { tail -20 "$DIR/etcd.log" >&2; die "etcd exited; see $DIR/etcd.log"; }
        [ -n "$(http GET "http://127.0.0.1:$(etcd_port)/health" 2>/dev/null | grep '"health":"true"')" ] && {
            log "etcd: listening on $(etcd_port)"
            return 0
        }
        sleep 0.1
    done
    die "etcd does not answer on $(etcd_port) after 10s; see $DIR/etcd.log"
}

# ------------------------------------------------------------------ Patroni

write_patroni_yml() {
    local n=$1 dir sync=true
    dir=$(node_dir "$n")
    [ "${SQL_SESSIONS_PATRONI_SYNC:-on}" = off ] && sync=false
    cat >"$(node_yml "$n")" <<EOF
# Written by clusters/patroni.sh: node $n of $SCOPE. Rewritten on every start.
scope: $SCOPE
namespace: /django-sql-sessions/
name: node$n
log:
  level: INFO
restapi:
  listen: 127.0.0.1:$(api_port "$n")
  connect_address: 127.0.0.1:$(api_port "$n")
etcd3:
  host: 127.0.0.1:$(etcd_port)
watchdog:
  mode: off
bootstrap:
  # The cluster-wide settings, stored in etcd when the cluster is made;
  # "sync on|off" changes synchronous_mode there later.
  dcs:
    # The leader key lasts ttl seconds unless renewed every loop_wait; a
    # Patroni that cannot reach etcd for retry_timeout demotes its node.
    ttl: 10
    loop_wait: 1
    retry_timeout: 3
    # A crashed primary is not restarted in place: fail over at once.
    primary_start_timeout: 0
    # A replica more than 1 MiB behind is never promoted.
    maximum_lag_on_failover: 1048576
    synchronous_mode: $sync
    postgresql:
      # The old primary rejoins as a replica, rewound if it got ahead.
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_connections: 100
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 128MB
  initdb:
    - encoding: UTF8
    - locale: C
postgresql:
  listen: 127.0.0.1:$(node_port "$n")
  connect_address: 127.0.0.1:$(node_port "$n")
  data_dir: $dir/data
  bin_dir: $BINDIR
  pgpass: $dir/pgpass
  authentication:
    superuser:
      username: $SUPERUSER
    replication:
      username: $SUPERUSER
    rewind:
      username: $SUPERUSER
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
  basebackup:
    - checkpoint: fast
  parameters:
    unix_socket_directories: $dir
    shared_buffers: 32MB
    fsync: "off"
    log_line_prefix: "%m [%p] node$n "
EOF
    chown "$RUN_USER" "$(node_yml "$n")"
}

start_patroni() {
    local n=$1 dir
    patroni_pid "$n" >/dev/null && return 0
    require_free "node$n" "$(node_port "$n")" "$(api_port "$n")"
    dir=$(node_dir "$n")
    mkdir -p "$dir"
    chown "$RUN_USER" "$dir"
    chmod 700 "$dir"
    write_patroni_yml "$n"
    [ -f "$dir/patroni.log" ] && mv -f "$dir/patroni.log" "$dir/patroni.log.1"
    run_in_background "$dir/patroni.log" "$(node_pidfile "$n")" patroni "$(node_yml "$n")"
    log "node$n: Patroni started (PostgreSQL on $(node_port "$n"), REST API on $(api_port "$n"))"
}

# ------------------------------------------------------------------ HAProxy

write_haproxy_cfg() {
    local n
    {
        cat <<EOF
# Written by clusters/patroni.sh. Rewritten on every start.
global
    maxconn 1000
    # The runtime API (show stat, disable health, ...), for the tests.
    stats socket $HAPROXY_SOCKET mode 600 level admin

defaults
    mode tcp
    timeout connect 1s
    # Longer than any connection a client keeps open (CONN_MAX_AGE).
    timeout client 1h
    timeout server 1h

listen postgres
    bind 127.0.0.1:$(haproxy_port)
    # Only the node whose Patroni holds the leader key answers 200 on
    # /primary; the replicas answer 503 and get no connections.
    option httpchk GET /primary
    http-check expect status 200
    # Checked every 0.5 s: down after 2 failures, up after 1 success.
    # Connections still open to a node marked down are closed at once, so
    # that no client stays on a demoted primary.
    default-server inter 500 fall 2 rise 1 on-marked-down shutdown-sessions
EOF
        for n in "${NODES[@]}"; do
            echo "    server node$n 127.0.0.1:$(node_port "$n") check port $(api_port "$n")"
        done
        cat <<EOF

listen stats
    mode http
    bind 127.0.0.1:$(stats_port)
    stats enable
    stats uri /
    stats refresh 2s
EOF
    } >"$HAPROXY_CFG"
}

start_haproxy() {
    local pid
    haproxy_pid >/dev/null && return 0
    require_free HAProxy "$(haproxy_port)" "$(stats_port)"
    write_haproxy_cfg
    haproxy -c -q -f "$HAPROXY_CFG" || die "HAProxy rejects $HAPROXY_CFG"
    # In the foreground (-db) of its own session, logging to a file; the pid
    # file is ours, so the system's HAProxy (if any) is never touched.
    [ -f "$DIR/haproxy.log" ] && mv -f "$DIR/haproxy.log" "$DIR/haproxy.log.1"
    rm -f "$HAPROXY_SOCKET"
    setsid haproxy -db -f "$HAPROXY_CFG" >>"$DIR/haproxy.log" 2>&1 </dev/null 9>&- &
    pid=$!
    echo "$pid" >"$HAPROXY_PIDFILE"
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || { tail -20 "$DIR/haproxy.log" >&2; die "HAProxy exited; see $DIR/haproxy.log"; }
        port_in_use "$(haproxy_port)" && break
        sleep 0.1
    done
    log "HAProxy: listening on $(haproxy_port), statistics on http://127.0.0.1:$(stats_port)/"
}

stop_haproxy() {
    local pid
    if pid=$(haproxy_pid); then stop_pid HAProxy "$pid" TERM; else log "HAProxy: not running"; fi
    rm -f "$HAPROXY_PIDFILE"
}

# node|status|last check|connections, one line per node ("node2|DOWN|L7STS|0").
haproxy_view() {
    local reply
    exec 3<>"/dev/tcp/127.0.0.1/$(stats_port)" || return 1
    printf 'GET /;csv HTTP/1.0\r\n\r\n' >&3
    reply=$(cat <&3)
    exec 3<&-
    printf '%s\n' "$reply" | tr -d '\r' | sed -n '/^# pxname/,$p' | awk -F, '
        NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        $1 == "postgres" && $2 ~ /^node/ { print $2 "|" $col["status"] "|" $col["check_status"] "|" $col["scur"] }'
}

# ------------------------------------------------------------------ commands

# Whole: a leader that HAProxy alone routes to, every member running with no
# lag, and a synchronous standby if synchronous_mode is on. Says what is
# missing, or nothing.
missing() {
    local list leader view n sync
    list=$(members)
    [ -n "$list" ] || { echo "no Patroni answers"; return; }
    leader=$(awk '$2 == "leader" { print $1 }' <<<"$list")
    [ -n "$leader" ] || { echo "no leader"; return; }
    for n in "${NODES[@]}"; do
        # Replicas report where they are every loop_wait: within 1 MiB is caught up.
        awk -v name="node$n" '$1 == name && ($3 == "running" || $3 == "streaming") && $4 + 0 <= 1048576 { found = 1 }
            END { exit !found }' <<<"$list" || { echo "node$n is not a running, caught-up member"; return; }
    done
    sync=$(awk '$1 == "synchronous_mode" { print $2 }' <<<"$list")
    if [ "$sync" = true ] && ! grep -Eq " sync_standby (running|streaming) " <<<"$list"; then
        echo "no synchronous standby"
        return
    fi
    view=$(haproxy_view 2>/dev/null || true)
    for n in "${NODES[@]}"; do
        if [ "node$n" = "$leader" ]; then
            grep -q "^node$n|UP" <<<"$view" || { echo "HAProxy does not route to the leader node$n yet"; return; }
        else
            grep -q "^node$n|DOWN" <<<"$view" || { echo "HAProxy still routes to replica node$n"; return; }
        fi
    done
}

cmd_wait() {
    local t0=$SECONDS why
    while why=$(missing) && [ -n "$why" ]; do
        ((SECONDS - t0 < START_TIMEOUT)) || die "the cluster is not whole after ${START_TIMEOUT}s: $why"
        for n in "${NODES[@]}"; do
            patroni_pid "$n" >/dev/null || die "node$n's Patroni is not running; see $(node_dir "$n")/patroni.log"
        done
        sleep 0.25
    done
}

all_running() {
    local n
    etcd_pid >/dev/null || return 1
    for n in "${NODES[@]}"; do patroni_pid "$n" >/dev/null || return 1; done
    haproxy_pid >/dev/null
}

cmd_start() {
    local n t0=$SECONDS
    if ! all_running; then
        # Every port first, before anything is made or started.
        etcd_pid >/dev/null || require_free etcd "$(etcd_port)" "$(etcd_peer_port)"
        for n in "${NODES[@]}"; do
            patroni_pid "$n" >/dev/null || require_free "node$n" "$(node_port "$n")" "$(api_port "$n")"
        done
        haproxy_pid >/dev/null || require_free HAProxy "$(haproxy_port)" "$(stats_port)"
        ensure_packages
        chmod 755 "$DIR"
        echo "$PORT" >"$DIR/port"
        start_etcd
        for n in "${NODES[@]}"; do start_patroni "$n"; done
        start_haproxy
    fi
    [ -n "${SQL_SESSIONS_PATRONI_SYNC:-}" ] && set_sync "$SQL_SESSIONS_PATRONI_SYNC"
    cmd_wait
    log "cluster whole in $((SECONDS - t0))s"
    cmd_status
}

cmd_stop() {
    local n leader
    stop_haproxy
    leader=$(leader_node || true)
    # The replicas first, so that stopping them causes no failover.
    for n in 3 2 1; do
        [ "$n" = "$leader" ] && continue
        if pid=$(patroni_pid "$n"); then stop_pid "node$n" "$pid" TERM; else log "node$n: not running"; fi
    done
    if [ -n "$leader" ] && pid=$(patroni_pid "$leader"); then stop_pid "node$leader" "$pid" TERM; fi
    # A Patroni that was killed leaves its PostgreSQL running.
    for n in "${NODES[@]}"; do
        if pid=$(postmaster_pid "$n"); then stop_pid "node$n's PostgreSQL" "$pid" TERM; fi
    done
    if pid=$(etcd_pid); then stop_pid etcd "$pid" TERM; else log "etcd: not running"; fi
}

cmd_kill_leader() {
    local n pid
    n=$(leader_node)
    [ -n "$n" ] || die "no leader to kill: $(missing)"
    pid=$(postmaster_pid "$n") || die "node$n is the leader, but its PostgreSQL is not running"
    kill -KILL "$pid"
    log "node$n: PostgreSQL (pid $pid) killed with SIGKILL"
    echo "$n"
}

set_sync() { # set_sync on|off: change synchronous_mode, wait until the cluster has it
    local want=true n t0=$SECONDS
    [ "$1" = off ] && want=false
    [ "$(members | awk '$1 == "synchronous_mode" { print $2 }')" = "$want" ] && return 0
    for n in "${NODES[@]}"; do
        http PATCH "http://127.0.0.1:$(api_port "$n")/config" "{\"synchronous_mode\": $want}" >/dev/null 2>&1 && break
    done
    while true; do
        list=$(members)
        if grep -q "^synchronous_mode $want$" <<<"$list"; then
            if [ "$want" = false ] && ! grep -q " sync_standby " <<<"$list"; then break; fi
            if [ "$want" = true ] && grep -Eq " sync_standby (running|streaming) " <<<"$list"; then break; fi
        fi
        ((SECONDS - t0 < 30)) || die "synchronous_mode is not $want after 30s"
        sleep 0.25
    done
    log "synchronous_mode: $want"
}

cmd_status() {
    local n pid code=0 up=0 list view
    list=$(members)
    if pid=$(etcd_pid); then up=$((up + 1)); echo "etcd: port $(etcd_port)  pid $pid"; else echo "etcd: stopped"; fi
    for n in "${NODES[@]}"; do
        if pid=$(patroni_pid "$n"); then
            up=$((up + 1))
            printf 'node%s: port %s  Patroni pid %s, REST API %s  %s\n' "$n" "$(node_port "$n")" "$pid" \
                "$(api_port "$n")" "$(awk -v name="node$n" '$1 == name { printf "%s, %s, lag %s, timeline %s", $2, $3, $4, $5 }' <<<"$list")"
        else
            printf 'node%s: port %s  stopped\n' "$n" "$(node_port "$n")"
        fi
    done
    awk '$1 == "synchronous_mode" { print "synchronous_mode: " $2 }' <<<"$list"
    if pid=$(haproxy_pid); then
        up=$((up + 1))
        printf 'HAProxy: port %s  pid %s  statistics http://127.0.0.1:%s/\n' "$(haproxy_port)" "$pid" "$(stats_port)"
        view=$(haproxy_view || true)
        printf '%s\n' "${view:-  (no statistics yet)}" |
            awk -F'|' 'NF == 4 { printf "  %s: %s (%s), %s connection(s)\n", $1, $2, $3, $4 } NF != 4 { print }'
    else
        printf 'HAProxy: port %s  stopped\n' "$(haproxy_port)"
    fi
    printf 'data: %s\n' "$DIR"
    if ((up == ${#NODES[@]} + 2)); then code=0; elif ((up == 0)); then code=3; else code=1; fi
    return $code
}

cmd_env() {
    local name value
    # The last two, so that the tests drive this same cluster with this script.
    set -- PG_PATRONI_HOST 127.0.0.1 \
        PG_PATRONI_PORT "$(haproxy_port)" \
        PG_PATRONI_USER "$SUPERUSER" \
        PG_PATRONI_NODE_PORTS "$(node_port 1),$(node_port 2),$(node_port 3)" \
        PG_PATRONI_HAPROXY_SOCKET "$HAPROXY_SOCKET" \
        SQL_SESSIONS_PATRONI_PORT "$PORT" \
        SQL_SESSIONS_PATRONI_DIR "$DIR"
    while (($#)); do
        name=$1 value=$2
        shift 2
        if [[ $value =~ ^[A-Za-z0-9_./,:-]+$ ]]; then
            printf 'export %s=%s\n' "$name" "$value"
        else
            printf 'export %s=%q\n' "$name" "$value"
        fi
    done
}

cmd_destroy() {
    cmd_stop
    if [ -d "$DIR" ]; then
        # Only a directory this script made.
        [ -f "$DIR/.django-sql-sessions" ] || die "$DIR was not made by this script; not deleting it"
        rm -rf "$DIR"
        log "deleted $DIR"
    fi
}

# The ports this data directory's cluster was started with: another base
# port would describe other processes than those running.
check_same_ports() {
    local old n
    old=$(cat "$DIR/port" 2>/dev/null || true)
    [ -z "$old" ] || [ "$old" = "$PORT" ] && return 0
    etcd_pid >/dev/null && die "the cluster in $DIR is running with SQL_SESSIONS_PATRONI_PORT=$old, not $PORT"
    for n in "${NODES[@]}"; do
        patroni_pid "$n" >/dev/null && die "the cluster in $DIR is running with SQL_SESSIONS_PATRONI_PORT=$old, not $PORT"
    done
    return 0
}

if [ "${1:-}" = --exec-as-run-user ]; then
    # run_in_background's last step: as root, become the run user (setpriv
    # execs, where runuser would stay the server's parent).
    shift
    export HOME="$DIR"
    if [ "$(id -u)" = 0 ]; then
        exec setpriv --reuid="$RUN_USER" --regid="$RUN_USER" --init-groups -- "$@"
    fi
    exec "$@"
fi

case "${1:-}" in
    start | stop | status | wait | leader | kill-leader | env | destroy) ;;
    sync)
        case "${2:-}" in
            on | off) ;;
            *) echo "usage: $0 sync on|off" >&2; exit 2 ;;
        esac
        ;;
    *)
        echo "usage: $0 start|stop|status|wait|leader|kill-leader|sync on|off|env|destroy" >&2
        exit 2
        ;;
esac
case "$1" in
    env | status | leader | wait) ;;
    *)
        # One command at a time changes the cluster.
        if [ ! -d "$DIR" ]; then
            mkdir -p "$DIR"
            echo "clusters/patroni.sh data directory" >"$DIR/.django-sql-sessions"
        fi
        exec 9>"$DIR/.lock"
        flock -w 600 9 || die "another clusters/patroni.sh command holds $DIR/.lock"
        ;;
esac
[ "$1" = env ] || check_same_ports

case "$1" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    wait) cmd_wait; log "cluster whole" ;;
    leader) n=$(leader_node); [ -n "$n" ] || die "no leader: $(missing)"; echo "$n" ;;
    kill-leader) cmd_kill_leader ;;
    sync) set_sync "$2" ;;
    env) cmd_env ;;
    destroy) cmd_destroy ;;
esac
