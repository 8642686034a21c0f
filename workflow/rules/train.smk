# Stage 2: one training job per entry of params `jobs:` (dataset x method) and seed; {run} is
# "<method>", or "<method>/seed<k>" when the job has several seeds (fmcore.config.runs). A retry, a
# SLURM requeue or a rerun after a crash resumes from last.pt in the run directory, which
# is deliberately not a declared output (Snakemake would delete it before the retry).
# Each attempt also keeps its own log per rank in <log>.attempts/ (+ attempts.tsv), which
# Snakemake does not clear (docs/workflow.md, "Campaign on SLURM").


def snapshot_settings(wc):
    """What Fig. 5's periodic checkpoints hold: their period and which weights (JSON)."""
    ev = run_job(wc)["evaluate"]
    return as_json({"every": (ev.get("during_training") or {}).get("every"), "ema": ev.get("ema", True)})


rule train:
    input:
        data=rules.prepare.output.data,
    output:
        checkpoint=f"{RESULTS}/{{dataset}}/{{run}}/checkpoint.pt",
        metrics=f"{RESULTS}/{{dataset}}/{{run}}/train.json",
    params:
        job=job_section("experiment", "data", "path", "model", "train"),
        snapshots=snapshot_settings,
        attempts=lambda wc: f"{LOGS}/train/{wc.dataset}/{wc.run}.attempts",
        run_args=run_args,
    log:
        f"{LOGS}/train/{{dataset}}/{{run}}.log",
    threads: threads_of("train")
    resources:
        **resources_of("train"),
    retries: 3  # real failures only: time limits and preemption requeue without a retry
    shell:
        "{resources.launch} {PY:q} -m fmcore.train --params {PARAMS_FILE:q}"
        " --dataset {wildcards.dataset:q} {params.run_args}"
        " --attempt-log-dir {params.attempts:q} > {log:q} 2>&1"
