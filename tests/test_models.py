"""Tests of fmcore.models: time embedding, MLP, ADM U-Net, config validation, CLI."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from fmcore.config import load_params
from fmcore.models import (
    MLP,
    PAPER_CONFIGS,
    TINY_CHECKERBOARD,
    TINY_DIGITS,
    build_model,
    count_parameters,
    sinusoidal_embedding,
)
from fmcore.models.__main__ import main
from fmcore.models.benchmark import time_train_step
from fmcore.models.blocks import AttentionBlock, ResBlock

ROOT = Path(__file__).resolve().parents[1]

# Measured once with `python -m fmcore.models`; pins the architecture against silent changes.
# ImageNet64 + ADM's 1000-class embedding (1000 x 768) = 295.9M, the 296M that Dhariwal &
# Nichol report for their class-conditional ImageNet 64x64 model.
PAPER_PARAM_COUNTS = {
    "cifar10": 171_268_099,
    "imagenet32": 228_149_507,
    "imagenet64": 295_131_267,
    "imagenet128": 542_804_483,
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- time embedding
def test_sinusoidal_embedding_known_values() -> None:
    t = torch.tensor([0.0, 0.001, 0.5], dtype=torch.float64)
    emb = sinusoidal_embedding(t, 6)  # half = 3 frequencies 10000^(-k/3), k = 0, 1, 2
    assert emb.shape == (3, 6)
    torch.testing.assert_close(emb[0], torch.tensor([1.0, 1, 1, 0, 0, 0], dtype=torch.float64))
    freqs = [10000 ** (-k / 3) for k in range(3)]
    expected = [math.cos(1.0 * f) for f in freqs] + [math.sin(1.0 * f) for f in freqs]  # 1000 * 0.001 = 1
    torch.testing.assert_close(emb[1], torch.tensor(expected, dtype=torch.float64))
    assert emb[2, 0].item() == pytest.approx(math.cos(500.0))
    assert emb[2, 3].item() == pytest.approx(math.sin(500.0))


def test_sinusoidal_embedding_odd_dim_and_bad_input() -> None:
    emb = sinusoidal_embedding(torch.rand(4), 5)
    assert emb.shape == (4, 5)
    assert torch.all(emb[:, -1] == 0)
    with pytest.raises(ValueError, match="expected shape"):
        sinusoidal_embedding(torch.rand(4, 1), 8)
    with pytest.raises(ValueError, match="dim"):
        sinusoidal_embedding(torch.rand(4), 0)


# ---------------------------------------------------------------- MLP
def test_mlp_parameter_count_by_hand() -> None:
    cfg = {"arch": "mlp", "hidden_dim": 8, "num_layers": 2, "time_embed_dim": 4}
    # Linear(2 + 4 -> 8) + Linear(8 -> 8) + Linear(8 -> 2), weights + biases
    assert count_parameters(cfg) == (6 * 8 + 8) + (8 * 8 + 8) + (8 * 2 + 2) == 146
    assert count_parameters({**cfg, "dim": 3}) == (7 * 8 + 8) + (8 * 8 + 8) + (8 * 3 + 3)


def test_mlp_forward_backward_and_learns() -> None:
    torch.manual_seed(0)
    model = build_model({"arch": "mlp", "hidden_dim": 32, "num_layers": 2, "time_embed_dim": 8})
    assert isinstance(model, MLP)
    x, t = torch.randn(64, 2), torch.rand(64)
    target = torch.stack([torch.sin(3 * t), x[:, 0] * t], dim=1)  # depends on t and x
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = (model(x, t) - target).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert losses[-1] < 0.2 * losses[0]
    assert model(x, torch.tensor(0.3)).shape == (64, 2)  # a scalar t is broadcast
    with pytest.raises(ValueError, match="expected shape"):
        model(torch.randn(4, 3), torch.rand(4))
    with pytest.raises(ValueError, match=r"t: expected shape \(4,\)"):
        model(torch.randn(4, 2), torch.rand(4, 1))


# ---------------------------------------------------------------- U-Net
@pytest.mark.parametrize("name", sorted(PAPER_CONFIGS))
def test_paper_unet_shape_and_count_on_meta(name: str) -> None:
    cfg = PAPER_CONFIGS[name]
    with torch.device("meta"):
        model = build_model(cfg)
        x = torch.empty(2, 3, cfg["image_size"], cfg["image_size"])
        out = model(x, torch.empty(2))
    assert out.shape == x.shape and out.device.type == "meta"
    assert sum(p.numel() for p in model.parameters()) == PAPER_PARAM_COUNTS[name]


def test_imagenet64_matches_adm_reported_size() -> None:
    adm_class_embedding = 1000 * 4 * 192
    assert abs(count_parameters(PAPER_CONFIGS["imagenet64"]) + adm_class_embedding - 296e6) < 0.5e6


def test_digits_unet_forward_backward() -> None:
    torch.manual_seed(0)
    model = build_model(TINY_DIGITS)
    x, t = torch.randn(8, 1, 8, 8), torch.rand(8)
    out = model(x, t)
    assert out.shape == x.shape
    assert torch.all(out == 0), "ADM zero-initialises the output conv"
    # With every residual branch and the output conv zero, only the output conv gets a gradient
    # at step 1 and t matters only from step 2 on: take three steps.
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        (model(x, t) - x).pow(2).mean().backward()
        opt.step()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.time_embed[0].weight.grad.abs().sum() > 0
    out0, out1 = model(x, torch.zeros(8)), model(x, torch.ones(8))
    assert (out0 - out1).abs().max() > 1e-4, "the output must depend on t"


@pytest.mark.parametrize("updown,scale_shift", [(False, False), (True, False), (False, True)])
def test_unet_variants_and_rectangular_channels(updown: bool, scale_shift: bool) -> None:
    cfg = {**TINY_DIGITS, "in_channels": 3, "out_channels": 2, "image_size": 16, "channel_mult": [1, 2, 2],
           "attention_resolutions": [8, 4], "num_head_channels": 8, "resblock_updown": updown,
           "use_scale_shift_norm": scale_shift, "dropout": 0.1}
    out = build_model(cfg)(torch.randn(2, 3, 16, 16), torch.rand(2))
    assert out.shape == (2, 2, 16, 16)


def test_attention_resolutions_map_to_levels() -> None:
    cfg = {**TINY_DIGITS, "image_size": 16, "channel_mult": [1, 2, 2], "attention_resolutions": [8]}
    model = build_model(cfg)
    n_attn = sum(isinstance(m, AttentionBlock) for m in model.modules())
    # encoder: 1 block at 8px; middle: 1; decoder: num_res_blocks + 1 = 2 at 8px
    assert n_attn == 1 + 1 + 2


def test_attention_matches_guided_diffusion_legacy_order() -> None:
    torch.manual_seed(0)
    block = AttentionBlock(16, num_heads=2, norm_groups=8).double()
    torch.nn.init.normal_(block.proj_out.weight)
    x = torch.randn(3, 16, 4, 4, dtype=torch.float64)
    qkv = block.qkv(block.norm(x.reshape(3, 16, -1)))
    bs, width, length = qkv.shape  # QKVAttentionLegacy: heads split before q, k, v
    q, k, v = qkv.reshape(bs * 2, width // 2, length).split(8, dim=1)
    scale = 1 / math.sqrt(math.sqrt(8))
    w = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale), dim=-1)
    h = torch.einsum("bts,bcs->bct", w, v).reshape(bs, -1, length)
    expected = (x.reshape(3, 16, -1) + block.proj_out(h)).reshape(x.shape)
    torch.testing.assert_close(block(x), expected)


def test_unet_float64_and_groupnorm_low_precision() -> None:
    model = build_model(TINY_DIGITS).double()
    x64, t64 = torch.randn(2, 1, 8, 8, dtype=torch.float64), torch.rand(2, dtype=torch.float64)
    assert model(x64, t64).dtype == torch.float64
    norm = model.out[0]
    x = torch.randn(2, 16, 4, 4)
    y = norm(x.bfloat16())
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.double(), norm(x.double()), atol=0.05, rtol=0.05)


def test_resblock_up_down_shapes() -> None:
    x, emb = torch.randn(2, 16, 8, 8), torch.randn(2, 32)
    assert ResBlock(16, 32, 0.0, 32, norm_groups=8)(x, emb).shape == (2, 32, 8, 8)
    assert ResBlock(16, 32, 0.0, down=True, norm_groups=8)(x, emb).shape == (2, 16, 4, 4)
    assert ResBlock(16, 32, 0.0, up=True, norm_groups=8)(x, emb).shape == (2, 16, 16, 16)


def test_unet_rejects_wrong_input_shape() -> None:
    model = build_model(TINY_DIGITS)
    with pytest.raises(ValueError, match=r"x: expected shape \(batch_size, 1, 8, 8\)"):
        model(torch.randn(2, 3, 8, 8), torch.rand(2))
    with pytest.raises(ValueError, match="t: expected shape"):
        model(torch.randn(2, 1, 8, 8), torch.rand(3))


# ---------------------------------------------------------------- config validation
BAD_CONFIGS = [
    ({"arch": "transformer"}, "'arch'"),
    ({"num_res_blocks": 0}, "'num_res_blocks'"),
    ({"channel_mult": []}, "'channel_mult'"),
    ({"channel_mult": [1, "2"]}, "'channel_mult'"),
    ({"attention_resolutions": [3]}, "'attention_resolutions'"),
    ({"num_head_channels": 0}, "'num_head_channels'"),
    ({"num_head_channels": 12}, "'num_head_channels'"),
    ({"dropout": 1.5}, "'dropout'"),
    ({"use_scale_shift_norm": "yes"}, "'use_scale_shift_norm'"),
    ({"image_size": 6, "channel_mult": [1, 2, 2]}, "'image_size'"),
    ({"norm_groups": 32}, "norm_groups"),
    ({"num_heads": 3}, "'num_heads'"),
    ({"model_channels": True}, "'model_channels'"),
    ({"attention_resoluton": [4]}, "unknown key"),
]


@pytest.mark.parametrize("change,message", BAD_CONFIGS)
def test_bad_unet_config_names_the_key(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model({**TINY_DIGITS, **change})


def test_bad_mlp_config_and_missing_keys() -> None:
    with pytest.raises(ValueError, match="'hidden_dim'"):
        build_model({**TINY_CHECKERBOARD, "hidden_dim": -1})
    with pytest.raises(ValueError, match=r"missing required key\(s\) \['num_layers'\]"):
        build_model({"arch": "mlp", "hidden_dim": 8, "time_embed_dim": 4})
    with pytest.raises(ValueError, match="unknown key"):
        build_model({**TINY_CHECKERBOARD, "channel_mult": [1]})
    with pytest.raises(ValueError, match="mapping"):
        build_model(["mlp"])  # type: ignore[arg-type]


def test_build_model_does_not_modify_config() -> None:
    cfg = copy.deepcopy(TINY_DIGITS)
    build_model(cfg)
    assert cfg == TINY_DIGITS


def test_smoke_params_use_these_configs() -> None:
    params = load_params(ROOT / "params" / "smoke.yaml")
    assert params["models"]["digits"] == TINY_DIGITS
    assert params["models"]["checkerboard"] == TINY_CHECKERBOARD


# ---------------------------------------------------------------- CLI and benchmark
def test_cli_prints_parameter_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json", "--params", str(ROOT / "params" / "smoke.yaml")]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["paper/imagenet64"]["params"] == PAPER_PARAM_COUNTS["imagenet64"]
    assert rows["smoke/digits"]["params"] == count_parameters(TINY_DIGITS)


def test_cli_bad_params_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--params", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_time_train_step_reports_positive_times() -> None:
    cfg = {"arch": "mlp", "hidden_dim": 16, "num_layers": 2, "time_embed_dim": 8}
    timing = time_train_step(cfg, 32, steps=2, repeats=1)
    assert timing.batch_size == 32 and timing.wall_ms > 0 and timing.forward_wall_ms > 0
    with pytest.raises(ValueError, match="batch_size"):
        time_train_step(TINY_CHECKERBOARD, 0)
