"""`runtime: auto` / `shards: auto`: time limits and shard counts from the cost planner."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from fmcore.config import ParamsError, load_params, resolve_job, validate_params
from fmcore.plan.auto import MIN_RUNTIME, OVERHEAD_MIN, resolve_auto
from fmcore.plan.costs import plan_job
from fmcore.plan.nfe import ExpectedNFE, paper_nfe
from fmcore.plan.profile import model_key, sample_shape

REPO = Path(__file__).resolve().parents[1]
PAPER = load_params(REPO / "params" / "paper.yaml")


def _profile(path: Path, params: dict, scale: float = 1.0) -> Path:
    """A made-up device: round per-sample costs for every network of ``params``."""
    models = {model_key(m): {"dataset": d, "params": 10_000_000, "shape": list(sample_shape(m)), "batch": 64,
                             "precision": "bf16", "train_s": 1e-3 * scale, "forward_s": 1e-4 * scale,
                             "divergence_s": 3e-4 * scale}
              for d, m in params["models"].items()}
    path.write_text(json.dumps({"device": "made-up", "models": models}))
    return path


def _auto(params: dict, max_runtime: int = 1440, **plan) -> dict:
    p = copy.deepcopy(params)
    for res in p["resources"].values():
        res.update(runtime="auto", max_runtime=max_runtime)
        res.get("evaluate", {}).pop("runtime", None)
    for ev in p["evaluate"].values():
        ev["shards"] = "auto"
    p["plan"] = {"profile": "profile.json", **plan}
    return validate_params(p, source="auto.yaml")


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_auto_limits_and_shards_follow_the_cost_model(here):
    _profile(here / "profile.json", PAPER)
    params = _auto(PAPER, safety_factor=2.0)
    out = resolve_auto(params, source="auto.yaml")
    nfe = paper_nfe()
    for key, spec in params["jobs"].items():
        job = resolve_job(out, spec["dataset"], spec["method"])
        before = resolve_job(params, spec["dataset"], spec["method"])
        res = job["resources"]
        n = nfe.get((spec["dataset"], spec["method"]), ExpectedNFE(100.0, 100.0, ""))
        entry = json.loads((here / "profile.json").read_text())["models"][model_key(job["model"])]
        numbers = {**before, "resources": {**before["resources"], "runtime": 1440},
                   "evaluate": {**before["evaluate"], "shards": 1}}
        numbers["resources"].pop("evaluate", None)
        plan = plan_job(numbers, entry, n)
        lead = res.get("signal_lead_s", 0) / 60
        want = min(1440, max(MIN_RUNTIME, math.ceil(2.0 * plan.train_wall_s / 60 + lead + OVERHEAD_MIN)))
        assert res["runtime"] == want, key
        shardable = plan.eval_gpu_s - plan.eval_parts_s["figures"]
        shards = job["evaluate"]["shards"]
        assert shards == max(1, math.ceil(2.0 * shardable / ((1440 - OVERHEAD_MIN) * 60))), key
        # the fewest shards that fit: one fewer would not
        assert shards == 1 or 2.0 * shardable / (shards - 1) > (1440 - OVERHEAD_MIN) * 60
        eval_min = res["evaluate"]["runtime"]
        assert MIN_RUNTIME <= eval_min <= 1440
        assert eval_min >= 2.0 * max(shardable / shards, plan.eval_parts_s["figures"]) / 60
    # the stages without a cost model (one job per dataset) get the site's limit
    for name, res in out["resources"].items():  # a stage's own number (paper.yaml's prepare) stays
        assert res["runtime"] == 1440 and res.get("prepare") == PAPER["resources"][name].get("prepare")
    assert params["resources"]["cifar10"]["runtime"] == "auto"  # the input is not modified


def test_a_faster_device_gets_shorter_limits_and_fewer_shards(here):
    _profile(here / "profile.json", PAPER, scale=30.0)
    slow = resolve_auto(_auto(PAPER), source="auto.yaml")
    _profile(here / "profile.json", PAPER, scale=1.0)
    fast = resolve_auto(_auto(PAPER), source="auto.yaml")
    job = ("cifar10", "fm_ot")
    s, f = resolve_job(slow, *job), resolve_job(fast, *job)
    assert f["resources"]["runtime"] < s["resources"]["runtime"]
    assert f["evaluate"]["shards"] < s["evaluate"]["shards"] and s["evaluate"]["shards"] > 1
    # the cap: at most max_runtime, however slow
    _profile(here / "profile.json", PAPER, scale=100.0)
    capped = resolve_job(resolve_auto(_auto(PAPER, max_runtime=600), source="auto.yaml"), *job)
    assert capped["resources"]["runtime"] == 600 and capped["resources"]["evaluate"]["runtime"] <= 600


def test_numbers_stay_and_explicit_overrides_win(here):
    _profile(here / "profile.json", PAPER)
    params = copy.deepcopy(PAPER)
    params["resources"]["cifar10"].update(runtime="auto", max_runtime=1440)
    params["jobs"]["cifar10-ddpm"]["resources"] = {"runtime": 77}
    params["plan"] = {"profile": "profile.json"}
    out = resolve_auto(validate_params(params, source="p.yaml"))
    assert resolve_job(out, "cifar10", "ddpm")["resources"]["runtime"] == 77
    assert resolve_job(out, "cifar10", "fm_ot")["resources"]["runtime"] != "auto"
    # the evaluate stage of paper.yaml has its own numeric runtime: kept, and shards stay numeric
    assert resolve_job(out, "cifar10", "fm_ot")["resources"]["evaluate"] == PAPER["resources"]["cifar10"]["evaluate"]
    assert resolve_job(out, "imagenet64", "fm_ot") == resolve_job(PAPER, "imagenet64", "fm_ot")
    assert resolve_auto(PAPER) is PAPER  # nothing auto: nothing to do


def test_auto_without_what_it_needs_is_refused_in_one_line(here):
    params = copy.deepcopy(PAPER)
    params["resources"]["cifar10"]["runtime"] = "auto"
    params["plan"] = {"profile": "profile.json"}
    with pytest.raises(ParamsError, match=r"resources\.cifar10\.runtime: auto needs max_runtime"):
        validate_params(params, source="p.yaml")
    params["resources"]["cifar10"]["max_runtime"] = 1440
    del params["plan"]
    with pytest.raises(ParamsError, match="needs plan.profile"):
        validate_params(params, source="p.yaml")
    params["plan"] = {"profile": "profile.json"}
    with pytest.raises(ParamsError, match=r"plan.profile='profile.json': no such file; run `python -m fmcore.plan"):
        resolve_auto(validate_params(params, source="p.yaml"), source="p.yaml")
    params["evaluate"]["cifar10"]["shards"] = "three"
    with pytest.raises(ParamsError, match="shards"):
        validate_params(params, source="p.yaml")
    # evaluate.device: auto is not a planner 'auto'
    assert validate_params(copy.deepcopy(PAPER), source="p.yaml")["evaluate"]["cifar10"].get("device", "auto")
