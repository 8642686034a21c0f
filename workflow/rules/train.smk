# Stage 2: one training job per entry of params `jobs:` (dataset x method). A retry, a
# SLURM requeue or a rerun after a crash resumes from last.pt in the run directory, which
# is deliberately not a declared output (Snakemake would delete it before the retry).


rule train:
    input:
        data=rules.prepare.output.data,
    output:
        checkpoint=f"{RESULTS}/{{dataset}}/{{method}}/checkpoint.pt",
        metrics=f"{RESULTS}/{{dataset}}/{{method}}/train.json",
    params:
        job=job_section("experiment", "data", "path", "model", "train"),
    log:
        f"{LOGS}/train/{{dataset}}/{{method}}.log",
    threads: threads_of("train")
    resources:
        **resources_of("train"),
    shell:
        "{resources.mpi} {PY:q} -m fmcore.train --params {PARAMS_FILE:q}"
        " --dataset {wildcards.dataset:q} --method {wildcards.method:q} > {log:q} 2>&1"
