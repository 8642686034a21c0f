"""The MLflow UI as a person sees it: headless Chromium on a real tracking server.

Starts ``python -m fmcore.tracking server`` (PostgreSQL + ``mlflow server``, loopback, no auth:
a browser cannot send basic-auth credentials with the UI's own requests) in a temporary
folder, trains two tiny jobs against it with the real ``python -m fmcore.train``, then renders
the experiment's page, its runs table and one run's metric chart with Debian's ``chromium``
(screenshots + the rendered DOM). Screenshots go to ``$FMREPRO_SCREENSHOTS`` if set, else to
the test's temporary folder (the paths are printed).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from workflow_util import env as wf_env
from workflow_util import tiny_smoke_params, write_yaml


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
JOBS = ("fm_ot", "fm_vp")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None,
                       reason="needs Debian's chromium (apt-get install -y chromium; .ci/run)"),
]


def _postgres_or_skip() -> None:
    from fmcore.tracking.server import ServerError, _pg_bin

    try:
        _pg_bin()
    except ServerError as exc:
        pytest.skip(str(exc))


def _chromium(url: str, *, screenshot: Path | None = None) -> str:
    """Render ``url`` (15 s of virtual time for the single-page app); return the DOM or write a PNG."""
    args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1600,1000",
            "--virtual-time-budget=15000", "--hide-scrollbars"]
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    out = subprocess.run([*args, url], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def _text(dom: str) -> str:
    dom = re.sub(r"<script.*?</script>|<style.*?</style>", " ", dom, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", dom).split())


@pytest.fixture(scope="module")
def ui_server():
    """A loopback server of its own (the postgres user must reach the folder: 0755, not pytest's 0700)."""
    _postgres_or_skip()
    root = Path(tempfile.mkdtemp(prefix="fmrepro-ui-"))
    root.chmod(0o755)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "fmcore.tracking", "server", "--root", str(root), "--port", str(port),
           "--workers", "1", "--detach"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    yield f"http://127.0.0.1:{port}"
    subprocess.run([sys.executable, "-m", "fmcore.tracking", "stop", "--root", str(root)], timeout=120)
    shutil.rmtree(root, ignore_errors=True)


def test_runs_visible_in_a_real_browser(ui_server, tmp_path, capsys):
    params = tiny_smoke_params()
    params["datasets"] = {"checkerboard": params["datasets"]["checkerboard"]}
    params["jobs"] = {f"checkerboard-{m}": params["jobs"][f"checkerboard-{m}"] for m in JOBS}
    write_yaml(tmp_path / "params.yaml", params)
    env = {**wf_env(), "MLFLOW_TRACKING_URI": ui_server}
    steps = [["fmcore.data", "prepare", "--params", "params.yaml", "--dataset", "checkerboard"]]
    steps += [["fmcore.train", "--params", "params.yaml", "--dataset", "checkerboard", "--method", m]
              for m in JOBS]
    for args in steps:
        out = subprocess.run([sys.executable, "-m", *args], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=ui_server)
    exp = client.get_experiment_by_name(params["experiment"])
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    names = [f"train/checkerboard/{m}" for m in JOBS]
    assert sorted(runs) == names
    one = runs[names[0]]
    assert one.data.tags["mlflow.source.name"] == "fmcore.train"
    assert one.inputs.dataset_inputs[0].dataset.name == "checkerboard"

    shots = Path(os.environ.get("FMREPRO_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    base = f"{ui_server}/#/experiments/{exp.experiment_id}"
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    # MLflow 3.17's UI opens experiments per its browser-wide "GenAI | Model training" switch
    # (localStorage, default GenAI); the link README prints selects model training: runs table
    landing = _text(_chromium(f"{base}?workflowType=machine_learning"))
    assert all(n in landing for n in names), landing[:2000]
    runs_page = _text(_chromium(f"{base}/runs"))
    assert all(n in runs_page for n in names) and "checkerboard" in runs_page, runs_page[:2000]
    assert "fmcore.train" in runs_page  # the Source column
    chart_url = f"{base}/runs/{one.info.run_id}/model-metrics"
    chart = _text(_chromium(chart_url))
    # the metric charts section lists every metric the run logged (the chart cards render lazily)
    assert names[0] in chart and f"Model metrics ({len(one.data.metrics)})" in chart, chart[:2000]
    files = {"runs": (f"{base}/runs", shots / "mlflow_runs.png"),
             "chart": (chart_url, shots / "mlflow_run_metrics.png")}
    for url, png in files.values():
        _chromium(url, screenshot=png)
        assert png.stat().st_size > 20_000  # a rendered page, not a blank one
    with capsys.disabled():
        print("\nMLflow UI screenshots: " + ", ".join(str(p) for _, p in files.values()))
