"""Argument checks shared by the Python API, the CLI and the pipelines: one clear error before any work."""

from __future__ import annotations

import numbers
import re

from rastercore.errors import ParameterError

__all__ = ["check_int", "check_tile_size", "check_choice", "check_scheduler", "check_compression",
           "TILE_SIZE_RANGE", "COMPRESSIONS", "SCHEDULERS"]

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


def check_choice(value, name: str, choices) -> object:
    """``value`` if it is one of ``choices``, else a :class:`ParameterError` naming ``name`` and the choices."""
    if value not in choices:
        raise ParameterError(f"{name} must be one of {', '.join(map(str, choices))}, not {value!r}.")
    return value


SCHEDULERS = ("local", "threads", "sync")
"""Scheduler names :func:`rastercore.scheduler.client` accepts besides a scheduler address."""

_ADDRESS = re.compile(r"^(tcp|tls|ucx|ws|wss)://(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+)(:\d{1,5})?/?$|^inproc://\S+$")


def check_scheduler(value: str | None, name: str = "scheduler (--scheduler, $RASTERCORE_SCHEDULER)") -> str | None:
    """None (the default), one of :data:`SCHEDULERS`, or a dask scheduler address such as ``tcp://host:8786``.

    Checked before anything starts: a mistyped name is not taken for an address to connect to.
    """
    if value is None or value in SCHEDULERS or _ADDRESS.match(value):
        return value
    raise ParameterError(f"{name} must be {', '.join(map(repr, SCHEDULERS))} or a scheduler address such as "
                         f"tcp://host:8786 (tls://, inproc:// too), not {value!r}.")


COMPRESSIONS = ("DEFLATE", "ZSTD", "LZW", "LZMA", "PACKBITS", "NONE", "LERC", "LERC_DEFLATE", "LERC_ZSTD", "JPEG",
                "WEBP")
"""GeoTIFF compressions an export accepts (GDAL's names); JPEG and WEBP only for the data they can hold."""


def check_compression(value: str, name: str = "compress (--compress)", *, dtype=None, bands: int | None = None) -> str:
    """``value`` in upper case if it is one of :data:`COMPRESSIONS` and can hold data of ``dtype`` and ``bands``.

    GDAL writes zeros without an error when JPEG is asked for other than
    8-bit data, or WEBP for other than 8-bit RGB(A), so those are refused.
    """
    upper = str(value).upper()
    check_choice(upper, name, COMPRESSIONS)
    if upper in ("JPEG", "WEBP") and dtype is not None and str(dtype) != "uint8":
        raise ParameterError(f"{name} {upper} holds only 8-bit (uint8) data, not {dtype}; use DEFLATE or ZSTD.")
    if upper == "WEBP" and bands is not None and bands not in (3, 4):
        raise ParameterError(f"{name} WEBP holds only 3 or 4 bands (RGB, RGBA), not {bands}; use DEFLATE or ZSTD.")
    return upper
