"""Security: no code execution from data files, no params value reaches a shell, MLflow binds
to 127.0.0.1, and a secret-looking params value never reaches MLflow in clear."""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from faults_util import PY, REPO, SECRET, env, record, tiny_params, write_params

SNAKEMAKE = Path(PY).parent / "snakemake"
FMCORE = REPO / "fmcore"


def _calls(tree: ast.AST, module_names: set[str], attr: str):
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == attr
                and isinstance(node.func.value, ast.Name) and node.func.value.id in module_names):
            yield node


def _kw(node: ast.Call, name: str):
    for kw in node.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return "<missing>"


def test_every_torch_load_is_weights_only_and_every_np_load_refuses_pickles():
    """AST scan of fmcore/: torch.load(weights_only=True), np.load(allow_pickle=False), no raw pickle."""
    torch_loads, np_loads, bad = 0, 0, []
    for path in sorted(FMCORE.rglob("*.py")):
        rel = path.relative_to(REPO)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _calls(tree, {"torch"}, "load"):
            torch_loads += 1
            if _kw(node, "weights_only") is not True:
                bad.append(f"{rel}:{node.lineno}: torch.load without weights_only=True")
        for node in _calls(tree, {"np", "numpy"}, "load"):
            np_loads += 1
            if _kw(node, "allow_pickle") is not False:
                bad.append(f"{rel}:{node.lineno}: np.load without allow_pickle=False")
        for node in _calls(tree, {"pickle", "cPickle", "dill", "joblib"}, "load"):
            bad.append(f"{rel}:{node.lineno}: unrestricted pickle load")
        for node in _calls(tree, {"pickle"}, "loads"):
            bad.append(f"{rel}:{node.lineno}: unrestricted pickle.loads")
        safe_loaders = {c.name for c in ast.walk(tree) if isinstance(c, ast.ClassDef)
                        and any(getattr(b, "attr", "") == "SafeLoader" for b in c.bases)}
        for node in _calls(tree, {"yaml"}, "load"):
            loader = next((kw.value for kw in node.keywords if kw.arg == "Loader"), None)
            if not (isinstance(loader, ast.Name) and loader.id in safe_loaders):  # a SafeLoader subclass is safe
                bad.append(f"{rel}:{node.lineno}: yaml.load (use yaml.safe_load or a yaml.SafeLoader subclass)")
        for node in _calls(tree, {"os"}, "system"):
            bad.append(f"{rel}:{node.lineno}: os.system")
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and any(kw.arg == "shell" and getattr(kw.value, "value", False)
                                                  for kw in node.keywords):
                bad.append(f"{rel}:{node.lineno}: subprocess with shell=True")
            if isinstance(node, ast.ClassDef) and any(getattr(b, "attr", getattr(b, "id", "")) == "Unpickler"
                                                      for b in node.bases):
                if not any(isinstance(f, ast.FunctionDef) and f.name == "find_class" for f in node.body):
                    bad.append(f"{rel}:{node.lineno}: Unpickler subclass without find_class restriction")
    record("security", "loaders-no-pickle-execution", ok=not bad and torch_loads > 0 and np_loads > 0,
           detail=f"AST scan of fmcore/: {torch_loads} torch.load (all weights_only=True), "
                  f"{np_loads} np.load "
                  f"(all allow_pickle=False), no pickle.load/loads, yaml.load (but with a SafeLoader subclass), os.system, shell=True",
           failed=bad)
    assert torch_loads > 0 and np_loads > 0
    assert not bad, bad


def _snakemake(work: Path, params: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(work), "--configfile", str(params), *args]
    return subprocess.run(cmd, cwd=work, env=env(work), capture_output=True, text=True, timeout=300)


INJECTIONS = {
    "data_dir": ("data_dir", "data; touch PWNED"),
    "results_dir": ("results_dir", "results$(touch PWNED)"),
    "dataset-name": ("datasets", "x`touch PWNED`"),
    "partition": ("resources.checkerboard.partition", "gpu;touch PWNED"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(INJECTIONS))
def test_shell_metacharacters_in_params_are_refused_by_snakemake(tmp_path, case):
    key, value = INJECTIONS[case]
    p = tiny_params()
    if key == "datasets":
        p["datasets"][value] = p["datasets"].pop("checkerboard")
    else:
        d, *path = key.split(".")
        target = p
        for k in [d, *path][:-1]:
            target = target[k]
        target[[d, *path][-1]] = value
    params = write_params(tmp_path, p, "inject.yaml")
    out = _snakemake(tmp_path, params, "-n", "-p", "-c1")
    text = out.stdout + out.stderr
    created = list(tmp_path.rglob("PWNED")) + list(REPO.glob("PWNED"))
    ok = out.returncode != 0 and value in text and "invalid parameters" in text and not created
    record("security", f"snakemake-injection-{case}", ok=ok,
           detail=f"`{key}: {value}` -> snakemake -n refuses the params file (exit {out.returncode}), "
                  f"nothing created", failed=[] if ok else [text[-300:]])
    assert ok, text[-3000:]


@pytest.mark.slow
def test_snakemake_commands_quote_a_params_path_with_spaces(tmp_path):
    """No params string may hold a space (schema); the params *path* may: -n -p shows it quoted."""
    folder = tmp_path / "my params; touch PWNED"
    params = write_params(folder, tiny_params())
    out = _snakemake(tmp_path, params, "-n", "-p", "-c1", "--forceall")
    text = out.stdout + out.stderr
    cmds = [ln for ln in text.splitlines() if " -m fmcore." in ln]
    quoted = shlex.quote(str(params))
    ok = out.returncode == 0 and cmds and all(quoted in c for c in cmds) and not list(tmp_path.rglob("PWNED"))
    record("security", "snakemake-quotes-params-path", ok=bool(ok),
           detail=f"`snakemake -n -p` with the params file under `my params; touch PWNED/`: all {len(cmds)} "
                  f"printed commands carry it shell-quoted", failed=[] if ok else [text[-300:]])
    assert ok, text[-3000:]


def test_mlflow_ui_and_server_commands_bind_to_localhost():
    """README, docs, profiles, workflow, scripts: `mlflow ui|server` only on 127.0.0.1 (the default)."""
    files = [REPO / "README.md", REPO / "Snakefile", REPO / "dvc.yaml"]
    for folder in ("docs", "profiles", "workflow", "scripts", ".ci"):
        files += [p for p in (REPO / folder).rglob("*") if p.is_file()]
    hits, bad = 0, []
    for path in files:
        for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not re.search(r"mlflow\s+(ui|server)\b", line):
                continue
            hits += 1
            host = re.search(r"(?:--host|-h)[ =]([0-9A-Za-z.:_-]+)", line)
            if "0.0.0.0" in line or (host and host.group(1) not in ("127.0.0.1", "localhost")):
                bad.append(f"{path.relative_to(REPO)}:{i}: {line.strip()}")
    help_text = subprocess.run([str(Path(PY).parent / "mlflow"), "server", "--help"], capture_output=True,
                               text=True, timeout=120).stdout
    default_local = bool(re.search(r"--host HOST.*?\(default:\s*127\.0\.0\.1\)", help_text, re.S))
    record("security", "mlflow-binds-localhost", ok=not bad and default_local,
           detail=f"{hits} `mlflow ui/server` lines in README/docs/profiles/workflow/scripts, none binds "
                  f"beyond "
                  f"127.0.0.1; `mlflow server` defaults to 127.0.0.1: {default_local}", failed=bad)
    assert default_local
    assert not bad, bad


@pytest.mark.slow
def test_secret_looking_params_value_is_masked_in_mlflow(base_ws):
    """base_ws trained with `train.checkerboard.api_token: <SECRET>`: MLflow holds `***`, never the value."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{base_ws / 'mlflow.db'}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert runs
    logged = {k: v for r in runs for k, v in r.data.params.items()}
    token_keys = [k for k in logged if k.endswith("api_token")]
    leaks = [str(p.relative_to(base_ws)) for p in base_ws.rglob("*")
             if p.is_file() and p.suffix != ".pt" and p.name != "params.yaml"
             and SECRET.encode() in p.read_bytes()]
    ok = bool(token_keys) and all(logged[k] == "***" for k in token_keys) and not leaks
    record("security", "secret-params-masked", ok=ok,
           detail=f"a real training run with `train.checkerboard.api_token` in params: MLflow param "
                  f"{token_keys[0] if token_keys else '?'} = "
                  f"{logged.get(token_keys[0]) if token_keys else '?'}, "
                  f"the value is in no output file but the checkpoint (mlflow.db, artifacts, spool, "
                  f"train.json)",
           failed=leaks)
    assert token_keys, sorted(logged)[:20]
    assert all(logged[k] == "***" for k in token_keys)
    assert not leaks, leaks
