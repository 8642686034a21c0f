"""The canary (python -m fmcore.canary): every job's step, checkpoint round trip and evaluation batches."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from fmcore.canary.__main__ import main
from fmcore.canary.checks import PartCheck, fit_batch, micro_batches_for, rank_batch
from fmcore.config import load_params, resolve_job

REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "params" / "smoke.yaml")
PAPER = str(REPO / "params" / "paper.yaml")


def _json(capsys, argv: list[str]) -> tuple[int, dict]:
    rc = main([*argv, "--json"])
    return rc, json.loads(capsys.readouterr().out)


def test_smoke_jobs_pass_with_times_memory_and_the_cpu_cap(capsys) -> None:
    torch.set_num_threads(1)
    rc, out = _json(capsys, ["--params", SMOKE, "--synthetic", "--device", "cpu",
                             "--jobs", "checkerboard-fm_ot,digits-score_ve"])
    assert rc == 0 and out["max_batch"] == 2 and out["synthetic"] is True
    jobs = {j["key"]: j for j in out["jobs"]}
    assert list(jobs) == ["checkerboard-fm_ot", "digits-score_ve"]
    for job in jobs.values():
        assert job["ok"] and not job["error"] and job["capped_at"] == 2
        assert job["peak_bytes"] > 50 * 2**20 and job["memory_kind"].startswith("RSS")
        assert job["checkpoint_bytes"] > 10_000 and job["save_seconds"] >= 0 and job["load_seconds"] > 0
        parts = {p["name"]: p for p in job["parts"]}
        assert parts["train"]["batch"] == 2 and parts["train"]["seconds"] > 0
        assert parts["nll"]["wanted"] > 2 and parts["nll"]["batch"] == 2 and parts["sample"]["seconds"] > 0
    assert {p["name"] for p in jobs["checkerboard-fm_ot"]["parts"]} == {"train", "nll", "dt_nll", "sample",
                                                                         "features"}
    assert {p["name"]: p["status"] for p in jobs["checkerboard-fm_ot"]["parts"]}["features"] == "n/a"
    digits = {p["name"]: p for p in jobs["digits-score_ve"]["parts"]}
    assert digits["features"]["status"] == "ok" and digits["features"]["seconds"] is not None


def test_jobs_of_one_network_share_its_build_and_checkpoint_round_trip(capsys, monkeypatch) -> None:
    """The methods of a dataset train one shared network; only the first writes and reloads the
    checkpoint, the others evaluate it through their own path; another dataset starts afresh."""
    import fmcore.evaluation.model as eval_model

    torch.set_num_threads(1)
    paths = []
    real = eval_model.field_of
    monkeypatch.setattr(eval_model, "field_of", lambda m, cfg: paths.append(cfg["kind"]) or real(m, cfg))
    rc, out = _json(capsys, ["--params", SMOKE, "--synthetic", "--device", "cpu",
                             "--jobs", "checkerboard-fm_ot,checkerboard-ddpm,checkerboard-score_ve,digits-fm_ot"])
    assert rc == 0
    jobs = {j["key"]: j for j in out["jobs"]}
    first, ddpm, ve, digits = (jobs[k] for k in ("checkerboard-fm_ot", "checkerboard-ddpm",
                                                  "checkerboard-score_ve", "digits-fm_ot"))
    for own in (first, digits):  # a round trip of its own
        assert own["shared_with"] == "" and own["save_seconds"] >= 0 and own["load_seconds"] > 0
    for repeat in (ddpm, ve):
        assert repeat["ok"] and repeat["shared_with"] == "checkerboard-fm_ot"
        assert repeat["save_seconds"] is None and repeat["load_seconds"] is None
        assert repeat["checkpoint_bytes"] == first["checkpoint_bytes"] > 10_000
        assert all(p["seconds"] for p in repeat["parts"] if p["name"] in ("train", "nll", "sample"))
    # the repeats read the shared network through their own paths (vp for ddpm, ve for score_ve);
    # the round trips go through load_eval_model (cond_ot, cond_ot), which calls field_of too
    assert paths == ["cond_ot", "vp", "ve", "cond_ot"]
    main(["--params", SMOKE, "--synthetic", "--device", "cpu", "--jobs", "checkerboard-fm_ot,checkerboard-ddpm"])
    table = capsys.readouterr().out
    row = next(ln for ln in table.splitlines() if ln.startswith("checkerboard-ddpm"))
    assert "= checkerboard-fm_ot" in row and "the methods of a network share it" in table


def test_table_and_a_failing_job(tmp_path: Path, capsys) -> None:
    """A job that cannot train is one FAIL row with its first error line; the others still run."""
    p = yaml.safe_load(Path(SMOKE).read_text())
    p["methods"]["broken"] = {"kind": "no_such_module_xyz:Path", "objective": "cfm"}
    p["jobs"] = {"checkerboard-broken": {"dataset": "checkerboard", "method": "broken"},
                 "checkerboard-fm_ot": {"dataset": "checkerboard", "method": "fm_ot"}}
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump(p))
    rc = main(["--params", str(params), "--synthetic", "--device", "cpu", "--max-batch", "0"])
    out = capsys.readouterr().out
    assert rc == 1
    rows = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("checkerboard-")}
    assert rows["checkerboard-broken"].split()[1] == "FAIL"
    assert "cannot import module 'no_such_module_xyz'" in rows["checkerboard-broken"]
    assert rows["checkerboard-fm_ot"].split()[1] == "OK" and "capped" not in rows["checkerboard-fm_ot"]
    assert "256 x1/rank" in rows["checkerboard-fm_ot"]  # --max-batch 0: the real batch on a CPU
    assert "1 of 2 job(s) OK, 1 FAILED" in out


def test_bad_input_is_one_line(capsys) -> None:
    assert main(["--params", SMOKE, "--jobs", "nope", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --jobs: 'nope' is neither a job nor a dataset") and err.count("\n") == 1


def test_oom_halves_until_it_fits_and_names_micro_batches() -> None:
    def run(batch: int) -> None:
        if batch > 24:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    part = PartCheck("nll", 500, 500)
    fit_batch(part, run, torch.device("cpu"), cap=0)
    assert (part.batch, part.status) == (15, "oom")  # 500 -> 250 -> 125 -> 62 -> 31 -> 15
    job = resolve_job(load_params(PAPER), "cifar10", "fm_ot")
    assert rank_batch(job) == (2, 128, 1)  # 256 over 2 GPUs, one micro-batch each
    assert micro_batches_for(job, 100) == 4 and micro_batches_for(job, 128) == 2
    assert micro_batches_for(job, 1) == 256
    with pytest.raises(torch.cuda.OutOfMemoryError):
        fit_batch(PartCheck("train", 4, 4), lambda b: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError()),
             torch.device("cpu"), cap=0)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_paper_grid_on_cpu_through_the_cli(tmp_path: Path) -> None:
    """CI's canary: all 16 jobs of params/paper.yaml with the paper's real U-Nets (CIFAR-10 171 M to
    ImageNet 128), batch capped on the CPU; one checkpoint round trip per network."""
    out_json = tmp_path / "canary.json"
    cmd = [sys.executable, "-m", "fmcore.canary", "--params", PAPER, "--synthetic", "--device", "cpu",
           "--out", str(out_json)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1700, check=False)
    print(out.stdout)  # the table, in the CI log
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    paper = load_params(PAPER)
    rows = {ln.split()[0]: ln for ln in out.stdout.splitlines() if ln.split() and ln.split()[0] in paper["jobs"]}
    assert set(rows) == set(paper["jobs"]) and len(rows) == 16
    assert all(row.split()[1] == "OK" and "batch capped at 2 (CPU)" in row and "GiB RSS" in row
               for row in rows.values())
    assert "2 of 128 x1/rank, 2 rank(s)" in rows["cifar10-fm_ot"]
    assert "= cifar10-fm_ot" in rows["cifar10-scoreflow"] and "= imagenet64-fm_ot" in rows["imagenet64-ddpm"]
    assert "16 of 16 job(s) OK" in out.stdout and "every batch capped at 2 (CPU)" in out.stdout
    data = json.loads(out_json.read_text())
    firsts = [j for j in data["jobs"] if not j["shared_with"]]
    assert [j["key"] for j in firsts] == ["cifar10-fm_ot", "imagenet32-fm_ot", "imagenet64-fm_ot", "imagenet128-fm_ot"]
    sizes = [j["checkpoint_bytes"] for j in firsts]  # Adam state + weights + EMA of ever larger U-Nets
    assert sizes == sorted(sizes) and sizes[0] > 2 * 2**30
    assert all(j["peak_bytes"] > sizes[0] / 2 for j in data["jobs"])
