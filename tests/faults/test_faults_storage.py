"""Storage faults: a full disk (a tiny tmpfs, when mounting is allowed), an unwritable output
path, and corruption of prepared data or of the DVC cache. Each must give a clear one-line
error, keep earlier outputs intact, and never let training use corrupted data."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from faults_util import PY, check_files, cli, env, has_traceback, record, snapshot

DVC = Path(PY).parent / "dvc"
TRAIN = ("fmcore.train", "--params", "params.yaml", "--dataset", "checkerboard", "--method", "fm_ot")
RUN = Path("results/smoke/checkerboard/fm_ot")


def _one_line_error(stderr: str) -> str | None:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    return lines[0] if len(lines) == 1 and not has_traceback(stderr) else None


@pytest.fixture
def tiny_mount(tmp_path):
    """A 256 KiB tmpfs holding an earlier result and a filler that leaves ~48 KiB free."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True,
                         text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({out.stderr.strip() or out.returncode}); the "
                    "unwritable-path "
                    "test covers the error path")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(mnt: Path, free_bytes: int) -> None:
    st = os.statvfs(mnt)
    avail = st.f_bavail * st.f_frsize
    with open(mnt / "filler.bin", "wb") as f:
        f.write(b"\0" * max(avail - free_bytes, 0))


# (stage, command with {out}, what must be intact)
DISK_STAGES = {
    "prepare": ("fmcore.data", "prepare", "--params", "params.yaml", "--dataset", "checkerboard",
                "--out", "{out}"),
    "train": (*TRAIN, "--out", "{out}"),
    "report": ("fmcore.report", "--params", "params.yaml", "--no-figures", "--out", "{out}"),
}


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(DISK_STAGES))
def test_full_disk_gives_one_line_error_and_keeps_earlier_outputs(ws, base_ws, tiny_mount, stage):
    earlier = tiny_mount / "earlier"
    shutil.copytree(base_ws / RUN / "checkpoints", earlier)  # results written before the disk filled
    (earlier / "table1.csv").write_text("method,nll\nfm_ot,1.0\n")
    _fill(tiny_mount, 8 * 1024 if stage == "report" else 24 * 1024)  # less than the stage writes
    before = snapshot(tiny_mount, skip=("new",))
    argv = [a.replace("{out}", str(tiny_mount / "new" / stage)) for a in DISK_STAGES[stage]]
    out = cli(ws, *argv)
    after = snapshot(tiny_mount, skip=("new",))
    _, broken, stray = check_files(tiny_mount)
    msg = _one_line_error(out.stderr)
    shown = (msg or "").replace(str(tiny_mount), "<tmpfs>")
    ok = out.returncode != 0 and msg is not None and "space" in msg.lower() and before == after \
        and not broken and not stray
    record("fault", f"disk-full-{stage}", injected=1, survived=1 if ok else 0,
           data_lost=len(broken) + sum(before.get(k) != after.get(k) for k in before),
           detail=f"`fmcore.{argv[0].split('.')[1]}` writing to a full 256 KiB tmpfs: exit {out.returncode}, "
                  f"`{shown or out.stderr.strip().splitlines()[-1:]}`; earlier files intact, no partial "
                  f"file left",
           failed=[] if ok else [out.stderr[-500:], broken, stray])
    assert out.returncode != 0
    assert msg is not None, out.stderr[-3000:]
    assert "space" in msg.lower(), msg
    assert before == after
    assert not broken and not stray, (broken, stray)


UNWRITABLE = {
    "prepare": DISK_STAGES["prepare"],
    "train": DISK_STAGES["train"],
    "report": DISK_STAGES["report"],
}


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(UNWRITABLE))
def test_unwritable_output_path_gives_one_line_error(ws, stage):
    """The output's parent is a regular file: no directory can be made there (works as root too)."""
    blocker = ws / "blocker"
    blocker.write_text("a file where a directory is expected\n")
    argv = [a.replace("{out}", f"blocker/{stage}") for a in UNWRITABLE[stage]]
    skip = ("mlflow.db", "mlflow.db.lock")  # a training run is recorded (FAILED) in MLflow
    before = snapshot(ws, skip=skip)
    out = cli(ws, *argv)
    after = snapshot(ws, skip=skip)
    msg = _one_line_error(out.stderr)
    ok = out.returncode != 0 and msg is not None and "blocker" in msg and before == after
    record("fault", f"unwritable-{stage}", injected=1, survived=1 if ok else 0,
           data_lost=sum(before.get(k) != after.get(k) for k in before),
           detail=f"output path under a regular file: exit {out.returncode}, `{msg}`; workspace unchanged "
                  "(but for the MLflow store)",
           failed=[] if ok else [out.stderr[-500:]])
    assert out.returncode != 0
    assert msg is not None, out.stderr[-3000:]
    assert "blocker" in msg, msg
    assert before == after


def _flip(path: Path, offset: int = -5) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_dvc_cache_and_workspace_corruption_are_caught_before_training(ws):
    """`dvc add` the prepared data; flip a byte in the workspace copy, then in the DVC cache (restored
    by `dvc checkout`): `dvc status` / `fmcore.data verify` report it, and training refuses it."""
    data = ws / "data" / "prepared" / "checkerboard"
    shutil.rmtree(ws / "results")

    def dvc(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(DVC), *args], cwd=ws, env=env(ws), capture_output=True, text=True,
                              timeout=300)

    assert dvc("init", "--no-scm", "-q").returncode == 0
    added = dvc("add", "-q", "data/prepared/checkerboard")
    assert added.returncode == 0, added.stderr
    events = {}
    # 1. bit rot in the workspace copy
    _flip(data / "train.npy")
    status = dvc("status")
    events["workspace: dvc status"] = "modified" in status.stdout
    verify = cli(ws, "fmcore.data", "verify", "--params", "params.yaml", "--dataset", "checkerboard")
    events["workspace: fmcore.data verify"] = verify.returncode != 0 and "train.npy" in verify.stderr
    train = cli(ws, *TRAIN)
    events["workspace: training refuses"] = train.returncode == 2 and "sha256" in train.stderr \
        and not (ws / RUN).exists()
    # 2. bit rot in the DVC cache, restored into the workspace by `dvc checkout`
    _flip(data / "train.npy")  # flip back: workspace matches again
    assert "modified" not in dvc("status").stdout
    import hashlib

    md5 = hashlib.md5((data / "train.npy").read_bytes()).hexdigest()
    cached = ws / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    assert cached.is_file(), sorted(str(p) for p in (ws / ".dvc" / "cache").rglob("*"))[:10]
    _flip(cached)
    shutil.rmtree(data)
    checkout = dvc("checkout")
    checkout_text = (checkout.stdout + checkout.stderr).lower()
    events["cache: dvc checkout flags it"] = checkout.returncode != 0 or "corrupt" in checkout_text
    restored = (data / "train.npy").is_file()
    verify = cli(ws, "fmcore.data", "verify", "--params", "params.yaml", "--dataset", "checkerboard")
    events["cache: fmcore.data verify"] = (not restored) or (verify.returncode != 0
                                                             and "train.npy" in verify.stderr)
    train = cli(ws, *TRAIN)
    events["cache: training refuses"] = train.returncode != 0 and not (ws / RUN / "checkpoint.pt").exists() \
        and not has_traceback(train.stderr)
    caught_ws = events["workspace: fmcore.data verify"] and events["workspace: training refuses"]
    caught_cache = events["cache: fmcore.data verify"] and events["cache: training refuses"]
    record("fault", "data-corruption-dvc", injected=2, survived=int(caught_ws) + int(caught_cache),
           data_lost=0 if caught_ws and caught_cache else 1,
           detail="byte flipped in the prepared train.npy, then in its DVC cache copy: "
                  + "; ".join(f"{k}: {'yes' if v else 'no'}" for k, v in events.items()),
           events=events)
    assert caught_ws, (events, verify.stderr[-500:], train.stderr[-500:])
    assert caught_cache, (events, checkout_text, verify.stderr[-500:], train.stderr[-500:])
