"""Load, validate and resolve experiment parameters (see docs/CONTRACTS.md)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).with_name("params.schema.yaml")


class ParamsError(ValueError):
    """A params file is unreadable or does not match the schema (one-line message)."""


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
    if not isinstance(params, dict):
        raise ParamsError(f"{source}: expected a mapping at the top level, got {type(params).__name__}")
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        raise ParamsError(f"{source}: {_key_path(e)}: {e.message}")
    for key, job in params["jobs"].items():
        for section, name in (("datasets", job["dataset"]), ("methods", job["method"])):
            if name not in params[section]:
                raise ParamsError(
                    f"{source}: jobs.{key}: {section[:-1]} {name!r} is not defined under "
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
    _check_resources(params, source)
    return params


def _check_resources(params: dict, source: str) -> None:
    """Cross-key checks of ``resources`` the schema cannot express (per dataset and job override)."""
    sections = [(f"resources.{d}", r) for d, r in params["resources"].items()]
    sections += [(f"jobs.{k}.resources", j["resources"]) for k, j in params["jobs"].items() if "resources" in j]
    for where, res in sections:
        for stage, r in [("", res)] + [(f".{s}", {**res, **res[s]}) for s in ("prepare", "evaluate") if s in res]:
            tasks = int(r.get("nodes", 1)) * int(r.get("tasks_per_node", max(int(r.get("gpus_per_node", 0)), 1)))
            if tasks > 1 and not r.get("launcher"):
                raise ParamsError(f"{source}: {where}{stage}: {tasks} tasks (nodes x tasks_per_node) need "
                                  "launcher: srun (or torchrun on one node); '' starts one process")
            if r.get("launcher") == "torchrun" and int(r.get("nodes", 1)) > 1:
                raise ParamsError(f"{source}: {where}{stage}.launcher: torchrun --standalone runs on one node; "
                                  "use srun for nodes > 1")
        lead, runtime = int(res.get("signal_lead_s", 0)), int(res.get("runtime", 60))
        if lead and res.get("launcher") != "srun":
            raise ParamsError(f"{source}: {where}.signal_lead_s={lead}: needs launcher: srun (SLURM sends the "
                              "warning signal to job steps, and srun makes the trainer one)")
        if lead and lead >= runtime * 60:
            raise ParamsError(f"{source}: {where}.signal_lead_s={lead}: expected less than runtime "
                              f"({runtime} min = {runtime * 60} s)")


def load_params(path: str | Path) -> dict:
    """Read and validate one params YAML file.

    Raises:
        ParamsError: the file is missing, is not YAML, or does not match the schema.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ParamsError(f"{path}: cannot read params file ({exc.strerror})") from None
    try:
        params = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ParamsError(f"{path}: not valid YAML{where}") from None
    return validate_params(params, source=str(path))


def deep_merge(base: dict, override: dict | None) -> dict:
    """Return a copy of ``base`` with ``override`` merged in, recursively for dicts."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def jobs(params: dict) -> list[tuple[str, str]]:
    """The (dataset, method) pairs of the experiment's grid, in file order."""
    return [(job["dataset"], job["method"]) for job in params["jobs"].values()]


def resolve_job(params: dict, dataset: str, method: str) -> dict:
    """Merge everything one training job needs into one plain dict (docs/CONTRACTS.md).

    Raises:
        ParamsError: the (dataset, method) pair is not in ``params['jobs']``.
    """
    key = f"{dataset}-{method}"
    if key not in params["jobs"]:
        known = ", ".join(params["jobs"])
        raise ParamsError(f"jobs: no job {key!r} in experiment {params['experiment']!r} (known: {known})")
    job = params["jobs"][key]
    run_dir = Path(params["results_dir"]) / params["experiment"] / dataset / method
    return {
        "experiment": params["experiment"],
        "dataset": dataset,
        "method": method,
        "data": copy.deepcopy(params["datasets"][dataset]),
        "path": deep_merge(params["methods"][method], job.get("path")),
        "model": copy.deepcopy(params["models"][dataset]),
        "train": deep_merge(params["train"][dataset], job.get("train")),
        "evaluate": deep_merge(params["evaluate"][dataset], job.get("evaluate")),
        "resources": deep_merge(params["resources"][dataset], job.get("resources")),
        "paths": {
            "data_dir": str(Path(params["data_dir"]) / dataset),
            "run_dir": str(run_dir),
        },
    }
