"""Gaussian conditional probability paths (t = 0 noise, t = 1 data) and conversions."""

from fmcore.paths.base import GaussianPath, PathSample, as_time
from fmcore.paths.diffusion import VEPath, VPPath
from fmcore.paths.factory import PREDICTIONS, build_path, velocity_field
from fmcore.paths.gaussian import CondOTPath, RectifiedFlowPath

__all__ = [
    "GaussianPath",
    "PathSample",
    "as_time",
    "CondOTPath",
    "RectifiedFlowPath",
    "VPPath",
    "VEPath",
    "PREDICTIONS",
    "build_path",
    "velocity_field",
]
