# Job survival on the real SLURM: a toy training with a 2-minute limit and about 200 s of
# work that ignores its deadline, so SLURM kills it and it resumes from its last timer save
# (tests/test_slurm.py runs it beside a DCGAN that stops itself before each limit). The state
# folder is a param, not an output, so it survives the failed attempts.


rule all:
    input:
        "results/toy/killed/weights.pt",


rule train_toy:
    output:
        "results/toy/{mode}/weights.pt",
    log:
        "logs/train_toy_{mode}.log",
    resources:
        runtime=2,
        mem_mb=600,
        cpus_per_task=1,
    params:
        state="results/toy/{mode}/state",
        margin=-3600,  # never stops itself
    shell:
        "{config[python]} -m tests.toy_trainer --state {params.state} --out {output}"
        " --steps 2000 --sleep 0.1 --save-every-s 5 --stop-margin-s {params.margin}"
        " >> {log} 2>&1"
