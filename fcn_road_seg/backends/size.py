"""The ``network_size`` option: ``auto``, ``native`` or ``HxW``."""

from __future__ import annotations

import re

from ..errors import ModelError


#: HxW in ASCII digits (int() would also take "1_88", " 188" and other scripts' digits)
_HXW = re.compile(r"([0-9]+)[xX]([0-9]+)")


def parse_network_size(text: str) -> tuple[int, int] | str:
    """``native`` or ``HxW`` (e.g. ``188x624``) -> ``"native"`` or (H, W).

    Raises a ModelError naming the value.
    """
    if text == "native":
        return "native"
    match = _HXW.fullmatch(text)
    if match is None:
        raise ModelError(f"network_size '{text}' is not auto, native or HxW (e.g. 188x624)")
    h, w = int(match[1]), int(match[2])
    if min(h, w) < 32 or max(h, w) > 8192:
        raise ModelError(f"network_size '{text}': each side must be in [32, 8192]")
    return h, w
