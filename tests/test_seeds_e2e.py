"""Seeds end to end: train and evaluate two seeds through the CLIs, then the report's means and claims."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from train_util import tiny_job

from fmcore.evaluate import main as evaluate_main
from fmcore.report import build_report
from fmcore.train import main as train_main

pytestmark = pytest.mark.slow
EVAL = {"nll": {"n": 20, "batch_size": 20, "exact": True, "atol": 1e-4, "rtol": 1e-4},
        "quality": {"metric": "w2_2d", "n_samples": 60, "batch_size": 30}}


@pytest.mark.timeout(600)
def test_two_seeds_train_evaluate_and_report(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    tiny_job(tmp_path, "checkerboard", "fm_ot", {"train": {"checkerboard": {"steps": 20}}})
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["seeds"] = [0, 1]
    params["jobs"] = {k: v for k, v in params["jobs"].items() if k in ("checkerboard-fm_ot", "checkerboard-ddpm")}
    params["jobs"]["checkerboard-ddpm"]["seeds"] = [3]  # one seed: the layout without seeds
    params["evaluate"]["checkerboard"].update(EVAL)  # only nll and quality run (--only)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    base = ["--params", "params.yaml", "--dataset", "checkerboard"]
    assert train_main([*base, "--method", "fm_ot"]) == 2  # two seeds: which one?
    assert "jobs.checkerboard-fm_ot: seeds [0, 1]: name one (--seed)" in capsys.readouterr().err
    for seed in (0, 1):
        assert train_main([*base, "--method", "fm_ot", "--seed", str(seed)]) == 0
    assert train_main([*base, "--method", "ddpm"]) == 0
    assert evaluate_main(["reference", *base]) == 0
    for args in (["--method", "fm_ot", "--seed", "0"], ["--method", "fm_ot", "--seed", "1"], ["--method", "ddpm"]):
        assert evaluate_main(["run", *base, *args, "--only", "nll,quality"]) == 0
    results = tmp_path / "results" / "smoke" / "checkerboard"
    assert (results / "fm_ot" / "seed1" / "eval" / "metrics.json").is_file()
    assert (results / "ddpm" / "checkpoint.pt").is_file() and not (results / "ddpm" / "seed3").exists()
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    names = {r.info.run_name: r.data for r in runs}
    assert {"train/checkerboard/fm_ot/seed0", "train/checkerboard/fm_ot/seed1", "train/checkerboard/ddpm",
            "eval/checkerboard/fm_ot/seed1", "eval/checkerboard/ddpm"} <= set(names)
    assert names["train/checkerboard/fm_ot/seed1"].tags["fmrepro.seed"] == "1"
    assert names["train/checkerboard/fm_ot/seed1"].params["train.seed"] == "1"
    assert names["eval/checkerboard/ddpm"].tags["fmrepro.seed"] == "3"
    weights = [torch_load(results / "fm_ot" / f"seed{s}" / "checkpoint.pt") for s in (0, 1)]
    assert weights[0] != weights[1]  # different seeds, different training
    rep = build_report("smoke", uri, tmp_path / "report", expected=[("checkerboard", "fm_ot"),
                                                                   ("checkerboard", "ddpm")], figures=False)
    table = pd.read_csv(rep.out_dir / "table1.csv", keep_default_na=False)
    assert list(table.n_seeds) == [2, 1] and table.loc[0, "nfe_batch"] == 30
    seeds = pd.read_csv(rep.out_dir / "table1_seeds.csv")
    assert list(zip(seeds.method, seeds.seed)) == [("fm_ot", 0), ("fm_ot", 1), ("ddpm", 3)]
    assert table.loc[0, "quality"] == pytest.approx(seeds.quality[:2].mean())
    claims = pd.read_csv(rep.out_dir / "claims.csv", keep_default_na=False)
    nfe = claims[claims.claim == "nfe_below_ddpm"].iloc[0]
    assert (nfe.paired, nfe.n_seeds, nfe.firm) == ("no", 1, "no")  # seeds {0, 1} vs {3}: unpaired


def torch_load(path) -> float:
    import torch

    state = torch.load(path, weights_only=True, map_location="cpu")
    return float(sum(v.double().sum() for v in state["ema"].values()))
