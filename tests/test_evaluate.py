"""End to end: reference + run on tiny checkpoints, results read back from a temporary MLflow store.

Checkpoints are built in the documented format (docs/CONTRACTS.md) from freshly initialised
models, so these tests exercise evaluation without a training run; numbers are not judged,
names, links, counts and caching are.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from fmcore.config import load_params, resolve_job
from fmcore.data import prepare
from fmcore.evaluate import main
from fmcore.evaluation import evaluate_job, make_reference
from fmcore.models import build_model
from fmcore.training.checkpoint import save_checkpoint

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

TINY_EVAL = {
    "checkerboard": {
        "nll": {"n": 40, "batch_size": 20, "exact": True, "atol": 1e-4, "rtol": 1e-4},
        "quality": {"metric": "w2_2d", "n_samples": 120, "batch_size": 60},
        "sweep": {"solvers": ["euler", "midpoint", "rk4"], "nfe": [4, 6, 8], "n_samples": 50,
                  "reference_atol": 1e-5, "reference_rtol": 1e-5},
        "during_training": {"every": 1, "n_samples": 40, "nll_n": 10},
        "trajectories": {"n": 6, "points": 5}, "snapshots": {"n": 30, "t": [0.0, 0.3333333, 0.6666667, 1.0]},
    },
    "digits": {
        "nll": {"n": 2, "batch_size": 2, "exact": False, "probe": "rademacher", "hutchinson_samples": 1,
                "dequant_samples": 2,
                "atol": 1e-3, "rtol": 1e-3},
        "quality": {"metric": "fd_digits", "n_samples": 40, "batch_size": 40, "classifier_steps": 30},
        "nfe": {"atol": 1e-3, "rtol": 1e-3},
        "sweep": {"solvers": ["euler"], "nfe": [2], "n_samples": 20,
                  "reference_atol": 1e-3, "reference_rtol": 1e-3},
        "during_training": {"every": 2, "n_samples": 20, "nll_n": 2},
        "trajectories": {"n": 2, "points": 3}, "snapshots": {"n": 4, "t": [0.0, 1.0]},
    },
}  # fmt: skip


def _params(tmp: Path, fid: bool = False) -> Path:
    p = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())
    p["datasets"]["checkerboard"].update(n_train=500, n_test=100)
    p["datasets"]["digits"]["test_fraction"] = 0.9  # 179 training images: fast reference stats
    p["models"]["digits"]["model_channels"] = 8
    for ds, tiny in TINY_EVAL.items():
        p["evaluate"][ds] = {**p["evaluate"][ds], **copy.deepcopy(tiny)}
        p["train"][ds]["checkpoint_every"] = 1  # the tests write step_1.pt, step_2.pt by hand
    if fid:
        p["evaluate"]["digits"]["quality"] = {"metric": "fid", "n_samples": 30, "batch_size": 30}
    p["jobs"] = {k: v for k, v in p["jobs"].items() if v["method"] == "fm_ot"}
    path = tmp / ("fid.yaml" if fid else "p.yaml")
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path


def _train_run_id(experiment: str, name: str) -> str:
    from fmcore.tracking import start_run

    tracker = start_run(experiment, name, tags={"fmrepro.stage": "train"})
    tracker.flush(30)
    run_id = tracker.run_id
    tracker.close()
    return run_id


def _checkpoints(params_path: Path, dataset: str) -> str:
    params = load_params(params_path)
    job = resolve_job(params, dataset, "fm_ot")
    prepare(dataset, job["data"], job["paths"]["data_dir"])
    run_id = _train_run_id(params["experiment"], f"train/{dataset}/fm_ot")
    torch.manual_seed(0)
    model = build_model(job["model"])
    run_dir = Path(job["paths"]["run_dir"])
    periodic = run_dir / "checkpoints"
    targets = ((1, periodic / "step_1.pt"), (2, periodic / "step_2.pt"), (2, run_dir / "checkpoint.pt"))
    for step, target in targets:
        save_checkpoint({"format": "fmrepro-ckpt-v1", "experiment": params["experiment"], "dataset": dataset,
                         "method": "fm_ot", "model_config": job["model"], "path_config": job["path"],
                         "train_config": job["train"], "model": model.state_dict(), "ema": model.state_dict(),
                         "optimizer": {}, "scheduler": {}, "step": step, "rng": {}, "mlflow_run_id": run_id},
                        target)  # fmt: skip
    return run_id


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("eval")
    mp = pytest.MonkeyPatch()
    mp.chdir(tmp)
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    params = _params(tmp)
    ids = {ds: _checkpoints(params, ds) for ds in ("checkerboard", "digits")}
    yield {"tmp": tmp, "params": params, "train_ids": ids}
    mp.undo()


def _eval_runs(dataset: str) -> list:
    import mlflow

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("smoke")
    return client.search_runs([exp.experiment_id], f"tags.`fmrepro.stage` = 'evaluate' and "
                              f"tags.`fmrepro.dataset` = '{dataset}'",
                              order_by=["attributes.start_time DESC"])


@pytest.mark.parametrize("dataset,metric", [("checkerboard", "w2_2d"), ("digits", "fd_digits")])
def test_reference_then_run_lands_in_mlflow(workspace: dict, dataset: str, metric: str) -> None:
    import mlflow

    p = str(workspace["params"])
    assert main(["reference", "--params", p, "--dataset", dataset]) == 0
    assert main(["run", "--params", p, "--dataset", dataset, "--method", "fm_ot"]) == 0
    eval_dir = Path("results/smoke") / dataset / "fm_ot" / "eval"
    summary = json.loads((eval_dir / "metrics.json").read_text())
    assert summary["failed"] == {} and len(summary["parts"]) == 6
    run = _eval_runs(dataset)[0]
    tags, metrics = run.data.tags, run.data.metrics
    assert run.info.run_name == f"eval/{dataset}/fm_ot"
    assert tags["mlflow.parentRunId"] == tags["fmrepro.train_run_id"] == workspace["train_ids"][dataset]
    assert tags["fmrepro.quality_metric"] == metric and tags["fmrepro.stand_in"] == "true"
    assert not [k for k in metrics if "fid" in k.split("/")[-1]], "a stand-in produced a metric named fid"
    assert metrics["quality"] == metrics[metric] == pytest.approx(summary["metrics"][metric])
    nll_key = "nll_bpd" if dataset == "digits" else "nll_nats"
    assert np.isfinite(metrics[nll_key]) and metrics[f"{nll_key}_se"] >= 0 and metrics["nfe"] > 0
    if dataset == "checkerboard":
        assert metrics["nll_nats_true"] == pytest.approx(np.log(32.0))
    else:  # K = 2 dequantizations: log-mean-exp >= mean of logs, so the K = 1 estimate is never lower
        assert metrics["nll_bpd_k1"] >= metrics["nll_bpd"] and metrics["nll_bpd_k1_se"] >= 0
    assert metrics["nfe_batch_size"] == TINY_EVAL[dataset]["quality"]["batch_size"]
    client = mlflow.MlflowClient()
    budgets = TINY_EVAL[dataset]["sweep"]["nfe"]
    for solver in TINY_EVAL[dataset]["sweep"]["solvers"]:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, f"sweep/{solver}/error")]
        per_step = {"euler": 1, "midpoint": 2, "rk4": 4}[solver]
        assert sorted(steps) == [b for b in sorted(budgets) if b % per_step == 0]
    dt_steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "during_training/quality"))
    assert dt_steps == ([1, 2] if dataset == "checkerboard" else [2])  # digits: every = 2
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    expected = {"snapshots.npz", "trajectories.npz", "sweep.npz", "during_training.npz", "metrics.json"}
    assert expected <= artifacts


def test_sweep_nfe_equals_budget_and_npz_keys(workspace: dict) -> None:
    eval_dir = Path("results/smoke/checkerboard/fm_ot/eval")
    if not (eval_dir / "sweep.npz").is_file():
        pytest.skip("needs test_reference_then_run_lands_in_mlflow[checkerboard]")
    with np.load(eval_dir / "sweep.npz", allow_pickle=False) as f:
        nfe, budgets, solvers = f["nfe"], f["budgets"], list(f["solvers"])
        for i, s in enumerate(solvers):
            for j, b in enumerate(budgets):
                k = {"euler": 1, "midpoint": 2, "rk4": 4}[s]
                assert (np.isnan(nfe[i, j]) if b % k else nfe[i, j] == b), (s, b, nfe[i, j])
    with np.load(eval_dir / "snapshots.npz", allow_pickle=False) as f:
        assert f["x"].shape == (4, 30, 2) and f["t"].tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1], abs=1e-6)
    with np.load(eval_dir / "trajectories.npz", allow_pickle=False) as f:
        assert f["x"].shape == (5, 6, 2) and float(f["straightness"]) >= 0


def test_rerun_reuses_cached_parts(workspace: dict) -> None:
    eval_dir = Path("results/smoke/checkerboard/fm_ot/eval")
    if not (eval_dir / "nll.json").is_file():
        pytest.skip("needs test_reference_then_run_lands_in_mlflow[checkerboard]")
    before = {p.name: p.stat().st_mtime_ns for p in eval_dir.glob("*.json") if p.name != "metrics.json"}
    logged: list[str] = []
    params = load_params(workspace["params"])
    out = evaluate_job(params, "checkerboard", "fm_ot", log=logged.append)
    assert logged == [] and len(out["parts"]) == 6
    after = {p.name: p.stat().st_mtime_ns for p in eval_dir.glob("*.json") if p.name != "metrics.json"}
    assert before == after


def test_fid_path_end_to_end_with_injected_extractor(workspace: dict) -> None:
    from test_metrics import TinyExtractor

    params = load_params(_params(workspace["tmp"], fid=True))
    job = resolve_job(params, "digits", "fm_ot")
    info = make_reference(job, feature_network=TinyExtractor())
    assert info["metric"] == "fid" and info["stand_in"] is False
    stats = Path("results/smoke/digits/reference/digits_train_clean_custom_na.npz")
    with np.load(stats, allow_pickle=False) as f:
        assert f["mu"].shape == (12,) and f["sigma"].shape == (12, 12)
    out = evaluate_job(params, "digits", "fm_ot", only=["quality"], feature_network=TinyExtractor())
    assert out["metrics"]["fid"] > 0 and out["quality_metric"] == "fid" and out["stand_in"] is False
    run = _eval_runs("digits")[0]
    assert run.data.tags["fmrepro.quality_metric"] == "fid" and run.data.tags["fmrepro.stand_in"] == "false"
    assert run.data.metrics["fid"] == pytest.approx(out["metrics"]["fid"])


def test_missing_checkpoint_and_inception_are_one_line_errors(workspace: dict, capsys, monkeypatch) -> None:
    p = str(workspace["params"])
    params = yaml.safe_load(Path(p).read_text())
    params["jobs"]["checkerboard-fm_vp"] = {"dataset": "checkerboard", "method": "fm_vp"}
    other = workspace["tmp"] / "vp.yaml"
    other.write_text(yaml.safe_dump(params))
    assert main(["run", "--params", str(other), "--dataset", "checkerboard", "--method", "fm_vp"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "checkpoint.pt: no final checkpoint" in err
    params["evaluate"]["digits"]["quality"] = {"metric": "fid", "n_samples": 10, "batch_size": 10}
    other.write_text(yaml.safe_dump(params))
    monkeypatch.delenv("FMREPRO_INCEPTION_WEIGHTS", raising=False)
    assert main(["reference", "--params", str(other), "--dataset", "digits", "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "inception-2015-12-05.pt" in err and "FMREPRO_INCEPTION_WEIGHTS" in err


def test_part_tolerances_default_to_the_nfe_section() -> None:
    from fmcore.evaluation.context import EvalContext

    cfg = {"nfe": {"atol": 1e-5, "rtol": 2e-5}, "trajectories": {"n": 4, "points": 3, "atol": 1e-3},
           "snapshots": {"n": 4, "t": [0.0, 1.0], "atol": 1e-2, "rtol": 3e-2}}
    ctx = EvalContext(job={"evaluate": cfg}, model=None, quality=None, test=None, eval_dir=Path("."))
    assert ctx.tolerances("trajectories") == {"atol": 1e-3, "rtol": 2e-5}
    assert ctx.tolerances("snapshots") == {"atol": 1e-2, "rtol": 3e-2}
    assert ctx.tolerances("during_training") == {"atol": 1e-5, "rtol": 2e-5}  # section absent
    cfg["nll"] = {"atol": 1e-6, "rtol": 3e-6}
    assert ctx.tolerances("trajectories", fallback="nll") == {"atol": 1e-3, "rtol": 3e-6}


def test_unconfigured_figure_parts_are_skipped_not_failed(workspace: dict) -> None:
    params = load_params(workspace["params"])
    del params["evaluate"]["checkerboard"]["snapshots"]
    logged: list[str] = []
    out = evaluate_job(params, "checkerboard", "fm_ot", log=logged.append)
    assert "snapshots" not in out["parts"] and out["failed"] == {}
    assert not any("snapshots" in line for line in logged)
    assert {"nll", "quality", "sweep", "during_training", "trajectories"} <= set(out["parts"])


def test_failed_part_logs_its_first_error_line_as_a_tag(workspace: dict, monkeypatch) -> None:
    """The report's footnote (fmcore/report/failures.py) reads fmrepro.failed.<part>."""
    from fmcore.evaluation import runner
    from fmcore.evaluation.context import PartFailure

    compute = runner._compute

    def failing(part: str, *args, **kwargs):
        if part == "snapshots":
            raise PartFailure("snapshots: ODE solver failed (underflow)\nsecond line of the message")
        return compute(part, *args, **kwargs)

    monkeypatch.setattr(runner, "_compute", failing)
    params = load_params(workspace["params"])
    params["evaluate"]["checkerboard"]["snapshots"]["n"] = 31  # a new fingerprint: not served from the cache
    out = evaluate_job(params, "checkerboard", "fm_ot", log=lambda _: None)
    assert set(out["failed"]) == {"snapshots"} and "snapshots" not in out["parts"]
    tags = _eval_runs("checkerboard")[0].data.tags
    assert tags["fmrepro.failed_parts"] == "snapshots"
    assert tags["fmrepro.failed.snapshots"] == "snapshots: ODE solver failed (underflow)"
