"""Claims: schema errors, the statistical rule, and verdicts that flip when a number crosses its rule."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fmcore.report.claims import (
    CLAIMS_PATH,
    Claim,
    ClaimsError,
    combine,
    compare,
    evaluate_claims,
    load_claims,
)
from fmcore.report.claims_inputs import CURVE_COLUMNS, RESULT_COLUMNS, ClaimInputs
from fmcore.report.claims_render import CLAIMS_COLUMNS, write_claims

SEEDS = (0, 1, 2)
NOISE = {0: -0.5, 1: 0.0, 2: 0.5}  # per-seed offsets of the claim's method: sd 0.5 over seeds


def _claim(metric: str = "nfe", **kw) -> Claim:
    return Claim(id="c", source="Table 1", statement="s", metric=metric, method="fm_ot",
                 better_than=kw.pop("better_than", ("ddpm",)), **kw)


def _results(values: dict[str, float], seeds=SEEDS, metric: str = "nfe", noise=NOISE) -> ClaimInputs:
    rows = []
    for method, base in values.items():
        for s in seeds:
            row = {"dataset": "digits", "method": method, "seed": s, "run_id": f"{method}{s}",
                   "nll": math.nan, "quality": math.nan, "nfe": math.nan, "straightness": math.nan}
            row[metric] = base + (noise[s] if method == "fm_ot" else 0.0)
            rows.append(row)
    return ClaimInputs(pd.DataFrame(rows, columns=RESULT_COLUMNS))


def _verdict(claim: Claim, inputs: ClaimInputs) -> str:
    (c,) = evaluate_claims([claim], inputs)
    return c.verdict


def test_shipped_claims_validate_and_cover_the_issue():
    claims = load_claims()
    ids = {c.id for c in claims}
    assert {"nfe_below_ddpm", "quality_best", "nll_vs_diffusion", "fig7_midpoint_error_low_nfe",
            "fig5_faster_training"} <= ids
    assert all(c.source and c.min_seeds >= 2 for c in claims)
    assert CLAIMS_PATH.is_file()


@pytest.mark.parametrize("edit, expect", [
    (lambda d: d["claims"][0]["rule"].update(metric="fid"), r"claims\.0\.rule\.metric: 'fid' is not one of"),
    (lambda d: d["claims"][0].pop("source"), r"claims\.0: 'source' is a required property"),
    (lambda d: d["claims"].append(dict(d["claims"][0])), r"claims\.\d+\.id: 'nfe_below_ddpm' is used twice"),
    (lambda d: d["claims"][0]["rule"].update(better_than=["fm_ot"]), r"lists the claim's own method 'fm_ot'"),
    (lambda d: d["claims"][4]["rule"].pop("solver"), r"claims\.4\.rule: 'solver' is a required property"),
    (lambda d: d["claims"][0]["rule"].update(solver="euler"), r"claims\.0\.rule: .* should not be valid"),
    (lambda d: d.update(defaults={"min_seeds": 1}), r"defaults\.min_seeds: 1 is less than the minimum of 2"),
])
def test_bad_claims_file_gives_one_line_naming_the_key(tmp_path: Path, edit, expect):
    doc = yaml.safe_load(CLAIMS_PATH.read_text())
    assert doc["claims"][4]["rule"]["metric"].startswith("sweep_")
    edit(doc)
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ClaimsError, match=expect) as info:
        load_claims(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_duplicate_yaml_key_is_refused(tmp_path: Path):
    path = tmp_path / "claims.yaml"
    path.write_text("version: 1\nversion: 1\nclaims: []\n")
    with pytest.raises(ClaimsError, match="duplicate"):
        load_claims(path)


# With the per-seed noise above (paired sd 0.5, n = 3): the 95 % half-width is
# t(0.975, 2) * 0.5 / sqrt(3) = 1.242; the claim "fm_ot < ddpm" is decided by d = fm_ot - ddpm.
HALF = 4.302652729911275 * 0.5 / math.sqrt(3)


@pytest.mark.parametrize("d, verdict", [
    (-HALF - 0.01, "reproduced"), (-HALF + 0.01, "inconclusive"),
    (HALF - 0.01, "inconclusive"), (HALF + 0.01, "not reproduced"),
])
def test_strict_claim_flips_at_the_interval_edge(d, verdict):
    inputs = _results({"fm_ot": 100.0 + d, "ddpm": 100.0})
    (c,) = evaluate_claims([_claim()], inputs)
    assert c.verdict == verdict and c.firm and c.paired and c.n == 3
    assert c.hi - c.lo == pytest.approx(2 * HALF)


@pytest.mark.parametrize("d, verdict", [(0.5 - HALF - 0.01, "reproduced"), (0.5 - HALF + 0.01, "inconclusive"),
                                        (0.5 + HALF + 0.01, "not reproduced")])
def test_margin_rel_moves_the_threshold(d, verdict):
    """nll_vs_diffusion style: at least as good within margin_rel * |mean(other)| = 0.005 * 100."""
    inputs = _results({"fm_ot": 100.0 + d, "ddpm": 100.0}, metric="nll")
    claim = _claim("nll", margin_rel=0.005)
    assert _verdict(claim, inputs) == verdict


def test_one_seed_is_inconclusive_unless_the_fallback_is_point():
    better = _results({"fm_ot": 90.0, "ddpm": 100.0}, seeds=(0,))
    worse = _results({"fm_ot": 110.0, "ddpm": 100.0}, seeds=(0,))
    (c,) = evaluate_claims([_claim()], better)
    assert (c.verdict, c.firm, c.point, c.n) == ("inconclusive", False, "holds", 1)
    assert "1 seed (< 3)" in c.basis
    assert _verdict(_claim(fallback="point"), better) == "reproduced"
    assert _verdict(_claim(fallback="point"), worse) == "not reproduced"
    (w,) = evaluate_claims([_claim(fallback="point")], worse)
    assert not w.firm and w.point == "fails"


def test_two_seeds_below_min_seeds_are_not_firm_but_three_are():
    inputs = _results({"fm_ot": 90.0, "ddpm": 100.0}, seeds=(0, 1))
    (c,) = evaluate_claims([_claim()], inputs)
    assert c.verdict == "inconclusive" and not c.firm and c.n == 2
    assert _verdict(_claim(min_seeds=2), inputs) == "reproduced"


def test_unpaired_seeds_use_welch():
    a = {0: 90.0, 1: 91.0, 2: 92.0}
    b = {3: 100.0, 4: 101.0, 5: 102.0}
    c = compare(_claim(), "digits", "ddpm", a, b)
    assert not c.paired and c.verdict == "reproduced"
    # Welch with equal variances 1, n 3 + 3: se = sqrt(2/3), df = 4
    assert c.hi - c.diff == pytest.approx(2.7764451051977987 * math.sqrt(2 / 3))
    close = compare(_claim(), "digits", "ddpm", {k: v + 8.0 for k, v in a.items()}, b)
    assert close.verdict == "inconclusive"


def test_missing_method_is_inconclusive_and_named():
    inputs = _results({"fm_ot": 90.0})
    (c,) = evaluate_claims([_claim()], inputs)
    assert c.verdict == "inconclusive" and "ddpm" in c.basis and c.n == 0


def test_combine_needs_every_comparison():
    inputs = _results({"fm_ot": 90.0, "ddpm": 100.0, "fm_vp": 95.0})
    claim = _claim(better_than=("ddpm", "fm_vp"))
    assert combine(evaluate_claims([claim], inputs))[0] == "reproduced"
    inputs = _results({"fm_ot": 90.0, "ddpm": 100.0, "fm_vp": 85.0})
    verdict, firm, basis = combine(evaluate_claims([claim], inputs))
    assert (verdict, firm) == ("not reproduced", True) and "fm_vp" in basis
    inputs = _results({"fm_ot": 90.0, "ddpm": 100.0, "fm_vp": 90.5})
    assert combine(evaluate_claims([claim], inputs))[0] == "inconclusive"


def _curves(rows: list[tuple[str, int, str, int, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"dataset": "digits", "method": m, "seed": s, "key": k, "step": st, "value": v}
                         for m, s, k, st, v in rows], columns=CURVE_COLUMNS)


@pytest.mark.parametrize("ot_err, verdict", [(0.10, "reproduced"), (0.30, "not reproduced")])
def test_sweep_claim_at_the_lowest_common_nfe(ot_err, verdict):
    rows = []
    for s in SEEDS:
        jitter = 0.001 * s
        rows += [("fm_ot", s, "sweep/midpoint/error", 4, ot_err + jitter), ("fm_ot", s, "sweep/midpoint/error", 8, 0.01),
                 ("fm_ot", s, "sweep/midpoint/error", 2, 9.0),  # only fm_ot ran NFE 2: not common
                 ("fm_vp", s, "sweep/midpoint/error", 4, 0.20), ("fm_vp", s, "sweep/midpoint/error", 8, 0.5)]
    inputs = ClaimInputs(_results({"fm_ot": 1.0, "fm_vp": 1.0}).results, _curves(rows))
    claim = _claim("sweep_error", solver="midpoint", at_nfe="lowest", better_than=("fm_vp",))
    (c,) = evaluate_claims([claim], inputs)
    assert c.verdict == verdict and c.b == {0: 0.2, 1: 0.2, 2: 0.2}
    at8 = _claim("sweep_error", solver="midpoint", at_nfe=8, better_than=("fm_vp",))
    assert _verdict(at8, inputs) == "reproduced"


@pytest.mark.parametrize("ot_reach, verdict", [(100, "reproduced"), (300, "not reproduced")])
def test_steps_to_quality_flips_with_the_step_fm_ot_reaches_the_target(ot_reach, verdict):
    rows = []
    for s in SEEDS:
        for step in (100, 200, 300):
            rows.append(("fm_ot", s, "during_training/quality", step, 5.0 if step >= ot_reach else 50.0 + s))
            rows.append(("ddpm", s, "during_training/quality", step, 8.0 if step >= 200 + 0 * s else 60.0))
    inputs = ClaimInputs(_results({"fm_ot": 1.0, "ddpm": 1.0}).results, _curves(rows))
    (c,) = evaluate_claims([_claim("steps_to_quality")], inputs)
    # target = the worse best quality = 8.0: ddpm reaches it at step 200, fm_ot at ot_reach
    assert c.b == {0: 200.0, 1: 200.0, 2: 200.0} and c.a == {s: float(ot_reach) for s in SEEDS}
    assert c.verdict == verdict


def test_write_claims_csv_and_md(tmp_path: Path):
    claims = [_claim(), Claim(id="q", source="Fig. 5", statement="quality", metric="quality", method="fm_ot",
                              better_than=("ddpm",))]
    inputs = _results({"fm_ot": 90.0, "ddpm": 100.0})
    comparisons = evaluate_claims(claims, inputs)
    csv, md = write_claims(claims, comparisons, tmp_path, "exp")
    frame = pd.read_csv(csv, keep_default_na=False)
    assert list(frame.columns) == CLAIMS_COLUMNS
    assert frame.loc[0, "values_method"] == "0:89.5;1:90;2:90.5" and frame.loc[0, "verdict"] == "reproduced"
    assert frame.loc[1, "verdict"] == "inconclusive" and "no quality value" in frame.loc[1, "basis"]
    text = md.read_text()
    assert "| s (`c`) | digits | **reproduced** | yes | 3 | reproduced against ddpm | holds |" in text
    assert "| quality (`q`) | digits | inconclusive | no | 0 |" in text and "no data vs ddpm |" in text


def test_no_curves_give_inconclusive_not_an_error():
    inputs = _results({"fm_ot": 1.0, "fm_vp": 1.0})  # no curves at all
    for claim in (_claim("sweep_error", solver="midpoint", at_nfe="lowest", better_than=("fm_vp",)),
                  _claim("steps_to_quality", better_than=("fm_vp",))):
        (c,) = evaluate_claims([claim], inputs)
        assert c.verdict == "inconclusive" and c.n == 0
