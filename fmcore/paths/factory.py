"""Build a path from its params section and turn a trained model into an ODE field."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from fmcore.paths.base import GaussianPath
from fmcore.paths.diffusion import VEPath, VPPath
from fmcore.paths.gaussian import CondOTPath, RectifiedFlowPath

__all__ = ["build_path", "path_class", "velocity_field", "PREDICTIONS", "PATH_DEFAULTS"]

PREDICTIONS = ("velocity", "eps", "score")

# kind -> (class, required numeric keys)
_KINDS: dict[str, tuple[type[GaussianPath], tuple[str, ...]]] = {
    "cond_ot": (CondOTPath, ("sigma_min",)),
    "rectified": (RectifiedFlowPath, ()),
    "vp": (VPPath, ("beta_min", "beta_max", "eps")),
    "ve": (VEPath, ("sigma_min", "sigma_max", "eps")),
}
_NON_PATH_KEYS = ("kind", "objective")
# Defaults only where docs/paper.md records the paper's value (eps = 1e-5; VP beta in
# [0.1, 20]; VE sigma in [0.01, 50], recalled). sigma_min of the OT path has no paper value: required.
PATH_DEFAULTS: dict[str, dict[str, float]] = {
    "vp": {"beta_min": 0.1, "beta_max": 20.0, "eps": 1e-5},
    "ve": {"sigma_min": 0.01, "sigma_max": 50.0, "eps": 1e-5},
}


def path_class(kind: object) -> tuple[type[GaussianPath], tuple[str, ...], tuple[str, ...]]:
    """The class a ``kind`` names, its constructor keys and the required ones among them.

    A built-in kind (``cond_ot | rectified | vp | ve``) or ``"package.module:ClassName"``: a
    :class:`GaussianPath` subclass importable on ``sys.path`` whose ``__init__`` takes only
    numbers as keyword arguments (docs/CONTRACTS.md, "Adding a path or method").

    Raises:
        ValueError: an unknown built-in name, a module that does not import, no such class,
            or a class that is not a GaussianPath subclass (one line naming the kind).
    """
    if isinstance(kind, str) and kind in _KINDS:
        cls, keys = _KINDS[kind]
        return cls, keys, tuple(k for k in keys if k not in PATH_DEFAULTS.get(kind, {}))
    if not isinstance(kind, str) or ":" not in kind:
        raise ValueError(f"path.kind={kind!r}: expected one of {sorted(_KINDS)} or "
                         "'package.module:ClassName' "
                         "(a GaussianPath subclass)")
    module_name, _, name = kind.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"path.kind={kind!r}: cannot import module {module_name!r} ({exc}); it must be "
                         "importable where training and evaluation run (PYTHONPATH)") from None
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, GaussianPath)):
        why = f"module {module_name!r} has no GaussianPath subclass {name!r}"
        raise ValueError(f"path.kind={kind!r}: {why}")  # noqa: TRY004
    sig = inspect.signature(cls.__init__)
    args = [p for p in list(sig.parameters.values())[1:] if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    keys = tuple(p.name for p in args)
    return cls, keys, tuple(p.name for p in args if p.default is p.empty)


def build_path(path_cfg: Mapping[str, Any]) -> GaussianPath:
    """Build the probability path of one method.

    Args:
        path_cfg: ``methods[<method>]`` of the params (after job overrides), e.g.
            ``{"kind": "vp", "objective": "cfm", "beta_min": 0.1, "beta_max": 20.0, "eps": 1e-5}``
            or ``{"kind": "mypaths:CosinePath", "objective": "cfm", "s": 0.008}``.

    Returns:
        The path object.

    Raises:
        ValueError: unknown kind, a missing key, a key the kind does not use, or a bad value.
            Missing VP/VE keys take :data:`PATH_DEFAULTS` (the paper's values).
    """
    kind = path_cfg.get("kind")
    cls, keys, required = path_class(kind)
    path_cfg = {**PATH_DEFAULTS.get(kind, {}), **path_cfg}
    missing = [k for k in required if k not in path_cfg]
    if missing:
        raise ValueError(f"path (kind={kind}) is missing key(s) {missing}")
    extra = sorted(set(path_cfg) - set(keys) - set(_NON_PATH_KEYS))
    if kind == "rectified" and extra == ["sigma_min"] and float(path_cfg["sigma_min"]) == 0.0:
        extra = []
    if extra:
        raise ValueError(f"path (kind={kind}) has key(s) {extra} it does not use; expected only {list(keys)}")
    try:
        return cls(**{k: float(path_cfg[k]) for k in keys if k in path_cfg})
    except (TypeError, ValueError) as err:
        raise ValueError(f"path (kind={kind}): {err}") from None


def velocity_field(model: nn.Module | Callable[[Tensor, Tensor], Tensor], path: GaussianPath,
                   prediction: str) -> Callable[[Tensor, Tensor], Tensor]:
    """Probability-flow ODE field v(t, x) of a trained model.

    The model is called as ``model(x, t.expand(B))`` with t in FM time. Its output means:

    - ``"velocity"``: v(t, x) itself (CFM, OT-CFM, rectified flow).
    - ``"eps"``: eps_hat(x, t) = E[x_0 | x_t = x] (DDPM); v = (a'/a) x + (sigma' - sigma a'/a) eps_hat.
    - ``"score"``: the noise-scaled score sigma_t grad log p_t(x) (DSM, ScoreFlow; as score_sde's
      ``-model/std`` for VP and ``scale_by_sigma`` for VE); s = output / sigma_t and
      v = (a'/a) x - (sigma' sigma - sigma^2 a'/a) s.

    Args:
        model: callable ``model(x [B, ...], t [B]) -> [B, ...]``.
        path: the path the model was trained on.
        prediction: ``"velocity" | "eps" | "score"``.

    Returns:
        ``v(t, x)`` with t a 0-dim tensor and x of shape [B, ...].
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction={prediction!r}: expected one of {list(PREDICTIONS)}")

    def v(t: Tensor, x: Tensor) -> Tensor:
        tb = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(()).expand(x.shape[0])
        out = model(x, tb)
        if prediction == "velocity":
            return out
        if prediction == "eps":
            return path.eps_to_velocity(out, x, tb)
        return path.score_to_velocity(out / path.sigma_t(tb, x), x, tb)

    return v
