#!/usr/bin/env bash
# A 3-node MariaDB Galera cluster behind HAProxy, on this machine, for the
# cluster tests (tests/cluster/) and for trying the sessions on Galera.
#
#   galera.sh start         install what is missing, start the nodes and HAProxy (no-op if running)
#   galera.sh stop          stop HAProxy and the nodes (3, 2, then 1); the data stays
#   galera.sh status        each node's wsrep state and cluster size, and HAProxy's view
#                           (exit status 0: all up, 3: all stopped, 1: anything in between)
#   galera.sh kill-node N   SIGKILL node N, as a crash would
#   galera.sh stop-node N   stop node N cleanly
#   galera.sh start-node N  start node N again; it rejoins the running nodes (IST)
#   galera.sh env           the shell exports the tests read: eval "$(clusters/galera.sh env)"
#   galera.sh destroy       stop, then delete the data directory
#
# Nothing outside the data directory is read or written: every server and
# client call uses its own --defaults-file or --no-defaults (the system my.cnf
# points at the system server), and HAProxy runs with its own configuration.
#
# SQL_SESSIONS_CLUSTER_DIR  parent of the data directory (default ${TMPDIR:-/tmp}/django-sql-sessions-clusters);
#                           this cluster lives in its galera/ subdirectory
# SQL_SESSIONS_GALERA_PORT  base port P (default 14300); the cluster uses P to P+33:
#     P       HAProxy, the clients' port         P+4     HAProxy's statistics page (HTTP)
#     P+N     node N's SQL port (N = 1, 2, 3)    P+10+N  node N's group communication
#     P+20+N  node N's incremental transfer      P+30+N  node N's full (rsync) transfer
#
# Run as root, the servers run as the mysql user and missing Debian packages
# are installed; as another user, the servers run as that user and the
# packages must be there already.
set -euo pipefail

DIR="${SQL_SESSIONS_CLUSTER_DIR:-${TMPDIR:-/tmp}/django-sql-sessions-clusters}/galera"
PORT="${SQL_SESSIONS_GALERA_PORT:-14300}"
NODES=(1 2 3)
CLUSTER_NAME=django_sql_sessions
APP_USER=sessions       # ALL on *.*: the tests create and drop their databases
APP_PASSWORD=sessions
CHECK_USER=haproxy_check  # no password, no privileges: HAProxy's mysql-check logs in as it
START_TIMEOUT=180  # seconds for one node to reach Synced (a full copy on a slow machine)
STOP_TIMEOUT=60

case "$PORT" in
    '' | *[!0-9]*) echo "SQL_SESSIONS_GALERA_PORT must be a port number, not '$PORT'" >&2; exit 2 ;;
esac
((PORT >= 1024 && PORT + 33 <= 65535)) || {
    echo "SQL_SESSIONS_GALERA_PORT must be from 1024 to 65502, not $PORT" >&2; exit 2
}

if [ "$(id -u)" = 0 ]; then
    RUN_USER=mysql
    ADMIN_USER=root  # unix_socket authentication, as mariadb-install-db sets up
else
    RUN_USER=$(id -un)
    ADMIN_USER=$RUN_USER  # mariadb-install-db gives the --user account socket access too
fi
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
# The MariaDB client and server read these: MYSQL_HOST=127.0.0.1 (as the
# test suite's environment has it) would send our admin queries over TCP to
# the system server on 3306 instead of the node's socket.
unset MYSQL_HOST MYSQL_TCP_PORT MYSQL_UNIX_PORT MYSQL_PWD MYSQL_HOME MARIADB_HOME

haproxy_port() { echo "$PORT"; }
stats_port() { echo $((PORT + 4)); }
node_port() { echo $((PORT + $1)); }
gcomm_port() { echo $((PORT + 10 + $1)); }
ist_port() { echo $((PORT + 20 + $1)); }
sst_port() { echo $((PORT + 30 + $1)); }
node_dir() { echo "$DIR/node$1"; }
node_cnf() { echo "$DIR/node$1/my.cnf"; }
node_sock() { echo "$DIR/node$1/mysqld.sock"; }
node_pidfile() { echo "$DIR/node$1/mysqld.pid"; }
HAPROXY_CFG="$DIR/haproxy.cfg"
HAPROXY_PIDFILE="$DIR/haproxy.pid"

log() { printf '[galera %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ------------------------------------------------------------------ packages

GALERA_LIB=""
find_galera_lib() {
    local candidate
    for candidate in /usr/lib/galera/libgalera_smm.so /usr/lib/galera-4/libgalera_smm.so \
        /usr/lib64/galera-4/libgalera_smm.so /usr/lib64/galera/libgalera_smm.so; do
        if [ -f "$candidate" ]; then GALERA_LIB=$candidate; return 0; fi
    done
    GALERA_LIB=$(dpkg -L galera-4 2>/dev/null | grep -m1 'libgalera_smm\.so$' || true)
    [ -n "$GALERA_LIB" ]
}

ensure_packages() {
    local missing=()
    command -v mariadbd >/dev/null || missing+=(mariadb-server)
    command -v mariadb >/dev/null || missing+=(mariadb-client)
    find_galera_lib || missing+=(galera-4)
    command -v haproxy >/dev/null || missing+=(haproxy)
    command -v rsync >/dev/null || missing+=(rsync)  # Galera's rsync transfer script
    command -v ps >/dev/null || missing+=(procps)    # ... which watches its parent with ps
    command -v ss >/dev/null || missing+=(iproute2)  # ... and waits for its port with ss
    ((${#missing[@]})) || return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        die "missing packages: ${missing[*]} (as root: apt-get install -y ${missing[*]})"
    fi
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
    find_galera_lib || die "libgalera_smm.so not found after installing galera-4"
}

# ------------------------------------------------------------------ helpers

# The PID of a process whose command line names our file $2, from pid file $1.
# A stale pid file, or a PID reused by another process, gives nothing.
owned_pid() {
    local pid
    [ -s "$1" ] || return 1
    pid=$(cat "$1")
    [ -r "/proc/$pid/cmdline" ] || return 1
    # (Not a pipe: grep -q leaving early would fail it under pipefail.)
    grep -qxF -e "--defaults-file=$2" -e "$2" < <(tr '\0' '\n' <"/proc/$pid/cmdline") || return 1
    # A killed process lingers as a zombie until reaped; it is not running.
    [ "$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null)" != Z ] || return 1
    echo "$pid"
}
node_pid() { owned_pid "$(node_pidfile "$1")" "$(node_cnf "$1")"; }
haproxy_pid() { owned_pid "$HAPROXY_PIDFILE" "$HAPROXY_CFG"; }

sql() { # sql N "SQL": tab-separated rows, no header, as the admin user over node N's socket
    mariadb --no-defaults -h localhost -u"$ADMIN_USER" -S "$(node_sock "$1")" -N -B -e "$2"
}
wsrep_status() { sql "$1" "SHOW GLOBAL STATUS LIKE '$2'" 2>/dev/null | cut -f2; }

port_in_use() {
    if command -v ss >/dev/null; then
        [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

require_free() { # require_free WHAT PORT...
    local what=$1 port
    shift
    for port in "$@"; do
        if port_in_use "$port"; then
            die "port $port ($what) is already in use$(command -v ss >/dev/null &&
                ss -Hltnp "sport = :$port" 2>/dev/null | sed -n 's/.*users:((\(.*\)))/ by \1/p' | head -1);" \
                "stop that, or choose other ports with SQL_SESSIONS_GALERA_PORT (now $PORT)"
        fi
    done
}

grastate() { # grastate N KEY: a value from node N's grastate.dat, or nothing
    local file
    file="$(node_dir "$1")/data/grastate.dat"
    [ -f "$file" ] || return 0
    awk -v key="$2:" '$1 == key {print $2}' "$file"
}

# ------------------------------------------------------------------ nodes

write_node_cnf() {
    local n=$1 dir user_line=""
    dir=$(node_dir "$n")
    [ "$(id -u)" = 0 ] && user_line="user = $RUN_USER"
    cat >"$(node_cnf "$n")" <<EOF
# Written by clusters/galera.sh: node $n of $CLUSTER_NAME. Rewritten on every start.
[mysqld]
$user_line
datadir = $dir/data
socket = $dir/mysqld.sock
pid-file = $dir/mysqld.pid
log-error = $dir/error.log
port = $(node_port "$n")
bind-address = 127.0.0.1
skip-name-resolve
character-set-server = utf8mb4
collation-server = utf8mb4_unicode_ci

# Small: about 100 MiB per node.
performance_schema = OFF
innodb_buffer_pool_size = 64M
innodb_log_file_size = 32M
innodb_flush_log_at_trx_commit = 2
key_buffer_size = 8M
aria_pagecache_buffer_size = 8M
max_connections = 200

# What Galera needs.
default_storage_engine = InnoDB
binlog_format = ROW
innodb_autoinc_lock_mode = 2
wsrep_on = ON
wsrep_provider = $GALERA_LIB
wsrep_cluster_name = $CLUSTER_NAME
wsrep_cluster_address = gcomm://127.0.0.1:$(gcomm_port 1),127.0.0.1:$(gcomm_port 2),127.0.0.1:$(gcomm_port 3)
wsrep_node_name = node$n
wsrep_node_address = 127.0.0.1:$(gcomm_port "$n")
wsrep_node_incoming_address = 127.0.0.1:$(node_port "$n")
wsrep_provider_options = "base_host=127.0.0.1;base_port=$(gcomm_port "$n");gmcast.listen_addr=tcp://127.0.0.1:$(gcomm_port "$n");ist.recv_addr=127.0.0.1:$(ist_port "$n");gcache.size=64M"
wsrep_sst_method = rsync
wsrep_sst_receive_address = 127.0.0.1:$(sst_port "$n")
# Refuse what Galera cannot replicate safely: tables without a primary key,
# and DDL or writes on engines other than InnoDB.
wsrep_mode = REQUIRED_PRIMARY_KEY,STRICT_REPLICATION
EOF
}

init_node() {
    local n=$1 dir
    dir=$(node_dir "$n")
    mkdir -p "$dir"
    write_node_cnf "$n"
    [ -d "$dir/data/mysql" ] && return 0
    log "node$n: creating its data directory"
    mkdir -p "$dir/data"
    chown -R "$RUN_USER" "$dir"
    mariadb-install-db --no-defaults --user="$RUN_USER" --datadir="$dir/data" \
        --auth-root-authentication-method=socket --skip-test-db \
        --innodb-log-file-size=32M --innodb-buffer-pool-size=64M \
        >"$dir/install-db.log" 2>&1 || { tail -20 "$dir/install-db.log" >&2; die "node$n: mariadb-install-db failed"; }
}

# A crashed node's last committed position (uuid:seqno), as Debian's
# galera_recovery finds it for systemd, or nothing.
recover_position() {
    local n=$1 out
    out="$(node_dir "$n")/recover.log"
    mariadbd --defaults-file="$(node_cnf "$n")" --wsrep-recover --disable-log-error \
        >/dev/null 2>"$out" || true
    grep -a 'WSREP: Recovered position:' "$out" | tail -1 | sed 's/.*Recovered position: *//' || true
}

wait_synced() {
    local n=$1 pid=$2 t0=$SECONDS state=""
    while ((SECONDS - t0 < START_TIMEOUT)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -30 "$(node_dir "$n")/error.log" >&2 || true
            die "node$n died while starting; see $(node_dir "$n")/error.log"
        fi
        state=$(wsrep_status "$n" wsrep_local_state_comment || true)
        [ "$state" = Synced ] && return 0
        sleep 0.5
    done
    die "node$n is not Synced after ${START_TIMEOUT}s (state '$state'); see $(node_dir "$n")/error.log"
}

start_node() { # start_node N bootstrap(0|1)
    local n=$1 bootstrap=$2 args pid pos t0=$SECONDS
    if pid=$(node_pid "$n"); then return 0; fi
    require_free "node$n" "$(node_port "$n")" "$(gcomm_port "$n")" "$(ist_port "$n")" "$(sst_port "$n")"
    rm -f "$(node_pidfile "$n")" "$(node_sock "$n")"
    args=(--defaults-file="$(node_cnf "$n")")
    ((bootstrap)) && args+=(--wsrep-new-cluster)
    if [ "$(grastate "$n" seqno)" = -1 ] && [ -n "$(grastate "$n" uuid)" ]; then
        # Killed: without its position it would ask for a full copy (SST), and
        # as the bootstrap node it would start a new history.
        pos=$(recover_position "$n")
        [ -n "$pos" ] && args+=(--wsrep-start-position="$pos")
    fi
    log "node$n: starting on port $(node_port "$n") ($( ((bootstrap)) && echo "new cluster" || echo "joining"))"
    # 9>&-: the server must not hold this command's lock (see the end).
    setsid mariadbd "${args[@]}" >>"$(node_dir "$n")/mariadbd.out" 2>&1 </dev/null 9>&- &
    pid=$!
    wait_synced "$n" "$pid"
    log "node$n: Synced in $((SECONDS - t0))s"
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

stop_node() { # stop_node N SIGNAL
    local pid
    if pid=$(node_pid "$1"); then stop_pid "node$1" "$pid" "$2"; else log "node$1: not running"; fi
}

# The node to start a new cluster from, when none is running.
bootstrap_node() {
    local n best="" best_seqno=-2 seqno pos
    for n in "${NODES[@]}"; do
        [ "$(grastate "$n" safe_to_bootstrap)" = 1 ] && { echo "$n"; return; }
    done
    for n in "${NODES[@]}"; do
        [ -n "$(grastate "$n" uuid)" ] && best=history
    done
    [ -z "$best" ] && { echo 1; return; } # a new cluster: no node has a history yet
    # No clean last node (all were killed): the one that committed the most.
    best=""
    for n in "${NODES[@]}"; do
        seqno=$(grastate "$n" seqno)
        if [ "${seqno:--1}" = -1 ]; then
            pos=$(recover_position "$n")
            seqno=${pos#*:}
            seqno=${seqno%%,*}
        fi
        seqno=${seqno:--1}
        if ((seqno > best_seqno)); then best_seqno=$seqno; best=$n; fi
    done
    log "no node stopped last cleanly; starting from node$best, the most advanced (seqno $best_seqno)"
    sed -i 's/^safe_to_bootstrap: *0/safe_to_bootstrap: 1/' "$(node_dir "$best")/data/grastate.dat"
    echo "$best"
}

running_node() { # a running node's number, or nothing
    local n
    for n in "${NODES[@]}"; do node_pid "$n" >/dev/null && { echo "$n"; return; }; done
    return 0
}

create_users() { # on node $1; replicated to the others
    sql "$1" "CREATE USER IF NOT EXISTS '$APP_USER'@'%' IDENTIFIED BY '$APP_PASSWORD';
              GRANT ALL PRIVILEGES ON *.* TO '$APP_USER'@'%';
              CREATE USER IF NOT EXISTS '$CHECK_USER'@'127.0.0.1';"
}

# ------------------------------------------------------------------ HAProxy

write_haproxy_cfg() {
    local n
    {
        cat <<EOF
# Written by clusters/galera.sh. Rewritten on every start.
global
    maxconn 1000
    log stdout format raw local0 info

defaults
    mode tcp
    log global
    option tcplog
    timeout connect 1s
    # Longer than any connection a test keeps open (CONN_MAX_AGE).
    timeout client 1h
    timeout server 1h
    # A connection refused by a dead node is retried on another node.
    retries 2
    option redispatch 1

listen galera
    bind 127.0.0.1:$(haproxy_port)
    # New connections go to every node in turn, so writes reach all three.
    balance roundrobin
    # Logs in as a user without password or privileges, then quits. It sees a
    # node that answers, not whether it is Synced (see clusters/README.rst).
    option mysql-check user $CHECK_USER post-41
    # Down after 2 failed checks 0.5 s apart; clients still connected to a
    # node marked down are disconnected at once rather than left waiting.
    default-server inter 500 fall 2 rise 2 on-marked-down shutdown-sessions
EOF
        for n in "${NODES[@]}"; do
            echo "    server node$n 127.0.0.1:$(node_port "$n") check"
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
    require_free "HAProxy" "$(haproxy_port)" "$(stats_port)"
    write_haproxy_cfg
    haproxy -c -q -f "$HAPROXY_CFG" || die "HAProxy rejects $HAPROXY_CFG"
    # In the foreground (-db) of its own session, logging to a file; the pid
    # file is ours, so the system's HAProxy (if any) is never touched. A new
    # log each time: HAProxy drops O_APPEND and would write over the last.
    [ -f "$DIR/haproxy.log" ] && mv -f "$DIR/haproxy.log" "$DIR/haproxy.log.1"
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

# HAProxy's statistics as CSV, over bash's /dev/tcp (no curl needed).
haproxy_stats() {
    local reply
    exec 3<>"/dev/tcp/127.0.0.1/$(stats_port)" || return 1
    printf 'GET /;csv HTTP/1.0\r\n\r\n' >&3
    reply=$(cat <&3)
    exec 3<&-
    printf '%s\n' "$reply" | tr -d '\r' | sed -n '/^# pxname/,$p'
}

# node|status|last check|connections, one line per node ("node2|DOWN|L4CON|0";
# a status such as "UP 1/2" means one more failed check marks it down).
haproxy_view() {
    haproxy_stats 2>/dev/null | awk -F, '
        NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        $1 == "galera" && $2 ~ /^node/ { print $2 "|" $col["status"] "|" $col["check_status"] "|" $col["scur"] }'
}

wait_haproxy_up() { # wait_haproxy_up N...: until HAProxy sees these nodes UP
    local n t0=$SECONDS view ok
    while ((SECONDS - t0 < 30)); do
        view=$(haproxy_view || true)
        ok=1
        for n in "$@"; do
            grep -q "^node$n|UP|L7OK|" <<<"$view" || ok=0
        done
        ((ok)) && return 0
        sleep 0.25
    done
    die "HAProxy does not see node(s) $* as UP after 30s: $view"
}

# ------------------------------------------------------------------ commands

all_running() {
    local n
    for n in "${NODES[@]}"; do node_pid "$n" >/dev/null || return 1; done
    haproxy_pid >/dev/null
}

cmd_start() {
    local n first t0=$SECONDS
    if all_running; then
        cmd_status
        return
    fi
    # Every port first, before anything is made or started.
    for n in "${NODES[@]}"; do
        node_pid "$n" >/dev/null ||
            require_free "node$n" "$(node_port "$n")" "$(gcomm_port "$n")" "$(ist_port "$n")" "$(sst_port "$n")"
    done
    haproxy_pid >/dev/null || require_free "HAProxy" "$(haproxy_port)" "$(stats_port)"
    ensure_packages
    chmod 755 "$DIR"
    echo "$PORT" >"$DIR/port"
    for n in "${NODES[@]}"; do init_node "$n"; done
    first=$(running_node)
    if [ -z "$first" ]; then
        first=$(bootstrap_node)
        start_node "$first" 1
        create_users "$first"
    fi
    for n in "${NODES[@]}"; do start_node "$n" 0; done
    start_haproxy
    wait_haproxy_up "${NODES[@]}"
    log "cluster up in $((SECONDS - t0))s"
    cmd_status
}

cmd_stop() {
    local n
    stop_haproxy
    # The last node to stop cleanly is marked safe_to_bootstrap: node 1, if it runs.
    for n in 3 2 1; do stop_node "$n" TERM; done
}

cmd_start_node() {
    local n=$1
    node_pid "$n" >/dev/null && { log "node$n: already running"; return; }
    [ -n "$(running_node)" ] || die "no node is running for node$n to join: use start"
    find_galera_lib || die "libgalera_smm.so not found: use start"
    init_node "$n"
    start_node "$n" 0
    if haproxy_pid >/dev/null; then wait_haproxy_up "$n"; fi
}

cmd_status() {
    local n pid rss code=0 up=0 view
    for n in "${NODES[@]}"; do
        if pid=$(node_pid "$n"); then
            up=$((up + 1))
            rss=$(awk '/^VmRSS/ {printf "%d MiB", $2 / 1024}' "/proc/$pid/status")
            printf 'node%s: port %s  pid %-7s %-8s  %s, %s, cluster size %s\n' "$n" "$(node_port "$n")" \
                "$pid" "$rss" "$(wsrep_status "$n" wsrep_local_state_comment)" \
                "$(wsrep_status "$n" wsrep_cluster_status)" "$(wsrep_status "$n" wsrep_cluster_size)"
        else
            printf 'node%s: port %s  stopped\n' "$n" "$(node_port "$n")"
        fi
    done
    if pid=$(haproxy_pid); then
        up=$((up + 1))
        printf 'HAProxy: port %s  pid %s  statistics http://127.0.0.1:%s/\n' \
            "$(haproxy_port)" "$pid" "$(stats_port)"
        view=$(haproxy_view || true)
        printf '%s\n' "${view:-  (no statistics yet)}" |
            awk -F'|' 'NF == 4 { printf "  %s: %s (%s), %s connection(s)\n", $1, $2, $3, $4 } NF != 4 { print }'
    else
        printf 'HAProxy: port %s  stopped\n' "$(haproxy_port)"
    fi
    printf 'data: %s\n' "$DIR"
    if ((up == ${#NODES[@]} + 1)); then code=0; elif ((up == 0)); then code=3; else code=1; fi
    return $code
}

cmd_env() {
    local name value
    # The last two, so that the tests drive this same cluster with this script.
    set -- GALERA_HOST 127.0.0.1 \
        GALERA_PORT "$(haproxy_port)" \
        GALERA_NODE_PORTS "$(node_port 1),$(node_port 2),$(node_port 3)" \
        GALERA_USER "$APP_USER" \
        GALERA_PASSWORD "$APP_PASSWORD" \
        SQL_SESSIONS_GALERA_PORT "$PORT" \
        SQL_SESSIONS_CLUSTER_DIR "${DIR%/galera}"
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
    local old
    old=$(cat "$DIR/port" 2>/dev/null || true)
    [ -z "$old" ] || [ "$old" = "$PORT" ] && return 0
    if [ -n "$(running_node)" ] || haproxy_pid >/dev/null; then
        die "the cluster in $DIR is running with SQL_SESSIONS_GALERA_PORT=$old, not $PORT"
    fi
}

case "${1:-}" in
    start | stop | status | env | destroy) ;;
    kill-node | stop-node | start-node)
        case "${2:-}" in
            1 | 2 | 3) ;;
            *) echo "usage: $0 $1 1|2|3" >&2; exit 2 ;;
        esac
        ;;
    *)
        echo "usage: $0 start|stop|status|kill-node N|stop-node N|start-node N|env|destroy" >&2
        exit 2
        ;;
esac
case "${1:-}" in
    env | status) ;;
    *)
        # One command at a time changes the cluster.
        if [ ! -d "$DIR" ]; then
            mkdir -p "$DIR"
            echo "clusters/galera.sh data directory" >"$DIR/.django-sql-sessions"
        fi
        exec 9>"$DIR/.lock"
        flock -w 600 9 || die "another clusters/galera.sh command holds $DIR/.lock"
        ;;
esac
[ "${1:-}" = env ] || check_same_ports

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    kill-node) stop_node "$2" KILL ;;
    stop-node) stop_node "$2" TERM ;;
    start-node) cmd_start_node "$2" ;;
    env) cmd_env ;;
    destroy) cmd_destroy ;;
esac
