"""Experiment parameters: the only place that reads ``params/*.yaml``.

``load_params`` validates a params file against ``params.schema.yaml`` (JSON Schema in
YAML, the same file Snakemake's ``validate`` uses) and ``resolve_job`` merges the
sections that one (dataset, method) training job needs into one plain dict.
"""

from fmcore.config.params import (
    SCHEMA_PATH,
    ParamsError,
    deep_merge,
    jobs,
    load_params,
    resolve_job,
    uses_auto,
    validate_params,
)

__all__ = [
    "SCHEMA_PATH",
    "ParamsError",
    "deep_merge",
    "jobs",
    "load_params",
    "resolve_job",
    "uses_auto",
    "validate_params",
]
