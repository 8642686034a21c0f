"""The paper's claims checked against an experiment's runs: a verdict per claim and dataset.

Claims live in ``claims.yaml`` (validated by ``claims.schema.yaml``). Every rule compares a
metric where lower is better: ``method`` against each method of ``better_than``. Per seed s,

.. math::

    d_s = m_{\\text{method}}(s) - m_{\\text{other}}(s), \\qquad
    \\text{claim holds} \\iff \\bar d < \\tau, \\quad \\tau = \\text{margin} + \\text{margin\\_rel}\\,|\\bar m_{\\text{other}}|

The interval is the ``confidence`` t-interval of the mean difference: paired,
:math:`\\bar d \\pm t_{n-1} s_d/\\sqrt n`, when both methods ran the same seeds; Welch's
:math:`\\bar a - \\bar b \\pm t_\\nu \\sqrt{s_a^2/n_a + s_b^2/n_b}` otherwise. Verdict, with at
least ``min_seeds`` seeds: ``reproduced`` if ``hi < tau``, ``not reproduced`` if ``lo > tau``,
else ``inconclusive`` (firm: the data sufficed to say the difference is not resolved). With
fewer seeds the ``fallback`` decides: ``inconclusive``, or ``point`` (the sign of
:math:`\\bar d - \\tau` decides; the verdict is marked not firm). The point comparison is
always reported in ``point`` (``holds``/``fails``).

Metrics (``ClaimInputs``): the Table 1 scalars ``nll`` (bits/dim, else nats), ``quality``,
``nfe``, and ``straightness`` per run; ``sweep_error``/``sweep_quality`` at one NFE of one
fixed-step solver (``at_nfe: lowest`` = the lowest budget every run of both methods has);
``steps_to_quality``: per seed, the first ``during_training`` step at which each method's
quality reaches q* = the worse of the two methods' best qualities (both reach it).
"""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import jsonschema
import yaml
from scipy import stats

from fmcore.config.safe_yaml import load_yaml_file

if TYPE_CHECKING:
    from fmcore.report.claims_inputs import ClaimInputs

__all__ = ["CLAIMS_PATH", "VERDICTS", "Claim", "ClaimsError", "Comparison", "combine", "compare",
           "evaluate_claims", "load_claims"]

CLAIMS_PATH = Path(__file__).with_name("claims.yaml")
SCHEMA_PATH = Path(__file__).with_name("claims.schema.yaml")
VERDICTS = ("reproduced", "not reproduced", "inconclusive")
SCALARS = ("nll", "quality", "nfe", "straightness")
_DEFAULTS = {"confidence": 0.95, "min_seeds": 3, "fallback": "inconclusive"}


class ClaimsError(ValueError):
    """claims.yaml is unreadable or invalid (one line naming the file, key and value)."""


@dataclass(frozen=True)
class Claim:
    """One claim of the paper and its rule (claims.yaml keys; settings already merged)."""

    id: str
    source: str
    statement: str
    metric: str
    method: str
    better_than: tuple[str, ...]
    datasets: tuple[str, ...] | None = None
    margin: float = 0.0
    margin_rel: float = 0.0
    solver: str | None = None
    at_nfe: int | str | None = None
    confidence: float = 0.95
    min_seeds: int = 3
    fallback: str = "inconclusive"


@dataclass(frozen=True)
class Comparison:
    """One (claim, dataset, other method) comparison; ``a``/``b`` map seed -> value."""

    claim: str
    dataset: str
    method: str
    other: str
    metric: str
    a: dict[int, float]
    b: dict[int, float]
    paired: bool
    n: int
    diff: float
    lo: float
    hi: float
    threshold: float
    verdict: str
    firm: bool
    point: str
    basis: str


@functools.lru_cache(maxsize=1)
def _schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))


def load_claims(path: str | Path = CLAIMS_PATH) -> list[Claim]:
    """Read and validate a claims file.

    Raises:
        ClaimsError: unreadable YAML, a schema violation or a duplicated id, in one line
            naming the file, the key path and the bad value.
    """
    try:
        doc = load_yaml_file(path)
    except ValueError as exc:  # ParamsError: the safe reader's one-line message
        raise ClaimsError(str(exc)) from None
    errors = sorted(jsonschema.Draft202012Validator(_schema()).iter_errors(doc),
                    key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = ".".join(str(p) for p in e.absolute_path) or "<top level>"
        raise ClaimsError(f"{path}: {where}: {e.message}")
    settings = {**_DEFAULTS, **doc.get("defaults", {})}
    out, seen = [], set()
    for i, item in enumerate(doc["claims"]):
        if item["id"] in seen:
            raise ClaimsError(f"{path}: claims.{i}.id: {item['id']!r} is used twice")
        seen.add(item["id"])
        rule = dict(item["rule"])
        if rule["method"] in rule["better_than"]:
            raise ClaimsError(f"{path}: claims.{i}.rule.better_than: lists the claim's own method "
                              f"{rule['method']!r}")
        rule["better_than"] = tuple(rule["better_than"])
        datasets = tuple(item["datasets"]) if "datasets" in item else None
        out.append(Claim(id=item["id"], source=item["source"], statement=item["statement"], datasets=datasets,
                         **rule, **{**settings, **item.get("settings", {})}))
    return out


def _finite(values: dict[int, float]) -> dict[int, float]:
    return {int(s): float(v) for s, v in values.items() if v is not None and math.isfinite(float(v))}


def _interval(a: dict[int, float], b: dict[int, float], confidence: float) -> tuple[bool, int, float, float, float]:
    """(paired, n, mean difference, lo, hi); lo = hi = NaN when no interval exists (n < 2)."""
    paired = set(a) == set(b)
    q = (1 + confidence) / 2
    if paired:
        d = [a[s] - b[s] for s in sorted(a)]
        n = len(d)
        mean = sum(d) / n if n else math.nan
        if n < 2:
            return True, n, mean, math.nan, math.nan
        half = stats.t.ppf(q, n - 1) * statistics.stdev(d) / math.sqrt(n)
        return True, n, mean, mean - half, mean + half
    na, nb = len(a), len(b)
    mean = sum(a.values()) / na - sum(b.values()) / nb if na and nb else math.nan
    if min(na, nb) < 2:
        return False, min(na, nb), mean, math.nan, math.nan
    va, vb = statistics.variance(a.values()) / na, statistics.variance(b.values()) / nb
    se = math.sqrt(va + vb)
    if se == 0:
        return False, min(na, nb), mean, mean, mean
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1)) if va and vb else (na - 1 if va else nb - 1)
    half = stats.t.ppf(q, df) * se
    return False, min(na, nb), mean, mean - half, mean + half


def _fmt(x: float) -> str:
    return "nan" if not math.isfinite(x) else format(x, ".4g")


def compare(claim: Claim, dataset: str, other: str, a: dict[int, float], b: dict[int, float]) -> Comparison:
    """Decide one comparison from per-seed values (module docstring: interval, threshold, verdict)."""
    a, b = _finite(a), _finite(b)
    base = {"claim": claim.id, "dataset": dataset, "method": claim.method, "other": other,
            "metric": claim.metric, "a": a, "b": b}
    if not a or not b:
        who = " and ".join(m for m, v in ((claim.method, a), (other, b)) if not v)
        return Comparison(**base, paired=False, n=0, diff=math.nan, lo=math.nan, hi=math.nan,
                          threshold=math.nan, verdict="inconclusive", firm=False, point="",
                          basis=f"no {claim.metric} value of {who} on {dataset}")
    threshold = claim.margin + claim.margin_rel * abs(sum(b.values()) / len(b))
    paired, n, diff, lo, hi = _interval(a, b, claim.confidence)
    point = "holds" if diff < threshold else "fails"
    kind = "paired" if paired else "Welch"
    seeds = ",".join(str(s) for s in sorted(set(a) | set(b)))
    if n >= claim.min_seeds and math.isfinite(lo):
        side = "<" if hi < threshold else ">" if lo > threshold else "straddles"
        verdict = {"<": "reproduced", ">": "not reproduced"}.get(side, "inconclusive")
        rel = f"{side} {_fmt(threshold)}" if side != "straddles" else f"contains {_fmt(threshold)}"
        basis = (f"{kind} {claim.confidence:.0%} t-interval over seeds {seeds}: d = {_fmt(diff)} "
                 f"in [{_fmt(lo)}, {_fmt(hi)}], {rel}")
        firm = True
    else:
        short = f"{n} seed{'s' if n != 1 else ''} (< {claim.min_seeds})"
        if claim.fallback == "point" and diff != threshold:
            verdict = "reproduced" if point == "holds" else "not reproduced"
            basis = f"{short}: point comparison d = {_fmt(diff)} {'<' if point == 'holds' else '>'} {_fmt(threshold)}"
        else:
            verdict = "inconclusive"
            basis = f"{short}: no firm verdict; point d = {_fmt(diff)} ({point} vs {_fmt(threshold)})"
        firm = False
    return Comparison(**base, paired=paired, n=n, diff=diff, lo=lo, hi=hi, threshold=threshold,
                      verdict=verdict, firm=firm, point=point, basis=basis)


def combine(comparisons: list[Comparison]) -> tuple[str, bool, str]:
    """(verdict, firm, basis) of one claim on one dataset: reproduced iff every comparison is,
    not reproduced iff any is, else inconclusive."""
    verdicts = [c.verdict for c in comparisons]
    firm = all(c.firm for c in comparisons)
    if verdicts and all(v == "reproduced" for v in verdicts):
        return "reproduced", firm, f"reproduced against {', '.join(c.other for c in comparisons)}"
    failed = [c for c in comparisons if c.verdict == "not reproduced"]
    if failed:
        return "not reproduced", all(c.firm for c in failed), \
            f"not reproduced against {', '.join(c.other for c in failed)}"
    open_ = [c.other for c in comparisons if c.verdict == "inconclusive"]
    return "inconclusive", firm, f"inconclusive against {', '.join(open_)}"


def evaluate_claims(claims: list[Claim], inputs: ClaimInputs) -> list[Comparison]:
    """Every comparison of every claim on every dataset of ``inputs`` (claim order, then dataset)."""
    out = []
    for claim in claims:
        for dataset in inputs.datasets:
            if claim.datasets is not None and dataset not in claim.datasets:
                continue
            for other in claim.better_than:
                a, b = inputs.values(claim, dataset, other)
                out.append(compare(claim, dataset, other, a, b))
    return out

