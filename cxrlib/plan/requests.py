"""What each rule's jobs ask of a cluster: threads and resources from
profiles/default/resources.yaml (cxrlib.cluster.RuleRequests), and for the training rules a
request that depends on the attempt.

Snakemake resubmits a failed job whatever the reason. A training attempt that failed for a
reason retrying cannot fix records it in its state folder (cxrlib.jobs.attempts); a retry in
the same snakemake run then fails at once, so it asks for FUTILE_REQUEST (minutes, not a day
on a GPU node). A stop at a time limit records nothing: its retry gets the full request.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from cxrlib.jobs.attempts import FUTILE_REQUEST, RUN_ENV, recorded_failure


def ensure_run_id() -> str:
    """One id per snakemake invocation, inherited by its jobs (on SLURM too: --export=ALL), so
    a training job's retry knows a failure of this invocation that retrying cannot fix."""
    return os.environ.setdefault(RUN_ENV, uuid.uuid4().hex[:12])


def attempt_requests(
    resources: Mapping[str, Any],
    rule: str,
    state_template: str,
    *,
    main_process: bool,
    warn: Callable[[str], None],
) -> dict[str, Any]:
    """`resources` with runtime and mem_mb as functions of (wildcards, attempt): the full
    request, or FUTILE_REQUEST for a retry whose state folder (`state_template` filled with
    the job's wildcards) records a failure of this snakemake run that retrying cannot fix.
    `warn` is called once per state folder with what the retries will ask for."""
    told: set[str] = set()

    def of_attempt(key: str, value: Any) -> Callable[[Mapping[str, str], int], Any]:
        def request(wildcards: Mapping[str, str], attempt: int) -> Any:
            if attempt == 1 or not main_process:
                return value
            state = state_template.format(**dict(wildcards.items()))
            failure = recorded_failure(state, os.environ.get(RUN_ENV))
            if failure is None:
                return value  # a stop at the time limit (or a kill): worth the full request
            if state not in told:
                told.add(state)
                warn(
                    f"{rule} ({state}) failed in this snakemake run for a reason a retry "
                    f"cannot fix ({failure}); its remaining retries fail at once and ask for "
                    f"{FUTILE_REQUEST['runtime']} minutes and {FUTILE_REQUEST['mem_mb']} MB. "
                    "Fix it, then run snakemake again."
                )
            return min(value, FUTILE_REQUEST[key])

        return request

    out = dict(resources)
    for key in FUTILE_REQUEST:
        if key in out:
            out[key] = of_attempt(key, out[key])
    return out
