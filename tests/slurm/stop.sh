#!/usr/bin/env bash
# Stop the single-node SLURM that tests/slurm/start.sh started: cancel all
# jobs, stop slurmd, slurmctld and slurmdbd, kill leftover job processes, and
# stop mariadbd and munged if start.sh was the one that started them.
# Packages, config and state (accounting database, job ids) are kept, so a
# following start.sh is fast; `stop.sh --purge` also wipes the state, config
# and logs so the next start.sh begins from scratch (packages stay).
# Safe to run when nothing is running. Exit 2 if not root.
set -euo pipefail
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"

STATE_DIR=/var/lib/cxr-slurm-test
PURGE=0
case "${1:-}" in
--purge) PURGE=1 ;;
"") ;;
*)
    echo "usage: $0 [--purge]" >&2
    exit 64
    ;;
esac

log() { echo "[slurm stop] $*" >&2; }

if [[ "$(id -u)" -ne 0 ]]; then
    log "must run as root (uid is $(id -u)); nothing done"
    exit 2
fi

# One start.sh/stop.sh at a time (e.g. parallel test workers).
exec 9>/run/cxr-slurm-test.lock
flock -w 60 9 || log "WARNING: /run/cxr-slurm-test.lock still held after 60 s; going on anyway"

pidof_file() { # PIDFILE COMM -> pid on stdout if alive and named COMM
    local pid
    [[ -s "$1" ]] || return 1
    pid="$(tr -dc '0-9' <"$1")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$2" ]] || return 1
    echo "$pid"
}

# term_wait SECONDS NAME:PID...: SIGTERM them all, wait until they are gone,
# SIGKILL whatever is left after SECONDS.
term_wait() {
    local secs=$1 i np done_list=""
    local -a left=()
    shift
    for np in "$@"; do kill -TERM "${np#*:}" 2>/dev/null || true; done
    for ((i = 0; i <= secs * 10; i++)); do
        left=()
        for np in "$@"; do
            if kill -0 "${np#*:}" 2>/dev/null; then left+=("$np"); else
                [[ " $done_list " == *" $np "* ]] || { log "stopped ${np%:*} (pid ${np#*:})"; done_list+=" $np"; }
            fi
        done
        ((${#left[@]})) || return 0
        sleep 0.1
    done
    for np in "${left[@]}"; do
        log "${np%:*} (pid ${np#*:}) ignored SIGTERM for ${secs}s; sending SIGKILL"
        kill -KILL "${np#*:}" 2>/dev/null || true
    done
}

# descendants PID...: all descendants of the given pids (children first
# listed after their parents).
descendants() {
    local -a queue=("$@") out=()
    local p c
    while ((${#queue[@]})); do
        p=${queue[0]}
        queue=("${queue[@]:1}")
        for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do
            out+=("$c")
            queue+=("$c")
        done
    done
    echo "${out[@]:-}"
}

ctld_pid="$(pidof_file /run/slurm/slurmctld.pid slurmctld || true)"

# 1. Cancel every job (SIGKILL, no KillWait grace) while slurmctld is up.
if [[ -n "$ctld_pid" ]] && command -v squeue >/dev/null 2>&1; then
    jobs="$(squeue -h -o %i 2>/dev/null | tr '\n' ' ' || true)"
    if [[ -n "${jobs// /}" ]]; then
        log "cancelling jobs: $jobs"
        # shellcheck disable=SC2086
        scancel --signal=KILL --full $jobs 2>/dev/null || true
        # shellcheck disable=SC2086
        scancel $jobs 2>/dev/null || true
        for ((i = 0; i < 40; i++)); do
            [[ -z "$(squeue -h -t running,completing -o %i 2>/dev/null)" ]] && break
            sleep 0.25
        done
    fi
fi

# 2. Slurm daemons: slurmd and slurmctld together, then slurmdbd (slurmctld
#    hands its last accounting records to slurmdbd on the way down).
daemons=()
for d in slurmd slurmctld; do
    pid="$(pidof_file "/run/slurm/$d.pid" "$d" || true)"
    if [[ -n "$pid" ]]; then daemons+=("$d:$pid"); fi
done
if ((${#daemons[@]})); then term_wait 20 "${daemons[@]}"; fi
pid="$(pidof_file /run/slurm/slurmdbd.pid slurmdbd || true)"
if [[ -n "$pid" ]]; then term_wait 20 "slurmdbd:$pid"; fi

# 3. Job processes that outlived slurmd: slurmstepd and what it started, and
#    (proctrack/cgroup) whatever is left in slurm's freezer cgroups.
stepds=()
for p in /proc/[0-9]*; do
    [[ "$(cat "$p/comm" 2>/dev/null)" == slurmstepd ]] || continue
    stepds+=("${p#/proc/}")
done
if ((${#stepds[@]})); then
    read -r -a victims <<<"${stepds[*]} $(descendants "${stepds[@]}")"
    log "killing leftover job processes: ${victims[*]}"
    kill -KILL "${victims[@]}" 2>/dev/null || true
fi
shopt -s nullglob globstar
for procs in /sys/fs/cgroup/freezer/slurm_*/**/cgroup.procs; do
    pids=$(tr '\n' ' ' <"$procs" 2>/dev/null || true)
    if [[ -n "${pids// /}" ]]; then
        # A suspended job's cgroup is frozen; thaw it so SIGKILL lands.
        echo THAWED >"${procs%/cgroup.procs}/freezer.state" 2>/dev/null || true
        log "killing processes left in ${procs%/cgroup.procs}: $pids"
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
    fi
done
shopt -u nullglob globstar

# 4. With --purge: drop the accounting database while mariadb still runs.
if ((PURGE)) && command -v mariadb >/dev/null 2>&1 &&
    mariadb-admin --connect-timeout=2 ping >/dev/null 2>&1; then
    log "dropping database slurm_acct_db and user slurm"
    mariadb -e "DROP DATABASE IF EXISTS slurm_acct_db; DROP USER IF EXISTS 'slurm'@'localhost';" || true
fi

# 5. mariadbd and munged (together), only if start.sh started them.
#    SIGTERM is mariadbd's clean shutdown.
daemons=()
if [[ -e "$STATE_DIR/started-mariadb" ]]; then
    pid="$(pidof_file /run/mysqld/mysqld.pid mariadbd || true)"
    if [[ -n "$pid" ]]; then daemons+=("mariadbd:$pid"); fi
fi
if [[ -e "$STATE_DIR/started-munged" ]]; then
    pid="$(pidof_file /run/munge/munged.pid munged || true)"
    if [[ -n "$pid" ]]; then daemons+=("munged:$pid"); fi
fi
if ((${#daemons[@]})); then term_wait 60 "${daemons[@]}"; fi
rm -f "$STATE_DIR/started-mariadb" "$STATE_DIR/started-munged"

if ((PURGE)); then
    log "removing slurm state, config and logs"
    rm -rf /var/spool/slurmctld /var/spool/slurmd /var/log/slurm \
        /etc/slurm/slurm.conf /etc/slurm/slurmdbd.conf /etc/slurm/cgroup.conf \
        /etc/slurm/gres.conf "$STATE_DIR" \
        /var/log/mysql/cxr-slurm-test.err
fi
log "done"
