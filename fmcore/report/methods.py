"""How the report names and colours a method: the paper's methods fixed, any other one its own.

A method id is whatever ``methods:`` of the params defines (docs/CONTRACTS.md, "Adding a
path or method"). The paper's methods keep the labels and colours of the published figures'
order; a method the report does not know is labelled by its id and gets a colour of its own,
derived from the id (sha256) and never one of the known methods' colours nor the grey of
"no data". Two unknown methods in one report never share a colour (the later id in sorted
order moves to the next free palette entry), so the mapping depends only on the set of ids.
"""

from __future__ import annotations

import colorsys
import hashlib
from collections.abc import Iterable

__all__ = ["EXTRA_COLORS", "METHOD_COLORS", "METHOD_LABELS", "method_colors", "method_label"]

METHOD_LABELS = {"fm_ot": "FM w/ OT", "fm_vp": "FM w/ Diffusion", "ddpm": "DDPM",
                 "score_ve": "Score Matching (VE)", "scoreflow": "ScoreFlow",
                 "rectified_flow": "Rectified flow", "ot_cfm": "OT-CFM (minibatch)"}
METHOD_COLORS = {"fm_ot": "#d62728", "fm_vp": "#1f77b4", "ddpm": "#2ca02c", "score_ve": "#9467bd",
                 "scoreflow": "#8c564b", "rectified_flow": "#ff7f0e", "ot_cfm": "#e377c2"}
# For methods the report does not know: tab10's remaining hues, then darker/lighter tab20 ones.
EXTRA_COLORS = ("#17becf", "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173",
                "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363")


def method_label(method: str) -> str:
    """The paper's name of a known method, else the method id itself."""
    return METHOD_LABELS.get(method, method)


def _digest(method: str) -> int:
    return int.from_bytes(hashlib.sha256(method.encode("utf-8")).digest()[:8], "big")


def _generated(method: str, salt: int) -> str:
    """A saturated colour from the id's hash (only once every palette entry is taken)."""
    hue = ((_digest(method) + 0x9E3779B97F4A7C15 * salt) % 10_000) / 10_000
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.7)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def method_colors(methods: Iterable[str]) -> dict[str, str]:
    """Colour of every method in ``methods``: fixed for known ones, distinct and stable for the others.

    Args:
        methods: method ids (repeats and order do not matter).

    Returns:
        method id -> ``#rrggbb``; no two methods share a colour.
    """
    ids = sorted(set(methods))
    out = {m: METHOD_COLORS[m] for m in ids if m in METHOD_COLORS}
    taken = set(METHOD_COLORS.values())
    for method in (m for m in ids if m not in METHOD_COLORS):
        start = _digest(method) % len(EXTRA_COLORS)
        free = [EXTRA_COLORS[(start + k) % len(EXTRA_COLORS)] for k in range(len(EXTRA_COLORS))]
        colour = next((c for c in free if c not in taken), None)
        salt = 0
        while colour is None or colour in taken:
            salt += 1
            colour = _generated(method, salt)
        out[method] = colour
        taken.add(colour)
    return out
