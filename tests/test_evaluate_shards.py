"""Sharded evaluation (``evaluate.<ds>.shards``, ``--shard s/S``) gives bitwise the same per-image
values and the same Table 1 numbers as one unsharded run, and one MLflow evaluation run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_evaluate import REPO, _checkpoints, _params

from fmcore.config import load_params, resolve_job
from fmcore.evaluate import main
from fmcore.evaluation import evaluate_job, make_reference

pytestmark = pytest.mark.slow

# several batches per part, so that every shard gets work and one gets two batches of NLL
SHARD_EVAL = {"nll": {"n": 8, "batch_size": 2}, "quality": {"n_samples": 40, "batch_size": 10},
              "sweep": {"solvers": ["euler", "midpoint"], "nfe": [2, 4], "n_samples": 10}}


def _workspace(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    path = _params(root)
    p = yaml.safe_load(path.read_text())
    for key, value in SHARD_EVAL.items():
        p["evaluate"]["digits"][key].update(value)
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    _checkpoints(path, "digits")
    make_reference(resolve_job(load_params(path), "digits", "fm_ot"))
    return path


def _arrays(eval_dir: Path) -> dict[str, np.ndarray]:
    out = {}
    for f in sorted(eval_dir.glob("*.npz")):
        with np.load(f, allow_pickle=False) as z:
            out.update({f"{f.stem}/{k}": z[k] for k in z.files})
    return out


def _eval_runs() -> list:
    import mlflow

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("smoke")
    return client.search_runs([exp.experiment_id], "tags.`fmrepro.stage` = 'evaluate'")


def test_three_shards_then_merge_equal_one_unsharded_run(tmp_path, monkeypatch):
    path = _workspace(tmp_path / "one", monkeypatch)
    whole = evaluate_job(load_params(path), "digits", "fm_ot", log=lambda _: None)
    arrays_whole = _arrays(Path("results/smoke/digits/fm_ot/eval"))

    path = _workspace(tmp_path / "sharded", monkeypatch)
    eval_dir = Path("results/smoke/digits/fm_ot/eval")
    for s in range(3):
        assert main(["run", "--params", str(path), "--dataset", "digits", "--method", "fm_ot",
                     "--shard", f"{s}/3"]) == 0
        marker = json.loads((eval_dir / "shards" / f"shard_{s}_of_3.json").read_text())
        assert marker["parts"] == ["nll", "quality", "sweep", "during_training"] and not marker["failed"]
    assert not (eval_dir / "metrics.json").exists() and not _eval_runs()  # shards log nothing
    # together the shards computed every NLL batch (8 images / 2 = 4 batches: 0,3 | 1 | 2)
    assert sorted(p.name for p in (eval_dir / "partial" / "nll").glob("batch_*.npz")) == \
        [f"batch_{i:06d}.npz" for i in range(4)]
    merged = evaluate_job(load_params(path), "digits", "fm_ot", log=lambda _: None)
    arrays_merged = _arrays(eval_dir)

    assert sorted(arrays_merged) == sorted(arrays_whole) and "nll/logp" in arrays_whole
    for key, value in arrays_whole.items():  # per-image log-likelihoods etc.: bitwise
        nan_ok = value.dtype.kind == "f"
        assert np.array_equal(value, arrays_merged[key], equal_nan=nan_ok), key
    assert merged["metrics"] == whole["metrics"]  # the Table 1 numbers, exactly
    assert len(_eval_runs()) == 1  # the merge's, once


def test_bad_shard_argument_is_one_line(tmp_path, capsys):
    assert main(["run", "--params", str(REPO / "params" / "smoke.yaml"), "--dataset", "digits", "--method", "fm_ot",
                 "--shard", "3/3"]) == 2
    assert "--shard '3/3': expected s/S with 0 <= s < S" in capsys.readouterr().err
