"""The ``network_size`` option: ``auto``, ``native`` or ``HxW``."""

from __future__ import annotations

from ..errors import ModelError


def parse_network_size(text: str) -> tuple[int, int] | str:
    """``native`` or ``HxW`` (e.g. ``188x624``) -> ``"native"`` or (H, W).

    Raises a ModelError naming the value.
    """
    if text == "native":
        return "native"
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ModelError(
            f"network_size '{text}' is not auto, native or HxW (e.g. 188x624)"
        ) from None
    if min(h, w) < 32 or max(h, w) > 8192:
        raise ModelError(f"network_size '{text}': each side must be in [32, 8192]")
    return h, w
