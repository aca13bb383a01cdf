"""The workflow's policy, torch-free: what the study builds and where its results go, the
generators and classifier arms of a config, what each rule asks of a cluster, and the checks
made when the DAG is built, before any job runs.

rules/common.smk holds short `get_<what>` lookups that call a `Study` built from the config;
everything with a decision in it lives here and is unit-tested without `snakemake -n`. Nothing
here imports torch or snakemake (tests/test_plan.py checks it): `snakemake -n` on a login node
and every cluster job's own snakemake start in seconds.
"""

from cxrlib.plan.errors import PlanError
from cxrlib.plan.study import Study

__all__ = ["PlanError", "Study"]
