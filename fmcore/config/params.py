"""Load, validate and resolve experiment parameters (see docs/CONTRACTS.md)."""

from __future__ import annotations

import copy
import functools
import os
import posixpath
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from fmcore.config.safe_yaml import ParamsError, check_tree, load_yaml_file

SCHEMA_PATH = Path(__file__).with_name("params.schema.yaml")
# Directories the pipeline writes besides data_dir and results_dir (workflow/rules/common.smk,
# fmcore.report, MLflow's default artifact root beside sqlite:///mlflow.db) and the checkout's own.
WRITTEN_DIRS = ("reports", "logs", "mlartifacts")
PROTECTED_DIRS = (".git", ".dvc", "fmcore", "params", "workflow", "profiles", "tests", "docs", "scripts")
# A job override section -> the schema definition the merged section must satisfy.
JOB_SECTIONS = {"path": ("methods", "method"), "train": ("train", "train"),
                "evaluate": ("evaluate", "evaluate"), "resources": ("resources", "resources")}


@functools.lru_cache(maxsize=1)
def _schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def validate_params(params: Any, source: str = "<params>") -> dict:
    """Validate ``params`` against the schema and the cross-references between sections.

    Raises:
        ParamsError: naming ``source``, the key path, the bad value and what was expected.
    """
    if params is None:
        raise ParamsError(f"{source}: empty, expected a mapping of experiment parameters")
    if not isinstance(params, dict):
        raise ParamsError(f"{source}: expected a mapping at the top level, got {type(params).__name__}")
    check_tree(params, source)
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        raise ParamsError(f"{source}: {_key_path(e)}: {e.message}")
    for key, job in params["jobs"].items():
        for section, name in (("datasets", job["dataset"]), ("methods", job["method"])):
            if name not in params[section]:
                raise ParamsError(
                    f"{source}: jobs.{key}.{section[:-1]}={name!r}: not defined under "
                    f"'{section}' (known: {', '.join(sorted(params[section]))})"
                )
        for section in ("models", "train", "evaluate", "resources"):
            if job["dataset"] not in params[section]:
                raise ParamsError(
                    f"{source}: jobs.{key}: dataset {job['dataset']!r} has no entry under '{section}'"
                )
        expected = f"{job['dataset']}-{job['method']}"
        if key != expected:
            raise ParamsError(f"{source}: jobs.{key}: key must be '<dataset>-<method>' = {expected!r}")
        _check_job_overrides(params, key, job, source)
    _check_resources(params, source)
    _check_auto(params, source)
    _check_directories(params, source)
    return params


def _check_job_overrides(params: dict, key: str, job: dict, source: str) -> None:
    """A job's ``path``/``train``/``evaluate``/``resources`` merged over its base sections must be as
    valid as the base sections themselves (``steps: 0`` in an override is as wrong as in ``train``)."""
    for section, (base, definition) in JOB_SECTIONS.items():
        if section not in job:
            continue
        name = job["method"] if base == "methods" else job["dataset"]
        merged = deep_merge(params[base][name], job[section])
        schema = {"$defs": _schema()["$defs"], "$ref": f"#/$defs/{definition}"}
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(merged),
                        key=lambda e: list(e.absolute_path))
        if errors:
            e = errors[0]
            where = ".".join(str(p) for p in e.absolute_path)
            raise ParamsError(f"{source}: jobs.{key}.{section}{'.' + where if where else ''}: {e.message}")


def _inside(a: str, b: str) -> bool:
    return a == b or a.startswith(b.rstrip("/") + "/") or b == "/"


def _check_directories(params: dict, source: str) -> None:
    """Refuse output directories that overlap: ``prepare --force`` empties ``data_dir/<ds>``, and a
    results dir inside it (or the reverse, or either around reports/, logs/, the MLflow artifact
    root or the checkout's own folders) would lose finished work."""
    cwd = os.getcwd()

    def norm(p: str) -> str:
        return posixpath.normpath(posixpath.join(cwd, p))

    owned = {"data_dir": norm(params["data_dir"]), "results_dir": norm(params["results_dir"])}
    others = {d: norm(d) for d in WRITTEN_DIRS}
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri.startswith("sqlite:///"):  # MLflow's artifact root of a SQLite store: mlartifacts/ beside it
        others["MLflow artifact root"] = posixpath.join(posixpath.dirname(norm(uri[len("sqlite:///"):])),
                                                        "mlartifacts")
    elif uri.startswith("file:"):
        others["MLflow file store"] = norm(uri[len("file://"):] if uri.startswith("file://") else uri[5:])
    others.update({d: norm(d) for d in PROTECTED_DIRS})
    a, b = owned["data_dir"], owned["results_dir"]
    if _inside(a, b) or _inside(b, a):
        raise ParamsError(f"{source}: data_dir={params['data_dir']!r} and results_dir="
                          f"{params['results_dir']!r} overlap; expected two separate directories "
                          "(prepare --force empties data_dir/<dataset>)")
    for key, mine in owned.items():
        if mine == cwd:
            raise ParamsError(f"{source}: {key}={params[key]!r} is the working directory itself; expected a "
                              "subdirectory such as 'data' or 'results'")
        for name, other in others.items():
            if _inside(mine, other) or _inside(other, mine):
                raise ParamsError(f"{source}: {key}={params[key]!r} overlaps {name} ({other}); expected a "
                                  "directory of its own")


def uses_auto(params: dict) -> bool:
    """Whether any ``runtime`` (of any stage) or ``evaluate.shards`` of ``params`` is ``auto``."""
    sections = list(params["resources"].values()) + [j.get("resources") or {} for j in params["jobs"].values()]
    runtimes = [s.get("runtime") for r in sections for s in (r, r.get("prepare") or {}, r.get("evaluate") or {})]
    evals = list(params["evaluate"].values()) + [j.get("evaluate") or {} for j in params["jobs"].values()]
    return "auto" in runtimes or any(e.get("shards") == "auto" for e in evals)


def _check_auto(params: dict, source: str) -> None:
    """``runtime: auto`` / ``shards: auto`` need a device profile to plan from (fmcore/plan/auto.py)."""
    if uses_auto(params) and "profile" not in (params.get("plan") or {}):
        raise ParamsError(f"{source}: runtime/shards 'auto' needs plan.profile: the device profile of the GPU "
                          "the jobs run on (`python -m fmcore.plan calibrate --params <params>` writes it)")


def _check_resources(params: dict, source: str) -> None:
    """Cross-key checks of ``resources`` the schema cannot express (per dataset and job override)."""
    sections = [(f"resources.{d}", r) for d, r in params["resources"].items()]
    sections += [(f"jobs.{k}.resources", deep_merge(params["resources"].get(j["dataset"], {}), j["resources"]))
                 for k, j in params["jobs"].items() if "resources" in j]
    for where, res in sections:
        for stage, r in [("", res)] + [(f".{s}", stage_resources(res, s)) for s in ("prepare", "evaluate") if s in res]:
            if r.get("runtime") == "auto" and "max_runtime" not in r:
                raise ParamsError(f"{source}: {where}{stage}.runtime: auto needs max_runtime (the site's limit in "
                                  "minutes) beside it")
            tasks = int(r.get("nodes", 1)) * int(r.get("tasks_per_node", max(int(r.get("gpus_per_node", 0)), 1)))
            if tasks > 1 and not r.get("launcher"):
                raise ParamsError(f"{source}: {where}{stage}: {tasks} tasks (nodes x tasks_per_node) need "
                                  "launcher: srun (or torchrun on one node); '' starts one process")
            if r.get("launcher") == "torchrun" and int(r.get("nodes", 1)) > 1:
                raise ParamsError(f"{source}: {where}{stage}.launcher: torchrun --standalone runs on one node; "
                                  "use srun for nodes > 1")
        runtime = res.get("runtime", 60)
        lead, runtime = int(res.get("signal_lead_s", 0)), int(res["max_runtime"] if runtime == "auto" else runtime)
        if lead and res.get("launcher") != "srun":
            raise ParamsError(f"{source}: {where}.signal_lead_s={lead}: needs launcher: srun (SLURM sends the "
                              "warning signal to job steps, and srun makes the trainer one)")
        if lead and lead >= runtime * 60:
            raise ParamsError(f"{source}: {where}.signal_lead_s={lead}: expected less than runtime "
                              f"({runtime} min = {runtime * 60} s)")


def load_params(path: str | Path) -> dict:
    """Read and validate one params YAML file.

    Raises:
        ParamsError: the file is missing, is not YAML (``fmcore.config.safe_yaml``: any bytes give
            a value tree or this error), or does not match the schema.
    """
    return validate_params(load_yaml_file(path), source=str(path))


def deep_merge(base: dict, override: dict | None) -> dict:
    """Return a copy of ``base`` with ``override`` merged in, recursively for dicts."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def stage_resources(res: dict, stage: str) -> dict:
    """The resources one stage runs with: a ``resources`` section overridden by its ``prepare`` or
    ``evaluate`` part (``stage`` = ``"train"`` or any stage without a part: the section itself)."""
    return deep_merge(res, res.get(stage) if isinstance(res.get(stage), dict) else None)


def jobs(params: dict) -> list[tuple[str, str]]:
    """The (dataset, method) pairs of the experiment's grid, in file order."""
    return [(job["dataset"], job["method"]) for job in params["jobs"].values()]


def _job(params: dict, dataset: str, method: str) -> dict:
    key = f"{dataset}-{method}"
    if key not in params["jobs"]:
        known = ", ".join(params["jobs"])
        raise ParamsError(f"jobs: no job {key!r} in experiment {params['experiment']!r} (known: {known})")
    return params["jobs"][key]


def seeds_of(params: dict, dataset: str, method: str) -> list[int]:
    """Training seeds of one job: ``jobs.<key>.seeds``, else the experiment's ``seeds``, else
    ``[train.<dataset>.seed]`` (with the job's train override): one run per seed.

    Raises:
        ParamsError: the (dataset, method) pair is not in ``params['jobs']``.
    """
    job = _job(params, dataset, method)
    if "seeds" in job:
        return list(job["seeds"])
    if "seeds" in params:
        return list(params["seeds"])
    return [int(deep_merge(params["train"][dataset], job.get("train"))["seed"])]


def run_name(method: str, seed: int, seeded: bool) -> str:
    """The run's name below ``<results_dir>/<experiment>/<dataset>/``, in MLflow run names and logs:
    ``<method>`` for a job with one seed (the layout without seeds), else ``<method>/seed<seed>``."""
    return f"{method}/seed{seed}" if seeded else method


def runs(params: dict) -> list[tuple[str, str, int, str]]:
    """Every training run of the grid: (dataset, method, seed, run name), jobs in file order, then seeds."""
    out = []
    for dataset, method in jobs(params):
        seeds = seeds_of(params, dataset, method)
        out += [(dataset, method, s, run_name(method, s, len(seeds) > 1)) for s in seeds]
    return out


def parse_run(params: dict, dataset: str, run: str) -> tuple[str, int | None]:
    """Invert ``run_name``: ``fm_ot`` -> (fm_ot, None), ``fm_ot/seed2`` -> (fm_ot, 2).

    Raises:
        ParamsError: no such run in the grid.
    """
    for d, method, seed, name in runs(params):
        if d == dataset and name == run:
            return method, (seed if "/" in name else None)
    raise ParamsError(f"jobs: no run {dataset}/{run} in experiment {params['experiment']!r}")


def resolve_job(params: dict, dataset: str, method: str, seed: int | None = None) -> dict:
    """Merge everything one training run needs into one plain dict (docs/CONTRACTS.md).

    ``seed`` picks one of the job's seeds (``seeds_of``); it sets ``train.seed`` and, when the
    job has several seeds, the run directory ``.../<method>/seed<seed>``. It may be omitted
    for a job with one seed (then the layout and every value are those of a grid without seeds).

    Raises:
        ParamsError: the (dataset, method) pair is not in ``params['jobs']``; ``seed`` is not
            one of the job's seeds, or is missing for a job with several.
    """
    key = f"{dataset}-{method}"
    job = _job(params, dataset, method)
    seeds = seeds_of(params, dataset, method)
    if seed is None and len(seeds) > 1:
        raise ParamsError(f"jobs.{key}: seeds {seeds}: name one (--seed)")
    if seed is not None and seed not in seeds:
        raise ParamsError(f"jobs.{key}: seed {seed} is not one of its seeds {seeds}")
    seed = seeds[0] if seed is None else seed
    name = run_name(method, seed, len(seeds) > 1)
    run_dir = Path(params["results_dir"]) / params["experiment"] / dataset / name
    return {
        "experiment": params["experiment"],
        "dataset": dataset,
        "method": method,
        "seed": seed,
        "run": name,
        "data": copy.deepcopy(params["datasets"][dataset]),
        "path": deep_merge(params["methods"][method], job.get("path")),
        "model": copy.deepcopy(params["models"][dataset]),
        "train": {**deep_merge(params["train"][dataset], job.get("train")), "seed": seed},
        "evaluate": deep_merge(params["evaluate"][dataset], job.get("evaluate")),
        "resources": deep_merge(params["resources"][dataset], job.get("resources")),
        "paths": {
            "data_dir": str(Path(params["data_dir"]) / dataset),
            "run_dir": str(run_dir),
        },
    }
