"""The cost planner: device profiles (``profile``) and grid estimates (``costs``); CLI ``python -m fmcore.plan``."""

from fmcore.plan.costs import JobPlan, PlanError, plan_job
from fmcore.plan.profile import calibrate, device_name, load_profile, model_key

__all__ = ["JobPlan", "PlanError", "calibrate", "device_name", "load_profile", "model_key", "plan_job"]
