"""Run settings read at DAG build: dataclasses, checks and the file names known before a run.

Nothing here imports torch (tests/test_settings.py checks it), so `snakemake -n` and each
cluster job's own snakemake start in seconds.
"""
