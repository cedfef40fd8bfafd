"""Targets on the stack's grid: class rasters, thresholds, polygons.

Conventions: a class target is an int32 ``(y, x)`` DataArray with
:data:`IGNORE` (-1) where there is no label; a continuous target is float32
with NaN where there is no value.  Both are lazy and chunked like the stack,
and both carry the stack's coordinates, so they line up pixel for pixel.

A hurdle target is simply the continuous target plus a threshold: the
hurdle model classifies ``value >= threshold`` and regresses the value
below it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr

from rastercore._deprecated import renamed_keywords
from rastercore.engine import map_located
from rastercore.errors import SourceNotFoundError, TargetError
from rastercore.grid import Grid, grid_of
from rastercore.io.sources import open_source

__all__ = ["IGNORE", "target_on_grid", "threshold_classes", "rasterize_polygons", "burn_polygons"]

IGNORE = -1


@renamed_keywords({"like": "stack"})
def target_on_grid(
    target: str | os.PathLike | xr.DataArray,
    stack: xr.DataArray,
    *,
    kind: str = "class",
    band: int = 0,
    class_names: Sequence[str] | None = None,
) -> xr.DataArray:
    """A target raster on the grid and tiles of ``stack``, lazily.

    Parameters
    ----------
    target : path or xarray.DataArray
        Any input spec (GeoTIFF, HDF5, ...), a rastercore store, or a DataArray
        ``(y, x)`` / ``(band, y, x)`` already on ``stack``'s grid.  A georeferenced
        file on another grid (resolution, extent or CRS) is resampled onto it,
        window by window: nearest neighbour for classes, average for values.
    stack : xarray.DataArray
        The stack (or any array with its ``y``/``x`` coordinates and grid,
        such as a mosaic).
    kind : {"class", "continuous"}, default "class"
        ``"class"``: int32 with :data:`IGNORE` for nodata; ``"continuous"``:
        float32 with NaN for nodata.
    band : int, default 0
        Which band of a multi-band target to use.
    class_names : sequence of str, optional
        Names of classes 0, 1, ... (stored as ``attrs["class_names"]``).

    Returns
    -------
    xarray.DataArray
        ``(y, x)``, chunked like ``stack``.

    Raises
    ------
    TargetError
        With ``kind="class"``, when the tiles are computed: a float target
        holds a value that is not a whole number (a continuous target,
        which casting would truncate); give thresholds or read it as
        ``"continuous"``.
    """
    if kind not in ("class", "continuous"):
        raise ValueError(f"kind must be 'class' or 'continuous', not {kind!r}")
    grid = grid_of(stack)
    chunks = stack.chunks[-2:] if stack.chunks else ((grid.height,), (grid.width,))
    if isinstance(target, xr.DataArray):
        data, nodata = _array_target(target, grid, band)
        data = data.rechunk(chunks)
    else:
        data, nodata = _file_target(target, grid, band, kind, chunks)
    data = _to_kind(data, nodata, kind, "the target array" if isinstance(target, xr.DataArray) else str(target))
    out = xr.DataArray(data, dims=("y", "x"), coords={k: v for k, v in stack.coords.items() if "band" not in v.dims},
                       name="target")
    if class_names is not None:
        out.attrs["class_names"] = [str(c) for c in class_names]
    return out


def _array_target(target: xr.DataArray, grid: Grid, band: int):
    if target.ndim == 3:
        target = target.isel({target.dims[0]: band})
    if target.shape != grid.shape:
        raise TargetError(f"the target is {target.shape[0]} x {target.shape[1]} px but the stack is "
                          f"{grid.height} x {grid.width}; give a file to resample, or resample it first.")
    if "spatial_ref" in target.coords and not grid_of(target).aligned_with(grid):
        raise TargetError(f"the target array is on another grid ({grid_of(target).describe()}) than the stack "
                          f"({grid.describe()}); pass the file path instead so it is resampled.")
    nodata = target.attrs.get("_FillValue", target.encoding.get("_FillValue"))
    data = target.data if isinstance(target.data, da.Array) else da.from_array(np.asarray(target.data))
    return data, nodata


def _file_target(path, grid: Grid, band: int, kind: str, chunks):
    resampling = "nearest" if kind == "class" else "average"
    source = open_source(path, match=grid, resampling=resampling)
    if not 0 <= band < source.count:
        raise TargetError(f"{path} has {source.count} band(s); band {band} does not exist.")
    data = source.to_dask(((source.count,),) + tuple(chunks), prefix="target")[band]
    return data, source.nodata


def _to_kind(data: da.Array, nodata, kind: str, name: str) -> da.Array:
    if kind == "continuous":
        data = data.astype(np.float32)
        if nodata is not None and not np.isnan(nodata):
            data = da.where(data == np.float32(nodata), np.float32(np.nan), data)
        return da.where(da.isfinite(data), data, np.float32(np.nan))
    if np.issubdtype(data.dtype, np.floating):
        data = data.map_blocks(_whole_classes, nodata, name, dtype=data.dtype, meta=np.empty((0, 0), data.dtype))
        invalid = ~da.isfinite(data)
        if nodata is not None and not np.isnan(nodata):
            invalid |= data == nodata
        return da.where(invalid, IGNORE, data).astype(np.int32)
    out = data.astype(np.int32)
    if nodata is not None:
        out = da.where(data == nodata, IGNORE, out)
    return da.where(out < 0, IGNORE, out)


def _whole_classes(block: np.ndarray, nodata, name: str) -> np.ndarray:
    """``block`` as is if its labelled values are whole numbers (class codes); refuse a continuous target.

    Runs in a task: the error is made outside any ``except``, so nothing
    is chained to it and it reaches the client as itself on every scheduler.
    """
    labelled = np.isfinite(block)
    if nodata is not None and not np.isnan(nodata):
        labelled &= block != nodata
    fractional = labelled & (block != np.round(block))
    if not fractional.any():
        return block
    example = float(block[fractional].flat[0])
    raise TargetError(f"{name} holds non-integer values (e.g. {example:.6g}), not class codes; give --threshold T "
                      "(thresholds=T) to make classes (value >= T), or sample it as a continuous target "
                      "(regression, kind='continuous').")


def threshold_classes(values: xr.DataArray, thresholds: float | Sequence[float]) -> xr.DataArray:
    """Ordinal classes from a continuous target: class k when ``values >= thresholds[k-1]``.

    One threshold ``t`` gives class 1 for ``value >= t`` and class 0 below;
    several (sorted) give classes 0..len(thresholds).  NaN becomes :data:`IGNORE`.
    """
    edges = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if edges.size == 0 or np.any(np.diff(edges) <= 0):
        raise TargetError(f"thresholds must be one number or an increasing list, not {list(edges)}")

    def classify(block):
        out = np.zeros(block.shape, np.int32)
        for edge in edges:  # a float64 scalar: the comparison is in float64, as the thresholds are
            out += block >= edge
        out[~np.isfinite(block)] = IGNORE
        return out

    data = values.data.map_blocks(classify, dtype=np.int32, meta=np.empty((0, 0), np.int32))
    names = _threshold_names(edges)
    return values.copy(data=data).assign_attrs(class_names=names, thresholds=edges.tolist()).rename("classes")


def _threshold_names(edges: np.ndarray) -> list[str]:
    bounds = [f"{e:g}" for e in edges]
    names = [f"< {bounds[0]}"]
    names += [f"{lo}..{hi}" for lo, hi in zip(bounds[:-1], bounds[1:])]
    return names + [f">= {bounds[-1]}"]


@renamed_keywords({"like": "stack"})
def rasterize_polygons(
    vector: str | os.PathLike,
    stack: xr.DataArray,
    *,
    attribute: str = "class",
    all_touched: bool = False,
) -> xr.DataArray:
    """Burn polygons into a class target on ``stack``'s grid, tile by tile.

    Parameters
    ----------
    vector : path
        GeoJSON (read directly), or any vector file pyogrio reads
        (GeoPackage, Shapefile, ...; ``pip install pyogrio``).
    stack : xarray.DataArray
        The stack (or any array with its grid).
    attribute : str, default "class"
        Property holding each polygon's class: integers are used as class
        codes; strings become codes 0, 1, ... in sorted order.
    all_touched : bool, default False
        Burn every pixel a polygon touches, not only those whose centre it covers.

    Returns
    -------
    xarray.DataArray
        int32 ``(y, x)``, :data:`IGNORE` outside every polygon; later polygons
        win where they overlap; ``attrs["class_names"]``.

    Raises
    ------
    TargetError
        The file cannot be read, lacks ``attribute``, or is a GeoJSON
        without a ``crs`` member whose coordinates are not longitude/latitude.
    """
    grid = grid_of(stack)
    geometries, labels, vector_crs = _read_vector(Path(vector), attribute)
    codes, names = _class_codes(labels, vector, attribute)
    if grid.crs is not None and vector_crs is not None and vector_crs != grid.crs:
        from rasterio.warp import transform_geom

        geometries = [transform_geom(vector_crs, grid.crs, g) for g in geometries]
    boxes = np.array([_bbox(g) for g in geometries]).reshape(-1, 4)
    chunks = stack.chunks[-2:] if stack.chunks else ((grid.height,), (grid.width,))
    data = burn_polygons(geometries, codes, boxes, grid, chunks, all_touched=all_touched)
    out = xr.DataArray(data, dims=("y", "x"), coords={k: v for k, v in stack.coords.items() if "band" not in v.dims},
                       name="target")
    out.attrs["class_names"] = names
    return out


def burn_polygons(geometries, codes, boxes: np.ndarray, grid: Grid, chunks, *, all_touched: bool = False) -> da.Array:
    """Lazy int32 ``(y, x)`` codes of ``geometries`` burnt on ``grid`` tile by tile, :data:`IGNORE` elsewhere.

    Parameters
    ----------
    geometries : sequence
        GeoJSON-like dicts or shapely geometries in the grid's CRS.
    codes : sequence of int
        Each geometry's code; later geometries win where they overlap.
    boxes : ndarray (n, 4)
        Each geometry's (xmin, ymin, xmax, ymax): a tile burns only those that reach it.
    grid : Grid
    chunks : tuple of tuples
        Tile sizes along (y, x).
    all_touched : bool, default False
        Burn every pixel a geometry touches, not only those whose centre it covers.
    """
    return map_located(_burn_tile, geometries, codes, boxes, grid, all_touched, chunks=chunks, dtype=np.int32)


def _burn_tile(geometries, codes, boxes, grid: Grid, all_touched, *, location):
    from affine import Affine
    from rasterio.features import rasterize

    (r0, r1), (c0, c1) = location
    transform = grid.transform @ Affine.translation(c0, r0)
    xs, ys = transform @ (np.array([0, c1 - c0, 0, c1 - c0]), np.array([0, 0, r1 - r0, r1 - r0]))  # 4 corners
    hit = (boxes[:, 0] <= xs.max()) & (boxes[:, 2] >= xs.min()) & (boxes[:, 1] <= ys.max()) & (boxes[:, 3] >= ys.min())
    shapes = [(geometries[i], int(codes[i])) for i in np.flatnonzero(hit)]
    if not shapes:
        return np.full((r1 - r0, c1 - c0), IGNORE, np.int32)
    return rasterize(shapes, out_shape=(r1 - r0, c1 - c0), transform=transform, fill=IGNORE,
                     all_touched=all_touched, dtype=np.int32)


def _read_vector(path: Path, attribute: str):
    """Geometries (GeoJSON-like dicts), attribute values, and the CRS of a vector file."""
    from rasterio.crs import CRS

    if not path.exists():
        raise SourceNotFoundError(f"vector file {path} does not exist; check the path.")
    if path.suffix.lower() in (".geojson", ".json"):
        try:
            collection = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise TargetError(f"{path} is not valid GeoJSON: {err}") from err
        features = collection.get("features", [])
        named = collection.get("crs", {}).get("properties", {}).get("name")
        crs = CRS.from_user_input(named) if named else CRS.from_epsg(4326)  # RFC 7946: WGS 84
        geometries = [f["geometry"] for f in features if f.get("geometry")]
        labels = [f.get("properties", {}).get(attribute) for f in features if f.get("geometry")]
        if not features:
            raise TargetError(f"{path} holds no features.")
        if any(v is None for v in labels):
            found = sorted({k for f in features for k in (f.get("properties") or {})})
            raise TargetError(f"{path}: some features have no '{attribute}' property "
                              f"(properties found: {', '.join(found) or 'none'}); name the class attribute.")
        if not named:
            _check_lon_lat(path, geometries)
        return geometries, labels, crs
    return _read_with_pyogrio(path, attribute)


_CRS_MEMBER = '"crs": {"type": "name", "properties": {"name": "EPSG:32633"}}'


def _check_lon_lat(path: Path, geometries: list[dict]) -> None:
    """Refuse a GeoJSON without ``crs`` whose coordinates cannot be longitude/latitude (RFC 7946: WGS 84)."""
    boxes = np.array([_bbox(g) for g in geometries]).reshape(-1, 4)
    outside = (np.abs(boxes[:, [0, 2]]) > 180).any(axis=1) | (np.abs(boxes[:, [1, 3]]) > 90).any(axis=1)
    if not outside.any():
        return
    xs, ys = boxes[np.argmax(outside), [0, 2]], boxes[np.argmax(outside), [1, 3]]
    x, y = xs[np.argmax(np.abs(xs))], ys[np.argmax(np.abs(ys))]
    raise TargetError(f"{path} has no 'crs' member, so by RFC 7946 its coordinates are WGS 84 longitude/latitude, "
                      f"but it holds ({x:.10g}, {y:.10g}); add a 'crs' member naming its CRS ({_CRS_MEMBER}) or "
                      "reproject it to WGS 84.")


def _read_with_pyogrio(path: Path, attribute: str):
    """Any OGR vector format, through pyogrio (geometries as GeoJSON-like dicts via shapely)."""
    try:
        import pyogrio
        import shapely
    except ImportError as err:
        raise TargetError(f"{path}: reading {path.suffix} vector files needs pyogrio and shapely "
                          "(pip install 'rastercore[vector]'), or convert the file to GeoJSON.") from err
    from rasterio.crs import CRS

    try:
        meta, _, geometry, fields = pyogrio.raw.read(path)
    except Exception as err:  # pyogrio raises its own DataSourceError family
        raise TargetError(f"{path} could not be read as a vector file: {err}") from err
    names = list(meta["fields"])
    if attribute not in names:
        raise TargetError(f"{path} has no attribute '{attribute}' (attributes: {', '.join(names)}).")
    geometries = [shapely.geometry.mapping(g) for g in shapely.from_wkb(geometry)]
    labels = [v.item() if hasattr(v, "item") else v for v in fields[names.index(attribute)]]
    return geometries, labels, CRS.from_user_input(meta["crs"]) if meta.get("crs") else None


def _class_codes(labels, path, attribute) -> tuple[np.ndarray, list[str]]:
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels):
        codes = np.asarray(labels, dtype=np.int64)
        if codes.min() < 0:
            raise TargetError(f"{path}: class codes in '{attribute}' must be >= 0 (found {codes.min()}).")
        return codes, [str(c) for c in range(int(codes.max()) + 1)]
    names = sorted({str(v) for v in labels})
    lookup = {n: i for i, n in enumerate(names)}
    return np.array([lookup[str(v)] for v in labels], dtype=np.int64), names


def _bbox(geometry: dict) -> tuple[float, float, float, float]:
    coords = np.array(list(_walk(geometry["coordinates"])), dtype=float).reshape(-1, 2)
    return coords[:, 0].min(), coords[:, 1].min(), coords[:, 0].max(), coords[:, 1].max()


def _walk(coords):
    if len(coords) and isinstance(coords[0], (int, float)):
        yield coords[:2]
        return
    for part in coords:
        yield from _walk(part)
