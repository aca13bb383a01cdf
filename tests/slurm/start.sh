#!/usr/bin/env bash
# Start a real single-node SLURM on this machine for cxrlib's tests:
# munged, mariadbd, slurmdbd, slurmctld and slurmd, with cluster, account and
# user registered in accounting. Idempotent: re-running while everything is up
# only checks it and prints the summary line.
#
# Needs root on Debian 12 (bookworm). Installs the Debian packages if missing.
# Environment (all optional):
#   CXR_SLURM_CLUSTER   cluster name              (default: cxrtest)
#   CXR_SLURM_ACCOUNT   root's default account    (default: cxr)
#   CXR_SLURM_ACCOUNT2  second account root is in, not its default
#                                                 (default: cxrstudy)
#   CXR_SLURM_PARTITION default partition         (default: debug)
#   CXR_SLURM_PARTITION2 second, non-default partition, MaxTime=2-00:00:00
#                                                 (default: gpu)
#   CXR_SLURM_GPUS      pretend GPUs (gres/gpu; empty files, no devices)
#                                                 (default: 2)
#   CXR_SLURM_TIMEOUT   seconds to wait per step  (default: 90)
#   CXR_SLURM_CGROUP    auto|yes|no: track jobs with proctrack/cgroup and
#                       enforce --mem/--cpus with task/cgroup (default: auto =
#                       yes where a cgroup v1 freezer hierarchy is mounted)
# Exit codes: 0 up; 1 failed (the relevant logs' tails are printed);
#             2 not root (nothing done).
set -Eeuo pipefail
export DEBIAN_FRONTEND=noninteractive
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"
umask 022

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CLUSTER="${CXR_SLURM_CLUSTER:-cxrtest}"
ACCOUNT="${CXR_SLURM_ACCOUNT:-cxr}"
ACCOUNT2="${CXR_SLURM_ACCOUNT2:-cxrstudy}"
PARTITION="${CXR_SLURM_PARTITION:-debug}"
PARTITION2="${CXR_SLURM_PARTITION2:-gpu}"
GPUS="${CXR_SLURM_GPUS:-2}"
TIMEOUT="${CXR_SLURM_TIMEOUT:-90}"
USE_CGROUP="${CXR_SLURM_CGROUP:-auto}"
STATE_DIR=/var/lib/cxr-slurm-test          # what start.sh started, db password
LOG_DIR=/var/log/slurm
MARIADB_LOG=/var/log/mysql/cxr-slurm-test.err
MUNGE_LOG=/var/log/munge/munged.log
T0=$(date +%s%N)

log() { echo "[slurm start] $*" >&2; }

# Logs whose tails are printed if the current step fails.
STEP_LOGS=()
step() { log "$1"; shift; STEP_LOGS=("$@"); }

dump_logs() {
    local f
    for f in "${STEP_LOGS[@]}"; do
        if [[ -f "$f" ]]; then
            echo "----- last 40 lines of $f -----" >&2
            tail -n 40 "$f" >&2 || true
        else
            echo "----- $f: no such file -----" >&2
        fi
    done
}

fail() {
    log "ERROR: $*"
    dump_logs
    exit 1
}

on_err() {
    local rc=$? line=$1 cmd=$2
    trap - ERR
    log "ERROR: command failed (exit $rc) at start.sh line $line: $cmd"
    dump_logs
    exit 1
}
trap 'on_err "$LINENO" "$BASH_COMMAND"' ERR

if [[ "$(id -u)" -ne 0 ]]; then
    log "must run as root (uid is $(id -u)); nothing done"
    exit 2
fi

if [[ "$ACCOUNT" == "$ACCOUNT2" ]]; then
    log "CXR_SLURM_ACCOUNT and CXR_SLURM_ACCOUNT2 must differ (both '$ACCOUNT')"
    exit 1
fi
if [[ "$PARTITION" == "$PARTITION2" ]]; then
    log "CXR_SLURM_PARTITION and CXR_SLURM_PARTITION2 must differ (both '$PARTITION')"
    exit 1
fi
if [[ ! "$GPUS" =~ ^[1-9][0-9]*$ ]]; then
    log "CXR_SLURM_GPUS must be a positive integer (got '$GPUS')"
    exit 1
fi

# One start.sh/stop.sh at a time (e.g. parallel test workers). Daemons are
# started with fd 9 closed so they do not inherit (and keep) the lock.
exec 9>/run/cxr-slurm-test.lock
flock -w 300 9 || log "WARNING: /run/cxr-slurm-test.lock still held after 300 s; going on anyway"

# pid_alive PIDFILE COMM: true if the pid in PIDFILE runs a process named COMM.
pid_alive() {
    local pid
    [[ -s "$1" ]] || return 1
    pid="$(tr -dc '0-9' <"$1")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$2" ]]
}

# wait_for SECONDS DESCRIPTION CMD...: poll CMD every 0.5 s until it succeeds.
wait_for() {
    local secs=$1 what=$2 deadline
    shift 2
    deadline=$(($(date +%s) + secs))
    local last
    until last="$("$@" 2>&1)"; do
        if (($(date +%s) >= deadline)); then
            fail "timed out after ${secs}s waiting for $what; last try ($*) said: ${last:-nothing}"
        fi
        sleep 0.5
    done
}

# ---------------------------------------------------------------- packages --
need_pkgs=0
for cmd in sbatch srun sacct sacctmgr sinfo squeue scontrol slurmctld slurmd \
    slurmdbd munged munge mariadbd mariadb mariadb-admin; do
    command -v "$cmd" >/dev/null 2>&1 || need_pkgs=1
done
if ((need_pkgs)); then
    step "installing Debian packages (slurm, munge, mariadb)"
    # Keep the packages' maintainer scripts from starting daemons (there is
    # no init system to manage them; we start them ourselves below).
    made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    apt_log="$(mktemp /tmp/cxr-slurm-apt.XXXXXX)"
    STEP_LOGS=("$apt_log")
    {
        apt-get update -q &&
            apt-get install -y -q --no-install-recommends \
                slurmctld slurmd slurm-client slurmdbd munge mariadb-server
    } >"$apt_log" 2>&1 || {
        ((made_policy)) && rm -f /usr/sbin/policy-rc.d
        fail "apt-get failed"
    }
    ((made_policy)) && rm -f /usr/sbin/policy-rc.d
    rm -f "$apt_log"
fi

install -d -m 0700 "$STATE_DIR"
HOST="$(hostname -s)"

# ------------------------------------------------------------------- munge --
step "munge" "$MUNGE_LOG"
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge
install -d -o munge -g munge -m 0700 /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --force --keyfile=/etc/munge/munge.key
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
munge_ok() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }
if ! munge_ok; then
    # --force: remove a stale socket lock left by an unclean stop.
    runuser -u munge -- munged --force 9>&-
    touch "$STATE_DIR/started-munged"
    wait_for "$TIMEOUT" "munged to answer" munge_ok
fi

# ----------------------------------------------------------------- mariadb --
step "mariadb" "$MARIADB_LOG"
db_ok() { mariadb-admin --connect-timeout=2 ping; }
if ! db_ok >/dev/null 2>&1; then
    install -d -o mysql -g mysql -m 0755 /run/mysqld
    install -d -o mysql -g adm -m 2750 /var/log/mysql
    if [[ ! -d /var/lib/mysql/mysql ]]; then
        install -d -o mysql -g mysql -m 0755 /var/lib/mysql
        mariadb-install-db --user=mysql --datadir=/var/lib/mysql \
            >>"$MARIADB_LOG" 2>&1
    fi
    # No networking: slurmdbd reaches it through the unix socket.
    setsid nohup mariadbd --user=mysql --skip-networking \
        --pid-file=/run/mysqld/mysqld.pid --log-error="$MARIADB_LOG" \
        --innodb-lock-wait-timeout=900 </dev/null >>"$MARIADB_LOG" 2>&1 9>&- &
    touch "$STATE_DIR/started-mariadb"
    wait_for "$TIMEOUT" "mariadbd to answer on its socket" db_ok
fi

if [[ ! -s "$STATE_DIR/dbpass" ]]; then
    (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$STATE_DIR/dbpass")
fi
DBPASS="$(cat "$STATE_DIR/dbpass")"
mariadb <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
GRANT ALL PRIVILEGES ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
SQL

# ----------------------------------------------------------------- configs --
step "writing /etc/slurm/{slurm,cgroup,gres,slurmdbd}.conf"
install -d -m 0755 /etc/slurm
install -d -o slurm -g slurm -m 0755 /var/spool/slurmctld "$LOG_DIR" /run/slurm
install -d -o root -g root -m 0755 /var/spool/slurmd

# Hardware as slurmd sees it; RealMemory 10% below the real figure so the
# node never drains with "Low RealMemory".
hw="$(slurmd -C 2>/dev/null | head -n 1)"
NODE_HW="$(tr ' ' '\n' <<<"$hw" | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' | tr '\n' ' ' | sed 's/ $//')"
mem="$(tr ' ' '\n' <<<"$hw" | sed -n 's/^RealMemory=//p')"
[[ -n "$NODE_HW" && -n "$mem" ]] || fail "could not parse 'slurmd -C': $hw"
REALMEM=$((mem * 9 / 10))

# cgroup v1 with the freezer controller mounted at /sys/fs/cgroup/freezer?
# (slurm 22.05's cgroup/v2 plugin needs systemd, which is not running here.)
cgroup_v1_ok() {
    [[ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" != cgroup2fs ]] &&
        [[ "$(stat -fc %T /sys/fs/cgroup/freezer 2>/dev/null)" == cgroupfs ]] &&
        [[ "$(stat -fc %T /sys/fs/cgroup/memory 2>/dev/null)" == cgroupfs ]] &&
        [[ "$(stat -fc %T /sys/fs/cgroup/cpuset 2>/dev/null)" == cgroupfs ]] &&
        [[ -w /sys/fs/cgroup/freezer/tasks ]]
}
case "$USE_CGROUP" in
auto) if cgroup_v1_ok; then USE_CGROUP=yes; else USE_CGROUP=no; fi ;;
yes | no) ;;
*) fail "CXR_SLURM_CGROUP must be auto, yes or no (got '$USE_CGROUP')" ;;
esac
if [[ "$USE_CGROUP" == yes ]]; then
    PROCTRACK=proctrack/cgroup TASKPLUGIN=task/cgroup,task/affinity
else
    PROCTRACK=proctrack/linuxproc TASKPLUGIN=task/affinity
fi

# Pretend GPUs for gres.conf: empty regular files (slurm 22.05 ignores a gpu
# gres without File); the trailing digits are the GPU indexes.
GPU_DIR="$STATE_DIR/fake-gpu"
install -d -m 0755 "$GPU_DIR"
for ((i = 0; i < GPUS; i++)); do
    [[ -f "$GPU_DIR/gpu$i" ]] || : >"$GPU_DIR/gpu$i"
done
if ((GPUS == 1)); then GPU_FILES="$GPU_DIR/gpu0"; else GPU_FILES="$GPU_DIR/gpu[0-$((GPUS - 1))]"; fi

render() { # render TEMPLATE -> stdout
    sed -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@HOST@|$HOST|g" \
        -e "s|@NODE_HW@|$NODE_HW|g" -e "s|@REALMEM@|$REALMEM|g" \
        -e "s|@PARTITION@|$PARTITION|g" -e "s|@PARTITION2@|$PARTITION2|g" \
        -e "s|@GPUS@|$GPUS|g" -e "s|@GPU_FILES@|$GPU_FILES|g" \
        -e "s|@DBPASS@|$DBPASS|g" \
        -e "s|@PROCTRACK@|$PROCTRACK|g" -e "s|@TASKPLUGIN@|$TASKPLUGIN|g" \
        -e "s|@CONSTRAIN@|$USE_CGROUP|g" "$1"
}
# install_conf TEMPLATE DEST OWNER MODE: true if DEST changed.
install_conf() {
    local tmp changed=1
    tmp="$(mktemp)"
    render "$1" >"$tmp"
    if [[ -f "$2" ]] && cmp -s "$tmp" "$2"; then changed=0; fi
    install -o "$3" -g "$3" -m "$4" "$tmp" "$2"
    rm -f "$tmp"
    return $((1 - changed))
}
slurm_conf_changed=0 dbd_conf_changed=0
install_conf "$HERE/slurm.conf.in" /etc/slurm/slurm.conf root 0644 && slurm_conf_changed=1
install_conf "$HERE/cgroup.conf.in" /etc/slurm/cgroup.conf root 0644 && slurm_conf_changed=1
install_conf "$HERE/gres.conf.in" /etc/slurm/gres.conf root 0644 && slurm_conf_changed=1
install_conf "$HERE/slurmdbd.conf.in" /etc/slurm/slurmdbd.conf slurm 0600 && dbd_conf_changed=1

# stop_daemon NAME: SIGTERM the daemon from its pid file (used when its
# config changed under it), SIGKILL after 15 s.
stop_daemon() {
    local pf="/run/slurm/$1.pid" pid i
    pid_alive "$pf" "$1" || return 0
    pid="$(tr -dc '0-9' <"$pf")"
    log "restarting $1 (config changed)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.5
    done
    kill -KILL "$pid" 2>/dev/null || true
}
if ((dbd_conf_changed)); then stop_daemon slurmdbd; fi
if ((slurm_conf_changed)); then stop_daemon slurmd; stop_daemon slurmctld; fi

# ---------------------------------------------------------------- slurmdbd --
step "slurmdbd" "$LOG_DIR/slurmdbd.log" "$MARIADB_LOG"
dbd_ok() { sacctmgr -n -P list cluster format=cluster; }
if ! pid_alive /run/slurm/slurmdbd.pid slurmdbd; then
    slurmdbd 9>&-
fi
wait_for "$TIMEOUT" "slurmdbd to answer sacctmgr" dbd_ok

step "accounting: cluster $CLUSTER, accounts $ACCOUNT (default) and $ACCOUNT2, user root" "$LOG_DIR/slurmdbd.log"
if ! sacctmgr -n -P list cluster format=cluster | grep -qxF "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi
# The default account first: adding root to it first makes it root's
# DefaultAccount; the second association leaves the default alone.
for acct in "$ACCOUNT" "$ACCOUNT2"; do
    if ! sacctmgr -n -P list account "$acct" format=account | grep -qxF "$acct"; then
        sacctmgr -i add account "$acct" Cluster="$CLUSTER" \
            Description="cxrlib tests" Organization=cxrlib >/dev/null
    fi
    if ! sacctmgr -n -P list assoc user=root account="$acct" cluster="$CLUSTER" \
        format=user | grep -qx root; then
        sacctmgr -i add user root Account="$acct" Cluster="$CLUSTER" >/dev/null
    fi
done
if [[ "$(sacctmgr -n -P list user root format=defaultaccount)" != "$ACCOUNT" ]]; then
    sacctmgr -i modify user where name=root set DefaultAccount="$ACCOUNT" >/dev/null
fi

# --------------------------------------------------------- slurmctld/slurmd --
step "slurmctld" "$LOG_DIR/slurmctld.log"
ctld_ok() { scontrol ping | grep -q 'is UP'; }
if ! pid_alive /run/slurm/slurmctld.pid slurmctld; then
    slurmctld 9>&-
fi
wait_for "$TIMEOUT" "slurmctld to answer 'scontrol ping'" ctld_ok

step "slurmd" "$LOG_DIR/slurmd.log" "$LOG_DIR/slurmctld.log"
if ! pid_alive /run/slurm/slurmd.pid slurmd; then
    slurmd 9>&-
fi

node_state() { sinfo -h -n "$HOST" -o %t 2>/dev/null | head -n 1; }
deadline=$(($(date +%s) + TIMEOUT))
resumed=0
while :; do
    st="$(node_state)"
    case "$st" in
    idle | mix | alloc | comp) break ;;
    down | drain | drng | fail)
        # Left down/drained by an earlier unclean stop: slurmd is up now.
        if ((resumed < 3)); then
            scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
            resumed=$((resumed + 1))
        fi
        ;;
    esac
    if (($(date +%s) >= deadline)); then
        fail "node $HOST not up after ${TIMEOUT}s (sinfo state: '${st:-none}'; $(scontrol show node "$HOST" 2>/dev/null | grep -o 'Reason=.*' || true))"
    fi
    sleep 0.5
done

step "sacct" "$LOG_DIR/slurmdbd.log" "$LOG_DIR/slurmctld.log"
wait_for "$TIMEOUT" "sacct to answer" sacct -n -X

SLURM_VERSION="$(sinfo --version 2>/dev/null | awk '{print $2}' || true)"
echo "SLURM ${SLURM_VERSION:-?} up: cluster=$CLUSTER node=$HOST state=$st ($NODE_HW RealMemory=$REALMEM) partitions=$PARTITION*,$PARTITION2 accounts=$ACCOUNT*,$ACCOUNT2 gres=gpu:$GPUS user=root ${PROCTRACK#proctrack/} [$(awk -v a="$T0" -v b="$(date +%s%N)" 'BEGIN{printf "%.1f", (b-a)/1e9}')s]"
