# Before the campaign: `snakemake canary` runs `python -m fmcore.canary` once per dataset
# (all of its jobs, synthetic data: no download needed) as one short single-GPU job, with the
# dataset's evaluation resources cut to 1 node, 1 task, at most 1 GPU and 30 minutes. The
# table is the log; the JSON the output. Not part of `all` (docs/cluster.md, "Canary").


def canary_resources(wildcards):
    """The evaluation resources of the dataset, as one short single-GPU, single-task job."""
    res = stage_resources("evaluate", wildcards)
    res.update(nodes=1, tasks_per_node=1, launcher="", signal_lead_s=0)
    res.update(gpus_per_node=min(res["gpus_per_node"], 1), runtime=min(res["runtime"], 30))
    return res


rule canary_dataset:
    output:
        f"{RESULTS}/canary/{{dataset}}.json",
    log:
        f"{LOGS}/canary/{{dataset}}.log",
    threads: threads_of("evaluate")
    resources:
        **{n: (lambda wc, g=g: g(canary_resources(wc))) for n, g in SLURM_RESOURCES.items()},
    shell:
        "{PY:q} -m fmcore.canary --params {PARAMS_FILE:q} --jobs {wildcards.dataset:q} --synthetic"
        " --out {output:q} > {log:q} 2>&1"


rule canary:
    input:
        expand(rules.canary_dataset.output[0], dataset=list(dict.fromkeys(j["dataset"] for j in GRID))),
