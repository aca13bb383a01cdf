# Job survival on the real SLURM: two toy trainings with a 2-minute limit and about 200 s of
# work each. "deadline" stops itself before the limit (it reads its end time from squeue);
# "killed" ignores the deadline, so SLURM kills it and it resumes from its last timer save.
# The state folders are params, not outputs, so they survive the failed attempts.


rule all:
    input:
        expand("results/toy/{mode}/weights.pt", mode=["deadline", "killed"]),


rule train_toy:
    output:
        "results/toy/{mode}/weights.pt",
    params:
        state="results/toy/{mode}/state",
        margin=lambda wc: 45 if wc.mode == "deadline" else -3600,
    resources:
        runtime=2,
        mem_mb=600,
        cpus_per_task=1,
    log:
        "logs/train_toy_{mode}.log",
    shell:
        "{config[python]} -m tests.toy_trainer --state {params.state} --out {output}"
        " --steps 2000 --sleep 0.1 --save-every-s 5 --stop-margin-s {params.margin}"
        " >> {log} 2>&1"
