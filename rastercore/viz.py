"""Quicklooks and figures, drawn from downsampled views (never the full scene)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import xarray as xr

from rastercore.errors import StoreExistsError

__all__ = ["quicklook", "overview"]


def overview(data: xr.DataArray, *, max_size: int = 1024) -> xr.DataArray:
    """Block-average ``data`` so its longer side is at most ``max_size`` pixels, and load it.

    Averaging runs tile by tile through dask; only the small result is in memory.
    NaN pixels are left out of the averages.
    """
    factor = max(1, math.ceil(max(data.sizes["y"], data.sizes["x"]) / max_size))
    if factor > 1:
        data = data.coarsen(y=factor, x=factor, boundary="trim").mean()
    return data.compute()


def quicklook(
    data: xr.DataArray,
    path: str | os.PathLike,
    *,
    max_size: int = 1024,
    db: bool | None = None,
    overwrite: bool = False,
) -> Path:
    """Save a PNG quicklook of a stack or a single-layer result.

    One band is drawn in grey; two bands (e.g. HH, HV) as the SAR false colour
    (R = first, G = second, B = first / second); three or more as RGB from
    the first three.  Each channel is stretched between its 2nd and 98th
    percentiles.

    Parameters
    ----------
    data : xarray.DataArray
        ``(band, y, x)`` or ``(y, x)``, lazy or not.
    path : path-like
        Output ``.png``.
    max_size : int, default 1024
        Longer side of the image in pixels.
    db : bool, optional
        Draw intensities in decibels; default True for two-band (SAR) stacks.
    overwrite : bool, default False
        Replace an existing file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.exists() and not overwrite:
        raise StoreExistsError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it.")
    nodata = data.rio.nodata if "spatial_ref" in data.coords else None
    data = data.astype(np.float32)
    if nodata is not None and not np.isnan(nodata):
        data = data.where(data != nodata)
    small = overview(data, max_size=max_size)
    bands = small.values[np.newaxis] if small.ndim == 2 else small.values
    if db is None:
        db = bands.shape[0] == 2
    if bands.shape[0] == 2:
        bands = np.stack([bands[0], bands[1], bands[0] / np.where(bands[1] > 0, bands[1], np.nan)])
    if db:
        with np.errstate(divide="ignore", invalid="ignore"):
            bands = 10 * np.log10(np.where(bands > 0, bands, np.nan))
    image = np.stack([_stretch(b) for b in bands[:3]], axis=-1)
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
    return path


def _stretch(band: np.ndarray) -> np.ndarray:
    """Map the 2nd..98th percentile to 0..1; NaN becomes 0."""
    finite = band[np.isfinite(band)]
    if finite.size == 0:
        return np.zeros(band.shape, np.float32)
    low, high = np.percentile(finite, [2, 98])
    scaled = (band - low) / (high - low if high > low else 1.0)
    return np.nan_to_num(np.clip(scaled, 0, 1), nan=0.0).astype(np.float32)
