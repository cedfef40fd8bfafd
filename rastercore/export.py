"""Export a stack, feature store or mosaic as a Cloud-Optimized GeoTIFF a GIS user can open as it is.

A class or cluster layer becomes a styled class raster (integer codes, a
colour table, category names, mode overviews: never float, never
averaged); any other layers become float bands named by their layer names.
The two kinds never share a file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import xarray as xr

from rastercore.errors import ParameterError
from rastercore.predict import categorical_layer, class_raster, write_class_cog
from rastercore.progress import ProgressMode

__all__ = ["export", "CLASS_RESAMPLINGS"]

CLASS_RESAMPLINGS = ("mode", "nearest")
"""Overview resamplings that keep class codes (any other would blend codes into values that are no class)."""


def export(
    stack: xr.DataArray,
    path: str | os.PathLike,
    *,
    layers: Sequence[str] | str | None = None,
    compress: str = "DEFLATE",
    resampling: str | None = None,
    overwrite: bool = False,
    progress: ProgressMode = "auto",
) -> Path:
    """Write ``stack`` (or some of its layers) as a COG, a class map styled as one.

    Parameters
    ----------
    stack : xarray.DataArray
        A ``(band, y, x)`` stack, feature store or prediction mosaic.
    path : path-like
        The ``.tif`` to write.
    layers : sequence of str or str, optional
        The bands or layers to write (``["p[water]", "maxprob"]`` or
        ``"p[water],maxprob"``).  Default: the class (or cluster) layer of a
        class mosaic, else every band.
    compress : str, default "DEFLATE"
        GDAL compression (:func:`rastercore.io.write_cog`).
    resampling : str, optional
        Overview resampling; default ``mode`` for a class layer (which takes
        only ``mode`` or ``nearest``), ``average`` otherwise.
    overwrite : bool, default False
        Replace an existing file.
    progress : {"auto", "bar", "json", "none"}
        Progress reporting.

    Raises
    ------
    ParameterError
        A layer the stack lacks, a class layer mixed with other layers, or a
        class layer with an averaging overview resampling.
    """
    from rastercore.io import write_cog

    if stack.ndim == 2:
        stack = stack.expand_dims("band")
    dim = stack.dims[0]  # "band" for stacks and mosaics, "feature" for feature stores
    chosen = _chosen_layers(stack, layers)
    codes = categorical_layer(chosen) if dim == "band" else None
    if codes is None or "value" in [str(b) for b in stack[dim].values]:
        data = stack if layers is None else stack.sel({dim: chosen})
        return write_cog(data, path, compress=compress, resampling=resampling or "average", overwrite=overwrite,
                         progress=progress)
    if len(chosen) > 1:
        others = ", ".join(c for c in chosen if c != codes)
        raise ParameterError(f"--layers mixes the {codes} layer (class codes) with {others} (values); export them "
                             f"to two files, e.g. --layers {codes} and --layers {others}.")
    resampling = resampling or "mode"
    if str(resampling).lower() not in CLASS_RESAMPLINGS:
        raise ParameterError(f"resampling (--resampling) {resampling!r} would blend the codes of the {codes} layer in "
                             "the overviews; use mode or nearest.")
    return write_class_cog(class_raster(stack, codes), path, compress=compress, resampling=resampling,
                           overwrite=overwrite, progress=progress)


def _chosen_layers(stack: xr.DataArray, layers) -> list[str]:
    names = [str(b) for b in stack[stack.dims[0]].values]
    if layers is None:
        codes = categorical_layer(names)
        return [codes] if codes is not None and "value" not in names else names
    if isinstance(layers, str):
        layers = [name.strip() for name in _split_layers(layers)]
    missing = [name for name in layers if name not in names]
    if missing or not layers:
        raise ParameterError(f"--layers names {', '.join(missing) or 'no layer'}; the stack has {', '.join(names)}.")
    return list(layers)


def _split_layers(text: str) -> list[str]:
    """``"p[a,b],maxprob"`` split at the commas outside brackets (class names may hold commas)."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [p for p in parts + [current] if p.strip()]
