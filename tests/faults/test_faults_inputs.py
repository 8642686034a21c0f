"""Bad input: every case gives one error line naming the bad value, exits non-zero, prints no
traceback and changes nothing on disk (sha256 of every file of the workspace before/after).

The table ``CASES`` is the source of the table in docs/faults.md
(``python -m tests.faults.summary --write-docs``).
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from faults_util import cli, has_traceback, record, snapshot, tiny_params, write_params

PWNED = "PWNED"  # a file that an injected command or pickle payload would create


class Payload:
    """A pickled object whose unpickling runs a shell command (``touch PWNED`` in the cwd)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _params(mutate: Callable[[dict], None]) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        p = tiny_params()
        mutate(p)
        path = write_params(work, p, "bad.yaml")
        path.write_text(path.read_text().replace("__DATE__", "2024-01-01"))  # an unquoted YAML date
    return setup


def _text(name: str, text: str) -> Callable[[Path], None]:
    return lambda work: (work / name).write_text(text)


def _truncate(rel: str, keep: float = 0.5) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        path = work / rel
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
    return setup


def _flip_byte(rel: str, offset: int = -7) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        path = work / rel
        data = bytearray(path.read_bytes())
        data[offset] ^= 0xFF
        path.write_bytes(bytes(data))
    return setup


def _wrong_shape(work: Path) -> None:
    path = work / "data/prepared/checkerboard/train.npy"
    n = np.load(path, mmap_mode="r").shape[0]
    with open(path, "wb") as f:
        np.save(f, np.zeros((n, 3), dtype=np.float32))


def _edit_ckpt(rel: str, **changes) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        path = work / rel
        ckpt = torch.load(path, weights_only=True)
        ckpt.update(changes)
        path.unlink()  # last.pt is a hard link to checkpoint.pt: do not write through it
        torch.save(ckpt, path)
    return setup


def _evil_ckpt(rel: str) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        path = work / rel
        path.unlink()
        torch.save({"format": "fmrepro-ckpt-v1", "model": Payload(PWNED)}, path)
    return setup


def _set(path: str, value) -> Callable[[dict], None]:
    keys = path.split(".")

    def mutate(p: dict) -> None:
        d = p
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return mutate


def _delete(path: str) -> Callable[[dict], None]:
    keys = path.split(".")

    def mutate(p: dict) -> None:
        d = p
        for k in keys[:-1]:
            d = d[k]
        del d[keys[-1]]
    return mutate


def _rename_dataset(new: str) -> Callable[[dict], None]:
    def mutate(p: dict) -> None:
        p["datasets"][new] = p["datasets"].pop("checkerboard")
    return mutate


def _nan_in_data(work: Path) -> None:
    """train.npy with one NaN row, and a manifest that agrees with it (checksums pass)."""
    import hashlib
    import json

    path = work / TRAIN_NPY
    arr = np.load(path)
    arr[7] = np.nan
    path.unlink()
    with open(path, "wb") as f:
        np.save(f, arr)
    manifest_path = path.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["train.npy"] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _other_weights(work: Path) -> None:
    """checkpoint.pt with the right header (method, model_config) but one tensor of another shape."""
    path = work / CKPT
    ckpt = torch.load(path, weights_only=True)
    name = next(iter(ckpt["ema"]))
    ckpt["ema"][name] = torch.zeros(3, 3)
    (work / LAST).unlink()  # a hard link to checkpoint.pt: do not write through it
    path.unlink()
    torch.save(ckpt, path)


def _interrupted_then(mutate: Callable[[dict], None]) -> Callable[[Path], None]:
    """last.pt of a run interrupted at step 30 (its final state, marked step 30), then params edited."""
    def setup(work: Path) -> None:
        from fmcore.training.checkpoint import save_checkpoint

        (work / LAST).unlink()  # a hard link to checkpoint.pt: do not write through it
        state = torch.load(work / "results/smoke/checkerboard/fm_ot/checkpoint.pt", weights_only=True)
        save_checkpoint({**state, "step": 30}, work / LAST)
        _params(mutate)(work)
    return setup


@dataclass
class Case:
    id: str
    group: str  # params | data | checkpoint | cli
    what: str  # the bad input, in words
    argv: tuple[str, ...]  # python -m <argv>, cwd = the workspace
    expect: tuple[str, ...]  # substrings of the error line (the bad value, what was expected)
    setup: Callable[[Path], None] | None = None
    results: dict = field(default_factory=dict)


TRAIN = ("fmcore.train", "--params", "params.yaml", "--dataset", "checkerboard", "--method", "fm_ot")
TRAIN_BAD = ("fmcore.train", "--params", "bad.yaml", "--dataset", "checkerboard", "--method", "fm_ot")
EVAL = ("fmcore.evaluate", "run", "--params", "params.yaml", "--dataset", "checkerboard", "--method", "fm_ot")
EVAL_BAD = ("fmcore.evaluate", "run", "--params", "bad.yaml", "--dataset", "checkerboard",
            "--method", "fm_ot")
PREP_BAD = ("fmcore.data", "prepare", "--params", "bad.yaml", "--dataset", "checkerboard")
CKPT = "results/smoke/checkerboard/fm_ot/checkpoint.pt"
LAST = "results/smoke/checkerboard/fm_ot/last.pt"
TRAIN_NPY = "data/prepared/checkerboard/train.npy"

CASES = [
    # -- params -------------------------------------------------------------------------
    Case("params-unknown-method", "params", "a job's method is `fm_magic`", TRAIN_BAD,
         ("fm_magic", "jobs.checkerboard-fm_ot.method", "fm_ot"),
         _params(_set("jobs.checkerboard-fm_ot.method", "fm_magic"))),
    Case("params-negative-lr", "params", "`train.checkerboard.lr: -0.001`", TRAIN_BAD,
         ("-0.001", "train.checkerboard.lr", "0"), _params(_set("train.checkerboard.lr", -0.001))),
    Case("params-steps-string", "params", "`train.checkerboard.steps: ten`", TRAIN_BAD,
         ("'ten'", "train.checkerboard.steps", "integer"), _params(_set("train.checkerboard.steps", "ten"))),
    Case("params-ema-out-of-range", "params", "`train.checkerboard.ema_decay: 1.5`", TRAIN_BAD,
         ("1.5", "ema_decay", "1"), _params(_set("train.checkerboard.ema_decay", 1.5))),
    Case("params-missing-key", "params", "`train.checkerboard.batch_size` deleted", TRAIN_BAD,
         ("batch_size", "required"), _params(_delete("train.checkerboard.batch_size"))),
    Case("params-unknown-top-key", "params", "a top-level key `learning_rate`", TRAIN_BAD,
         ("learning_rate",), _params(_set("learning_rate", 0.1))),
    Case("params-dataset-dotdot", "params", "dataset name `../evil`",
         ("fmcore.data", "prepare", "--params", "bad.yaml", "--dataset", "../evil"),
         ("../evil", "datasets"), _params(_rename_dataset("../evil"))),
    Case("params-dataset-shell", "params", "dataset name `x;touch PWNED`",
         ("fmcore.data", "prepare", "--params", "bad.yaml", "--dataset", "x;touch PWNED"),
         ("x;touch PWNED", "datasets"), _params(_rename_dataset("x;touch PWNED"))),
    Case("params-data-dir-shell", "params", "`data_dir: data; touch PWNED`", PREP_BAD,
         ("data; touch PWNED", "data_dir"), _params(_set("data_dir", "data; touch PWNED"))),
    Case("params-results-dir-dotdot", "params", "`results_dir: ../../outside`", TRAIN_BAD,
         ("../../outside", "results_dir"), _params(_set("results_dir", "../../outside"))),
    Case("params-not-yaml", "params", "params file with unbalanced brackets", TRAIN_BAD,
         ("bad.yaml", "YAML"), _text("bad.yaml", "experiment: smoke\ndatasets: [unclosed\n")),
    Case("params-missing-file", "params", "`--params nope.yaml` (no such file)",
         ("fmcore.train", "--params", "nope.yaml", "--dataset", "checkerboard", "--method", "fm_ot"),
         ("nope.yaml",)),
    # -- params, second round (issue 15): values JSON Schema cannot see, hostile YAML -----------
    Case("params-lr-inf", "params", "`train.checkerboard.lr: .inf`", TRAIN_BAD,
         ("inf", "train.checkerboard.lr", "finite"), _params(_set("train.checkerboard.lr", float("inf")))),
    Case("params-lr-nan", "params", "`train.checkerboard.lr: .nan`", TRAIN_BAD,
         ("nan", "train.checkerboard.lr", "finite"), _params(_set("train.checkerboard.lr", float("nan")))),
    Case("params-seed-huge", "params", "`train.checkerboard.seed: 10**30`", TRAIN_BAD,
         ("train.checkerboard.seed", str(10**30), "at most"), _params(_set("train.checkerboard.seed", 10**30))),
    Case("params-job-steps-zero", "params", "`jobs.checkerboard-fm_ot.train.steps: 0` (override)", TRAIN_BAD,
         ("jobs.checkerboard-fm_ot.train.steps", "0", "minimum"),
         _params(_set("jobs.checkerboard-fm_ot.train", {"steps": 0}))),
    Case("params-job-lr-negative", "params", "`jobs.checkerboard-fm_ot.train.lr: -1` (override)", TRAIN_BAD,
         ("jobs.checkerboard-fm_ot.train.lr", "-1"), _params(_set("jobs.checkerboard-fm_ot.train", {"lr": -1}))),
    Case("params-job-steps-string", "params", "`jobs.checkerboard-fm_ot.train.steps: ten` (override)",
         TRAIN_BAD, ("jobs.checkerboard-fm_ot.train.steps", "'ten'", "integer"),
         _params(_set("jobs.checkerboard-fm_ot.train", {"steps": "ten"}))),
    Case("params-job-path-bad", "params", "`jobs.checkerboard-fm_ot.path.sigma_min: -1` (override)",
         TRAIN_BAD, ("jobs.checkerboard-fm_ot.path.sigma_min", "-1"),
         _params(_set("jobs.checkerboard-fm_ot.path", {"sigma_min": -1}))),
    Case("params-data-inside-results", "params", "`data_dir: results/data` (prepare --force would empty it)",
         PREP_BAD, ("data_dir", "results/data", "results_dir", "overlap"),
         _params(_set("data_dir", "results/data"))),
    Case("params-results-is-reports", "params", "`results_dir: reports`", TRAIN_BAD,
         ("results_dir", "reports", "overlaps"), _params(_set("results_dir", "reports"))),
    Case("params-duplicate-key", "params", "a key given twice (YAML keeps the last one silently)", TRAIN_BAD,
         ("bad.yaml", "duplicate key", "experiment"),
         lambda w: (w / "bad.yaml").write_text((w / "params.yaml").read_text() + "experiment: other\n")),
    Case("params-alias-bomb", "params", "YAML aliases expanding to 10^6 values (a 300-byte file)", TRAIN_BAD,
         ("bad.yaml", "100000 values"),
         _text("bad.yaml", "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
             f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcde", "bcdef", strict=True)))),
    Case("params-deep-nesting", "params", "a list nested 20000 levels deep", TRAIN_BAD,
         ("bad.yaml", "nested"), _text("bad.yaml", "a: " + "[" * 20000 + "]" * 20000 + "\n")),
    Case("params-not-utf8", "params", "Latin-1 bytes in the params file", TRAIN_BAD,
         ("bad.yaml", "UTF-8", "line 1"), lambda w: (w / "bad.yaml").write_bytes(b"experiment: sm\xf6ke\n")),
    Case("params-date-value", "params", "`experiment: 2024-01-01` (a YAML date)", TRAIN_BAD,
         ("experiment", "date", "quote"), _params(_set("experiment", "__DATE__"))),
    Case("params-int-key", "params", "a key `1:` (an integer)", TRAIN_BAD, ("key 1", "string"),
         lambda w: (w / "bad.yaml").write_text("1: x\n" + (w / "params.yaml").read_text())),
    Case("params-empty", "params", "an empty params file", TRAIN_BAD, ("bad.yaml", "empty"), _text("bad.yaml", "")),
    # -- data -----------------------------------------------------------------------------
    Case("data-truncated", "data", "train.npy cut to half its size", TRAIN, ("train.npy",),
         _truncate(TRAIN_NPY)),
    Case("data-wrong-shape", "data", "train.npy holds [N, 3] points instead of [N, 2]", TRAIN,
         ("train.npy",), _wrong_shape),
    Case("data-checksum-verify", "data", "one byte of train.npy flipped; `fmcore.data verify`",
         ("fmcore.data", "verify", "--params", "params.yaml", "--dataset", "checkerboard"),
         ("train.npy", "sha256", "manifest"), _flip_byte(TRAIN_NPY)),
    Case("data-checksum-train", "data", "one byte of train.npy flipped; training", TRAIN,
         ("train.npy", "sha256"), _flip_byte(TRAIN_NPY)),
    Case("data-manifest-not-json", "data", "manifest.json is not JSON", TRAIN, ("manifest.json",),
         _text("data/prepared/checkerboard/manifest.json", "{broken")),
    Case("data-nan-consistent-manifest", "data", "a NaN row in train.npy, manifest checksums updated",
         TRAIN, ("train.npy", "row 7", "non-finite"), _nan_in_data),
    # -- checkpoints ------------------------------------------------------------------------
    Case("ckpt-other-weights", "checkpoint", "checkpoint.pt: right header, one EMA tensor of another shape",
         EVAL, ("checkpoint.pt", "do not fit", "1 of another shape"), _other_weights),
    Case("ckpt-finished-retrain", "checkpoint", "`fmcore.train --steps 120` on a finished 90-step run",
         (*TRAIN, "--steps", "120"), ("checkpoint.pt", "finished run", "steps: 90 -> 120", "--force")),
    Case("ckpt-truncated", "checkpoint", "checkpoint.pt cut to half its size", EVAL,
         ("checkpoint.pt", "corrupted"), _truncate(CKPT)),
    Case("ckpt-random-bytes", "checkpoint", "checkpoint.pt is 4 KiB of random bytes", EVAL,
         ("checkpoint.pt",), lambda w: (w / CKPT).write_bytes(np.random.default_rng(0).bytes(4096))),
    Case("ckpt-other-model", "checkpoint", "params now say hidden_dim 48, checkpoint has 32", EVAL_BAD,
         ("checkpoint.pt", "model_config", "48"), _params(_set("models.checkerboard.hidden_dim", 48))),
    Case("ckpt-other-method", "checkpoint", "checkpoint.pt written by method fm_vp", EVAL,
         ("checkpoint.pt", "fm_vp", "fm_ot"), _edit_ckpt(CKPT, method="fm_vp")),
    Case("ckpt-pickle-payload-eval", "checkpoint", "checkpoint.pt pickles an object running `touch PWNED`",
         EVAL, ("checkpoint.pt", "weights_only"), _evil_ckpt(CKPT)),
    Case("ckpt-pickle-payload-resume", "checkpoint", "last.pt pickles an object running `touch PWNED`",
         TRAIN, ("last.pt", "weights_only"), _evil_ckpt(LAST)),
    Case("ckpt-resume-other-settings", "checkpoint", "resume an interrupted last.pt (step 30/90) after "
         "changing train.lr", TRAIN_BAD, ("last.pt", "lr"),
         _interrupted_then(_set("train.checkerboard.lr", 1.0e-3))),
    # -- command lines ----------------------------------------------------------------------
    Case("cli-train-unknown-dataset", "cli", "`fmcore.train --dataset nope`",
         ("fmcore.train", "--params", "params.yaml", "--dataset", "nope", "--method", "fm_ot"), ("nope",)),
    Case("cli-train-unknown-method", "cli", "`fmcore.train --method fm_magic`",
         ("fmcore.train", "--params", "params.yaml", "--dataset", "checkerboard", "--method", "fm_magic"),
         ("fm_magic",)),
    Case("cli-train-negative-steps", "cli", "`fmcore.train --steps -5`", (*TRAIN, "--steps", "-5"),
         ("-5", "positive")),
    Case("cli-train-unknown-flag", "cli", "`fmcore.train --lr 0.1` (no such flag)", (*TRAIN, "--lr", "0.1"),
         ("--lr",)),
    Case("cli-eval-unknown-part", "cli", "`fmcore.evaluate run --only bogus`", (*EVAL, "--only", "bogus"),
         ("bogus", "nll")),
    Case("cli-eval-dataset-dotdot", "cli", "`fmcore.evaluate reference --dataset ../x`",
         ("fmcore.evaluate", "reference", "--params", "params.yaml", "--dataset", "../x"), ("../x",)),
    Case("cli-data-dataset-shell", "cli", "`fmcore.data prepare --dataset 'x;touch PWNED'`",
         ("fmcore.data", "prepare", "--params", "params.yaml", "--dataset", "x;touch PWNED"),
         ("x;touch PWNED", "checkerboard")),
    Case("cli-data-verify-missing", "cli", "`fmcore.data verify --out missing_dir`",
         ("fmcore.data", "verify", "--params", "params.yaml", "--dataset", "checkerboard",
          "--out", "missing_dir"),
         ("missing_dir",)),
    Case("cli-report-wrong-experiment", "cli", "`fmcore.report --experiment other` vs params' smoke",
         ("fmcore.report", "--params", "params.yaml", "--experiment", "other"), ("other", "smoke")),
    Case("cli-tracking-missing-spool", "cli", "`fmcore.tracking flush nope.jsonl`",
         ("fmcore.tracking", "flush", "nope.jsonl"), ("nope.jsonl",)),
    Case("cli-eval-nll-n-too-large", "cli", "`evaluate.checkerboard.nll.n: 5000`, test split of 128",
         EVAL_BAD, ("evaluate.checkerboard.nll.n=5000", "128"),
         _params(_set("evaluate.checkerboard.nll.n", 5000))),
    Case("cli-report-uri-not-uri", "cli", "`fmcore.report --tracking-uri notauri`",
         ("fmcore.report", "--params", "params.yaml", "--tracking-uri", "notauri"), ("notauri", "sqlite:")),
    Case("cli-report-store-not-db", "cli", "`fmcore.report --tracking-uri sqlite:///params.yaml`",
         ("fmcore.report", "--params", "params.yaml", "--tracking-uri", "sqlite:///params.yaml"),
         ("params.yaml", "cannot read", "not a database")),
    Case("cli-report-server-down", "cli", "`fmcore.report --tracking-uri http://u:pw@127.0.0.1:9` (nothing "
         "listens; a password in the URI)",
         ("fmcore.report", "--params", "params.yaml", "--tracking-uri", "http://u:pw-0123@127.0.0.1:9"),
         ("u:***@127.0.0.1:9", "cannot read")),
    Case("cli-models-bad-params", "cli", "`fmcore.models --params` with lr -0.001",
         ("fmcore.models", "--params", "bad.yaml"), ("-0.001", "lr"),
         _params(_set("train.checkerboard.lr", -0.001))),
]


def message_lines(stderr: str) -> list[str]:
    """stderr lines that carry a message (argparse's usage block is not counted)."""
    lines, in_usage = [], False
    for line in stderr.splitlines():
        if line.startswith("usage:"):
            in_usage = True
            continue
        if in_usage and line.startswith(" "):
            continue
        in_usage = False
        if line.strip():
            lines.append(line)
    return lines


def test_there_are_at_least_20_cases_over_all_groups():
    assert len(CASES) >= 20
    assert {c.group for c in CASES} == {"params", "data", "checkpoint", "cli"}
    assert len({c.id for c in CASES}) == len(CASES)


def test_the_pickle_payload_is_live(tmp_path):
    """Positive control: unpickled without weights_only, the payload does run its command."""
    path = tmp_path / "evil.pt"
    torch.save({"model": Payload(str(tmp_path / PWNED))}, path)
    torch.load(path, weights_only=False)
    assert (tmp_path / PWNED).exists()


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_line_error_and_changes_nothing(ws, case):
    if case.setup is not None:
        case.setup(ws)
    before = snapshot(ws)
    start = time.monotonic()
    out = cli(ws, *case.argv, timeout=300)
    seconds = time.monotonic() - start
    after = snapshot(ws)
    msgs = message_lines(out.stderr)
    message = msgs[-1] if msgs else ""
    checks = {
        "exit_nonzero": out.returncode != 0,
        "no_traceback": not has_traceback(out.stderr + out.stdout),
        "one_line": len(msgs) == 1,
        "names_value": all(s in message for s in case.expect),
        "disk_unchanged": before == after,
        "no_code_ran": not list(ws.rglob(PWNED)),
        "within_30s": seconds < 30,
        "no_password_shown": "pw-0123" not in out.stderr + out.stdout,
    }
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    record("input", case.id, group=case.group, what=case.what, command="python -m " + shlex.join(case.argv),
           exit=out.returncode, message=message, ok=all(checks.values()),
           failed=[k for k, v in checks.items() if not v], changed=changed[:5])
    assert all(checks.values()), (checks, out.returncode, out.stderr[-2000:], changed[:10])
