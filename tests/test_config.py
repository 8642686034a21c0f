"""fmcore.config: the params files validate, jobs resolve, and bad params give one-line errors."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from fmcore.config import ParamsError, deep_merge, jobs, load_params, resolve_job, validate_params

REPO = Path(__file__).resolve().parents[1]
SMOKE = load_params(REPO / "params" / "smoke.yaml")


def test_both_experiments_validate_and_list_their_grids():
    paper = load_params(REPO / "params" / "paper.yaml")
    assert len(jobs(SMOKE)) == 14 and {m for _, m in jobs(SMOKE)} == set(SMOKE["methods"])
    assert ("imagenet128", "fm_ot") in jobs(paper) and ("cifar10", "ddpm") in jobs(paper)


def test_resolve_job_merges_job_overrides_over_dataset_and_method_sections():
    job = resolve_job(SMOKE, "checkerboard", "ot_cfm")
    assert job["train"]["batch_size"] == 128  # jobs.checkerboard-ot_cfm.train override
    assert job["train"]["lr"] == SMOKE["train"]["checkerboard"]["lr"]
    assert job["path"] == SMOKE["methods"]["ot_cfm"]
    assert job["paths"] == {"data_dir": "data/prepared/checkerboard", "run_dir": "results/smoke/checkerboard/ot_cfm"}
    assert SMOKE["train"]["checkerboard"]["batch_size"] == 256  # the params themselves are not mutated
    with pytest.raises(ParamsError, match="no job 'digits-nope'"):
        resolve_job(SMOKE, "digits", "nope")


def test_deep_merge_is_recursive_and_copies():
    base = {"a": {"b": 1, "c": [1]}, "d": 2}
    out = deep_merge(base, {"a": {"b": 5}})
    assert out == {"a": {"b": 5, "c": [1]}, "d": 2} and base["a"]["b"] == 1
    out["a"]["c"].append(2)
    assert base["a"]["c"] == [1]


def _broken(edit) -> dict:
    params = copy.deepcopy(SMOKE)
    edit(params)
    return params


BAD = [
    ("unknown method", lambda p: p["jobs"]["digits-ddpm"].update(method="ddpm2"), "jobs.digits-ddpm.method"),
    ("negative lr", lambda p: p["train"]["digits"].update(lr=-1.0), "train.digits.lr"),
    ("wrong type", lambda p: p["train"]["digits"].update(steps="many"), "train.digits.steps"),
    ("missing key", lambda p: p["train"]["digits"].pop("batch_size"), "train.digits"),
    ("path traversal", lambda p: p["datasets"].update({"../etc": {"source": "toy2d"}}), "../etc"),
    ("shell characters", lambda p: p.update(results_dir="results; rm -rf ~"), "results_dir"),
    ("undefined dataset", lambda p: p["jobs"].update({"moons-fm_ot": {"dataset": "moons", "method": "fm_ot"}}),
     "jobs.moons-fm_ot"),
    ("key/job mismatch", lambda p: p["jobs"].update({"digits-fm_vp": {"dataset": "digits", "method": "ddpm"}}),
     "jobs.digits-fm_vp"),
    ("tasks without launcher", lambda p: p["resources"]["digits"].update(nodes=2), "resources.digits: 2 tasks"),
    ("signal without srun", lambda p: p["resources"]["digits"].update(signal_lead_s=600),
     "resources.digits.signal_lead_s=600: needs launcher: srun"),
    ("signal past runtime", lambda p: p["resources"]["digits"].update(signal_lead_s=1800, launcher="srun"),
     "expected less than runtime (30 min"),
    ("gpus as a total", lambda p: p["resources"]["digits"].update(gpus=2), "'gpus' was unexpected"),
    ("part tolerance", lambda p: p["evaluate"]["digits"]["trajectories"].update(atol=0), "trajectories.atol"),
]


def test_figure_parts_are_optional_and_take_their_own_tolerances():
    params = copy.deepcopy(SMOKE)
    for part in ("during_training", "trajectories", "snapshots"):
        params["evaluate"]["checkerboard"].pop(part, None)
    params["evaluate"]["digits"]["trajectories"].update(atol=1e-2, rtol=1e-2)
    validate_params(params, source="params/x.yaml")


@pytest.mark.parametrize("name,edit,where", BAD, ids=[b[0] for b in BAD])
def test_bad_params_name_the_key(name, edit, where):
    with pytest.raises(ParamsError) as err:
        validate_params(_broken(edit), source="params/x.yaml")
    message = str(err.value)
    assert message.startswith("params/x.yaml: ") and where in message and "\n" not in message


def test_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(ParamsError, match="missing.yaml: cannot read params file"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: [unclosed\n")
    with pytest.raises(ParamsError, match=r"bad.yaml: not valid YAML at line \d+"):
        load_params(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ParamsError, match="list.yaml: expected a mapping at the top level, got list"):
        load_params(listed)
