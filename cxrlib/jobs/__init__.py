"""The resumable-job promise: state saved on a timer and on SIGTERM/SIGUSR1, attempts across
SLURM time limits, the resume contract, multi-process launch.
"""
