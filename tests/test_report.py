"""Report generation from a fabricated MLflow store built through the MLflow client."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric

from fmcore.report import TABLE1_COLUMNS, build_report, build_table1
from fmcore.report.__main__ import main
from fmcore.io import atomic_write
from fmcore.report.paper import MODEL_TO_METHOD, load_paper_table, paper_markdown
from fmcore.report.readme import dvc_data_hashes

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "fab"
# (dataset, method) -> (nll, quality, nfe); checkerboard is 2D (nats), the others images (bits/dim).
RESULTS = {
    ("checkerboard", "fm_ot"): (2.11, 0.05, 80.0),
    ("checkerboard", "fm_vp"): (2.25, 0.09, 120.0),
    ("checkerboard", "ddpm"): (2.31, 0.12, 160.0),
    ("digits", "fm_ot"): (1.41, 12.5, 90.0),
    ("digits", "ddpm"): (1.52, 11.0, 150.0),
    ("cifar10", "ddpm"): (3.2, 9.5, 270.0),
    ("cifar10", "fm_ot"): (3.05, 7.25, 140.0),
}
QUALITY = {"checkerboard": "w2_2d", "digits": "fd_digits", "cifar10": "fid"}
EXPECTED = [("checkerboard", "fm_ot"), ("checkerboard", "fm_vp"), ("checkerboard", "ddpm"),
            ("digits", "fm_ot"), ("digits", "fm_vp"), ("digits", "ddpm"),
            ("cifar10", "ddpm"), ("cifar10", "fm_ot")]
MISSING = ("digits", "fm_vp")


def _metrics(values: dict[str, float], histories: dict[str, list[tuple[int, float]]]) -> list[Metric]:
    out = [Metric(k, v, 1_000, 0) for k, v in values.items()]
    out += [Metric(k, v, 1_000 + i, step) for k, h in histories.items() for i, (step, v) in enumerate(h)]
    return out


def _npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, **arrays)
    return path


def _add_job(client: MlflowClient, exp_id: str, dataset: str, method: str, tmp: Path, start: int,
             result: tuple[float, float, float] | None, status: str = "FINISHED") -> str:
    tags = {"fmrepro.stage": "train", "fmrepro.dataset": dataset, "fmrepro.method": method,
            "fmrepro.git_commit": f"commit{start:03d}" + "0" * 31, "fmrepro.data_hash": f"hash-{dataset}"}
    train = client.create_run(exp_id, start_time=start, tags=tags, run_name=f"train/{dataset}/{method}")
    train_id = train.info.run_id
    client.log_batch(train_id, metrics=[Metric("loss", 1.0 / s, 1_000 + s, s) for s in (1, 2, 3)])
    client.set_terminated(train_id, end_time=start + 1)
    if result is None and status == "FINISHED":
        return train_id
    tags = {"fmrepro.stage": "evaluate", "fmrepro.dataset": dataset, "fmrepro.method": method,
            "mlflow.parentRunId": train_id, "fmrepro.train_run_id": train_id,
            "fmrepro.quality_metric": QUALITY[dataset], "fmrepro.stand_in": str(dataset != "cifar10").lower(),
            "fmrepro.host": "testhost", "fmrepro.device": "cpu"}
    ev = client.create_run(exp_id, start_time=start + 2, tags=tags, run_name=f"eval/{dataset}/{method}")
    eval_id = ev.info.run_id
    if result is not None:
        nll, quality, nfe = result
        unit = "nats" if dataset == "checkerboard" else "bpd"
        values = {f"nll_{unit}": nll, f"nll_{unit}_se": 0.01, "quality": quality, QUALITY[dataset]: quality,
                  "nfe": nfe, "straightness": 0.1}
        hist = {"during_training/quality": [(500, quality * 3), (1000, quality * 2), (1500, quality)],
                "during_training/nll": [(500, nll + 1), (1000, nll + 0.5), (1500, nll)]}
        for solver, f in (("euler", 3.0), ("midpoint", 2.0), ("rk4", 1.0)):
            hist[f"sweep/{solver}/error"] = [(n, f / n) for n in (4, 8, 16)]
            hist[f"sweep/{solver}/quality"] = [(n, quality * (1 + f / n)) for n in (4, 8, 16)]
        client.log_batch(eval_id, metrics=_metrics(values, hist))
        rng = np.random.default_rng(start)
        shape = (2,) if dataset == "checkerboard" else (1, 8, 8)
        t = np.linspace(0.0, 1.0, 4)
        d = tmp / eval_id
        d.mkdir()
        snaps = {"t": t, "x": rng.normal(size=(4, 50, *shape))}
        client.log_artifact(eval_id, str(_npz(d / "snapshots.npz", snaps)))
        traj = np.linspace(0, 1, 5)
        client.log_artifact(eval_id, str(_npz(d / "trajectories.npz",
                                              {"t": traj, "x": rng.normal(size=(5, 6, *shape))})))
    client.set_terminated(eval_id, status=status, end_time=start + 3)
    return eval_id


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One fabricated store: 7 finished jobs, one failed evaluation, one superseded evaluation."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp_id = client.create_experiment(EXPERIMENT, artifact_location=(root / "artifacts").as_uri())
    work = root / "npz"
    work.mkdir()
    ids = {}
    # An older cifar10/fm_ot evaluation with other values: the later one must win.
    old = _add_job(client, exp_id, "cifar10", "fm_ot", work, 10, (9.99, 99.0, 999.0))
    for i, pair in enumerate(RESULTS):
        ids[pair] = _add_job(client, exp_id, *pair, work, 100 + 10 * i, RESULTS[pair])
    _add_job(client, exp_id, *MISSING, work, 500, None, status="FAILED")
    return {"uri": uri, "ids": ids, "old": old, "root": root}


@pytest.fixture(scope="module")
def report(store: dict, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("report") / "fab"
    return build_report(EXPERIMENT, store["uri"], out, expected=EXPECTED, figures=False)


def _csv(report) -> pd.DataFrame:
    return pd.read_csv(report.out_dir / "table1.csv", keep_default_na=False, dtype=str)


def test_rows_columns_and_values(report, store: dict) -> None:
    table = _csv(report)
    assert list(table.columns) == TABLE1_COLUMNS
    assert list(zip(table["dataset"], table["method"], strict=True)) == EXPECTED
    row = table[(table.dataset == "digits") & (table.method == "ddpm")].iloc[0]
    assert (float(row.nll_bpd), float(row.quality), float(row.nfe)) == RESULTS[("digits", "ddpm")]
    assert row.quality_metric == "fd_digits" and row.mlflow_run_id == store["ids"][("digits", "ddpm")]
    assert row.data_hash == "hash-digits" and row.git_commit.startswith("commit")
    fm = table[(table.dataset == "digits") & (table.method == "fm_ot")].iloc[0]
    assert float(fm.nfe_ratio_vs_ddpm) == pytest.approx(90.0 / 150.0)


def test_latest_finished_evaluation_wins(report, store: dict) -> None:
    table = _csv(report)
    row = table[(table.dataset == "cifar10") & (table.method == "fm_ot")].iloc[0]
    assert row.mlflow_run_id == store["ids"][("cifar10", "fm_ot")] != store["old"]
    assert float(row.nll_bpd) == 3.05 and row.quality_metric == "fid"
    # the old evaluation is of an earlier training run of the pair: stale, not merely superseded
    assert any(store["old"] in n and n.startswith("stale:") for n in report.notes)


def test_stale_evaluation_is_left_out_with_its_reason(tmp_path: Path) -> None:
    """A training re-run after its evaluation (new run), or a checkpoint changed under an evaluation
    (same run, other sha256): the cell stays empty and the warning says why, never the old values."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp_id = client.create_experiment(EXPERIMENT, artifact_location=(tmp_path / "art").as_uri())
    (tmp_path / "npz").mkdir()
    old_eval = _add_job(client, exp_id, "digits", "fm_ot", tmp_path / "npz", 10, (1.41, 12.5, 90.0))
    new_train = _add_job(client, exp_id, "digits", "fm_ot", tmp_path / "npz", 20, None)  # retrained, not evaluated
    eval_ddpm = _add_job(client, exp_id, "digits", "ddpm", tmp_path / "npz", 30, (1.52, 11.0, 150.0))
    train_ddpm = client.get_run(eval_ddpm).data.tags["fmrepro.train_run_id"]
    client.set_tag(train_ddpm, "fmrepro.checkpoint_sha256", "a" * 64)
    client.set_tag(eval_ddpm, "fmrepro.checkpoint_sha256", "b" * 64)
    rep = build_report(EXPERIMENT, uri, tmp_path / "out", expected=[("digits", "fm_ot"), ("digits", "ddpm")],
                       figures=False)
    table = _csv(rep)
    assert (table.nll_bpd == "").all() and (table.mlflow_run_id == "").all()
    assert any("digits/fm_ot" in w and old_eval in w and new_train in w and "stale" in w for w in rep.warnings)
    assert any("digits/ddpm" in w and "sha256 bbbbbbbbbbbb" in w for w in rep.warnings)
    assert not any("no finished evaluation run" in w for w in rep.warnings)


def test_paper_values_joined(report) -> None:
    table = _csv(report).set_index(["dataset", "method"])
    assert table.loc[("cifar10", "fm_ot"), ["paper_nll_bpd", "paper_fid", "paper_nfe"]].tolist() == \
        ["2.99", "6.35", "142"]
    assert table.loc[("cifar10", "ddpm"), "paper_fid"] == "7.48"
    for pair in [p for p in EXPECTED if p[0] != "cifar10"]:
        assert table.loc[pair, ["paper_nll_bpd", "paper_fid", "paper_nfe"]].tolist() == ["", "", ""]
    paper = load_paper_table()
    assert set(paper["method"]) - {""} == set(MODEL_TO_METHOD.values())
    assert (paper["method"] == "").sum() == 6  # the ImageNet-128 GANs: paper only


def test_2d_nll_is_in_nats_not_bits_per_dim(report) -> None:
    table = _csv(report)
    assert (table[table.dataset == "checkerboard"]["nll_bpd"] == "").all()
    nats = pd.read_csv(report.out_dir / "table1_nll_nats.csv")
    assert nats.set_index("method").loc["fm_ot", "nll_nats"] == 2.11
    md = (report.out_dir / "table1.md").read_text()
    assert "in nats" in md and "not bits/dim" in md


def test_missing_run_is_an_empty_row_with_warning(report, store: dict, tmp_path: Path, capsys) -> None:
    table = _csv(report)
    row = table[(table.dataset == "digits") & (table.method == "fm_vp")].iloc[0]
    assert row[["nll_bpd", "quality", "nfe", "mlflow_run_id", "quality_metric"]].tolist() == [""] * 5
    assert report.table.missing == [MISSING]
    assert any("digits/fm_vp" in w for w in report.warnings)
    assert "digits/fm_vp" in (report.out_dir / "README.md").read_text().split("## Table 1")[0]
    assert any("status FAILED" in n for n in report.notes)
    rc = main(["--experiment", EXPERIMENT, "--tracking-uri", store["uri"], "--out", str(tmp_path / "r"),
               "--no-figures"])
    err = capsys.readouterr().err
    assert rc == 0 and "warning:" in err and "digits/fm_vp" in err
    # MLflow-only mode: rows are what MLflow holds, sorted by dataset then method order.
    seen = pd.read_csv(tmp_path / "r" / "table1.csv", keep_default_na=False)
    assert list(seen["dataset"]) == ["checkerboard"] * 3 + ["cifar10"] * 2 + ["digits"] * 3


def test_tables_are_deterministic(report, store: dict, tmp_path: Path) -> None:
    again = build_report(EXPERIMENT, store["uri"], tmp_path / "fab", expected=EXPECTED, figures=False)
    for name in ("table1.csv", "table1.md", "table1.tex", "table1_nll_nats.csv"):
        assert (report.out_dir / name).read_bytes() == (again.out_dir / name).read_bytes(), name
    assert not list(tmp_path.glob("fab/.*.tmp"))


def test_markdown_bold_and_stand_in_caption(report) -> None:
    md = (report.out_dir / "table1.md").read_text()
    lines = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in md.splitlines()
             if line.startswith("| ")}
    assert "**11.000**" in lines[("digits", "ddpm")] and "**1.410**" in lines[("digits", "fm_ot")]
    assert "**6.35**" in lines[("cifar10", "fm_ot")]  # paper's best FID, bold like the paper
    assert "**" not in lines[("digits", "fm_vp")]
    assert "`fd_digits`, `w2_2d` are stand-ins, not Inception FID" in md


def test_latex_is_structurally_balanced(report) -> None:
    tex = (report.out_dir / "table1.tex").read_text()
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 2
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 2
    for spec, body in re.findall(r"\\begin\{tabular\}\{([lr]+)\}\n(.*?)\\end\{tabular\}", tex, re.S):
        rows = [ln for ln in body.splitlines() if ln.endswith(r"\\")]
        assert all(ln.count("&") - ln.count(r"\&") == len(spec) - 1 for ln in rows)
        assert body.startswith(r"\toprule") and body.rstrip().endswith(r"\bottomrule")
        assert body.count(r"\midrule") >= 1
    assert len(re.findall(r"\\begin\{tabular\}\{([lr]+)\}", tex)[0]) == len(TABLE1_COLUMNS)
    assert tex.count("{") == tex.count("}") and r"\textbf{" in tex and "nll\\_bpd" in tex


@pytest.mark.slow
def test_figures_written(store: dict, tmp_path: Path) -> None:
    report = build_report(EXPERIMENT, store["uri"], tmp_path / "fab", expected=EXPECTED)
    assert not any("no snapshots.npz" in n or "trajectories.npz" in n for n in report.notes)
    for stem in ("fig4_paths_2d", "fig5_quality_during_training", "fig6_trajectories", "fig7_solver_sweep"):
        png = (report.out_dir / f"{stem}.png").read_bytes()
        pdf = (report.out_dir / f"{stem}.pdf").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000, stem
        assert pdf.startswith(b"%PDF") and len(pdf) > 2_000, stem
    readme = (report.out_dir / "README.md").read_text()
    assert "![Figure 7: fixed-step solvers vs NFE](fig7_solver_sweep.png)" in readme
    assert "testhost" in readme and "hash-digits" in readme
    # plot data for `dvc plots show` (dvc.yaml `plots:`): the same histories as the figures
    plots = report.out_dir / "plots"
    d, m = EXPECTED[0]
    assert (plots / "loss" / f"{d}_{m}.csv").read_text().splitlines() == ["step,loss", "1,1", "2,0.5",
                                                                         "3,0.3333333333"]
    assert (plots / "fig5" / f"{d}_{m}.csv").read_text().splitlines()[0] == "step,quality,nll"
    fig7 = (plots / "fig7" / f"{d}_{m}_euler.csv").read_text().splitlines()
    assert fig7[0] == "nfe,error,quality" and [r.split(",")[:2] for r in fig7[1:]] == [
        ["4", "0.75"], ["8", "0.375"], ["16", "0.1875"]]


def test_cli_params_mode_strict_and_errors(store: dict, tmp_path: Path, capsys) -> None:
    params = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())
    params["experiment"] = EXPERIMENT
    params["jobs"] = {f"{d}-{m}": {"dataset": d, "method": m} for d, m in EXPECTED if d != "cifar10"}
    path = tmp_path / "fab.yaml"
    path.write_text(yaml.safe_dump(params))
    out = tmp_path / "out"
    args = ["--params", str(path), "--tracking-uri", store["uri"], "--out", str(out), "--no-figures"]
    assert main(args + ["--strict"]) == 2
    table = pd.read_csv(out / "table1.csv", keep_default_na=False)
    assert len(table) == 6 and "cifar10" not in set(table["dataset"])
    assert "not in the params' jobs" in (out / "README.md").read_text()
    before = (out / "table1.csv").read_bytes()
    capsys.readouterr()
    assert main(["--experiment", "nope", "--tracking-uri", store["uri"], "--out", str(out)]) == 1
    assert main(args + ["--experiment", "other"]) == 1
    assert main(["--experiment", "x", "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(e.startswith("error: ") for e in err)
    assert "'nope'" in err[0] and "'other'" in err[1] and "none.db" in err[2]
    assert (out / "table1.csv").read_bytes() == before


def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "t.csv"
    target.write_text("old\n")

    def broken(f) -> None:
        f.write(b"half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["t.csv"]


def test_paper_readme_shows_the_paper_table() -> None:
    text = (REPO / "reports" / "README.md").read_text()
    assert paper_markdown() in text
    assert "--configfile params/paper.yaml" in text


def test_figures_without_data_are_placeholders(store: dict, tmp_path: Path) -> None:
    client = MlflowClient(store["uri"])
    client.create_experiment("empty", artifact_location=(store["root"] / "empty").as_uri())
    rep = build_report("empty", store["uri"], tmp_path / "e", expected=[("digits", "fm_ot")])
    assert rep.table.missing == [("digits", "fm_ot")]
    assert (tmp_path / "e" / "fig4_paths_2d.png").read_bytes().startswith(b"\x89PNG")
    again = build_report("empty", store["uri"], tmp_path / "e2", expected=[("digits", "fm_ot")])
    for path in [p for p in rep.files if p.suffix in (".png", ".pdf")]:
        assert path.read_bytes() == (again.out_dir / path.name).read_bytes(), path.name  # no dates inside
    shutil.rmtree(tmp_path / "e")


def test_dvc_hashes_read_from_dvc_lock(tmp_path: Path) -> None:
    lock = tmp_path / "dvc.lock"
    lock.write_text(yaml.safe_dump({"schema": "2.0", "stages": {
        "prepare@digits": {"cmd": "x", "outs": [{"path": "data/prepared/digits", "md5": "abc.dir"}]},
        "prepare@other": {"cmd": "y", "outs": [{"path": "data/prepared/other", "md5": "def.dir"}]}}}))
    assert dvc_data_hashes(lock, "data/prepared", ["digits", "checkerboard"]) == {"digits": "abc.dir"}
    assert dvc_data_hashes(tmp_path / "absent.lock", "data/prepared", ["digits"]) == {}


def test_build_table1_unit_flags_and_ratio() -> None:
    nan = float("nan")
    evals = pd.DataFrame([
        {"dataset": "cifar10", "method": "fm_ot", "eval_run_id": "r1", "git_commit": "c", "data_hash": "h",
         "quality_metric": "fid", "stand_in": "true", "nll_bpd": 3.0, "nll_bpd_se": 0.1, "nll_nats": nan,
         "nll_nats_se": nan, "quality": 5.0, "nfe": 100.0},
    ])
    table = build_table1([("cifar10", "fm_ot"), ("cifar10", "rectified_flow")], evals, load_paper_table())
    assert table.stand_ins == ["fid"]  # flagged as stand-in by the run itself: not called Inception FID
    assert math.isnan(table.rows.loc[0, "nfe_ratio_vs_ddpm"])  # no ddpm row: no ratio
    assert table.rows.loc[1, ["paper_nll_bpd", "paper_fid", "paper_nfe"]].isna().all()
    assert table.missing == [("cifar10", "rectified_flow")] and table.nats.empty
    with pytest.raises(ValueError, match="listed twice"):
        build_table1([("cifar10", "fm_ot")] * 2, evals, load_paper_table())


@pytest.mark.slow
def test_module_entry_point_one_line_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "fmcore.report", "--experiment", "smoke",
                           "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 1 and not (tmp_path / "none.db").exists()
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")


def test_claims_written_and_readme_opens_with_verdicts(report) -> None:
    claims = pd.read_csv(report.out_dir / "claims.csv", keep_default_na=False)
    row = claims[(claims.claim == "nfe_below_ddpm") & (claims.dataset == "checkerboard")].iloc[0]
    # one seed per cell: no firm verdict, the point comparison 80 < 160 is reported
    assert (row.verdict, row.firm, row.point, row.n_seeds) == ("inconclusive", "no", "holds", 1)
    assert row.values_method == "0:80" and row.values_other == "0:160"
    fig7 = claims[(claims.claim == "fig7_midpoint_error_low_nfe") & (claims.dataset == "checkerboard")].iloc[0]
    assert fig7.values_method == "0:0.5"  # midpoint error 2/NFE at the lowest common NFE, 4
    assert list(dict.fromkeys(claims.dataset)) == ["checkerboard", "digits", "cifar10"]  # report row order
    readme = (report.out_dir / "README.md").read_text()
    sections = [line for line in readme.splitlines() if line.startswith("## ")]
    assert sections[0] == "## Verdict: the paper's claims on these runs"
    assert "| FM w/ OT needs fewer function evaluations of the adaptive solver than DDPM (`nfe_below_ddpm`) " \
           "| checkerboard | inconclusive | no | 1 | inconclusive against ddpm | holds |" in readme
    assert (report.out_dir / "claims.md").read_text().startswith("# Claims of the paper")


def test_bad_claims_file_fails_before_the_store(store: dict, tmp_path: Path) -> None:
    bad = tmp_path / "claims.yaml"
    bad.write_text("version: 2\nclaims: []\n")
    with pytest.raises(ValueError, match=r"claims.yaml: (version|claims)"):
        build_report(EXPERIMENT, store["uri"], tmp_path / "x", expected=EXPECTED, figures=False, claims_path=bad)
    assert not (tmp_path / "x").exists()


def _add_seeded(client: MlflowClient, exp_id: str, method: str, seed: int, start: int,
                nll: float, quality: float, nfe: float) -> str:
    base = {"fmrepro.dataset": "digits", "fmrepro.method": method, "fmrepro.seed": str(seed)}
    train = client.create_run(exp_id, start_time=start, tags={**base, "fmrepro.stage": "train"},
                              run_name=f"train/digits/{method}/seed{seed}").info.run_id
    client.set_terminated(train, end_time=start + 1)
    tags = {**base, "fmrepro.stage": "evaluate", "fmrepro.train_run_id": train,
            "fmrepro.quality_metric": "fd_digits", "fmrepro.stand_in": "true"}
    ev = client.create_run(exp_id, start_time=start + 2, tags=tags, run_name=f"eval/digits/{method}/seed{seed}")
    hist = {"during_training/quality": [(100, quality * 2), (200, quality)]}
    client.log_batch(ev.info.run_id, metrics=_metrics(
        {"nll_bpd": nll, "nll_bpd_se": 0.02, "quality": quality, "nfe": nfe, "nfe_batch_size": 128}, hist))
    client.set_terminated(ev.info.run_id, end_time=start + 3)
    return ev.info.run_id


def test_seeds_give_means_intervals_per_seed_csv_and_firm_claims(store: dict, tmp_path: Path) -> None:
    client = MlflowClient(store["uri"])
    exp_id = client.create_experiment("seeded", artifact_location=(tmp_path / "a").as_uri())
    ids = {}
    for seed, (a, b) in enumerate([(60.0, 100.0), (62.0, 104.0), (64.0, 99.0)]):
        ids[("fm_ot", seed)] = _add_seeded(client, exp_id, "fm_ot", seed, 10 + 10 * seed, 6.0 + seed, 40.0, a)
        ids[("ddpm", seed)] = _add_seeded(client, exp_id, "ddpm", seed, 200 + 10 * seed, 6.5, 90.0 + seed, b)
    rep = build_report("seeded", store["uri"], tmp_path / "r", expected=[("digits", "fm_ot"), ("digits", "ddpm")])
    table = pd.read_csv(rep.out_dir / "table1.csv", keep_default_na=False)
    fm = table[table.method == "fm_ot"].iloc[0]
    assert list(table.columns[:5]) == ["dataset", "method", "n_seeds", "nll_bpd", "nll_bpd_ci95"]
    assert fm.n_seeds == 3 and fm.nll_bpd == pytest.approx(7.0) and fm.nfe == pytest.approx(62.0)
    # t(0.975, 2) * sd / sqrt(3) with sd = 1 (nll 6, 7, 8) and 2 (nfe 60, 62, 64)
    assert fm.nll_bpd_ci95 == pytest.approx(4.302652729911275 / math.sqrt(3))
    assert fm.nfe_ci95 == pytest.approx(2 * 4.302652729911275 / math.sqrt(3))
    assert fm.mlflow_run_id == ";".join(ids[("fm_ot", s)] for s in range(3))
    assert fm.nfe_batch == 128 and fm.nll_bpd_k1 == ""  # the NFE's evaluation batch; K = 1 not logged
    seeds = pd.read_csv(rep.out_dir / "table1_seeds.csv", keep_default_na=False)
    assert len(seeds) == 6 and set(seeds.mlflow_run_id) == set(ids.values())
    assert list(seeds[seeds.method == "ddpm"].nfe) == [100.0, 104.0, 99.0]
    md = (rep.out_dir / "table1.md").read_text()
    assert "`*_ci95` the half-width of their 95 % t-interval" in md and "table1_seeds.csv" in md
    claims = pd.read_csv(rep.out_dir / "claims.csv", keep_default_na=False)
    nfe = claims[claims.claim == "nfe_below_ddpm"].iloc[0]
    assert (nfe.verdict, nfe.firm, nfe.paired, nfe.n_seeds) == ("reproduced", "yes", "yes", 3)
    quality = claims[(claims.claim == "quality_best") & (claims.other == "ddpm")].iloc[0]
    assert quality.verdict == "reproduced" and quality.values_other == "0:90;1:91;2:92"
    fig5 = claims[(claims.claim == "fig5_faster_training") & (claims.other == "ddpm")].iloc[0]
    # q* = the worse best quality (ddpm's 90 .. 92): fm_ot reaches it at step 100 (80), ddpm at 200
    assert fig5.verdict == "reproduced" and float(fig5["diff"]) == -100
    readme = (rep.out_dir / "README.md").read_text()
    assert "| digits | fm_ot (seed 2) |" in readme
    # Fig. 5's data: the mean over seeds and the band (ddpm quality 90, 91, 92 at step 200)
    fig5_csv = pd.read_csv(rep.out_dir / "plots" / "fig5" / "digits_ddpm.csv")
    assert list(fig5_csv.columns) == ["step", "quality", "quality_lo", "quality_hi"]
    assert list(fig5_csv.iloc[1]) == [200, 91.0, 90.0, 92.0]
    assert (rep.out_dir / "fig7_solver_sweep.png").is_file()


def test_a_relative_sqlite_uri_reads_the_working_directory_s_store_after_a_chdir(tmp_path, monkeypatch):
    """MLflow caches one store per URI string: `sqlite:///mlflow.db` opened in one directory must
    not keep serving that file in another (the report and the planner resolve it first)."""
    from mlflow import MlflowClient

    from fmcore.report.collect import collect_runs

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        MlflowClient(f"sqlite:///{tmp_path / name / 'mlflow.db'}").create_experiment(f"exp_{name}")
    monkeypatch.chdir(tmp_path / "a")
    assert collect_runs("exp_a", "sqlite:///mlflow.db").tracking_uri == "sqlite:///mlflow.db"
    monkeypatch.chdir(tmp_path / "b")
    assert collect_runs("exp_b", "sqlite:///mlflow.db").experiment == "exp_b"
