"""Destination rules, atomicity, verify, dataset_hash and the CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fmcore.data.build as prepare_mod
from fmcore.data import DataError, dataset_hash, load_split, prepare, read_manifest, verify
from fmcore.data.__main__ import main

CB = {"source": "toy2d", "shape": "checkerboard", "n_train": 200, "n_test": 20, "seed": 0}
MOONS = {"source": "toy2d", "shape": "moons", "n_train": 200, "n_test": 20, "seed": 0}
REPO = Path(__file__).resolve().parents[2]


def test_same_dataset_is_noop_other_params_refused_unless_forced(tmp_path):
    out = tmp_path / "cb"
    prepare("cb", CB, out)
    mtime = (out / "train.npy").stat().st_mtime_ns
    h = dataset_hash(out)
    prepare("cb", CB, out)  # same dataset + params, intact: nothing rewritten
    assert (out / "train.npy").stat().st_mtime_ns == mtime and dataset_hash(out) == h
    with pytest.raises(DataError, match=r"other params \(n_train: 200 -> 100\); refusing"):
        prepare("cb", {**CB, "n_train": 100}, out)
    assert dataset_hash(out) == h
    prepare("cb", {**CB, "n_train": 100}, out, force=True)  # explicitly asked: rebuilt atomically
    assert read_manifest(out)["counts"]["train"] == 100 and dataset_hash(out) != h


def test_refuses_a_different_dataset_or_foreign_files(tmp_path):
    out = tmp_path / "cb"
    prepare("cb", CB, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(DataError, match=r"holds dataset 'cb' \(toy2d\), expected 'digits'"):
        prepare("digits", {"source": "sklearn_digits"}, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="no manifest.json; refusing"):
        prepare("cb", CB, foreign)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_failure_midway_keeps_the_good_output(tmp_path, monkeypatch):
    out = tmp_path / "cb"
    prepare("cb", CB, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(cfg, raw, out_dir):
        np.save(out_dir / "train.npy", np.zeros((3, 2), np.float32))  # half-written output
        raise DataError("simulated failure")

    monkeypatch.setitem(prepare_mod.SOURCES, "toy2d", boom)
    with pytest.raises(DataError, match="simulated"):
        prepare("cb", CB, out, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cb"]  # no temp dirs left behind


def test_verify_detects_bit_rot_and_prepare_repairs(tmp_path):
    out = tmp_path / "cb"
    prepare("cb", CB, out)
    assert verify(out)["dataset"] == "cb"
    raw = bytearray((out / "train.npy").read_bytes())
    raw[-1] ^= 1
    (out / "train.npy").write_bytes(bytes(raw))
    with pytest.raises(DataError, match="train.npy: sha256 .* does not match the manifest"):
        verify(out)
    with pytest.raises(DataError, match="does not match"):
        load_split(out, "train", check=True)
    prepare("cb", CB, out)  # same identity but damaged: rebuilt
    verify(out)
    (out / "test.npy").unlink()
    with pytest.raises(DataError, match="test.npy: missing"):
        verify(out)


def test_manifest_contents_and_bad_manifest(tmp_path):
    out = tmp_path / "m"
    m = prepare("m", MOONS, out)
    keys = ("dataset", "source", "shapes", "counts", "dtype", "params", "source_checksums", "files", "format")
    for key in keys:
        assert key in m
    assert m["kind"] == "points" and m["stand_in"] is True and "log_density" not in m["info"]
    (out / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(DataError, match="format 'other', expected 'fmrepro-data-v1'"):
        dataset_hash(out)
    with pytest.raises(DataError, match="split 'val'"):
        load_split(out, "val")


def test_cli_prepare_verify_and_errors(tmp_path, capsys):
    params = REPO / "params/smoke.yaml"
    out = tmp_path / "digits"
    assert main(["prepare", "--params", str(params), "--dataset", "digits", "--out", str(out)]) == 0
    assert "train [1437, 1, 8, 8]" in capsys.readouterr().out
    assert main(["verify", "--params", str(params), "--dataset", "digits", "--out", str(out)]) == 0
    assert main(["prepare", "--params", str(params), "--dataset", "cifar99", "--out", str(out)]) == 2
    assert "datasets.cifar99: not defined" in capsys.readouterr().err
    assert main(["prepare", "--params", str(tmp_path / "none.yaml"), "--dataset", "digits"]) == 2
    assert "none.yaml" in capsys.readouterr().err
    assert main(["prepare", "--params", str(params), "--dataset", "checkerboard", "--out", str(out)]) == 2
    assert "holds dataset 'digits'" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_default_params_in_subprocess(tmp_path):
    """`python -m fmcore.data prepare --dataset digits` from a directory holding params/smoke.yaml."""
    (tmp_path / "params").mkdir()
    (tmp_path / "params/smoke.yaml").write_bytes((REPO / "params/smoke.yaml").read_bytes())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "fmcore.data", "prepare", "--dataset", "digits"],
                         cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert read_manifest(tmp_path / "data/prepared/digits")["counts"] == {"train": 1437, "test": 360}
    bad = subprocess.run([sys.executable, "-m", "fmcore.data", "verify", "--dataset", "checkerboard"],
                         cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "manifest.json: missing" in bad.stderr


def test_loader_refuses_a_file_that_disagrees_with_the_manifest(tmp_path):
    out = tmp_path / "cb"
    prepare("cb", CB, out)
    np.save(out / "test.npy", np.zeros((20, 3), np.float32))
    expected = r"test.npy: shape \[20, 3\] float32, manifest says \[20, 2\] float32"
    with pytest.raises(DataError, match=expected):
        load_split(out, "test")
    (out / "train.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match="train.npy: cannot read npy .*expected the train split"):
        load_split(out, "train")
