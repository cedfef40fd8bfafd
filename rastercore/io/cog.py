"""Cloud-Optimized GeoTIFF export, window by window.

Blocks of the (lazy) array are computed a few at a time in parallel
(:func:`rastercore.scheduler.compute_bounded`) and written in place into a
tiled GeoTIFF (``<path>.tiled.partial``); GDAL's COG driver then adds
overviews and lays the file out as a COG.  The result is written as
``<path>.partial`` and renamed only when complete
(:func:`rastercore.store.writing`); nothing unfinished is named like a
finished file, and a killed run's leftovers are removed by the next one.
Options are checked, and the room the uncompressed temporary needs, before
anything is written.  GDAL's block cache is capped
so memory stays bounded whatever the scene size.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from rastercore._deprecated import renamed_keywords
from rastercore.checks import check_choice, check_compression
from rastercore.errors import OutputNotWritableError, ParameterError
from rastercore.grid import grid_of
from rastercore.progress import Progress, ProgressMode
from rastercore.scheduler import compute_bounded
from rastercore.store import block_regions, writing

__all__ = ["write_cog", "write_geotiff", "aux_path"]

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
    class_names: Sequence[str] | None = None,
    class_colors: Sequence[Sequence[int]] | None = None,
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
        GDAL compression (:data:`rastercore.checks.COMPRESSIONS`: ``DEFLATE``,
        ``ZSTD``, ``LZW``, ``NONE``, ...), any case.
    blocksize : int, default 512
        Internal tile size of the COG.
    resampling : str, default "average"
        Overview resampling, a name of :data:`OVERVIEW_RESAMPLINGS` (rasterio's
        ``Resampling`` names GDAL builds overviews with); use ``"nearest"``
        for class maps.
    progress : {"auto", "bar", "json", "none"}, default "auto"
        Progress reporting.
    class_names : sequence of str, optional
        Make the file a class raster: its one integer band holds codes into
        ``class_names``.  The names go into ``<path>.aux.xml`` (GDAL's
        sidecar) as category names and a raster attribute table (code,
        name, colour), so ``gdalinfo`` and QGIS show them.
    class_colors : sequence of (r, g, b), optional
        With ``class_names``: one colour per class (default
        :func:`rastercore.palette.class_colors`), written as the band's
        colour table.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ParameterError
        ``compress`` or ``resampling`` is not one GDAL can write, checked
        before anything is written.
    StoreExistsError
        ``path`` exists and ``overwrite`` is false.
    OutputNotWritableError
        The directory is read-only, the disk has no room for the tiled
        temporary, or it filled up while writing; nothing is left under
        ``path`` (the file is built as ``<path>.partial``).
    """
    path = Path(path)
    stack = _layers(stack)
    compress = check_compression(compress, dtype=stack.dtype, bands=stack.sizes["band"])
    overview_resampling = _overview_resampling(resampling)
    profile = _tiled_profile(stack, blocksize, _temporary_compression(stack, cog, compress))
    classes = None if class_names is None else _class_style(stack, class_names, class_colors)
    with writing(path, overwrite=overwrite) as partial:
        tmp = _temporary_path(path) if cog else partial
        tmp.unlink(missing_ok=True)  # left by a killed run
        if profile["compress"] == "NONE":
            _check_room(path, _uncompressed_bytes(stack, blocksize))
        # The sidecar is written before the file is published: a name never shows another file's categories.
        _write_sidecar(path, stack, classes)
        try:
            with _write_failures(path):
                _write_windows(stack, tmp, profile, progress=progress, label=path.name,
                               colormap=None if classes is None else classes[1])
                if cog:
                    _copy_to_cog(tmp, partial, compress=compress, blocksize=blocksize, resampling=overview_resampling)
        except BaseException:
            aux_path(path).unlink(missing_ok=True)
            raise
        finally:
            if cog:
                tmp.unlink(missing_ok=True)
    return path


OVERVIEW_RESAMPLINGS = {"nearest": "NEAREST", "average": "AVERAGE", "bilinear": "BILINEAR", "cubic": "CUBIC",
                        "cubic_spline": "CUBICSPLINE", "lanczos": "LANCZOS", "mode": "MODE", "gauss": "GAUSS",
                        "rms": "RMS"}
"""rasterio ``Resampling`` names GDAL builds overviews with, and GDAL's spelling of each."""


def _temporary_path(path: Path) -> Path:
    """Where a COG's tiled temporary is written: ``<path>.tiled.partial``, never taken for a finished file."""
    return path.with_name(path.name + ".tiled.partial")


def _layers(stack: xr.DataArray) -> xr.DataArray:
    """``stack`` as ``(band, y, x)``, chunked whole along band, booleans as uint8."""
    if stack.ndim == 2:
        stack = stack.expand_dims("band")
    elif stack.dims[0] != "band":  # a feature store (feature, y, x) or any other layered result
        stack = stack.rename({stack.dims[0]: "band"})
    stack = stack.chunk({"band": -1}) if stack.chunks else stack.chunk({"band": -1, "y": 2048, "x": 2048})
    return stack.astype(np.uint8) if stack.dtype == bool else stack


def _overview_resampling(resampling: str) -> str:
    """GDAL's name of an overview resampling given by its rasterio name, any case."""
    name = check_choice(str(resampling).lower(), "resampling (--resampling)", tuple(OVERVIEW_RESAMPLINGS))
    return OVERVIEW_RESAMPLINGS[name]


def _tiled_profile(stack: xr.DataArray, blocksize: int, compress: str) -> dict:
    grid = grid_of(stack)
    return dict(driver="GTiff", width=grid.width, height=grid.height, count=stack.sizes["band"],
                dtype=stack.dtype.name, crs=grid.crs, transform=grid.transform, nodata=stack.rio.nodata,
                tiled=True, blockxsize=blocksize, blockysize=blocksize, compress=compress, BIGTIFF="IF_SAFER")


def _uncompressed_bytes(stack: xr.DataArray, blocksize: int) -> int:
    """Bytes of ``stack`` in an uncompressed tiled GeoTIFF (edge tiles padded)."""
    tiles = math.ceil(stack.sizes["y"] / blocksize) * math.ceil(stack.sizes["x"] / blocksize)
    return tiles * blocksize * blocksize * stack.sizes["band"] * stack.dtype.itemsize


def _check_room(path: Path, needed: int) -> None:
    free = shutil.disk_usage(path.parent).free
    if needed > free:
        raise OutputNotWritableError(
            f"cannot write {path}: its uncompressed tiles need {needed / 2**20:.1f} MiB but the disk holding "
            f"{path.parent} has {free / 2**20:.1f} MiB free; free some space or write it elsewhere.")


@contextlib.contextmanager
def _write_failures(path: Path) -> Iterator[None]:
    """A failed GDAL write of ``path`` as one :class:`OutputNotWritableError` that states the free space.

    GDAL reports a full disk as a bare write failure (libtiff prints the
    reason on stderr, and GDAL has removed the failed file by the time it
    raises), so the message gives the room left for the user to judge.
    """
    from rasterio._err import CPLE_BaseError
    from rasterio.errors import RasterioError

    try:
        yield
    except (RasterioError, CPLE_BaseError) as err:
        while err.__cause__ is not None:  # rasterio's own message says "see previous exception"
            err = err.__cause__
        free = shutil.disk_usage(path.parent).free
        raise OutputNotWritableError(
            f"could not write {path} ({str(err).rstrip('.')}) with {free / 2**20:.1f} MiB free on the disk holding "
            f"{path.parent}; if it is full, free some space and rerun.") from None


def _write_windows(stack: xr.DataArray, tmp: Path, profile: dict, *, progress: ProgressMode, label: str,
                   colormap: dict | None = None) -> None:
    """Compute the blocks a few at a time and write each into its window of a tiled GeoTIFF at ``tmp``."""
    import rasterio

    regions = list(block_regions(stack))
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), rasterio.open(tmp, "w", **profile) as dst:
        if "band" in stack.coords:
            for i, name in enumerate(stack["band"].values, start=1):
                dst.set_band_description(i, str(name))
        if colormap is not None:  # the COG driver copies it
            dst.write_colormap(1, colormap)
        with Progress(label, len(regions), mode=progress) as bar:
            # Computed in parallel, written here: rasterio datasets are not thread-safe.
            blocks = compute_bounded(regions, lambda region: stack.data.blocks[(0, *region[0])])
            for (_, (rows, cols)), block in blocks:
                dst.write(block, window=rasterio.windows.Window.from_slices(rows, cols))
                bar.update()


def _copy_to_cog(tmp: Path, partial: Path, *, compress: str, blocksize: int, resampling: str) -> None:
    """Lay the tiled temporary out as a COG at ``partial``, with overviews (GDAL's COG driver)."""
    import rasterio
    import rasterio.shutil

    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        rasterio.shutil.copy(tmp, partial, driver="COG", COMPRESS=compress, BLOCKSIZE=blocksize,
                             OVERVIEW_RESAMPLING=resampling, BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS")


def _class_style(stack: xr.DataArray, class_names, class_colors) -> tuple[list[str], dict]:
    """Class names and the colour table (code -> RGBA) of a class raster, checked against ``stack``."""
    from rastercore.palette import class_colors as palette_colors

    if stack.sizes["band"] != 1 or stack.dtype not in (np.uint8, np.uint16):
        raise ParameterError(f"a class raster is one uint8 or uint16 band of class codes, not {stack.sizes['band']} "
                             f"{stack.dtype} band(s); see rastercore.predict.cog_layers.")
    names = [str(n) for n in class_names]
    colors = palette_colors(names, class_colors)
    table = {code: (*rgb, 255) for code, rgb in enumerate(colors)}
    nodata = stack.rio.nodata
    if nodata is not None and not np.isnan(nodata):
        table[int(nodata)] = (0, 0, 0, 0)  # transparent
    return names, table


def aux_path(path: str | os.PathLike) -> Path:
    """GDAL's sidecar of ``path``: ``<path>.aux.xml`` (category names, attribute table)."""
    path = Path(path)
    return path.with_name(path.name + ".aux.xml")


def _write_sidecar(path: Path, stack: xr.DataArray, classes) -> None:
    """``<path>.aux.xml`` holding the class names and attribute table of a class raster; none otherwise.

    TIFF has no tag for category names or attribute tables: GDAL keeps them
    in this sidecar (its PAM format), which QGIS and ``gdalinfo`` read.
    """
    sidecar = aux_path(path)
    sidecar.unlink(missing_ok=True)  # an older file's categories must not stay beside a new file
    if classes is None:
        return
    import xml.etree.ElementTree as ET

    names, table = classes
    root = ET.Element("PAMDataset")
    band = ET.SubElement(root, "PAMRasterBand", band="1")
    ET.SubElement(band, "Description").text = str(stack["band"].values[0]) if "band" in stack.coords else "class"
    categories = ET.SubElement(band, "CategoryNames")
    for name in names:
        ET.SubElement(categories, "Category").text = name
    rat = ET.SubElement(band, "GDALRasterAttributeTable", tableType="thematic")
    # GDAL field types (0 integer, 2 string) and usages (5 min-max value, 2 name, 6-8 red/green/blue)
    for index, (field, kind, usage) in enumerate((("Value", 0, 5), ("Class", 2, 2), ("Red", 0, 6),
                                                  ("Green", 0, 7), ("Blue", 0, 8))):
        definition = ET.SubElement(rat, "FieldDefn", index=str(index))
        for tag, text in (("Name", field), ("Type", kind), ("Usage", usage)):
            ET.SubElement(definition, tag).text = str(text)
    for code, name in enumerate(names):
        row = ET.SubElement(rat, "Row", index=str(code))
        for value in (code, name, *table[code][:3]):
            ET.SubElement(row, "F").text = str(value)
    ET.indent(root)
    partial = sidecar.with_name(sidecar.name + ".partial")
    ET.ElementTree(root).write(partial, encoding="unicode")
    os.replace(partial, sidecar)


def _temporary_compression(data: xr.DataArray, cog: bool, compress: str) -> str:
    """Compression of the file written window by window (final file, or the COG's temporary)."""
    if not cog:
        return compress
    return "NONE" if data.size * data.dtype.itemsize <= RAW_TEMPORARY_LIMIT else "ZSTD"
