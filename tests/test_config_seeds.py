"""Seeds in the grid: one run per (job, seed); one seed keeps the layout of a grid without seeds."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from fmcore.config import ParamsError, parse_run, resolve_job, runs, seeds_of, validate_params
from fmcore.config.params import load_params
from fmcore.evaluation.reference import reference_dir

REPO = Path(__file__).resolve().parents[1]
SMOKE = load_params(REPO / "params" / "smoke.yaml")


def _with(edit) -> dict:
    params = copy.deepcopy(SMOKE)
    edit(params)
    return validate_params(params, source="p.yaml")


def test_no_seeds_key_is_the_grid_without_seeds():
    assert "seeds" not in SMOKE
    assert runs(SMOKE)[0] == ("checkerboard", "fm_ot", 0, "fm_ot") and len(runs(SMOKE)) == 14
    job = resolve_job(SMOKE, "digits", "fm_ot")
    assert job["paths"]["run_dir"] == "results/smoke/digits/fm_ot" and job["run"] == "fm_ot"
    assert job["train"] == SMOKE["train"]["digits"] and job["seed"] == 0
    assert reference_dir(job) == Path("results/smoke/digits/reference")


def test_one_seed_keeps_paths_and_sets_train_seed():
    params = _with(lambda p: p.update(seeds=[7]))
    job = resolve_job(params, "digits", "ddpm")
    assert job["paths"]["run_dir"] == "results/smoke/digits/ddpm" and job["train"]["seed"] == 7
    assert parse_run(params, "digits", "ddpm") == ("ddpm", None)


def test_several_seeds_multiply_runs_and_carry_the_seed():
    params = _with(lambda p: p.update(seeds=[0, 1, 2]))
    assert len(runs(params)) == 42
    assert ("digits", "ot_cfm", 2, "ot_cfm/seed2") in runs(params)
    job = resolve_job(params, "digits", "ot_cfm", seed=2)
    assert job["paths"]["run_dir"] == "results/smoke/digits/ot_cfm/seed2"
    assert job["train"]["seed"] == 2 and job["run"] == "ot_cfm/seed2"
    assert reference_dir(job) == Path("results/smoke/digits/reference")  # shared by every run of a dataset
    assert parse_run(params, "digits", "ot_cfm/seed2") == ("ot_cfm", 2)
    with pytest.raises(ParamsError, match=r"jobs.digits-ot_cfm: seeds \[0, 1, 2\]: name one \(--seed\)"):
        resolve_job(params, "digits", "ot_cfm")
    with pytest.raises(ParamsError, match="seed 5 is not one of its seeds"):
        resolve_job(params, "digits", "ot_cfm", seed=5)
    with pytest.raises(ParamsError, match="no run digits/ot_cfm/seed9"):
        parse_run(params, "digits", "ot_cfm/seed9")


def test_job_seeds_override_the_experiment():
    params = _with(lambda p: (p.update(seeds=[0, 1, 2]), p["jobs"]["digits-fm_ot"].update(seeds=[4])))
    assert seeds_of(params, "digits", "fm_ot") == [4] and seeds_of(params, "digits", "ddpm") == [0, 1, 2]
    assert resolve_job(params, "digits", "fm_ot")["paths"]["run_dir"] == "results/smoke/digits/fm_ot"
    assert len(runs(params)) == 13 * 3 + 1


@pytest.mark.parametrize("edit, where", [
    (lambda p: p.update(seeds=[]), "seeds: [] should be non-empty"),
    (lambda p: p.update(seeds=[1, 1]), "seeds: [1, 1] has non-unique elements"),
    (lambda p: p.update(seeds=[-1]), "seeds.0: -1 is less than the minimum of 0"),
    (lambda p: p["jobs"]["digits-fm_ot"].update(seeds="0"), "jobs.digits-fm_ot.seeds: '0' is not of type 'array'"),
])
def test_bad_seeds_name_the_key(edit, where):
    with pytest.raises(ParamsError, match="^p.yaml: " + where.replace("[", r"\[").replace("]", r"\]")):
        _with(edit)


def test_claims_experiment_has_the_grid_and_the_parts_the_claims_read():
    path = REPO / "params" / "claims.yaml"
    params = load_params(path)
    assert params["experiment"] == "claims" and params["seeds"] == [0, 1, 2, 3, 4]
    grid = runs(params)
    assert len(grid) == 2 * 7 * 5 and {d for d, _, _, _ in grid} == {"checkerboard", "digits"}
    assert {m for _, m, _, _ in grid} == {"fm_ot", "fm_vp", "ddpm", "score_ve", "scoreflow", "rectified_flow",
                                          "ot_cfm"}
    for dataset in ("checkerboard", "digits"):
        ev = params["evaluate"][dataset]
        assert "midpoint" in ev["sweep"]["solvers"] and ev["during_training"]["every"] > 0
        assert ev["trajectories"]["n"] > 0 and params["train"][dataset]["steps"] > SMOKE["train"][dataset]["steps"]
    header = path.read_text().split("\nexperiment:")[0]
    assert "WALL TIME, MEASURED:" in header and "docs/example_report/claims/" in header  # measured, not estimated
    assert (REPO / "docs" / "example_report" / "claims" / "claims.md").is_file()


@pytest.mark.parametrize("name", ["smoke", "claims", "paper"])
def test_shipped_dvc_runs_files_match_their_params(name):
    """dvc.yaml reads params/dvc/<name>.runs.yaml: each committed one lists exactly its params' runs."""
    from fmcore.config.dvc_runs import check_runs_file

    params_path = REPO / "params" / f"{name}.yaml"
    assert check_runs_file(load_params(params_path), params_path) == REPO / "params" / "dvc" / f"{name}.runs.yaml"


def test_dvc_runs_keys_args_and_stale_files(tmp_path, capsys):
    """One seed: the job key and no --seed (the layout without seeds); several: <job>-seed<k>. A
    stale file names the first difference and the command that regenerates it (exit 2)."""
    import yaml

    from fmcore.config.__main__ import main
    from fmcore.config.dvc_runs import dvc_runs

    one = dvc_runs(SMOKE)
    assert list(one)[:2] == ["checkerboard-fm_ot", "checkerboard-fm_vp"] and len(one) == 14
    assert one["digits-ddpm"] == {"job": "digits-ddpm", "dataset": "digits", "method": "ddpm", "run": "ddpm",
                                  "seed_arg": ""}
    params = _with(lambda p: (p.update(seeds=[0, 1]), p["jobs"]["digits-ddpm"].update(seeds=[7])))
    many = dvc_runs(params)
    assert many["digits-fm_ot-seed1"] == {"job": "digits-fm_ot", "dataset": "digits", "method": "fm_ot",
                                          "run": "fm_ot/seed1", "seed_arg": " --seed 1"}
    assert many["digits-ddpm"]["seed_arg"] == "" and len(many) == 2 * 13 + 1
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    src = str(tmp_path / "p.yaml")
    assert main(["dvc-runs", "--params", src]) == 0 and (tmp_path / "dvc" / "p.runs.yaml").is_file()
    assert main(["dvc-runs", "--params", src, "--check"]) == 0
    fewer_jobs = {k: v for k, v in params["jobs"].items() if k != "checkerboard-fm_ot"}
    for edit, what in (({"seeds": [0, 1, 2]}, "missing run 'checkerboard-fm_ot-seed2'"),
                       ({"seeds": [0]}, "missing run 'checkerboard-fm_ot'"),  # one seed: the job key
                       ({"jobs": fewer_jobs}, "run 'checkerboard-fm_ot-seed0' is no longer in the grid")):
        (tmp_path / "p.yaml").write_text(yaml.safe_dump({**params, **edit}, sort_keys=False))
        capsys.readouterr()
        assert main(["dvc-runs", "--params", src, "--check"]) == 2
        err = capsys.readouterr().err
        assert f"stale for {src} ({what}); run `python -m fmcore.config dvc-runs --params {src}`" in err, err
    (tmp_path / "dvc" / "p.runs.yaml").write_bytes(b"\xff\xfe")
    assert main(["dvc-runs", "--params", src, "--check"]) == 2
    assert "unreadable DVC runs file" in capsys.readouterr().err
