"""Fixtures of the fault-injection suite: one tiny trained workspace, copied per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from faults_util import cli, copy_tree, tiny_params, write_params
from summary import session_results


_SESSION = {"ran": False}


@pytest.fixture(scope="session", autouse=True)
def _fresh_results():
    """Start each session with its own empty results file (the summary reads the newest)."""
    path = session_results()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    _SESSION["ran"] = True
    yield


@pytest.fixture(scope="session")
def base_ws(tmp_path_factory) -> Path:
    """A workspace (cwd of every CLI): params.yaml, prepared checkerboard, fm_ot trained once.

    The uninterrupted training here is the baseline the interrupted runs are compared with.
    """
    work = tmp_path_factory.mktemp("base")
    write_params(work, tiny_params())
    for args in (("fmcore.data", "prepare", "--params", "params.yaml", "--dataset", "checkerboard"),
                 ("fmcore.train", "--params", "params.yaml", "--dataset", "checkerboard",
                  "--method", "fm_ot")):
        out = cli(work, *args)
        assert out.returncode == 0, out.stderr[-3000:]
    return work


@pytest.fixture(scope="session")
def evaluated_ws(base_ws, tmp_path_factory) -> Path:
    """``base_ws`` plus reference statistics and one uninterrupted evaluation (the eval baseline)."""
    work = copy_tree(base_ws, tmp_path_factory.mktemp("evaluated") / "ws")
    for args in (("fmcore.evaluate", "reference", "--params", "params.yaml", "--dataset", "checkerboard"),
                 ("fmcore.evaluate", "run", "--params", "params.yaml", "--dataset", "checkerboard",
                  "--method", "fm_ot")):
        out = cli(work, *args)
        assert out.returncode == 0, out.stderr[-3000:]
    return work


@pytest.fixture
def ws(base_ws, tmp_path) -> Path:
    """A private copy of ``base_ws``."""
    return copy_tree(base_ws, tmp_path / "ws")


@pytest.fixture
def fresh_ws(base_ws, tmp_path) -> Path:
    """A copy of ``base_ws`` with prepared data but no results and an empty MLflow store."""
    work = tmp_path / "ws"
    work.mkdir()
    shutil.copy(base_ws / "params.yaml", work / "params.yaml")
    shutil.copytree(base_ws / "data", work / "data")
    return work


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Print the suite's figures (faults injected / survived, inputs tried, data lost)."""
    path = session_results()
    if not _SESSION["ran"] or not path.is_file() or not path.read_text().strip():
        return
    from summary import format_summary, load_results

    terminalreporter.section("fault-injection summary (tests/faults)")
    for line in format_summary(load_results(path)).splitlines():
        terminalreporter.write_line(line)
