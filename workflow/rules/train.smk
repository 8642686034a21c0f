# Stage 2: one training job per entry of params `jobs:` (dataset x method). A retry, a
# SLURM requeue or a rerun after a crash resumes from last.pt in the run directory, which
# is deliberately not a declared output (Snakemake would delete it before the retry).
# Each attempt also keeps its own log per rank in <log>.attempts/ (+ attempts.tsv), which
# Snakemake does not clear (docs/workflow.md, "Campaign on SLURM").


def snapshot_settings(wc):
    """What Fig. 5's periodic checkpoints hold: their period and which weights (JSON)."""
    ev = resolve_job(PARAMS, wc.dataset, wc.method)["evaluate"]
    return as_json({"every": (ev.get("during_training") or {}).get("every"), "ema": ev.get("ema", True)})


rule train:
    input:
        data=rules.prepare.output.data,
    output:
        checkpoint=f"{RESULTS}/{{dataset}}/{{method}}/checkpoint.pt",
        metrics=f"{RESULTS}/{{dataset}}/{{method}}/train.json",
    params:
        job=job_section("experiment", "data", "path", "model", "train"),
        snapshots=snapshot_settings,
        attempts=lambda wc: f"{LOGS}/train/{wc.dataset}/{wc.method}.attempts",
    log:
        f"{LOGS}/train/{{dataset}}/{{method}}.log",
    threads: threads_of("train")
    resources:
        **resources_of("train"),
    retries: 3  # real failures only: time limits and preemption requeue without a retry
    shell:
        "{resources.launch} {PY:q} -m fmcore.train --params {PARAMS_FILE:q}"
        " --dataset {wildcards.dataset:q} --method {wildcards.method:q}"
        " --attempt-log-dir {params.attempts:q} > {log:q} 2>&1"
