"""Cloud-Optimized GeoTIFF export, window by window.

Blocks of the (lazy) array are computed a few at a time in parallel
(:func:`rastercore.scheduler.compute_bounded`) and written in place into a
tiled GeoTIFF; GDAL's COG driver then adds overviews and lays the file out
as a COG.  The result is written as ``<path>.partial`` and renamed only when
complete (:func:`rastercore.store.writing`).  GDAL's block cache is capped
so memory stays bounded whatever the scene size.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from rastercore._deprecated import renamed_keywords
from rastercore.grid import grid_of
from rastercore.progress import Progress, ProgressMode
from rastercore.scheduler import compute_bounded
from rastercore.store import block_regions, check_output, writing

__all__ = ["write_cog", "write_geotiff"]

GDAL_CACHE_MB = 256
# The COG driver reads the temporary file several times (overviews, then layout):
# leaving it uncompressed halves the export time; above this size, disk space wins.
RAW_TEMPORARY_LIMIT = 16 * 2**30


@renamed_keywords({"data": "stack"})
def write_cog(stack: xr.DataArray, path: str | os.PathLike, **options) -> Path:
    """Write a ``(y, x)`` or ``(band, y, x)`` DataArray as a Cloud-Optimized GeoTIFF.

    Same as ``write_geotiff(stack, path, cog=True, **options)``; see
    :func:`write_geotiff` for the options.
    """
    return write_geotiff(stack, path, cog=True, **options)


@renamed_keywords({"data": "stack"})
def write_geotiff(
    stack: xr.DataArray,
    path: str | os.PathLike,
    *,
    cog: bool = True,
    overwrite: bool = False,
    compress: str = "DEFLATE",
    blocksize: int = 512,
    resampling: str = "average",
    progress: ProgressMode = "auto",
) -> Path:
    """Write a ``(y, x)`` or ``(band, y, x)`` DataArray as a GeoTIFF, window by window.

    Parameters
    ----------
    stack : xarray.DataArray
        A stack, mosaic or single layer, georeferenced (rioxarray
        ``spatial_ref`` coordinate), lazy or not.  Band names become the
        GeoTIFF band descriptions.
    path : path-like
        Output ``.tif``.
    cog : bool, default True
        Lay the file out as a Cloud-Optimized GeoTIFF with overviews;
        ``False`` writes a plain tiled, compressed GeoTIFF (one pass, faster).
    overwrite : bool, default False
        Replace an existing file.
    compress : str, default "DEFLATE"
        GDAL compression (``DEFLATE``, ``ZSTD``, ``LZW``, ``NONE``).
    blocksize : int, default 512
        Internal tile size of the COG.
    resampling : str, default "average"
        Overview resampling; use ``"nearest"`` for class maps.
    progress : {"auto", "bar", "json", "none"}, default "auto"
        Progress reporting.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import rasterio
    import rasterio.shutil

    path = Path(path)
    check_output(path, overwrite=overwrite)
    if stack.ndim == 2:
        stack = stack.expand_dims("band")
    elif stack.dims[0] != "band":  # a feature store (feature, y, x) or any other layered result
        stack = stack.rename({stack.dims[0]: "band"})
    stack = stack.chunk({"band": -1}) if stack.chunks else stack.chunk({"band": -1, "y": 2048, "x": 2048})
    if stack.dtype == bool:
        stack = stack.astype(np.uint8)
    grid = grid_of(stack)
    profile = dict(driver="GTiff", width=grid.width, height=grid.height, count=stack.sizes["band"],
                   dtype=stack.dtype.name, crs=grid.crs, transform=grid.transform, nodata=stack.rio.nodata,
                   tiled=True, blockxsize=blocksize, blockysize=blocksize, compress=_temporary_compression(stack, cog, compress),
                   BIGTIFF="IF_SAFER")
    regions = list(block_regions(stack))
    with writing(path, overwrite=overwrite) as partial:
        tmp = path.with_name(path.name + ".tiled.tmp") if cog else partial
        try:
            with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), rasterio.open(tmp, "w", **profile) as dst:
                if "band" in stack.coords:
                    for i, name in enumerate(stack["band"].values, start=1):
                        dst.set_band_description(i, str(name))
                with Progress(path.name, len(regions), mode=progress) as bar:
                    # Computed in parallel, written here: rasterio datasets are not thread-safe.
                    blocks = compute_bounded(regions, lambda region: stack.data.blocks[(0, *region[0])])
                    for (_, (rows, cols)), block in blocks:
                        dst.write(block, window=rasterio.windows.Window.from_slices(rows, cols))
                        bar.update()
            if cog:
                with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
                    rasterio.shutil.copy(tmp, partial, driver="COG", COMPRESS=compress, BLOCKSIZE=blocksize,
                                         OVERVIEW_RESAMPLING=resampling.upper(), BIGTIFF="IF_SAFER",
                                         NUM_THREADS="ALL_CPUS")
        finally:
            if cog and tmp.exists():
                tmp.unlink()
    return path


def _temporary_compression(data: xr.DataArray, cog: bool, compress: str) -> str:
    """Compression of the file written window by window (final file, or the COG's temporary)."""
    if not cog:
        return compress
    return "NONE" if data.size * data.dtype.itemsize <= RAW_TEMPORARY_LIMIT else "ZSTD"
