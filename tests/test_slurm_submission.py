"""The sbatch / srun lines the SLURM plugin builds from the paper grid's resources.

No scheduler needed: the resources come from a real dry run of params/paper.yaml and are
fed to snakemake-executor-plugin-slurm's own command builder and slurm_extra validator.
docs/workflow.md shows these lines; a test keeps the page equal to what the plugin builds.
"""

from __future__ import annotations

import re

import pytest
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string
from snakemake_executor_plugin_slurm.validation import validate_slurm_extra
from workflow_util import PAPER_PARAMS, ROOT, dry_run_jobs, placeholder_raw_inputs, snakemake

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


class _Settings:
    requeue, no_requeue, qos, reservation = True, False, None, None  # profiles/slurm: slurm-requeue


@pytest.fixture(scope="module")
def paper_jobs(tmp_path_factory):
    work = tmp_path_factory.mktemp("paper")
    placeholder_raw_inputs(load_params(PAPER_PARAMS), work)
    out = snakemake("-n", "-d", str(work), "--configfile", str(PAPER_PARAMS))
    assert out.returncode == 0, out.stdout + out.stderr
    return dry_run_jobs(out.stdout + out.stderr)


def sbatch_line(job: _Job) -> str:
    """What the plugin submits (account, log path and workdir as placeholders)."""
    validate_slurm_extra(job)  # the plugin refuses --gres/--gpus/... in slurm_extra
    params = {"run_uuid": "<uuid>", "slurm_logfile": "logs/slurm/<rule>/<wildcards>/%j.log",
              "comment_str": "<rule>", "account": "-A <account>",
              "partition": f"-p {job.resources['slurm_partition']}" if job.resources["slurm_partition"] else "",
              "workdir": "<repo>"}
    line = get_submit_command(job, params, settings=_Settings()) + set_gres_string(job)
    return " ".join(line.split())


def _job(paper_jobs, rule: str, dataset: str) -> _Job:
    res = next(j for j in paper_jobs if j["rule"] == rule and j["wildcards"]["dataset"] == dataset)
    return _Job(_typed(res["resources"]))


def test_imagenet64_training_asks_for_whole_nodes_gpus_and_tasks_per_node(paper_jobs):
    job = _job(paper_jobs, "train", "imagenet64")
    call = sbatch_line(job).split()
    for flag in ("--nodes=2", "--ntasks=16", "--ntasks-per-node=8", "--gpus-per-node=8", "--cpus-per-task=8",
                 "--signal=USR1@900", "--requeue"):
        assert flag in call, (flag, call)
    assert not any(a.startswith(("--gpus=", "--gres", "--ntasks-per-gpu")) for a in call), call
    assert call[call.index("--mem") + 1] == "256000" and call[call.index("-t") + 1] == "2880"
    # the job step runs the rule's command as it is ("mpi" present), which starts the ranks:
    assert job.resources["launch"].split() == [
        "srun", "--kill-on-bad-exit=1", "--label", "--nodes=2", "--ntasks-per-node=8", "--cpus-per-task=8",
        "--gpus-per-node=8"]


def test_evaluation_and_cpu_jobs_are_single_task_without_warning_signal(paper_jobs):
    job = _job(paper_jobs, "evaluate", "cifar10")
    call = sbatch_line(job).split()
    assert "--gpus-per-node=1" in call and "--ntasks=1" in call and "--nodes=1" in call
    assert not any(a.startswith("--signal") for a in call) and job.resources["launch"] == ""
    job = _job(paper_jobs, "prepare", "imagenet64")
    call = sbatch_line(job).split()
    assert "--ntasks=1" in call and not any("gpu" in a for a in call)
    assert f"--cpus-per-task={job.resources['cpus_per_task']}" in call


def test_docs_show_the_sbatch_lines_the_plugin_builds(paper_jobs):
    """docs/workflow.md's table of the paper grid's sbatch lines is generated from the plugin."""
    text = (ROOT / "docs/workflow.md").read_text()
    block = re.search(r"<!-- sbatch-lines -->\n```\n(.*?)```", text, re.DOTALL)
    assert block, "docs/workflow.md lacks the <!-- sbatch-lines --> block"
    want = []
    for rule in ("train", "evaluate", "prepare"):
        for dataset in ("cifar10", "imagenet32", "imagenet64", "imagenet128"):
            want.append(f"# {rule} {dataset}")
            want.append(sbatch_line(_job(paper_jobs, rule, dataset)))
            launch = _job(paper_jobs, rule, dataset).resources.get("launch")
            if launch:
                want.append(f"#   then: {launch} python -m fmcore.train ...")
    assert block.group(1).strip().splitlines() == want, "\n" + "\n".join(want)
