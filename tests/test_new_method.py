"""Adding a path is one class and one params entry (docs/CONTRACTS.md, "Adding a path or method").

The class lives here, in the test module (importable as ``test_new_method``, the way a user's
own module is importable on PYTHONPATH); the params gain ``methods.cosine`` and its job. The
smoke data then goes through the real entry points train -> evaluate -> report, and the new
method must show up in Table 1 and in the figures with a colour of its own.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import Tensor
from workflow_util import tiny_smoke_params, write_yaml

from fmcore.paths import GaussianPath, build_path


class CosinePath(GaussianPath):
    """Cosine schedule: a_t = sin(pi t / 2), sigma_t = sigma_min + (1 - sigma_min) cos(pi t / 2).

    Args:
        sigma_min: standard deviation of p_1(x | x_1) at t = 1, in [0, 1).
    """

    def __init__(self, sigma_min: float) -> None:
        if not 0.0 <= sigma_min < 1.0:
            raise ValueError(f"sigma_min={sigma_min} is outside [0, 1)")
        self.sigma_min = sigma_min

    def alpha(self, t: Tensor) -> Tensor:
        """a_t = sin(pi t / 2)."""
        return torch.sin(0.5 * math.pi * t)

    def d_alpha(self, t: Tensor) -> Tensor:
        """a_t' = pi/2 cos(pi t / 2)."""
        return 0.5 * math.pi * torch.cos(0.5 * math.pi * t)

    def sigma(self, t: Tensor) -> Tensor:
        """sigma_t = sigma_min + (1 - sigma_min) cos(pi t / 2)."""
        return self.sigma_min + (1.0 - self.sigma_min) * torch.cos(0.5 * math.pi * t)

    def d_sigma(self, t: Tensor) -> Tensor:
        """sigma_t' = -(1 - sigma_min) pi/2 sin(pi t / 2)."""
        return -(1.0 - self.sigma_min) * 0.5 * math.pi * torch.sin(0.5 * math.pi * t)


KIND = f"{__name__}:CosinePath"


def test_kind_import_string_errors_are_one_line() -> None:
    assert isinstance(build_path({"kind": KIND, "objective": "cfm", "sigma_min": 0.01}), CosinePath)
    cases = {"no_such_module_xyz:P": "cannot import module 'no_such_module_xyz'",
             f"{__name__}:Nope": "has no GaussianPath subclass 'Nope'",
             f"{__name__}:KIND": "has no GaussianPath subclass 'KIND'"}
    for kind, why in cases.items():
        with pytest.raises(ValueError, match=why) as err:
            build_path({"kind": kind, "objective": "cfm"})
        assert "\n" not in str(err.value) and kind in str(err.value)
    with pytest.raises(ValueError, match=r"missing key\(s\) \['sigma_min'\]"):
        build_path({"kind": KIND, "objective": "cfm"})
    with pytest.raises(ValueError, match=r"key\(s\) \['s'\] it does not use"):
        build_path({"kind": KIND, "objective": "cfm", "sigma_min": 0.01, "s": 1.0})


@pytest.mark.timeout(900)
def test_new_path_runs_train_evaluate_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fmcore.data.__main__ import main as data_main
    from fmcore.evaluate import main as evaluate_main
    from fmcore.report.__main__ import main as report_main
    from fmcore.report.methods import METHOD_COLORS, method_colors
    from fmcore.train import main as train_main

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    p = tiny_smoke_params()
    p["methods"]["cosine"] = {"kind": KIND, "objective": "cfm", "sigma_min": 0.01}  # the one params entry
    p["jobs"] = {"checkerboard-fm_ot": {"dataset": "checkerboard", "method": "fm_ot"},
                 "checkerboard-cosine": {"dataset": "checkerboard", "method": "cosine"}}
    params = str(write_yaml(tmp_path / "params" / "new.yaml", p))
    assert data_main(["prepare", "--params", params, "--dataset", "checkerboard"]) == 0
    assert evaluate_main(["reference", "--params", params, "--dataset", "checkerboard"]) == 0
    for method in ("fm_ot", "cosine"):
        assert train_main(["--params", params, "--dataset", "checkerboard", "--method", method]) == 0
        args = ["--params", params, "--dataset", "checkerboard", "--method", method]
        assert evaluate_main(["run", *args]) == 0
    assert report_main(["--params", params]) == 0

    out = tmp_path / "reports" / p["experiment"]
    table = pd.read_csv(out / "table1.csv", keep_default_na=False).set_index("method")
    assert list(table.index) == ["fm_ot", "cosine"]
    assert table.loc["cosine", "mlflow_run_id"] and table.loc["cosine", "failed_parts"] == ""
    assert table.loc["cosine", "quality"] > 0 and table.loc["cosine", "nfe"] > 0
    nats = pd.read_csv(out / "table1_nll_nats.csv").set_index("method")
    assert math.isfinite(nats.loc["cosine", "nll_nats"])
    assert "| checkerboard | cosine |" in (out / "table1.md").read_text()
    assert all((out / f"{stem}.png").stat().st_size > 1000 for stem in ("fig5_quality_during_training",
                                                                         "fig7_solver_sweep"))

    # The figures draw the new method in its own colour (not a known method's, not "no data" grey).
    from mlflow import MlflowClient

    from fmcore.report.artifacts import gather_figure_data
    from fmcore.report.collect import collect_runs
    from fmcore.report.figures import fig5_quality_during_training, fig6_trajectories, fig7_solver_sweep

    colours = method_colors(["fm_ot", "cosine"])
    assert colours["fm_ot"] == METHOD_COLORS["fm_ot"]
    assert colours["cosine"] not in set(METHOD_COLORS.values()) | {"#7f7f7f"}
    assert colours == method_colors(["cosine", "fm_ot", "cosine"])  # deterministic, order-free
    uri = os.environ["MLFLOW_TRACKING_URI"]
    runs = collect_runs(p["experiment"], uri)
    order = [("checkerboard", "fm_ot"), ("checkerboard", "cosine")]
    data = gather_figure_data(MlflowClient(uri), runs.evaluations, order, tmp_path / "dl")
    assert set(data.during_training) == set(data.sweep) == set(data.trajectories) == set(order)
    for make in (fig5_quality_during_training, fig7_solver_sweep, fig6_trajectories):
        fig = make(data)
        drawn = {line.get_color() for ax in fig.axes for line in ax.lines}
        assert {colours["cosine"], colours["fm_ot"]} <= drawn and "#7f7f7f" not in drawn, make.__name__
        texts = [line.get_label() for ax in fig.axes for line in ax.lines]
        texts += [ax.get_title() for ax in fig.axes]
        texts += [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        assert "cosine" in texts or "cosine (euler)" in texts, make.__name__


def test_unknown_methods_get_distinct_colours() -> None:
    from fmcore.report.methods import METHOD_COLORS, method_colors, method_label

    many = [f"variant_{i}" for i in range(30)]
    colours = method_colors([*many, "fm_ot"])
    assert len(set(colours.values())) == 31 and colours["fm_ot"] == METHOD_COLORS["fm_ot"]
    assert not {colours[m] for m in many} & set(METHOD_COLORS.values())
    assert method_label("cosine") == "cosine" and method_label("fm_ot") == "FM w/ OT"
