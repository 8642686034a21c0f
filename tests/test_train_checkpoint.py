"""Checkpoints: atomic writes, weights_only loading, refusal of corrupted/unsafe/mismatched files."""

from __future__ import annotations

import os
import pickle
import random

import pytest
import torch

from fmcore.training.checkpoint import FORMAT, CheckpointError, load_checkpoint, save_checkpoint


def _payload(method: str = "fm_ot", channels: int = 16) -> dict:
    return {"format": FORMAT, "experiment": "smoke", "dataset": "digits", "method": method,
            "model_config": {"arch": "unet", "model_channels": channels, "channel_mult": [1, 2]},
            "path_config": {"kind": "cond_ot"}, "train_config": {"steps": 10}, "model": {"w": torch.ones(3)},
            "ema": {"w": torch.zeros(3)}, "optimizer": {}, "scheduler": {}, "step": 7, "rng": {},
            "mlflow_run_id": None}


def test_round_trip_and_expectations(tmp_path):
    path = save_checkpoint(_payload(), tmp_path / "last.pt")
    ckpt = load_checkpoint(path, expect={"method": "fm_ot", "model_config": _payload()["model_config"]})
    assert ckpt["step"] == 7 and torch.equal(ckpt["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def test_other_method_or_model_config_is_refused(tmp_path):
    path = save_checkpoint(_payload(method="ddpm"), tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match=r"last.pt: checkpoint method is \"ddpm\", expected \"fm_ot\""):
        load_checkpoint(path, expect={"method": "fm_ot"})
    with pytest.raises(CheckpointError, match="model_config"):
        load_checkpoint(path, expect={"model_config": _payload(channels=32)["model_config"]})


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupted_file_is_refused(tmp_path, damage):
    path = save_checkpoint(_payload(), tmp_path / "last.pt")
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x80\x02garbage" * 32, "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="last.pt: corrupted or truncated checkpoint"):
        load_checkpoint(path)


def test_random_bytes_are_always_refused_with_a_checkpoint_error(tmp_path):
    """Damaged bytes make the weights-only unpickler raise whatever its opcode handler hits
    (EOFError, IndexError, KeyError, UnpicklingError...); every one must become a CheckpointError."""
    rng = random.Random(0)
    path = tmp_path / "last.pt"
    for trial in range(2000):
        path.write_bytes(rng.randbytes(rng.randint(1, 512)))
        with pytest.raises(CheckpointError, match=r"last.pt: (corrupted or truncated|refused)") as info:
            load_checkpoint(path)
        assert "\n" not in str(info.value), f"trial {trial}: multi-line message {info.value!r}"


class Evil:
    """Unpickling this would run code; weights_only must refuse it."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_arbitrary_pickled_object_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({**_payload(), "extra": Evil()}, path)
    with pytest.raises(CheckpointError, match="refused, not a plain-tensor checkpoint"):
        load_checkpoint(path)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"format": FORMAT, "x": Evil()}, protocol=2))
    with pytest.raises(CheckpointError, match=r"plain.pkl: refused.*GLOBAL"):
        load_checkpoint(plain)


def test_foreign_file_and_missing_keys_are_refused(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an fmrepro checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"format": FORMAT, "step": 1}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="lacks"):
        load_checkpoint(tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_failed_write_keeps_the_last_good_checkpoint(tmp_path):
    path = save_checkpoint(_payload(), tmp_path / "last.pt")
    good = path.read_bytes()
    with pytest.raises(Exception):
        save_checkpoint({**_payload(), "bad": lambda: None}, path)  # cannot be pickled
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_stale_temp_files_are_removed(tmp_path):
    save_checkpoint(_payload(), tmp_path / "last.pt")
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / "notes.tmp").write_text("not ours: no leading dot")
    from fmcore.training.checkpoint import remove_stale_temp

    assert [p.name for p in remove_stale_temp(tmp_path)] == [".last.pt.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "notes.tmp"]
    assert remove_stale_temp(tmp_path / "missing") == []
