"""The sbatch / srun lines the SLURM plugin builds from the paper grid's resources.

No scheduler needed: the resources come from a real dry run of params/paper.yaml and are
fed to snakemake-executor-plugin-slurm's own command builders.
"""

from __future__ import annotations

import pytest
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string
from snakemake_executor_plugin_slurm_jobstep import get_cpu_setting, get_node_setting
from workflow_util import PAPER_PARAMS, dry_run_jobs, placeholder_raw_inputs, snakemake

from fmcore.config import load_params


class _Resources(dict):
    """The part of Snakemake's job resources the plugin uses (``.get`` and attributes)."""

    def __getattr__(self, name):
        return self[name]


class _Job:
    def __init__(self, resources: dict):
        self.resources = _Resources(resources)
        self.threads = resources["cpus_per_task"]


def _typed(resources: dict[str, str]) -> dict:
    return {k: int(v) if v.isdigit() else v for k, v in resources.items()}


@pytest.fixture(scope="module")
def paper_jobs(tmp_path_factory):
    work = tmp_path_factory.mktemp("paper")
    placeholder_raw_inputs(load_params(PAPER_PARAMS), work)
    out = snakemake("-n", "-d", str(work), "--configfile", str(PAPER_PARAMS))
    assert out.returncode == 0, out.stdout + out.stderr
    return dry_run_jobs(out.stdout + out.stderr)


def _submit(job: _Job) -> str:
    params = {"run_uuid": "u", "slurm_logfile": "l/%j.log", "comment_str": "c", "account": "",
              "partition": f"-p {job.resources['slurm_partition']}", "workdir": "/w"}
    return get_submit_command(job, params) + set_gres_string(job)


def test_imagenet64_training_asks_for_16_gpus_on_2_nodes_one_task_each(paper_jobs):
    res = next(j for j in paper_jobs if j["rule"] == "train" and j["wildcards"]["dataset"] == "imagenet64")
    job = _Job(_typed(res["resources"]))
    call = _submit(job).split()
    for flag in ("--nodes=2", "--ntasks-per-gpu=1", "--ntasks=16", "--gpus=16", "--cpus-per-task=8", "gpu"):
        assert flag in call, (flag, call)
    assert call[call.index("--mem") + 1] == "256000" and call[call.index("-t") + 1] == "2880"
    # the job step runs the rule's command itself ("mpi" set), which starts the ranks:
    assert job.resources["mpi"].split() == [
        "srun", "--kill-on-bad-exit=1", "--nodes=2", "--ntasks=16", "--cpus-per-task=8"]


def test_evaluation_and_cpu_jobs_are_single_task(paper_jobs):
    ev = next(j for j in paper_jobs if j["rule"] == "evaluate" and j["wildcards"]["dataset"] == "cifar10")
    job = _Job(_typed(ev["resources"]))
    call = _submit(job).split()
    assert "--gpus=1" in call and "--ntasks-per-gpu=1" in call and "--ntasks=16" not in call
    assert job.resources["mpi"] == ""
    prep = next(j for j in paper_jobs if j["rule"] == "prepare")
    job = _Job(_typed(prep["resources"]))
    call = _submit(job).split()
    assert "--ntasks=1" in call and not any(a.startswith("--gpus") for a in call)
    assert get_cpu_setting(job, False) == f"--cpus-per-task={job.resources['cpus_per_task']}"
    assert get_node_setting(job) == "--nodes=1"
