"""The one error the planning layer raises: a config or a folder the study cannot be built from."""


class PlanError(ValueError):
    """The study cannot be planned as configured; the message names the key or file and the fix.

    rules/common.smk turns it into Snakemake's WorkflowError, so the user sees the message
    alone, without a traceback.
    """
