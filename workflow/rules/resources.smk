# Scheduler resources of each job, read from the params file's `resources:` section and
# named for Snakemake and snakemake-executor-plugin-slurm (docs/workflow.md, "SLURM").
import shlex

from fmcore.config import deep_merge


# Defaults for keys a params file leaves out of `resources:` (a light CPU job).
RESOURCE_DEFAULTS = {
    "gpus": 0, "nodes": 1, "cpus_per_task": 1, "mem_mb": 2000, "runtime": 60,
    "partition": "", "launcher": "",
}


def stage_resources(stage, wildcards):
    """params `resources:` of the dataset (+ job overrides, + the stage's overrides)."""
    base = PARAMS["resources"][wildcards.dataset]
    if "method" in wildcards.keys():
        base = resolve_job(PARAMS, wildcards.dataset, wildcards.method)["resources"]
    res = deep_merge(RESOURCE_DEFAULTS, base)
    res = deep_merge(res, base.get(stage))
    return res


def launcher(res):
    """Command prefix that starts one process per GPU ('' for a single process).

    srun gets the task layout explicitly: the SLURM jobstep plugin strips SLURM_NTASKS etc.
    from the job's environment, and a bare srun would start one task per node.
    """
    return {
        "": "",
        "srun": f"srun --kill-on-bad-exit=1 --nodes={res['nodes']} --ntasks={res['gpus']}"
        f" --cpus-per-task={res['cpus_per_task']}",
        "torchrun": f"{shlex.quote(PY)} -m torch.distributed.run --standalone "
        f"--nproc_per_node={res['gpus']} --no-python",
    }[res["launcher"]]


# Snakemake / snakemake-executor-plugin-slurm resource name -> value from params.
SLURM_RESOURCES = {
    "gpu": lambda res: res["gpus"],
    "nodes": lambda res: res["nodes"],
    "cpus_per_task": lambda res: res["cpus_per_task"],
    "mem_mb": lambda res: res["mem_mb"],
    "runtime": lambda res: res["runtime"],
    "slurm_partition": lambda res: res["partition"],
    "tasks": lambda res: max(res["gpus"], 1),
    "tasks_per_gpu": lambda res: 1,
    "mpi": launcher,
}


def resources_of(stage):
    """`resources:` of a rule: every entry read from params at job creation."""
    return {
        name: (lambda wc, get=get: get(stage_resources(stage, wc)))
        for name, get in SLURM_RESOURCES.items()
    }


def threads_of(stage):
    return lambda wc: stage_resources(stage, wc)["cpus_per_task"]
