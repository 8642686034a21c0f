"""ODE sampling: counted NFE, known solutions, closed-form Gaussian flows."""

from __future__ import annotations

import math

import pytest
import torch
from closed_form import GaussianFlow

from fmcore.paths import CondOTPath, VEPath, VPPath, velocity_field
from fmcore.sampling import sample, sample_path

torch.set_num_threads(1)
DT = torch.float64


def _cubic(t, x):
    return 3 * t**2 * torch.ones_like(x)


@pytest.mark.parametrize(("method", "nfe", "t_last"), [("euler", 10, 0.9), ("midpoint", 20, 0.95), ("rk4", 40, 1.0)])
def test_fixed_step_nfe_is_counted(method, nfe, t_last):
    calls = []

    def v(t, x):
        calls.append(float(t))
        assert t.dim() == 0 and t.dtype == x.dtype
        return -x

    x0 = torch.ones(3, 2)
    x1, got = sample(v, x0, method=method, steps=10)
    assert got == nfe == len(calls)
    assert x1.shape == x0.shape
    assert min(calls) == 0.0 and max(calls) == pytest.approx(t_last)


def test_solvers_on_known_solutions_and_convergence_order():
    x0 = torch.zeros(2, 3, dtype=DT)
    x, nfe = sample(_cubic, x0)  # x(1) = x0 + 1
    assert torch.allclose(x, x0 + 1, atol=1e-6) and nfe > 0
    x, _ = sample(_cubic, x0, method="rk4", steps=4)
    assert torch.allclose(x, x0 + 1, atol=1e-12)  # rk4 integrates a quadratic in t exactly
    lin = lambda t, x: x  # noqa: E731  x(1) = e x0
    x0 = torch.ones(1, 1, dtype=DT)
    err = {m: [float((sample(lin, x0, method=m, steps=n)[0] - math.e).abs()) for n in (8, 16)]
           for m in ("euler", "midpoint", "rk4")}
    assert 1.8 < err["euler"][0] / err["euler"][1] < 2.2
    assert 3.6 < err["midpoint"][0] / err["midpoint"][1] < 4.4
    assert 14 < err["rk4"][0] / err["rk4"][1] < 18


def test_dopri5_nfe_matches_an_independent_counter_and_trajectory():
    count = [0]

    def v(t, x):
        count[0] += 1
        return x

    x0 = torch.randn(4, 2, dtype=DT)
    grid = torch.linspace(0, 1, 5, dtype=DT)
    traj, nfe = sample(v, x0, t_grid=grid)
    assert nfe == count[0] and nfe >= 8
    assert traj.shape == (5, 4, 2)
    want = torch.exp(grid).reshape(-1, 1, 1) * x0
    assert torch.allclose(traj, want, rtol=1e-4, atol=1e-5)
    traj, nfe = sample(v, x0, method="euler", steps=100, t_grid=grid)
    assert nfe == 100 and traj.shape == (5, 4, 2)


def test_bad_arguments_raise():
    x0 = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="method='heun'"):
        sample(_cubic, x0, method="heun")
    with pytest.raises(ValueError, match="needs steps"):
        sample(_cubic, x0, method="euler")
    with pytest.raises(ValueError, match="only for fixed-step"):
        sample(_cubic, x0, steps=5)
    with pytest.raises(ValueError, match="strictly increasing"):
        sample(_cubic, x0, t_grid=torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="t_max"):
        sample_path(_cubic, VPPath(0.1, 20.0, 1e-3), x0, t_grid=torch.tensor([0.0, 1.0]))


def test_ot_closed_form_moments():
    """dopri5 pushes N(0, I) to N(mu, s^2 + sigma_min^2) along the OT marginal field."""
    sigma_min = 0.05
    mu, s = torch.tensor([1.0, -2.0], dtype=DT), torch.tensor([0.5, 1.5], dtype=DT)
    flow = GaussianFlow(CondOTPath(sigma_min), mu, s)
    n = 4000
    x0 = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=DT)
    x1, nfe = sample(flow.velocity, x0)
    exact = flow.flow(x0, 0.0, 1.0)
    assert torch.allclose(x1, exact, atol=1e-3)  # measured 4e-4 at atol = rtol = 1e-5
    tight, _ = sample(flow.velocity, x0[:100], atol=1e-8, rtol=1e-8)
    assert torch.allclose(tight, exact[:100], atol=1e-5)  # converges to the closed form
    std = (s**2 + sigma_min**2).sqrt()
    assert ((x1.mean(0) - mu).abs() < 4 * std / math.sqrt(n)).all()
    assert ((x1.std(0) / std - 1).abs() < 4 / math.sqrt(2 * n)).all()
    assert 10 < nfe < 200


@pytest.mark.parametrize("kind", ["vp", "ve"])
@pytest.mark.parametrize("prediction", ["eps", "score"])
def test_diffusion_paths_closed_form_through_conversions(kind, prediction):
    """Analytic eps/score model of Gaussian data -> velocity_field -> sample_path == exact flow."""
    path = VPPath(0.1, 20.0, 1e-5) if kind == "vp" else VEPath(0.01, 10.0, 1e-5)
    mu, s = torch.tensor([1.0, -2.0], dtype=DT), torch.tensor([0.5, 1.5], dtype=DT)
    flow = GaussianFlow(path, mu, s)
    v = velocity_field(flow.model(prediction), path, prediction)
    noise = torch.randn(2000, 2, generator=torch.Generator().manual_seed(1), dtype=DT)
    x1, nfe = sample_path(v, path, noise)
    want = flow.flow(noise * path.prior_std, 0.0, path.t_max)
    assert torch.allclose(x1, want, atol=2e-3 * path.prior_std)
    # moments: the exact flow of the source N(0, prior_std^2) (not quite p_0 for VE: sigma_max is finite)
    m_want = flow.flow(torch.zeros(1, 2, dtype=DT), 0.0, path.t_max)[0]
    s_want = path.prior_std * flow.std(path.t_max) / flow.std(0.0)
    n = noise.shape[0]
    assert ((x1.mean(0) - m_want).abs() < 4 * s_want / math.sqrt(n)).all()
    assert ((x1.std(0) / s_want - 1).abs() < 4 / math.sqrt(2 * n)).all()
    if kind == "vp":  # the VP source is N(0, I) up to a_0 = 0.0066: moments are the data's
        assert ((x1.mean(0) - mu).abs() < 0.1).all() and ((x1.std(0) - s).abs() < 0.1).all()
    traj, nfe2 = sample_path(v, path, noise[:8], t_grid=torch.linspace(0, path.t_max, 3))
    assert traj.shape == (3, 8, 2) and torch.allclose(traj[0], noise[:8] * path.prior_std)
    assert nfe > 0 and nfe2 > 0


def test_dopri5_never_evaluates_past_the_end_time():
    """A diffusion path's field is undefined past t_max (VP: sigma_t = sqrt(<0)): torchdiffeq's
    adaptive steps used to overshoot the end and interpolate back, so DDPM/ScoreFlow sampling died
    with 'underflow in dt'. The last step must land on the end time exactly."""
    t_end = 0.999
    seen: list[float] = []

    def v(t, x):
        seen.append(float(t))
        return torch.where(t <= t_end, -x * 7.3, torch.full_like(x, float("nan")))

    x1, nfe = sample(v, torch.ones(4, 2, dtype=torch.float64), t_grid=torch.tensor([0.0, t_end], dtype=torch.float64))
    assert torch.isfinite(x1).all() and max(seen) <= t_end and nfe == len(seen)
    assert torch.allclose(x1[-1], torch.full((4, 2), math.exp(-7.3 * t_end), dtype=torch.float64), rtol=2e-2)
