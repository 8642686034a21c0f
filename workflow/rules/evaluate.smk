# Stage 3: Table 1 metrics (NLL, quality, NFE) and the arrays behind Figures 4-7 for one
# trained job, logged to MLflow as a child of the training run. With
# `evaluate.<dataset>.shards: S` > 1, S `evaluate_shard` jobs (GPU jobs on SLURM) compute the
# per-sample work into the shared batch cache first and `evaluate` merges it (the same
# result as S = 1; docs/evaluation.md).


def shards_of(wildcards):
    """`evaluate.<dataset>.shards` of the job (1 = no shard jobs)."""
    return int(run_job(wildcards)["evaluate"].get("shards", 1))


def shard_markers(wildcards):
    """Input function: the markers of every shard of the job ([] when unsharded)."""
    n = shards_of(wildcards)
    if n <= 1:
        return []
    return [f"{RESULTS}/{wildcards.dataset}/{wildcards.run}/eval/shards/shard_{i}_of_{n}.json"
            for i in range(n)]


rule evaluate_shard:
    input:
        checkpoint=rules.train.output.checkpoint,
        train=rules.train.output.metrics,
        reference=rules.reference.output[0],
    output:
        f"{RESULTS}/{{dataset}}/{{run}}/eval/shards/shard_{{shard}}_of_{{shards}}.json",
    wildcard_constraints:
        shard=r"\d+",
        shards=r"\d+",
    params:
        evaluate=job_section("evaluate"),
        run_args=run_args,
    log:
        f"{LOGS}/evaluate/{{dataset}}/{{run}}.shard_{{shard}}_of_{{shards}}.log",
    threads: threads_of("evaluate")
    resources:
        **resources_of("evaluate"),
    retries: 2  # a shard resumes per batch from the cache
    shell:
        "{PY:q} -m fmcore.evaluate run --params {PARAMS_FILE:q}"
        " --dataset {wildcards.dataset:q} {params.run_args}"
        " --shard {wildcards.shard:q}/{wildcards.shards:q} > {log:q} 2>&1"


rule evaluate:
    input:
        checkpoint=rules.train.output.checkpoint,
        train=rules.train.output.metrics,
        reference=rules.reference.output[0],
        shards=shard_markers,
    output:
        metrics=f"{RESULTS}/{{dataset}}/{{run}}/eval/metrics.json",
    params:
        evaluate=job_section("evaluate"),
        run_args=run_args,
    log:
        f"{LOGS}/evaluate/{{dataset}}/{{run}}.log",
    threads: threads_of("evaluate")
    resources:
        **resources_of("evaluate"),
    retries: 2  # an evaluation resumes per batch from its cache
    shell:
        "{PY:q} -m fmcore.evaluate run --params {PARAMS_FILE:q}"
        " --dataset {wildcards.dataset:q} {params.run_args} > {log:q} 2>&1"
