"""The cost planner: its arithmetic on a known profile, calibrate + plan through the CLI, the paper grid."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from fmcore.config import load_params, resolve_job
from fmcore.plan.__main__ import main
from fmcore.plan.costs import STATE_BYTES_PER_PARAM, WEIGHTS_BYTES_PER_PARAM, plan_job
from fmcore.plan.nfe import ExpectedNFE
from fmcore.plan.profile import model_key

REPO = Path(__file__).resolve().parents[1]
ENTRY = {"params": 1_000_000, "shape": [3, 32, 32], "batch": 64, "precision": "bf16",
         "train_s": 1e-3, "forward_s": 1e-4, "divergence_s": 3e-4}  # a made-up device: round numbers


def test_plan_job_arithmetic_on_a_known_profile():
    job = resolve_job(load_params(REPO / "params" / "paper.yaml"), "cifar10", "fm_ot")
    p = plan_job(job, ENTRY, ExpectedNFE(100.0, 200.0, "test"), speedup=2.0, ddp_efficiency=0.8)
    tr, ev, res = job["train"], job["evaluate"], job["resources"]
    world = res["nodes"] * res["gpus_per_node"]
    assert p.gpus == world == 2
    assert p.train_gpu_s == pytest.approx(tr["steps"] * tr["batch_size"] * 1e-3 / 2.0 / 0.8)
    assert p.train_wall_s == pytest.approx(p.train_gpu_s / 2)
    assert p.train_submissions == math.ceil(p.train_wall_s / (res["runtime"] * 60 - res["signal_lead_s"]))
    f, d = 1e-4 / 2, 3e-4 / 2
    nll = ev["nll"]  # Hutchinson, one probe: F + (D - F) = D per NFE, K dequantizations
    assert p.eval_parts_s["nll"] == pytest.approx(nll["n"] * nll["dequant_samples"] * 200.0 * d)
    assert p.eval_parts_s["quality"] == pytest.approx(ev["quality"]["n_samples"] * 100.0 * f)
    limit = res["evaluate"]["runtime"] * 60
    shardable = p.eval_gpu_s - p.eval_parts_s["figures"]  # the merge draws the figures
    assert p.suggested_shards == max(1, math.ceil(1.5 * shardable / (limit - 5 * 60)))
    every = ev["during_training"]["every"]
    snapshots = tr["steps"] // every - (tr["steps"] % every == 0)  # the last one is checkpoint.pt
    assert p.disk_bytes == pytest.approx(1e6 * (2 * STATE_BYTES_PER_PARAM + snapshots * WEIGHTS_BYTES_PER_PARAM))


@pytest.mark.slow
def test_calibrate_then_plan_the_smoke_grid(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'none.db'}")
    smoke = str(REPO / "params" / "smoke.yaml")
    assert main(["--params", smoke]) == 2  # no profile for this device yet: refuses to guess
    err = capsys.readouterr().err
    assert "no device profile for this device" in err and "fmcore.plan calibrate" in err and err.count("\n") == 1
    assert main(["calibrate", "--params", smoke, "--max-batch", "4", "--out", "benchmarks/profiles"]) == 0
    (profile,) = Path("benchmarks/profiles").glob("*.json")
    data = json.loads(profile.read_text())
    assert len(data["models"]) == 2 and all(m["batch"] == 4 and m["train_s"] > 0 and m["forward_s"] > 0
                                            and m["divergence_s"] > 0 for m in data["models"].values())
    capsys.readouterr()
    assert main(["--params", smoke, "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert len(plan["jobs"]) == 14 and all(j["train_gpu_s"] > 0 and j["eval_gpu_s"] > 0 for j in plan["jobs"])
    assert {j["nfe_source"] for j in plan["jobs"]} == {"--nfe (assumed)"}  # no runs, not in the paper
    assert main(["--params", smoke]) == 0
    table = capsys.readouterr().out
    assert "| **total** | 14 jobs |" in table and "Assumption" not in table


def test_paper_grid_plan_with_an_assumed_speedup(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'none.db'}")  # not the checkout's store
    params = load_params(REPO / "params" / "paper.yaml")
    models = {model_key(m): {**ENTRY, "dataset": ds, "params": 10**8} for ds, m in params["models"].items()}
    profile = tmp_path / "made-up.json"
    profile.write_text(json.dumps({"device": "made-up", "models": models}))
    assert main(["--params", str(REPO / "params" / "paper.yaml"), "--profile", str(profile),
                 "--assume-speedup", "4", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["speedup"] == 4 and len(plan["jobs"]) == 16
    table1 = [j for j in plan["jobs"] if j["dataset"] != "imagenet128"]
    assert all(j["nfe_source"].startswith("paper Table 1") for j in table1)
    fm = next(j for j in plan["jobs"] if (j["dataset"], j["method"]) == ("cifar10", "fm_ot"))
    assert fm["nfe"] == 142  # the paper's FM-OT CIFAR-10 NFE
    assert main(["--params", str(REPO / "params" / "paper.yaml"), "--profile", str(profile),
                 "--assume-speedup", "4"]) == 0
    assert "**Assumption:** the target GPU is 4x faster" in capsys.readouterr().out


def test_nfe_measured_at_a_part_s_own_tolerance_prices_that_part():
    """Fig. 4-6 parts and the sweep's reference use their own tolerances: their measured NFE
    (from the user's MLflow runs) replace the sampling NFE for exactly those parts."""
    job = resolve_job(load_params(REPO / "params" / "smoke.yaml"), "checkerboard", "fm_ot")
    entry = {**ENTRY, "shape": [2]}
    base = plan_job(job, entry, ExpectedNFE(400.0, 300.0, "t"))
    own = plan_job(job, entry, ExpectedNFE(400.0, 300.0, "t", sweep_reference=500.0, during_training=100.0,
                                           trajectories=50.0, snapshots=20.0))
    ev, f = job["evaluate"], ENTRY["forward_s"]
    assert own.eval_parts_s["nll"] == base.eval_parts_s["nll"] and own.eval_parts_s["quality"] == base.eval_parts_s["quality"]
    sw = ev["sweep"]
    assert own.eval_parts_s["sweep"] - base.eval_parts_s["sweep"] == pytest.approx(sw["n_samples"] * 100.0 * f)
    assert own.eval_parts_s["figures"] == pytest.approx((ev["trajectories"]["n"] * 50.0 + ev["snapshots"]["n"] * 20.0) * f)
    assert own.eval_parts_s["during_training"] == pytest.approx(base.eval_parts_s["during_training"] / 4)
