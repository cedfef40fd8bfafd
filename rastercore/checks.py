"""Argument checks shared by the Python API, the CLI and the pipelines: one clear error before any work."""

from __future__ import annotations

import numbers

from rastercore.errors import ParameterError

__all__ = ["check_int", "check_tile_size", "TILE_SIZE_RANGE"]

TILE_SIZE_RANGE = (8, 8192)
"""Tile sides rastercore accepts: below, the per-tile overhead dominates (hours on a large scene); above, one
tile's features no longer fit a worker's memory."""


def check_int(value, name: str, low: int, high: int | None = None) -> int:
    """``value`` as an int, or a :class:`ParameterError` naming ``name`` and the allowed range."""
    allowed = f"at least {low}" if high is None else f"between {low} and {high}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParameterError(f"{name} must be an integer {allowed}, not {value!r}.")
    if value < low or (high is not None and value > high):
        raise ParameterError(f"{name} must be {allowed}, not {value}.")
    return int(value)


def check_tile_size(value, name: str = "tile_size (--tile-size)") -> int | None:
    """None (the default from the memory budget) or a tile side within :data:`TILE_SIZE_RANGE`."""
    return None if value is None else check_int(value, name, *TILE_SIZE_RANGE)
