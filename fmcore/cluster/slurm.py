"""Where a process runs under SLURM, and the two scheduler calls a training job makes.

A SLURM job keeps its id across requeues; ``Restarts=`` in ``scontrol show job`` (and
``SLURM_RESTART_COUNT`` in the batch environment) counts them, so the pair
``(job_id, restart_count)`` names one incarnation of a job. Snakemake's SLURM job step
strips most ``SLURM_*`` variables before running a rule, and ``srun`` sets them again for
its tasks, but not ``SLURM_RESTART_COUNT``: the count is read from ``scontrol`` when the
variable is missing.

- :func:`current_job` -- this process's job, incarnation, step and nodes (None outside SLURM);
- :func:`requeue` -- ``scontrol requeue <id>``: the job goes back to PENDING with the same
  id (the executor keeps waiting for it; no Snakemake retry is spent);
- :func:`job_state` -- ``squeue``'s state of a job, None when SLURM no longer lists it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["ACTIVE_STATES", "SlurmJob", "current_job", "job_state", "requeue", "scontrol_show_job"]

# squeue states in which a job's processes may still be running
ACTIVE_STATES = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT", "SUSPENDED",
                           "STOPPED", "RESIZING"})


@dataclass(frozen=True)
class SlurmJob:
    """One incarnation of a SLURM job, as seen from one of its processes."""

    job_id: str
    restart_count: int  # times the job was requeued before this incarnation started
    step_id: str  # "batch" for the batch script, "0", "1", ... for srun steps
    node_list: str  # compressed SLURM node list of the job (node[01-04])
    node_name: str  # the node this process runs on

    @property
    def incarnation(self) -> str:
        """``<job_id>.r<restart_count>``: unique per (job, requeue)."""
        return f"{self.job_id}.r{self.restart_count}"


def _run(cmd: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None


def scontrol_show_job(job_id: str) -> dict[str, str]:
    """``scontrol show job -o <id>`` as a dict of its ``Key=Value`` fields ({} if unavailable)."""
    out = _run(["scontrol", "show", "job", "-o", str(job_id)])
    if out is None or out.returncode != 0:
        return {}
    return dict(re.findall(r"(\w+)=(\S*)", out.stdout))


def current_job(env: Mapping[str, str] | None = None) -> SlurmJob | None:
    """This process's SLURM job, or None when it does not run inside one."""
    env = os.environ if env is None else env
    job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    if not job_id:
        return None
    fields: dict[str, str] = {}
    restarts = env.get("SLURM_RESTART_COUNT")
    if restarts is None or not env.get("SLURM_JOB_NODELIST"):
        fields = scontrol_show_job(job_id)
        restarts = restarts if restarts is not None else fields.get("Restarts", "0")
    try:
        restart_count = int(restarts)
    except ValueError:
        restart_count = 0
    return SlurmJob(job_id=str(job_id), restart_count=restart_count,
                    step_id=env.get("SLURM_STEP_ID", "batch"),
                    node_list=env.get("SLURM_JOB_NODELIST") or fields.get("NodeList", ""),
                    node_name=env.get("SLURMD_NODENAME", ""))


def requeue(job_id: str) -> tuple[bool, str]:
    """``scontrol requeue <job_id>``: (True, "") on success, else (False, why)."""
    out = _run(["scontrol", "requeue", str(job_id)], timeout=60.0)
    if out is None:
        return False, "scontrol not found or did not answer"
    if out.returncode != 0:
        said = (out.stderr or out.stdout).strip().splitlines()
        return False, said[-1] if said else f"scontrol exited {out.returncode}"
    return True, ""


def job_state(job_id: str) -> str | None:
    """``squeue``'s state of ``job_id`` (RUNNING, PENDING, ...); None when not listed or unknown.

    Raises:
        OSError: SLURM cannot be asked (no squeue, or it failed for another reason than an
            unknown job id): the caller cannot tell whether the job still runs.
    """
    out = _run(["squeue", "-h", "-j", str(job_id), "-o", "%T"])
    if out is None:
        raise OSError(f"cannot ask SLURM about job {job_id}: squeue not found or did not answer")
    if out.returncode != 0:
        if "Invalid job id" in out.stderr:
            return None
        raise OSError(f"squeue -j {job_id} failed: {out.stderr.strip()[:200]}")
    states = out.stdout.split()
    return states[0] if states else None
