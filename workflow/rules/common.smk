# Parameters for the rules: read params/<experiment>.yaml once, validate it, and expose
# paths, wildcard constraints, per-job parameters and resources. Input functions here only
# read the params; all computing happens in `python -m fmcore.<cli>` (docs/workflow.md).
import json
import os
import re
import shlex
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from fmcore.config import ParamsError, load_params, parse_run, resolve_job, runs, uses_auto, validate_params
from fmcore.tracking.base import check_cluster_store, tracking_uri

# The Python running Snakemake (.venv/bin/python): every job uses the same environment.
# PY and PARAMS_FILE appear in the shell commands as globals on purpose (`snakemake --lint`
# suggests `params:`): as params, moving the checkout or the venv would re-run every job.
PY = sys.executable

# The params file: the one given with --configfile, else the Snakefile's `configfile:`.
# Snakemake would deep-merge the two (smoke jobs leaking into the paper grid), so `config`
# is replaced by exactly one file, and --config overrides are refused (the CLIs would not
# see them: they read the params file).
if len(workflow.overwrite_configfiles) > 1 or workflow.config_settings.config:
    raise WorkflowError(
        "fmrepro: give exactly one params file (--configfile params/<experiment>.yaml) and no "
        "--config overrides; edit the params file instead"
    )
PARAMS_FILE = str(workflow.configfiles[0])
try:
    PARAMS = load_params(PARAMS_FILE)
except ParamsError as err:
    raise WorkflowError(f"invalid parameters: {err}") from None
config.clear()
config.update(PARAMS)
validate(config, schema="../schemas/params.schema.yaml")  # same file as fmcore.config.SCHEMA_PATH
validate_params(config, source=PARAMS_FILE)
if uses_auto(PARAMS):  # `runtime: auto` / `shards: auto`: numbers from the cost planner
    from fmcore.plan.auto import resolve_auto

    try:
        PARAMS = resolve_auto(PARAMS, source=PARAMS_FILE)
    except ValueError as err:
        raise WorkflowError(f"fmrepro: {err}") from None

EXP = PARAMS["experiment"]
DATA_DIR = PARAMS["data_dir"]
RESULTS = f"{PARAMS['results_dir']}/{EXP}"
REPORTS = f"reports/{EXP}"
LOGS = f"logs/{EXP}"
# Every training run: (dataset, method, seed, run); run = "<method>", or "<method>/seed<k>"
# when the job has several seeds (fmcore.config.runs). Paths below use {run} for the run dir.
RUNS = runs(PARAMS)
GRID = list(PARAMS["jobs"].values())  # the jobs themselves (one per dataset x method)


wildcard_constraints:
    dataset="|".join(PARAMS["datasets"]),
    run="(" + "|".join(map(re.escape, PARAMS["methods"])) + r")(/seed\d+)?",


def as_json(value):
    """A canonical string of a params section (Snakemake's params trigger compares it)."""
    return json.dumps(value, sort_keys=True)


def raw_input(wildcards):
    """The user-supplied raw data of a dataset ([] for built-in data)."""
    raw = PARAMS["datasets"][wildcards.dataset].get("raw")
    return [raw] if raw else []


def inception_input(wildcards):
    """The Inception file of a dataset evaluated with `fid` ([] otherwise), as
    `fmcore.metrics.fid.resolve_inception_weights` finds it: a missing one fails at planning."""
    quality = PARAMS["evaluate"][wildcards.dataset]["quality"]
    if quality["metric"] != "fid":
        return []
    path = os.environ.get("FMREPRO_INCEPTION_WEIGHTS") or quality.get("inception_weights")
    return [path] if path else []


def run_job(wc):
    """The resolved config of the run named by the {dataset} and {run} wildcards."""
    method, seed = parse_run(PARAMS, wc.dataset, wc.run)
    return resolve_job(PARAMS, wc.dataset, method, seed=seed)


def run_args(wc):
    """`--method M` (+ `--seed K` when the job has several seeds) for the CLIs."""
    method, seed = parse_run(PARAMS, wc.dataset, wc.run)
    return f"--method {shlex.quote(method)}" + ("" if seed is None else f" --seed {seed}")


def job_section(*keys):
    """Input function: the named sections of one run's resolved config, as JSON (a `params:`
    entry, so a change re-runs the job), less `evaluate.shards`: any shard count gives the
    same results."""

    def section(wc):
        job = run_job(wc)
        job["evaluate"] = {k: v for k, v in job["evaluate"].items() if k != "shards"}
        return as_json({k: job[k] for k in keys})

    return section


onstart:
    # Many SLURM jobs must not share one SQLite file (docs/workflow.md, "Tracking server").
    try:
        check_cluster_store(tracking_uri(), workflow.executor_plugin.name)
    except ValueError as err:
        raise WorkflowError(f"fmrepro: {err}") from None
