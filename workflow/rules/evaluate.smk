# Stage 3: Table 1 metrics (NLL, quality, NFE) and the arrays behind Figures 4-7 for one
# trained job, logged to MLflow as a child of the training run.


rule evaluate:
    input:
        checkpoint=rules.train.output.checkpoint,
        train=rules.train.output.metrics,
        reference=rules.reference.output[0],
    output:
        metrics=f"{RESULTS}/{{dataset}}/{{method}}/eval/metrics.json",
    params:
        evaluate=job_section("evaluate"),
    log:
        f"{LOGS}/evaluate/{{dataset}}/{{method}}.log",
    threads: threads_of("evaluate")
    resources:
        **resources_of("evaluate"),
    retries: 2  # an evaluation resumes per batch from its cache
    shell:
        "{PY:q} -m fmcore.evaluate run --params {PARAMS_FILE:q}"
        " --dataset {wildcards.dataset:q} --method {wildcards.method:q} > {log:q} 2>&1"
