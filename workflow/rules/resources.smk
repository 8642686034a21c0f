# Scheduler resources of each job, read from the params file's `resources:` section and
# named for Snakemake and snakemake-executor-plugin-slurm 2.8.0 (docs/workflow.md, "SLURM").
import shlex

from fmcore.config import deep_merge
from fmcore.config import stage_resources as merge_stage


# Defaults for keys a params file leaves out of `resources:` (a light CPU job).
RESOURCE_DEFAULTS = {
    "nodes": 1, "gpus_per_node": 0, "cpus_per_task": 1, "mem_mb": 2000, "runtime": 60,
    "partition": "", "launcher": "", "signal_lead_s": 0,
}


def stage_resources(stage, wildcards):
    """params `resources:` of the dataset (+ job overrides, + the stage's overrides)."""
    base = PARAMS["resources"][wildcards.dataset]
    if "run" in wildcards.keys():
        base = run_job(wildcards)["resources"]
    res = merge_stage(deep_merge(RESOURCE_DEFAULTS, base), stage)
    res["tasks_per_node"] = res.get("tasks_per_node") or max(res["gpus_per_node"], 1)
    res["stage"] = stage
    return res


def launcher(res):
    """Command prefix that starts one process per task ('' for a single process).

    srun gets the task layout explicitly (the plugin's job step strips SLURM_NTASKS etc.
    from the environment) and labels every output line with its rank.
    """
    gpus = f" --gpus-per-node={res['gpus_per_node']}" if res["gpus_per_node"] else ""
    return {
        "": "",
        "srun": f"srun --kill-on-bad-exit=1 --label --nodes={res['nodes']}"
        f" --ntasks-per-node={res['tasks_per_node']} --cpus-per-task={res['cpus_per_task']}{gpus}",
        "torchrun": f"{shlex.quote(PY)} -m torch.distributed.run --standalone "
        f"--nproc_per_node={res['tasks_per_node']} --no-python",
    }[res["launcher"]]


def slurm_extra(res):
    """sbatch flags the plugin has no resource for: GPUs and tasks per node, the time-limit warning.

    The plugin's own `gpu` resource would ask for `--gpus=<total>` (not placeable as whole
    nodes); `--gpus-per-node` / `--ntasks-per-node` in `slurm_extra` pass its validation.
    """
    flags = [f"--ntasks-per-node={res['tasks_per_node']}"]
    if res["gpus_per_node"]:
        flags.append(f"--gpus-per-node={res['gpus_per_node']}")
    if res["stage"] == "train" and res["signal_lead_s"]:
        flags.append(f"--signal=USR1@{res['signal_lead_s']}")  # to job steps: the srun'd trainer
    return " ".join(flags)


# Snakemake / snakemake-executor-plugin-slurm resource name -> value from params.
SLURM_RESOURCES = {
    "nodes": lambda res: res["nodes"],
    "tasks": lambda res: res["nodes"] * res["tasks_per_node"],
    "cpus_per_task": lambda res: res["cpus_per_task"],
    "mem_mb": lambda res: res["mem_mb"],
    "runtime": lambda res: res["runtime"],
    "slurm_partition": lambda res: res["partition"],
    "slurm_extra": slurm_extra,
    # `mpi` present and empty: the plugin's job step then runs the rule's command as it is
    # (no `srun -n1` wrapper around our own srun) and submits with --ntasks.
    "mpi": lambda res: "",
    "launch": launcher,
}


def resources_of(stage):
    """`resources:` of a rule: every entry read from params at job creation."""
    return {
        name: (lambda wc, get=get: get(stage_resources(stage, wc)))
        for name, get in SLURM_RESOURCES.items()
    }


def threads_of(stage):
    return lambda wc: stage_resources(stage, wc)["cpus_per_task"]
