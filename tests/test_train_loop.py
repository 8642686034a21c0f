"""Every method trains on 2D and digits with the shared loop, and its loss falls."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fmcore.data import load_split
from fmcore.models import build_model
from fmcore.objectives import build_objective
from fmcore.paths import build_path
from fmcore.training import train_loop
from fmcore.training.checkpoint import load_checkpoint

from train_util import tiny_job

METHODS = ["fm_ot", "fm_vp", "ddpm", "score_ve", "scoreflow", "rectified_flow", "ot_cfm"]
SHORT = {"train": {"digits": {"steps": 15, "batch_size": 16, "checkpoint_every": 5}},
         "evaluate": {"digits": {"during_training": {"every": 5}}}}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return tmp_path_factory.mktemp("train_loop")


def _eval_loss(objective, model, x_1) -> float:
    with torch.no_grad():
        return objective(model, x_1, torch.Generator().manual_seed(123)).mean().item()


@pytest.mark.parametrize("dataset", ["checkerboard", "digits"])
@pytest.mark.parametrize("method", METHODS)
def test_method_trains_and_loss_falls(workdir, dataset, method):
    job = tiny_job(workdir, dataset, method, SHORT)
    torch.manual_seed(0)
    path = build_path(job["path"])
    objective = build_objective(job["path"], path)
    model = build_model(job["model"])
    data = load_split(job["paths"]["data_dir"], "train", generator=torch.Generator().manual_seed(5))
    x_1 = data.get_batch(torch.arange(512 if dataset == "checkerboard" else 128))
    before = _eval_loss(objective, model, x_1)
    run_dir = Path(job["paths"]["run_dir"])
    steps = job["train"]["steps"]
    result = train_loop(model=model, objective=objective, dataset=data, job=job, run_dir=run_dir,
                        steps=steps, device=torch.device("cpu"))
    after = _eval_loss(objective, model, x_1)
    assert after < before, f"{dataset}/{method}: held-out objective {before:.4f} -> {after:.4f}"
    assert result.step == steps and not result.preempted and result.first_loss is not None
    every = job["evaluate"]["during_training"]["every"]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == sorted(
        f"step_{s}.pt" for s in range(every, steps + 1, every))
    snapshot = load_checkpoint(run_dir / "checkpoints" / f"step_{every}.pt")  # Fig. 5 reads EMA weights only
    assert snapshot["kind"] == "weights" and snapshot["step"] == every and "ema" in snapshot
    assert not {"model", "optimizer", "rng"} & set(snapshot)
    final = load_checkpoint(run_dir / "checkpoint.pt", expect={"method": method, "model_config": job["model"]})
    assert final["step"] == steps and final["mlflow_run_id"] is None
    for k, v in model.state_dict().items():
        assert torch.equal(final["model"][k], v)
    assert (run_dir / "last.pt").samefile(run_dir / "checkpoint.pt")


def test_stop_request_saves_last_and_returns(workdir):
    job = tiny_job(workdir, "checkerboard", "fm_ot")
    torch.manual_seed(0)
    path = build_path(job["path"])
    calls = {"n": 0}

    def stop_after_7() -> bool:
        calls["n"] += 1
        return calls["n"] > 7

    run_dir = workdir / "stopped"
    result = train_loop(model=build_model(job["model"]), objective=build_objective(job["path"], path),
                        dataset=load_split(job["paths"]["data_dir"], "train"), job=job, run_dir=run_dir,
                        steps=50, device=torch.device("cpu"), should_stop=stop_after_7)
    assert result.preempted and result.step == 7 and result.checkpoint is None
    assert load_checkpoint(run_dir / "last.pt")["step"] == 7
    assert not (run_dir / "checkpoint.pt").exists()


def test_batch_must_split_into_micro_batches(workdir):
    job = tiny_job(workdir, "checkerboard", "fm_ot", {"train": {"checkerboard": {"micro_batches": 3}}})
    path = build_path(job["path"])
    with pytest.raises(ValueError, match="micro_batches=3"):
        train_loop(model=build_model(job["model"]), objective=build_objective(job["path"], path),
                   dataset=load_split(job["paths"]["data_dir"], "train"), job=job,
                   run_dir=workdir / "bad", steps=5, device=torch.device("cpu"))


def test_in_process_stop_and_resume_is_bitwise_on_digits(workdir):
    """Dequantization noise, sampler position and optimizer state all survive a resume."""
    job = tiny_job(workdir, "digits", "ddpm", {"train": {"digits": {"steps": 12, "batch_size": 16,
                                                                    "checkpoint_every": 100}}})
    path = build_path(job["path"])

    def run(run_dir: Path, resume=None, stop_at: int | None = None):
        torch.manual_seed(0)
        model = build_model(job["model"])
        calls = {"n": 0}

        def should_stop() -> bool:
            calls["n"] += 1
            return stop_at is not None and calls["n"] > stop_at

        train_loop(model=model, objective=build_objective(job["path"], path),
                   dataset=load_split(job["paths"]["data_dir"], "train"), job=job, run_dir=run_dir,
                   steps=12, device=torch.device("cpu"), resume=resume, should_stop=should_stop)
        return run_dir

    full = load_checkpoint(run(workdir / "full") / "checkpoint.pt")
    cut_dir = run(workdir / "cut", stop_at=5)
    last = load_checkpoint(cut_dir / "last.pt", expect={"method": "ddpm", "model_config": job["model"]})
    assert last["step"] == 5 and last["rng"]["sampler"]["position"] == 5 * 16
    resumed = load_checkpoint(run(cut_dir, resume=last) / "checkpoint.pt")
    for part in ("model", "ema"):
        for k, v in full[part].items():
            assert torch.equal(resumed[part][k], v), f"{part}.{k}"
    assert resumed["loss_tail"] == full["loss_tail"] and len(full["loss_tail"]) == 12


def test_every_checkpoint_knows_its_mlflow_run(workdir):
    """A job SIGKILLed after any checkpoint resumes into the same MLflow run."""
    from fmcore.tracking import start_run

    job = tiny_job(workdir, "checkerboard", "fm_ot", {"train": {"checkerboard": {"steps": 10, "checkpoint_every": 5}},
                                                      "evaluate": {"checkerboard": {"during_training": {"every": 5}}}})
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    tracker = start_run("smoke", "train/checkerboard/fm_ot", uri=uri)
    path = build_path(job["path"])
    run_dir = workdir / "tracked"
    train_loop(model=build_model(job["model"]), objective=build_objective(job["path"], path),
               dataset=load_split(job["paths"]["data_dir"], "train"), job=job, run_dir=run_dir, steps=10,
               device=torch.device("cpu"), tracker=tracker)
    assert tracker.close()
    first = load_checkpoint(run_dir / "checkpoints" / "step_5.pt")
    assert first["mlflow_run_id"] == tracker.run_id is not None
    from mlflow import MlflowClient

    steps = [m.step for m in MlflowClient(uri).get_metric_history(tracker.run_id, "loss")]
    assert sorted(steps) == [5, 10]  # one mean per log window (here cut by the checkpoints)
