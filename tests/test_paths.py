"""Closed-form checks of fmcore.paths in float64."""

from __future__ import annotations

import math

import pytest
import torch

from fmcore.paths import CondOTPath, RectifiedFlowPath, VEPath, VPPath, build_path, velocity_field

torch.set_num_threads(1)
DT = torch.float64

PATHS = {
    "cond_ot": lambda: CondOTPath(sigma_min=1e-4),
    "rectified": lambda: RectifiedFlowPath(),
    "vp": lambda: VPPath(beta_min=0.1, beta_max=20.0, eps=1e-5),
    "ve": lambda: VEPath(sigma_min=0.01, sigma_max=50.0, eps=1e-5),
}


def _draw(shape=(16, 3, 2), seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, generator=g, dtype=DT)
    x1 = torch.randn(shape, generator=g, dtype=DT)
    t = 0.02 + 0.96 * torch.rand(shape[0], generator=g, dtype=DT)
    return x0, x1, t


@pytest.mark.parametrize("name", sorted(PATHS))
def test_u_t_is_time_derivative_of_psi_t_and_theorem3(name):
    path = PATHS[name]()
    x0, x1, t = _draw()
    t = t * path.t_max
    h = 1e-6
    fd = (path.sample_xt(x0, x1, t + h) - path.sample_xt(x0, x1, t - h)) / (2 * h)
    u = path.u_t(x0, x1, t)
    assert torch.allclose(u, fd, rtol=1e-6, atol=1e-6)
    x_t = path.sample_xt(x0, x1, t)
    assert torch.allclose(path.conditional_velocity(x_t, x1, t), u, rtol=1e-9, atol=1e-9)
    s = path.sample(x0, x1, t)
    assert torch.equal(s.x_t, x_t) and torch.equal(s.u_t, u)


@pytest.mark.parametrize("name", sorted(PATHS))
def test_conversions_round_trip(name):
    path = PATHS[name]()
    x0, x, t = _draw(seed=1)
    t = t * path.t_max
    eps = x0
    v = path.eps_to_velocity(eps, x, t)
    assert torch.allclose(path.velocity_to_eps(v, x, t), eps, rtol=1e-9, atol=1e-9)
    score = path.eps_to_score(eps, t)
    assert torch.allclose(path.score_to_eps(score, t), eps, rtol=1e-12, atol=1e-12)
    assert torch.allclose(path.score_to_velocity(score, x, t), v, rtol=1e-9, atol=1e-9)
    assert torch.allclose(path.velocity_to_score(v, x, t), score, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name", sorted(PATHS))
def test_eps_to_velocity_is_the_marginal_velocity_of_a_gaussian(name):
    """Data N(mu, s^2): p_t = N(a_t mu, S_t^2), S_t^2 = a_t^2 s^2 + sigma_t^2, whose flow field is
    v = m_t' + (S_t'/S_t)(x - m_t) with S_t S_t' = a_t a_t' s^2 + sigma_t sigma_t'."""
    path = PATHS[name]()
    x0, x, t = _draw(seed=2)
    t = t * path.t_max
    mu = torch.tensor([0.5, -1.0], dtype=DT)
    s = torch.tensor([0.3, 1.7], dtype=DT)
    tt = t.reshape(-1, 1, 1)
    a, da, sig, dsig = path.alpha(tt), path.d_alpha(tt), path.sigma(tt), path.d_sigma(tt)
    var = a**2 * s**2 + sig**2
    v_true = da * mu + (a * da * s**2 + sig * dsig) / var * (x - a * mu)
    score = -(x - a * mu) / var
    assert torch.allclose(path.score_to_velocity(score, x, t), v_true, rtol=1e-9, atol=1e-9)
    # the model-facing route: a "score" model outputs sigma_t * score, an "eps" model -sigma_t * score

    def analytic(prediction):
        def model(xx, tb):
            tb = tb.reshape(-1, 1, 1)
            aa, ss = path.alpha(tb), path.sigma(tb)
            sc = -(xx - aa * mu) / (aa**2 * s**2 + ss**2)
            return {"score": ss * sc, "eps": -ss * sc}[prediction]

        return model

    for prediction in ("score", "eps"):
        field = velocity_field(analytic(prediction), path, prediction)
        for i in (0, 5, 11):
            got = field(t[i], x.clone())  # the whole batch at time t_i
            want = (da[i] * mu + (a[i] * da[i] * s**2 + sig[i] * dsig[i]) / var[i] * (x - a[i] * mu))
            assert torch.allclose(got, want, rtol=1e-9, atol=1e-9)


def test_boundary_values():
    one, zero = torch.ones(1, dtype=DT), torch.zeros(1, dtype=DT)
    ot = CondOTPath(sigma_min=0.01)
    assert float(ot.sigma(zero)) == 1.0 and float(ot.sigma(one)) == pytest.approx(0.01)
    assert float(ot.alpha(one)) == 1.0 and float(ot.alpha(zero)) == 0.0
    x0, x1, _ = _draw()
    assert torch.allclose(RectifiedFlowPath().u_t(x0, x1, 0.3), x1 - x0)
    vp = VPPath(0.1, 20.0, 1e-5)
    assert vp.t_max == pytest.approx(1 - 1e-5) and vp.prior_std == 1.0
    tt = torch.linspace(0, vp.t_max, 11, dtype=DT)
    assert torch.allclose(vp.alpha(tt) ** 2 + vp.sigma(tt) ** 2, torch.ones_like(tt), atol=1e-12)
    assert float(vp.alpha(zero)) == pytest.approx(math.exp(-0.5 * (0.1 + 0.5 * 19.9)))
    assert float(vp.sigma(torch.tensor([vp.t_max], dtype=DT))) == pytest.approx(math.sqrt(1e-6), rel=1e-3)
    ve = VEPath(0.01, 50.0, 1e-5)
    assert float(ve.sigma(zero)) == pytest.approx(50.0) and float(ve.sigma(one)) == pytest.approx(0.01)
    assert ve.prior_std == 50.0
    assert torch.allclose(ve.diffusion_sq(tt), 2 * math.log(5000) * ve.sigma(tt) ** 2)
    with pytest.raises(ValueError, match="a_t > 0"):
        ot.eps_to_velocity(x0, x1, 0.0)


def test_sample_t_range_and_shape():
    vp = VPPath(0.1, 20.0, 0.1)
    t = vp.sample_t(1000, torch.Generator().manual_seed(0))
    assert t.shape == (1000,) and float(t.min()) >= 0.0 and float(t.max()) <= 0.9
    assert float(t.max()) > 0.85


def test_build_path_from_params_and_errors():
    p = build_path({"kind": "vp", "objective": "cfm", "beta_min": 0.1, "beta_max": 20.0, "eps": 1e-5})
    assert isinstance(p, VPPath) and p.beta_max == 20.0
    assert isinstance(build_path({"kind": "rectified", "objective": "cfm"}), RectifiedFlowPath)
    assert isinstance(build_path({"kind": "ve", "sigma_min": 0.01, "sigma_max": 10.0, "eps": 0.0}), VEPath)
    default = build_path({"kind": "ve"})
    assert (default.sigma_min, default.sigma_max, default.eps) == (0.01, 50.0, 1e-5)
    with pytest.raises(ValueError, match="path.kind='bad'"):
        build_path({"kind": "bad"})
    with pytest.raises(ValueError, match="missing key.*sigma_min"):
        build_path({"kind": "cond_ot", "objective": "cfm"})
    with pytest.raises(ValueError, match="beta_min"):
        build_path({"kind": "cond_ot", "sigma_min": 0.0, "beta_min": 0.1})
    with pytest.raises(ValueError, match="sigma_min=1.5"):
        build_path({"kind": "cond_ot", "sigma_min": 1.5})
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        build_path({"kind": "ve", "sigma_min": 1.0, "sigma_max": 0.5, "eps": 1e-5})
    with pytest.raises(ValueError, match="prediction='x1'"):
        velocity_field(lambda x, t: x, p, "x1")
    with pytest.raises(ValueError, match=r"expected \[\] or \[16\]"):
        p.sample_xt(torch.zeros(16, 2), torch.zeros(16, 2), torch.zeros(3))
