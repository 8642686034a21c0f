"""Metrics: Frechet distance, FID through clean-fid's parts, the labelled CPU stand-ins
(``fd_digits``, ``w2_2d``, ``fd_2d``) and NLL summaries (bits/dim, nats)."""

from fmcore.metrics.frechet import frechet_distance, gaussian_stats
from fmcore.metrics.w2 import fd_2d, w2_2d

__all__ = ["fd_2d", "frechet_distance", "gaussian_stats", "w2_2d"]
