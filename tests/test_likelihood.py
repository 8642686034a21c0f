"""ODE likelihood against closed-form Gaussian densities, Hutchinson, bits/dim."""

from __future__ import annotations

import math

import pytest
import torch
from closed_form import GaussianFlow

from fmcore.likelihood import bits_per_dim, gaussian_log_density, log_prob, log_prob_path
from fmcore.paths import CondOTPath, VEPath, VPPath, velocity_field

torch.set_num_threads(1)
DT = torch.float64
MU, S = torch.tensor([1.0, -2.0], dtype=DT), torch.tensor([0.5, 1.5], dtype=DT)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ot_exact_log_prob_equals_gaussian_density(dtype):
    """The OT marginal field of N(mu, diag(s^2)) data maps N(0, I) to N(mu, s^2 + sigma_min^2)."""
    sigma_min = 1e-4
    mu, s = MU.to(dtype), S.to(dtype)
    flow = GaussianFlow(CondOTPath(sigma_min), mu, s)
    x1 = mu + 2.0 * s * torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=dtype)
    logp, nfe = log_prob(flow.velocity, x1)
    assert logp.dtype == dtype
    std = (s**2 + sigma_min**2).sqrt()
    want = torch.distributions.Normal(mu, std).log_prob(x1).sum(1)  # measured max error 2e-4 (float32)
    assert (logp - want).abs().max() / 2 < 1e-3  # nats per dimension
    assert 10 < nfe < 200 and not logp.requires_grad


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_diffusion_log_prob_through_conversions(kind):
    path = VPPath(0.1, 20.0, 1e-5) if kind == "vp" else VEPath(0.01, 10.0, 1e-5)
    flow = GaussianFlow(path, MU, S)
    v = velocity_field(flow.model("eps"), path, "eps")
    x1 = MU + 2.0 * S * torch.randn(32, 2, generator=torch.Generator().manual_seed(1), dtype=DT)
    logp, _ = log_prob_path(v, path, x1)
    want = flow.log_prob(x1, path.t_max, path.prior_std)
    assert (logp - want).abs().max() / 2 < 1e-3
    if kind == "vp":  # the VP source is nearly p_0, so this is nearly the data density
        data = torch.distributions.Normal(MU, S).log_prob(x1).sum(1)
        assert (logp - data).abs().mean() / 2 < 0.02  # measured 0.01 nats/dim


def _full_cov_flow():
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(3), dtype=DT))
    mu = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=DT)
    s = torch.tensor([0.3, 0.8, 1.5, 2.0], dtype=DT)
    return GaussianFlow(CondOTPath(1e-3), mu, s, q), mu


def test_exact_log_prob_full_covariance():
    flow, mu = _full_cov_flow()
    x1 = mu + torch.randn(16, 4, generator=torch.Generator().manual_seed(4), dtype=DT)
    logp, _ = log_prob(flow.velocity, x1)
    assert (logp - flow.log_prob(x1, 1.0, 1.0)).abs().max() / 4 < 1e-3


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_within_its_standard_error(probe):
    """A non-diagonal Jacobian (rotated covariance) so that each probe gives a noisy estimate."""
    flow, mu = _full_cov_flow()
    point = (mu + 0.7).reshape(1, 4)
    n = 400  # one probe per row: n independent estimates of the same log-density
    gen = torch.Generator().manual_seed(5)
    est, nfe = log_prob(flow.velocity, point.expand(n, 4).clone(), exact=False, generator=gen, probe=probe)
    exact, _ = log_prob(flow.velocity, point)
    se = float(est.std() / math.sqrt(n))
    assert se > 1e-3  # it really is a stochastic estimate
    assert abs(float(est.mean() - exact[0])) < 4 * se
    more, _ = log_prob(flow.velocity, point.expand(n, 4).clone(), exact=False, hutchinson_samples=4,
                       generator=torch.Generator().manual_seed(6), probe=probe)
    assert float(more.std()) < float(est.std())  # more probes, less variance
    assert nfe > 0


def test_image_shaped_input_and_prior_std():
    """v(t, x) = c x on [B, 1, 4, 4]: x_1 = e^c x_0, so p_1 = N(0, (prior_std e^c)^2 I)."""
    c, prior_std = 0.3, 2.0
    x1 = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(7), dtype=DT)
    for exact in (True, False):
        logp, _ = log_prob(lambda t, x: c * x, x1, exact=exact, prior_std=prior_std,
                           generator=torch.Generator().manual_seed(0))
        want = gaussian_log_density(x1, prior_std * math.exp(c))
        assert logp.shape == (3,) and torch.allclose(logp, want, atol=1e-4)


def test_log_prob_bad_arguments():
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="probe='sphere'"):
        log_prob(lambda t, y: y, x, exact=False, probe="sphere")
    with pytest.raises(ValueError, match="hutchinson_samples=0"):
        log_prob(lambda t, y: y, x, exact=False, hutchinson_samples=0)
    with pytest.raises(ValueError, match="t1=1.5"):
        log_prob(lambda t, y: y, x, t1=1.5)


def test_bits_per_dim_uniform_is_eight():
    d = 3 * 8 * 8
    for scale, width in (("zero_one", 1.0), ("minus_one_one", 2.0)):
        logp_uniform = torch.full((5,), -d * math.log(width))
        assert torch.allclose(bits_per_dim(logp_uniform, d, scale), torch.full((5,), 8.0))


def test_bits_per_dim_equals_discrete_likelihood_of_a_histogram_model():
    """A density constant on each 8-bit bin makes the dequantization bound tight:
    bpd must equal -log2 P(x) / D exactly, for either model scaling."""
    g = torch.Generator().manual_seed(8)
    probs = torch.rand(256, generator=g, dtype=DT) + 0.1
    probs = probs / probs.sum()  # P(pixel = k)
    d = 16
    x = torch.randint(0, 256, (10, d), generator=g)
    u = torch.rand(10, d, generator=g, dtype=DT)
    y = (x + u) / 256
    discrete = -torch.log2(probs[x]).sum(1) / d
    for scale, (c, b) in {"zero_one": (1.0, 0.0), "minus_one_one": (2.0, -1.0)}.items():
        z = c * y + b
        k = ((z - b) / c * 256).floor().long()  # the bin of each z
        logp_z = torch.log(probs[k] * 256 / c).sum(1)  # density = mass / bin width (c/256)
        assert torch.allclose(bits_per_dim(logp_z, d, scale), discrete, atol=1e-12)
    with pytest.raises(ValueError, match="scale='unit'"):
        bits_per_dim(logp_z, d, "unit")
    with pytest.raises(ValueError, match="num_dims=0"):
        bits_per_dim(logp_z, 0)
