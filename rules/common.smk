# Shared names and input functions. Any logic longer than a line lives here or in cxrlib.

from pathlib import Path

from snakemake.exceptions import WorkflowError

SPLITS = ["train", "val", "test"]


def get_data_root():
    """The folder prepare_data reads: the generated phantoms, or the configured data.root.

    A missing data.root fails here, before any job is submitted, with the path and the fix.
    """
    if config["data"]["source"] == "phantom":
        return "results/data/phantom"
    root = Path(config["data"]["root"])
    if not root.is_dir():
        raise WorkflowError(
            f"data.root {root} does not exist (resolved: {root.resolve()}). Download the Kaggle "
            "'Chest X-Ray Images (Pneumonia)' release, unpack it and set data.root (in "
            "config.yaml or with --config 'data={root: PATH}') to the folder holding train/ and "
            "test/; or try the demo: --configfile overlays/demo.yaml."
        )
    return str(root)


def get_final_output():
    """The targets of the default rule (all); the list grows with each stage of the study."""
    return [
        "results/data/manifest.csv",
        "results/data/qc/class_counts.png",
        "results/data/qc/examples.png",
        "results/data/qc/intensity_histograms.png",
    ]
