"""The raster stack: a zarr-backed ``(band, y, x)`` DataArray, and ingest into it.

A stack on disk is a zarr v3 group holding one array ``data`` with dims
``(band, y, x)``, a ``band`` coordinate of names, pixel-centre ``y``/``x``
coordinates and rioxarray's CF ``spatial_ref`` coordinate, so that plain
``xarray.open_zarr(path)["data"].rio.crs`` works without rastercore.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr

from rastercore.checks import check_tile_size
from rastercore.errors import (BandNameError, MisalignedInputsError, NotGeoreferencedWarning, ParameterError,
                               SourceNotFoundError)
from rastercore.grid import Grid, attach_grid, grid_of
from rastercore.io.bandnames import product_band_name
from rastercore.io.regrid import RESAMPLING_METHODS, choose_grid, resampling_for
from rastercore.io.sources import Source, open_source
from rastercore.progress import ProgressMode
from rastercore.scheduler import choose_tile_size
from rastercore.store import DATA_VAR, DEFAULT_CODEC, open_stack, partial_path, write_tiles

__all__ = ["ingest", "open_stack", "describe", "lazy_stack", "on_one_grid", "RegridNotice", "band_names", "as_float",
           "valid_mask", "nodata_of"]


def ingest(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    path: str | os.PathLike,
    *,
    bands: Sequence[str] | None = None,
    tile_size: int | None = None,
    band_axis: int = 0,
    nodata: float | int | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: ProgressMode = "auto",
    codec: str = DEFAULT_CODEC,
    grid=None,
    resolution: float | None = None,
    crs=None,
    bounds: Sequence[float] | None = None,
    extent: str = "intersection",
    resampling: Mapping[str, str] | str | None = None,
    assets: Sequence[str] | str | None = None,
) -> xr.DataArray:
    """Ingest rasters into one zarr-backed stack, tile by tile, resampled onto one grid if they differ.

    Parameters
    ----------
    inputs : path or sequence of paths
        Input specs (see :func:`rastercore.io.open_source`): GeoTIFF/COG,
        JPEG/PNG, ``file.h5:/dataset``, ``.npy``, zarr.  Several inputs are
        stacked along the band axis in the order given.
    path : path-like
        The ``.zarr`` store to write.
    bands : sequence of str, optional
        One name per band of the stack (e.g. ``["HH", "HV"]``).  Default: the
        band descriptions of the files; else, for Landsat 8/9 and Sentinel-2
        band files, the band's common name (``red``, ``nir08``; see
        :mod:`rastercore.io.bandnames`); else the file stem (``_1``, ``_2``...
        appended for multi-band files).
    tile_size : int, optional
        Side of the square zarr chunks; default from the memory budget
        (:func:`rastercore.scheduler.choose_tile_size`).
    band_axis : int, default 0
        Band axis of 3-D HDF5 / ``.npy`` / zarr inputs.
    nodata : scalar, optional
        Nodata value; default the first one the inputs declare.
    overwrite : bool, default False
        Replace an existing store.
    resume : bool, default False
        Continue an interrupted ingest of the same inputs.
    progress : {"auto", "bar", "json", "none"}, default "auto"
        Progress reporting.
    codec : {"lz4", "zstd", "none"}, default "lz4"
        Compression of the stored tiles (:data:`rastercore.store.CODECS`).
    grid : Grid or path, optional
        The stack's grid, or a raster / stack whose grid to adopt (``--grid``).
    resolution : float, optional
        Pixel size of the stack's grid in its CRS's units (``--resolution``),
        with ``crs`` and ``bounds``.
    crs : optional
        CRS of the stack's grid (anything rasterio's ``CRS.from_user_input``
        takes); needed when the inputs' CRSs differ and no ``grid`` is given.
    bounds : (left, bottom, right, top), optional
        Extent of the stack's grid in its CRS.
    extent : {"intersection", "union"}, default "intersection"
        The inputs' extent the grid covers when ``bounds`` is not given.
    resampling : mapping or str, optional
        Band name -> GDAL resampling method (``{"QA": "nearest"}`` or
        ``"QA=nearest,B04=cubic"``), overriding the default: nearest for
        categorical bands (names like QA, SCL, mask), average for bands
        with finer pixels than the grid, bilinear otherwise.
    assets : sequence of str or str, optional
        For a STAC item input (a JSON file or URL): the assets to read, by
        asset key or band common name (``["red", "nir", "SCL"]`` or
        ``"red,nir,SCL"``), each its own band named by its common name
        (:mod:`rastercore.io.stac`; needs ``rastercore[stac]``).

    Returns
    -------
    xarray.DataArray
        The new stack, opened lazily (see :func:`open_stack`).

    Notes
    -----
    Inputs on different grids (resolution, extent or CRS) are resampled
    onto the stack's grid window by window through GDAL's warped VRT (the
    same numbers as ``rasterio.warp.reproject`` of the whole image), never
    loaded whole; see :mod:`rastercore.io.regrid` for how the grid and the
    resampling are chosen.  Each input's nodata is carried: where inputs
    declare different nodata values, the stack is float32 with NaN as nodata
    (an input that declares none keeps its values as they are).

    Raises
    ------
    MisalignedInputsError
        Inputs do not overlap, or are in different CRSs and no grid was chosen.
    BandNameError
        ``bands`` does not give one unique name per band.
    StoreExistsError
        ``path`` exists and ``overwrite`` is false.
    """
    specs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not specs:
        raise ParameterError("ingest needs at least one input raster.")
    tile_size = check_tile_size(tile_size)
    specs, item_bands = _expand_stac(specs, assets)
    if bands is None and item_bands is not None:
        if None in item_bands:
            raise ParameterError("a STAC item mixed with other inputs needs --bands naming every band.")
        bands = item_bands
    sources = [open_source(spec, band_axis=band_axis) for spec in specs]
    sources = on_one_grid(sources, _band_names(sources, bands), grid=grid, resolution=resolution, crs=crs,
                          bounds=bounds, extent=extent, resampling=resampling)
    dtype = _stack_dtype(sources)
    tile = tile_size or choose_tile_size(sum(s.count for s in sources), dtype)
    stack = lazy_stack(sources, bands=bands, tile_size=tile, nodata=nodata)
    write_tiles(stack, path, tile_chunks=(tile, tile), overwrite=overwrite, resume=resume,
                progress=progress, stage="ingest", codec=codec)
    return open_stack(path)


def lazy_stack(
    sources: Sequence[Source],
    *,
    bands: Sequence[str] | None = None,
    tile_size: int | None = None,
    nodata: float | int | None = None,
) -> xr.DataArray:
    """A lazy ``(band, y, x)`` DataArray reading ``sources`` by window.

    Dask blocks are ``tile_size`` squares, or full-width strips of
    ``tile_size`` rows for formats that decode front to back (JPEG, PNG).
    """
    grid = _common_grid(sources)
    names = _band_names(sources, bands)
    dtype = _stack_dtype(sources)
    tile = tile_size or choose_tile_size(len(names), dtype)
    strips = any(s.sequential for s in sources)
    block = (tile, grid.width if strips else tile)
    if nodata is None:
        nodata = np.nan if _mixed_nodata(sources) else next((s.nodata for s in sources if s.nodata is not None), None)
    parts = [_with_nodata(s.to_dask((s.count, *block)).astype(dtype, copy=False), s.nodata, nodata)
             for s in sources]
    data = da.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
    stack = xr.DataArray(data, dims=("band", "y", "x"), coords={"band": np.array(names, dtype=object)},
                         name=DATA_VAR)
    return attach_grid(stack, grid, nodata=nodata)


def _expand_stac(specs: list, assets) -> tuple[list[str], list[str] | None]:
    """STAC items among ``specs`` replaced by their ``assets``' hrefs; the band names when any item was given."""
    from rastercore.io.stac import is_stac_item, item_inputs

    if isinstance(assets, str):
        assets = [a.strip() for a in assets.split(",") if a.strip()]
    out, names, from_items = [], [], False
    for spec in specs:
        if is_stac_item(spec):
            hrefs, item_names = item_inputs(spec, assets or [])
            out += hrefs
            names += item_names
            from_items = True
        else:
            out.append(str(spec))
            names += [None]
    if assets and not from_items:
        raise ParameterError("--assets applies to STAC item inputs (JSON), and none was given.")
    return out, (names if from_items else None)


def on_one_grid(sources: Sequence[Source], names: Sequence[str], *, grid=None, resolution=None, crs=None,
                bounds=None, extent: str = "intersection", resampling=None) -> list[Source]:
    """``sources`` read on one grid: as they are when they share one, else each resampled onto the chosen grid.

    See :func:`ingest` for the parameters and :mod:`rastercore.io.regrid`
    for the choices; a grid chosen by default is announced with a notice.
    """
    sources = list(sources)
    overrides = _resampling_map(resampling, names)
    asked = any(v is not None for v in (grid, resolution, crs, bounds))
    if not asked and _share_a_grid(sources):
        return sources
    if isinstance(grid, (str, os.PathLike)):
        grid = _grid_of(grid)
    target, notice = choose_grid([s.grid for s in sources], [s.path for s in sources], grid=grid,
                                 resolution=resolution, crs=crs, bounds=bounds, extent=extent)
    if notice:
        warnings.warn(notice, RegridNotice, stacklevel=3)
    out, start = [], 0
    for source in sources:
        own = list(names[start:start + source.count])
        start += source.count
        if source.grid.aligned_with(target):
            out.append(source)
            continue
        methods = {resampling_for(n, source.dtype, source.grid, target, overrides) for n in own}
        if len(methods) > 1:
            raise ParameterError(f"{source.path} holds bands {', '.join(own)} that would need different resampling "
                                 f"({', '.join(sorted(methods))}); give them one method with --resampling.")
        out.append(source.on_grid(target, methods.pop()))
    return out


class RegridNotice(UserWarning):
    """The stack's grid was chosen by default for inputs on different grids (the notice says which)."""


def _share_a_grid(sources: Sequence[Source]) -> bool:
    """Whether the sources already line up (same shape; same transform and CRS where georeferenced)."""
    georef = [s.grid for s in sources if s.grid.is_georeferenced]
    same_shape = len({s.grid.shape for s in sources}) == 1
    return same_shape and all(g.aligned_with(georef[0]) for g in georef)


def _grid_of(spec) -> Grid:
    """The grid of the raster or stack ``spec`` (``--grid``)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # refused below, in one line
            grid = open_source(spec).grid
    except SourceNotFoundError:
        raise SourceNotFoundError(f"--grid {spec} does not exist; give a raster or stack whose grid to adopt.") from None
    if not grid.is_georeferenced:
        raise ParameterError(f"--grid {spec} has no georeferencing (CRS and transform); give a georeferenced raster.")
    return grid


def _resampling_map(resampling, names: Sequence[str]) -> dict[str, str]:
    if resampling is None or isinstance(resampling, Mapping):
        mapping = dict(resampling or {})
    else:
        mapping = {}
        for entry in filter(None, (e.strip() for e in str(resampling).split(","))):
            band, sep, method = (part.strip() for part in entry.partition("="))
            if not sep or not band or not method:
                raise ParameterError(f"--resampling entry {entry!r} is not BAND=METHOD, e.g. --resampling QA=nearest")
            mapping[band] = method
    unknown = [b for b in mapping if b not in names]
    if unknown:
        raise ParameterError(f"--resampling names {', '.join(unknown)}, which are not bands of the stack "
                             f"({', '.join(names)}).")
    for band, method in mapping.items():
        if method not in RESAMPLING_METHODS:
            raise ParameterError(f"--resampling {band}={method}: unknown method; choose one of "
                                 f"{', '.join(RESAMPLING_METHODS)}.")
    return mapping


def _stack_dtype(sources: Sequence[Source]) -> np.dtype:
    """The stack's pixel type: the inputs' common type, float32 when their nodata values differ."""
    dtype = np.result_type(*[s.dtype for s in sources])
    return np.result_type(dtype, np.float32) if _mixed_nodata(sources) else dtype


def _mixed_nodata(sources: Sequence[Source]) -> bool:
    """Whether the inputs declare different nodata values (inputs that declare none do not count)."""
    values = {("nan" if np.isnan(float(s.nodata)) else float(s.nodata)) for s in sources if s.nodata is not None}
    return len(values) > 1


def _with_nodata(data: da.Array, own, stack_nodata) -> da.Array:
    """``data`` with its own nodata value replaced by the stack's (when they differ)."""
    if own is None or stack_nodata is None or own == stack_nodata or (
            np.isnan(float(own)) and np.isnan(float(stack_nodata))):
        return data
    if np.isnan(float(own)):
        return da.where(da.isnan(data), data.dtype.type(stack_nodata), data)
    return da.where(data == data.dtype.type(own), data.dtype.type(stack_nodata), data)


def _common_grid(sources: Sequence[Source]) -> Grid:
    """The grid all sources share, or a :class:`MisalignedInputsError` naming the odd ones."""
    georef = [s for s in sources if s.grid.is_georeferenced]
    reference = (georef or list(sources))[0]
    problems = []
    for s in sources:
        if s.grid.shape != reference.grid.shape:
            problems.append(f"{s.path} is {s.grid.height} x {s.grid.width} px")
        elif s.grid.is_georeferenced and not s.grid.aligned_with(reference.grid):
            problems.append(f"{s.path} is on another grid ({s.grid.describe()})")
    if problems:
        raise MisalignedInputsError(
            f"inputs do not line up with {reference.path} ({reference.grid.describe()}): "
            + "; ".join(problems) + ". Resample them onto one grid first (e.g. gdalwarp or rioxarray's reproject_match)."
        )
    plain = [s.path for s in sources if not s.grid.is_georeferenced]
    if georef and plain:
        warnings.warn(f"{', '.join(plain)} carry no georeferencing; assuming the grid of {reference.path}.",
                      NotGeoreferencedWarning, stacklevel=3)
    return reference.grid


def _band_names(sources: Sequence[Source], bands: Sequence[str] | None) -> list[str]:
    count = sum(s.count for s in sources)
    if bands is None:
        bands = [name for s in sources for name in _default_names(s)]
    bands = [str(b) for b in bands]
    if len(bands) != count:
        raise BandNameError(
            f"{len(bands)} band names given ({', '.join(bands)}) but the inputs hold {count} bands "
            f"({', '.join(f'{s.path}: {s.count}' for s in sources)}); give one name per band."
        )
    duplicates = sorted({b for b in bands if bands.count(b) > 1})
    if duplicates:
        raise BandNameError(f"band names must be unique; {', '.join(duplicates)} repeats. Name the bands with --bands.")
    return bands


def _default_names(source: Source) -> list[str]:
    if source.band_names:
        return list(source.band_names)
    stem = Path(source.options.get("file", source.path)).stem
    if source.options.get("kind") in ("hdf5", "zarr") and source.options.get("dataset", source.options.get("array")):
        stem = Path(source.options.get("dataset", source.options.get("array"))).name
    elif source.count == 1 and product_band_name(stem):
        return [product_band_name(stem)]
    return [stem] if source.count == 1 else [f"{stem}_{i + 1}" for i in range(source.count)]


def band_names(stack: xr.DataArray) -> list[str]:
    """Band names of a ``(band, y, x)`` stack, as str.

    Raises
    ------
    BandNameError
        ``stack`` is not ``(band, y, x)`` with a ``band`` coordinate of names.
    """
    if tuple(stack.dims) != ("band", "y", "x") or "band" not in stack.coords:
        raise BandNameError(f"expected a stack with dims ('band', 'y', 'x') and a 'band' "
                            f"coordinate of names, got dims {tuple(stack.dims)}")
    return [str(b) for b in stack.coords["band"].values]


def as_float(stack: xr.DataArray, dtype=np.float32) -> da.Array:
    """Stack data as a float (``dtype``) dask array, with nodata as NaN.

    Nodata is ``attrs["_FillValue"]`` (or the encoding's) and +/-inf.  NumPy
    data is wrapped with dask's default chunks.
    """
    data = stack.data if isinstance(stack.data, da.Array) else da.from_array(np.asarray(stack.data))
    fill = nodata_of(stack)
    if fill is not None and not np.isnan(fill):
        data = da.where(data == fill, np.nan, data)
    data = data.astype(dtype)
    return da.where(da.isinf(data), np.dtype(dtype).type(np.nan), data)


def valid_mask(block: np.ndarray, nodata=None) -> np.ndarray:
    """``(y, x)`` True where every band of a raw ``(band, y, x)`` block is valid: finite and not ``nodata``.

    The NumPy counterpart of :func:`as_float`'s NaN, for one tile.
    """
    block = np.asarray(block)
    valid = np.isfinite(block) if block.dtype.kind in "fc" else np.ones(block.shape, bool)
    if nodata is not None and not np.isnan(nodata):
        valid &= block != nodata
    return valid.all(axis=0)


def nodata_of(stack: xr.DataArray):
    """The stack's nodata value (``attrs["_FillValue"]``, else its encoding's), or None."""
    return stack.attrs.get("_FillValue", stack.encoding.get("_FillValue"))


def describe(path: str | os.PathLike) -> dict:
    """Describe a stack or any input raster: shape, bands, dtype, tiles, CRS, bounds, nodata.

    Parameters
    ----------
    path : path-like
        A rastercore store, or any input spec :func:`rastercore.io.open_source` reads.

    Returns
    -------
    dict
        JSON-serialisable description.
    """
    spec = str(path)
    if Path(spec).suffix == ".zarr" or partial_path(spec).exists():
        stack = open_stack(spec)
        grid, dtype = grid_of(stack), stack.dtype
        layer_dim = stack.dims[0] if stack.ndim == 3 else None  # band, or feature for feature stores
        bands = [str(b) for b in stack[layer_dim].values] if layer_dim in stack.coords else []
        tiles = [int(c[0]) for c in stack.chunks[-2:]]
        nodata, kind = stack.rio.nodata, "rastercore stack"
    else:
        source = open_source(spec)
        grid, dtype, nodata, kind = source.grid, source.dtype, source.nodata, "raster file"
        bands = list(source.band_names or [f"band {i + 1}" for i in range(source.count)])
        tiles = None
    return {
        "path": spec,
        "kind": kind,
        "shape": [len(bands) or 1, grid.height, grid.width],
        "bands": bands,
        "dtype": str(dtype),
        "tile": tiles,
        "crs": grid.crs.to_string() if grid.crs else None,
        "transform": list(grid.transform)[:6],
        "bounds": list(grid.bounds),
        "nodata": _json_number(nodata),
    }


def _json_number(value):
    """A nodata value as JSON can hold it (NaN as the string "nan")."""
    if value is None:
        return None
    value = float(value)
    return "nan" if np.isnan(value) else (int(value) if value.is_integer() else value)
