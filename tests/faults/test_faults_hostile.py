"""Second round of hostile and careless inputs (issue 15): planted spool files, credentials in
tracking URIs, secrets in checkpoints, training that diverges to NaN.

Each test runs the real CLIs in a workspace copy and records one ``security`` or ``fault``
line for ``python -m tests.faults.summary`` (docs/faults.md).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading

import pytest
import torch
from faults_util import SECRET, cli, error_lines, free_port, has_traceback, record, tiny_params, write_params

RUN = "results/smoke/checkerboard/fm_ot"
TRAIN = ("fmcore.train", "--params", "params.yaml", "--dataset", "checkerboard", "--method", "fm_ot")


def _runs(work):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    return client, runs


class _Listener:
    """A TCP port that counts connections (a stand-in for a host an attacker controls)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.mark.slow
def test_planted_spool_is_not_replayed(fresh_ws):
    """A spool written by someone else into a run directory: its `start` must not create a run, its
    `artifact` must not upload a file from outside the run directory, training goes on."""
    outside = fresh_ws / "outside_secret.txt"
    outside.write_text("private file outside the run directory\n")
    run_dir = fresh_ws / RUN
    run_dir.mkdir(parents=True)
    planted = [{"op": "state", "uri": "sqlite:///elsewhere.db", "run_id": None},
               {"op": "start", "experiment": "smoke", "run_name": "planted", "tags": {}, "params": {}},
               {"op": "artifact", "path": str(outside), "artifact_path": None},
               {"op": "tags", "values": {"x": "y"}, "mac": "0" * 64},  # a forged signature
               {"op": "end", "status": "FINISHED"}]
    (run_dir / "mlflow_spool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in planted))
    out = cli(fresh_ws, *TRAIN)
    client, runs = _runs(fresh_ws)
    names = [r.info.run_name for r in runs]
    uploaded = [a.path for r in runs for a in client.list_artifacts(r.info.run_id)]
    rejected = run_dir / "mlflow_spool.jsonl.rejected"
    checks = {
        "train_ok": out.returncode == 0,
        "no_planted_run": "planted" not in names and names == ["train/checkerboard/fm_ot"],
        "no_outside_upload": "outside_secret.txt" not in uploaded,
        "said_so": "ignored 5 record(s)" in out.stderr,
        "kept_aside_0600": rejected.is_file() and stat.S_IMODE(rejected.stat().st_mode) == 0o600,
    }
    record("security", "planted-spool-not-replayed", ok=all(checks.values()),
           detail="unsigned `start`/`artifact`/`end` records and a forged signature planted in a run "
                  "directory's mlflow_spool.jsonl before training: none replayed (no extra run, no upload of "
                  "a file outside the run dir), a copy kept 0600 as .rejected, training finished",
           failed=[k for k, v in checks.items() if not v])
    assert all(checks.values()), (checks, names, uploaded, out.stderr[-1500:])


@pytest.mark.slow
def test_flush_ignores_the_uri_in_a_planted_spool(tmp_path):
    """`fmcore.tracking flush` must deliver to this environment's URI, never to one named in the file,
    and must not send $MLFLOW_TRACKING_TOKEN there."""
    listener = _Listener()
    try:
        spool = tmp_path / "mlflow_spool.jsonl"
        spool.write_text(json.dumps({"op": "state", "uri": f"http://127.0.0.1:{listener.port}", "run_id": "r1"})
                         + "\n" + json.dumps({"op": "metrics", "step": 1, "ts": 0, "values": {"loss": 1.0}}) + "\n")
        out = cli(tmp_path, "fmcore.tracking", "flush", spool.name, MLFLOW_TRACKING_TOKEN="tok-0123")
        connections = listener.connections
    finally:
        listener.close()
    lines = error_lines(out.stderr)
    checks = {"refused": out.returncode != 0, "no_connection": connections == 0,
              "one_line": len(lines) == 2 and "mlflow_spool.jsonl" in lines[-1],
              "no_traceback": not has_traceback(out.stderr)}
    record("security", "flush-ignores-spool-uri", ok=all(checks.values()),
           detail=f"an unsigned spool naming http://127.0.0.1:<listener> as its store, flushed with "
                  f"MLFLOW_TRACKING_TOKEN set: {connections} connection(s) to the named host, exit "
                  f"{out.returncode}, `{lines[-1] if lines else ''}`",
           failed=[k for k, v in checks.items() if not v])
    assert all(checks.values()), (checks, out.stderr[-1500:])


@pytest.mark.slow
def test_password_in_tracking_uri_is_never_shown_or_stored(fresh_ws):
    """Training against an unreachable server whose URI carries a password: the password is not on
    stderr (job logs) nor in the spool, and the spool is 0600."""
    password = "pw-secret-4567"
    uri = f"http://alice:{password}@127.0.0.1:{free_port()}"
    out = cli(fresh_ws, *TRAIN, MLFLOW_TRACKING_URI=uri)
    run_dir = fresh_ws / RUN
    spool = run_dir / "mlflow_spool.jsonl"
    leaks = [str(p.relative_to(fresh_ws)) for p in run_dir.rglob("*") if p.is_file()
             and password.encode() in p.read_bytes()]
    checks = {
        "train_ok": out.returncode == 0,
        "spooled": spool.is_file(),
        "not_on_stderr": password not in out.stderr + out.stdout,
        "redacted_on_stderr": "alice:***@127.0.0.1" in out.stderr,
        "not_in_files": not leaks,
        "spool_0600": spool.is_file() and stat.S_IMODE(spool.stat().st_mode) == 0o600,
    }
    record("security", "uri-password-redacted", ok=all(checks.values()),
           detail="MLFLOW_TRACKING_URI=http://alice:<password>@<unreachable>: training spools; the password "
                  "is on no output line (shown as alice:***) and in no file of the run directory; spool 0600",
           failed=[k for k, v in checks.items() if not v] + leaks)
    assert all(checks.values()), (checks, leaks, out.stderr[-1500:])


@pytest.mark.slow
def test_secret_params_value_is_not_in_any_output_file(base_ws):
    """base_ws trained with `train.checkerboard.api_token`: the value is in no file but params.yaml,
    checkpoints included (they hold the train settings for resume checks, masked)."""
    leaks = [str(p.relative_to(base_ws)) for p in base_ws.rglob("*")
             if p.is_file() and p.name != "params.yaml" and SECRET.encode() in p.read_bytes()]
    ckpt = torch.load(base_ws / RUN / "checkpoint.pt", weights_only=True)
    masked = ckpt["train_config"].get("api_token") == "***"
    record("security", "secret-params-not-in-checkpoints", ok=not leaks and masked,
           detail="`train.checkerboard.api_token` is `***` in checkpoint.pt/last.pt/step_*.pt "
                  "(train_config) and appears in no other output file", failed=leaks)
    assert masked and not leaks, leaks


def _huge_weights_last_pt(work) -> bytes:
    """last.pt of a run interrupted at step 30 of 90 whose weights are finite but ~1e30 (the next
    forward pass overflows)."""
    from fmcore.training.checkpoint import save_checkpoint

    (work / RUN / "last.pt").unlink()  # a hard link to checkpoint.pt: do not write through it
    state = torch.load(work / RUN / "checkpoint.pt", weights_only=True)
    state["model"] = {k: v * 1e30 if v.is_floating_point() else v for k, v in state["model"].items()}
    save_checkpoint({**state, "step": 30}, work / RUN / "last.pt")
    return (work / RUN / "last.pt").read_bytes()


@pytest.mark.slow
def test_training_that_diverges_to_nan_stops_with_one_line(ws):
    """lr 1e30 (finite: passes the schema) and a resumed state that overflows: each run stops with a
    one-line error naming the step, exits non-zero, writes no final checkpoint, keeps last.pt."""
    results = {}
    write_params(ws, tiny_params({"train": {"checkerboard": {"lr": 1.0e30}}}), "diverge.yaml")
    out = cli(ws, "fmcore.train", "--params", "diverge.yaml", "--dataset", "checkerboard", "--method", "fm_ot",
              "--out", "results/diverge")
    lines = error_lines(out.stderr)
    results["lr-1e30"] = {
        "exit_1": out.returncode == 1, "no_traceback": not has_traceback(out.stderr),
        "says_nan": bool(lines) and "non-finite loss" in lines[-1] and "no last.pt" in lines[-1],
        "no_checkpoint": not (ws / "results/diverge/checkpoint.pt").exists()}
    before = _huge_weights_last_pt(ws)
    final_before = (ws / RUN / "checkpoint.pt").read_bytes()
    out2 = cli(ws, *TRAIN)
    lines2 = error_lines(out2.stderr)
    results["resumed-overflow"] = {
        "exit_1": out2.returncode == 1, "no_traceback": not has_traceback(out2.stderr),
        "says_step": bool(lines2) and "non-finite loss" in lines2[-1] and "at step 31/90" in lines2[-1]
        and "keeps step 30" in lines2[-1],
        "last_pt_kept": (ws / RUN / "last.pt").read_bytes() == before,
        "final_kept": (ws / RUN / "checkpoint.pt").read_bytes() == final_before}
    survived = sum(all(c.values()) for c in results.values())
    lost = int(not results["resumed-overflow"]["last_pt_kept"]) + int(not results["resumed-overflow"]["final_kept"])
    record("fault", "training-diverges-to-nan", injected=2, survived=survived, data_lost=lost,
           detail="train.lr 1e30 (finite, passes the schema) and a resumed last.pt whose weights overflow: "
                  f"exit 1 with `{lines2[-1] if lines2 else ''}`; last.pt and checkpoint.pt untouched",
           failed=[f"{k}.{c}" for k, v in results.items() for c, ok in v.items() if not ok])
    assert survived == 2, (results, out.stderr[-1200:], out2.stderr[-1200:])
    assert os.path.exists(ws / RUN / "last.pt")
