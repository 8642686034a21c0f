"""``benchmarks/gpu_check.py --cpu`` runs every check at toy sizes, so the GPU script cannot rot.

On the CPU the bf16/compile rows must be SKIP (with a reason), never PASS; the resume check
must have run the CLI in a 1-rank gloo group and resumed bitwise; the evaluation rows pass
their criteria. A check that raises is a FAIL row and makes the script exit 1.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def _script_module():
    spec = importlib.util.spec_from_file_location("gpu_check_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_check_that_raises_is_a_failed_row():
    gc = _script_module()
    rows = gc._guarded("sample", lambda: 1 / 0)
    assert [(r.check, r.status, r.value) for r in rows] == [("sample", "fail", "ZeroDivisionError")]
    from gpu_checks.common import Row, judged

    assert judged("x", "m", 1.0, False, "c").status == "fail"
    with pytest.raises(ValueError, match="status"):
        Row("x", "m", 1.0, "ok")


def test_without_a_gpu_it_says_so_and_exits_2(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "x.json")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr and "--cpu" in proc.stderr
    assert not (tmp_path / "x.json").exists()  # no table of nothing


def test_syncs_are_counted_over_whole_windows():
    _script_module()  # puts benchmarks/ on sys.path
    from gpu_checks.syncs import syncs_per_window

    # warm-up syncs before the first log record and the checkpoint's after the last are left out
    events = ["sync"] * 5 + ["log", "sync", "log", "sync", "sync", "log"] + ["sync"] * 9
    assert syncs_per_window(events) == (1.5, 2)
    with pytest.raises(ValueError, match="2 log records"):
        syncs_per_window(["sync", "log"])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cpu_mode_passes_and_skips_what_needs_cuda(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--cpu", "--out", str(out)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["mode"] == "cpu" and result["passed"] is True and result["device"] == "cpu"
    rows = {(r["check"], r["metric"]): r for r in result["rows"]}
    assert not [r for r in rows.values() if r["status"] == "fail"]
    for r in rows.values():  # a skip always says why; nothing measured is typed in
        assert r["status"] != "skip" or (r["note"] and r["value"] is None)
    assert rows[("train", "bf16 + compile images/s")]["status"] == "skip"
    assert rows[("train", "bf16 eager images/s")]["status"] == "skip"
    assert rows[("train", "fp32 eager images/s")]["value"] > 0
    assert rows[("resume", "process group of the CLI")]["value"] == "gloo, 1 rank"
    assert rows[("resume", "resumed == uninterrupted (bitwise)")]["value"] is True
    passed = {r["check"] for r in rows.values() if r["status"] == "pass"}
    assert passed == {"train", "resume", "eval", "sample"}
    assert "| resume" in proc.stdout and "PASS" in proc.stdout and "SKIP" in proc.stdout
