"""The one exception type of :mod:`fmcore.data`."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """Bad raw input or prepared data: a one-line message naming the file and what was expected."""
