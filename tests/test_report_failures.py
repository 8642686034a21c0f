"""A failed evaluation part is never a silent blank: its cells say `failed [n]`, a footnote says why."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient
from test_report import EXPERIMENT, _add_job

from fmcore.report import build_report
from fmcore.report.failures import first_line, reasons_from_tags

NLL_ERROR = ("nll: ODE solver failed (underflow in dt 1e-12); the field is too stiff for these tolerances\n"
             "Traceback (most recent call last): ...")


def _fail(client: MlflowClient, run_id: str, parts: dict[str, str], tagged: bool, tmp: Path) -> None:
    """Turn a finished evaluation run into one whose ``parts`` failed (as runner.py logs it)."""
    client.set_tag(run_id, "fmrepro.failed_parts", ",".join(parts))
    if tagged:
        for part, why in parts.items():
            client.set_tag(run_id, f"fmrepro.failed.{part}", first_line(why))
    else:  # a run from before the per-part tags: only metrics.json holds the message
        (tmp / "metrics.json").write_text(json.dumps({"failed": parts}))
        client.log_artifact(run_id, str(tmp / "metrics.json"))


def _partial_job(client: MlflowClient, exp_id: str, dataset: str, method: str, start: int,
                 metrics: dict[str, float]) -> str:
    """A training run and a still-running evaluation run that logged only ``metrics``."""
    eval_id = _add_job(client, exp_id, dataset, method, Path("unused"), start, None, status="RUNNING")
    for key, value in metrics.items():
        client.log_metric(eval_id, key, value)
    return eval_id


def test_failed_parts_have_marks_and_footnotes(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp_id = client.create_experiment(EXPERIMENT, artifact_location=(tmp_path / "art").as_uri())
    (tmp_path / "npz").mkdir()
    (tmp_path / "old").mkdir()
    ok = _add_job(client, exp_id, "digits", "ddpm", tmp_path / "npz", 10, (1.52, 11.0, 150.0))
    nll = _partial_job(client, exp_id, "digits", "fm_ot", 20, {"quality": 12.5, "nfe": 90.0})
    _fail(client, nll, {"nll": NLL_ERROR}, tagged=True, tmp=tmp_path)
    sweep = _partial_job(client, exp_id, "checkerboard", "fm_ot", 40, {"nll_nats": 2.11, "nll_nats_se": 0.01})
    _fail(client, sweep, {"sweep": "sweep: euler produced non-finite samples",
                          "quality": "quality: no samples\nsecond line"}, tagged=False, tmp=tmp_path / "old")
    for run_id in (nll, sweep):
        client.set_terminated(run_id, status="FINISHED")
    expected = [("checkerboard", "fm_ot"), ("digits", "fm_ot"), ("digits", "ddpm")]
    rep = build_report(EXPERIMENT, uri, tmp_path / "out", expected=expected, figures=False)

    marks = [(f.mark, f.dataset, f.method, f.part, f.run_id) for f in rep.table.failures]
    assert marks == [(1, "checkerboard", "fm_ot", "sweep", sweep),
                     (2, "checkerboard", "fm_ot", "quality", sweep),
                     (3, "digits", "fm_ot", "nll", nll)]
    csv = pd.read_csv(rep.out_dir / "table1.csv", keep_default_na=False, dtype=str)
    csv = csv.set_index(["dataset", "method"])
    assert csv.loc[("digits", "fm_ot"), "failed_parts"] == "nll"
    assert csv.loc[("checkerboard", "fm_ot"), "failed_parts"] == "sweep,quality"
    assert csv.loc[("digits", "fm_ot"), "nll_bpd"] == "" and csv.loc[("digits", "ddpm"), "failed_parts"] == ""
    assert csv.loc[("digits", "fm_ot"), "quality"] == "12.5"  # the other part's cells are untouched

    md = (rep.out_dir / "table1.md").read_text()
    rows = {tuple(c.strip() for c in ln.split("|")[1:3]): [c.strip() for c in ln.split("|")[1:-1]]
            for ln in md.splitlines() if ln.startswith("| ") and "dataset" not in ln}
    header = [c.strip() for c in md.splitlines()[0].split("|")[1:-1]]
    row = dict(zip(header, rows[("digits", "fm_ot")], strict=True))
    assert row["nll_bpd"] == row["nll_bpd_se"] == "failed [3]" and row["quality"] == "12.500"
    assert "failed" not in "".join(rows[("digits", "ddpm")])
    footnote = (f"[3] digits/fm_ot: evaluation part `nll` failed in run `{nll}`: nll: ODE solver failed "
                "(underflow in dt 1e-12); the field is too stiff for these tolerances")
    assert footnote in md and "Traceback" not in md  # the first error line only, the full run id
    assert f"[1] checkerboard/fm_ot: evaluation part `sweep` failed in run `{sweep}`; Fig. 7 has no " in md
    assert "[2] checkerboard/fm_ot: evaluation part `quality` failed" in md and "quality: no samples" in md
    assert "second line" not in md  # fallback from metrics.json, also cut to its first line
    assert re.search(r"\| checkerboard \| fm_ot \|.*failed \[2\]", md)  # the quality cell of a 2D row
    tex = (rep.out_dir / "table1.tex").read_text()
    assert "failed [3]" in tex and "ODE solver failed" in tex and tex.count("{") == tex.count("}")
    readme = (rep.out_dir / "README.md").read_text().split("## Table 1")[0]
    assert "3 evaluation part(s) failed" in readme and "digits/fm_ot nll [3]" in readme
    assert ok not in "".join(f.run_id for f in rep.table.failures)


def test_reasons_from_tags() -> None:
    tags = {"tags.fmrepro.failed_parts": "nll, sweep", "tags.fmrepro.failed.nll": "boom\nmore"}
    assert reasons_from_tags(tags) == {"nll": "boom", "sweep": ""}
    assert reasons_from_tags({"tags.fmrepro.failed_parts": ""}) == {}
    assert len(first_line("x" * 1000)) == 300 and first_line("\n\n") == "no message recorded"
