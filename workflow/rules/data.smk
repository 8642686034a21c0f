# Stage 1: prepared datasets (data/prepared/<dataset>/: {train,test}.npy, labels and
# manifest.json) and the reference statistics the evaluation compares samples against
# (results/<experiment>/<dataset>/reference/).


rule prepare:
    input:
        raw=raw_input,
    output:
        data=directory(f"{DATA_DIR}/{{dataset}}"),
    params:
        dataset=lambda wc: as_json(PARAMS["datasets"][wc.dataset]),
    log:
        f"{LOGS}/prepare/{{dataset}}.log",
    threads: threads_of("prepare")
    resources:
        **resources_of("prepare"),
    retries: 1
    shell:
        "{PY:q} -m fmcore.data prepare --params {PARAMS_FILE:q}"
        " --dataset {wildcards.dataset:q} > {log:q} 2>&1"


rule reference:
    input:
        data=rules.prepare.output.data,
        inception=inception_input,
    output:
        directory(f"{RESULTS}/{{dataset}}/reference"),
    params:
        evaluate=lambda wc: as_json(PARAMS["evaluate"][wc.dataset]),
    log:
        f"{LOGS}/reference/{{dataset}}.log",
    threads: threads_of("evaluate")
    resources:
        **resources_of("evaluate"),
    retries: 1
    shell:
        "{PY:q} -m fmcore.evaluate reference --params {PARAMS_FILE:q}"
        " --dataset {wildcards.dataset:q} > {log:q} 2>&1"
