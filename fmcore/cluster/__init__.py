"""Running on a cluster: the SLURM job a process runs in, requeueing it, one writer per run
directory, and logs kept per attempt (docs/workflow.md, "Campaign on SLURM").

This package sits beside ``fmcore.tracking``: it imports nothing else of fmcore, and the
training command (``fmcore.train``) is its only user.
"""

from fmcore.cluster.attempts import AttemptLog, attempt_name
from fmcore.cluster.runlock import LOCK_NAME, Holder, RunLock, RunLockHeld
from fmcore.cluster.session import Attempt, launch_group
from fmcore.cluster.slurm import SlurmJob, current_job, job_state, requeue, scontrol_show_job

__all__ = [
    "LOCK_NAME",
    "Attempt",
    "AttemptLog",
    "Holder",
    "RunLock",
    "RunLockHeld",
    "SlurmJob",
    "attempt_name",
    "current_job",
    "job_state",
    "launch_group",
    "requeue",
    "scontrol_show_job",
]
