"""DVC's list of the grid's training runs (jobs x seeds), which dvc.yaml's templating cannot compute.

``dvc.yaml``'s ``train`` and ``evaluate`` stages iterate (``foreach: ${runs}``) over the
``runs:`` of a generated file next to the params file, ``params/dvc/<name>.runs.yaml``
(``python -m fmcore.config dvc-runs --params params/<name>.yaml``): one entry per training
run of :func:`fmcore.config.runs`. A job with one seed is keyed by its job key with an empty
``seed_arg``: the stage names (``train@digits-fm_ot``), paths and commands of a grid without
seeds. A job with several seeds gives ``<job>-seed<k>`` entries whose ``run`` is
``<method>/seed<k>`` and whose ``seed_arg`` is `` --seed <k>``, so the stage names, run
directories and commands carry the seed as Snakemake's ``{run}`` wildcard does.

The file is derived, never edited: :func:`check_runs_file` (run first by DVC's ``report``
stage, which depends on the whole params file) refuses one that no longer matches its params.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from fmcore.config.params import ParamsError, runs

__all__ = ["check_runs_file", "dvc_runs", "render_runs_file", "runs_file"]


def runs_file(params_path: str | Path) -> Path:
    """``params/<name>.yaml`` -> ``params/dvc/<name>.runs.yaml``."""
    params_path = Path(params_path)
    return params_path.parent / "dvc" / f"{params_path.stem}.runs.yaml"


def dvc_runs(params: dict) -> dict[str, dict[str, str]]:
    """``{stage key: {job, dataset, method, run, seed_arg}}`` for every training run, in grid order."""
    out: dict[str, dict[str, str]] = {}
    for dataset, method, seed, run in runs(params):
        job = f"{dataset}-{method}"
        seeded = "/" in run  # run_name: "<method>/seed<k>" exactly when the job has several seeds
        out[f"{job}-seed{seed}" if seeded else job] = {
            "job": job, "dataset": dataset, "method": method, "run": run,
            "seed_arg": f" --seed {seed}" if seeded else ""}
    return out


def render_runs_file(params: dict, params_path: str | Path) -> str:
    """The text of :func:`runs_file`: a header naming its source and command, then ``runs:``."""
    source = Path(params_path).as_posix()
    header = (f"# Generated from {source} by `python -m fmcore.config dvc-runs --params {source}`;\n"
              "# do not edit. dvc.yaml's train/evaluate stages iterate over these runs (jobs x seeds,\n"
              "# fmcore/config/dvc_runs.py). Regenerate after changing `jobs:` or `seeds:`.\n")
    return header + yaml.safe_dump({"runs": dvc_runs(params)}, sort_keys=False, width=200)


def check_runs_file(params: dict, params_path: str | Path) -> Path:
    """Return the runs file of ``params_path`` if it lists exactly the runs of ``params``.

    Raises:
        ParamsError: the file is missing, unreadable or stale (one line naming it, the first
            difference and the command that regenerates it).
    """
    path = runs_file(params_path)
    fix = f"run `python -m fmcore.config dvc-runs --params {Path(params_path).as_posix()}`"
    try:
        found = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("runs")
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError) as exc:
        raise ParamsError(f"{path}: unreadable DVC runs file ({type(exc).__name__}); {fix}") from None
    want = dvc_runs(params)
    if found != want:
        found = found if isinstance(found, dict) else {}
        missing = [k for k in want if k not in found]
        extra = [k for k in found if k not in want]
        what = (f"missing run {missing[0]!r}" if missing else f"run {extra[0]!r} is no longer in the grid"
                if extra else f"run {next(k for k in want if found[k] != want[k])!r} differs")
        raise ParamsError(f"{path}: stale for {Path(params_path).as_posix()} ({what}); {fix}")
    return path
