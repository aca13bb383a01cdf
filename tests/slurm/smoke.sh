#!/usr/bin/env bash
# Smoke test for the SLURM that start.sh brought up: submit a tiny batch job
# with an srun step and wait (60 s at most) until sacct reports it COMPLETED.
# Exit 0 on success, 1 otherwise (with the job's output and sacct lines).
set -euo pipefail
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"

out="$(mktemp -d /tmp/cxr-slurm-smoke.XXXXXX)"
trap 'rm -rf "$out"' EXIT
t0=$(date +%s)
job="$(sbatch --parsable --time=1 --mem=100 -o "$out/%j.out" -D "$out" \
    --wrap 'hostname; srun -n1 true')"
job="${job%%;*}"
state=""
while (($(date +%s) - t0 < 60)); do
    state="$(sacct -j "$job" -X -n -P -o State 2>/dev/null | head -n 1 | awk '{print $1}')"
    case "$state" in
    COMPLETED) break ;;
    FAILED | CANCELLED | TIMEOUT | OUT_OF_MEMORY | NODE_FAIL | BOOT_FAIL) break ;;
    esac
    sleep 0.5
done
if [[ "$state" != COMPLETED ]]; then
    echo "[slurm smoke] job $job ended as '${state:-unknown}' after $(($(date +%s) - t0))s" >&2
    sacct -j "$job" -P -o JobID,State,ExitCode,Reason >&2 || true
    cat "$out/$job.out" >&2 2>/dev/null || true
    exit 1
fi
echo "[slurm smoke] job $job COMPLETED on $(cat "$out/$job.out") in $(($(date +%s) - t0))s"
