"""Experiment parameters: the only place that reads ``params/*.yaml``.

``load_params`` validates a params file against ``params.schema.yaml`` (JSON Schema in
YAML, the same file Snakemake's ``validate`` uses) and ``resolve_job`` merges the
sections that one (dataset, method[, seed]) training run needs into one plain dict;
``runs`` lists the grid's training runs (jobs x seeds).
"""

from fmcore.config.params import (
    SCHEMA_PATH,
    ParamsError,
    deep_merge,
    jobs,
    load_params,
    parse_run,
    resolve_job,
    run_name,
    runs,
    seeds_of,
    stage_resources,
    uses_auto,
    validate_params,
)

__all__ = [
    "SCHEMA_PATH",
    "ParamsError",
    "deep_merge",
    "jobs",
    "load_params",
    "parse_run",
    "resolve_job",
    "run_name",
    "runs",
    "seeds_of",
    "stage_resources",
    "uses_auto",
    "validate_params",
]
