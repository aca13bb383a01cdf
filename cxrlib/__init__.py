"""cxrlib: the library behind the chest X-ray GAN workflow.

Everything testable lives here and runs without Snakemake; `scripts/` only adapts the
`snakemake` object to these functions.
"""

__version__ = "0.1.0"
