"""Polygons of a class map, tile by tile: one feature per connected region, as if polygonised whole.

Each tile is polygonised on its own (``rasterio.features.shapes``, in
scene pixel coordinates, so every vertex is an exact integer).  A polygon
that touches no internal tile edge is a whole region: it is written at
once.  The others are pieces of regions cut by tile edges; they are held,
joined across tiles where two pieces of one class touch (a shared edge
segment for 4-connectivity, a corner point too for 8) by union-find, and a
region is merged (``shapely.union_all``) and written as soon as every tile
its pieces could reach has been read.  Tiles arrive in row-major order, so
what is held is about one row of tiles' edge pieces plus the regions still
open across it.
"""

from __future__ import annotations

import heapq
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from rastercore.checks import check_choice, check_tile_size
from rastercore.engine import plan_tiles, tile_tasks
from rastercore.errors import ParameterError
from rastercore.grid import grid_of
from rastercore.predict import class_layer_of
from rastercore.progress import Progress, ProgressMode, check_progress
from rastercore.scheduler import compute_bounded
from rastercore.store import open_stack, writing

__all__ = ["polygonize", "polygon_format", "Polygons", "POLYGON_FORMATS"]

POLYGON_FORMATS = ("gpkg", "parquet")
"""Output formats: GeoPackage (pyogrio) and GeoParquet (pyarrow)."""

_VECTOR = "polygonize needs the vector extra: pip install 'rastercore[vector]'"
_NODATA = np.iinfo(np.int64).min  # the code of nodata (and outside the scene) when looking for junctions
_BATCH = 20_000  # features per write
_EDGE_CONTACT = "****1****"  # DE-9IM: the boundaries share a segment (4-connectivity)

# rasterio.features.shapes, run on several threads at once, at times reports its in-memory rasters as not
# georeferenced although the polygons are right (the transform is given); the notice would read as a fault of
# the map.
warnings.filterwarnings("ignore", "Dataset has no geotransform", module="rasterio.features")


@dataclass(frozen=True)
class Polygons:
    """What :func:`polygonize` wrote.

    Attributes
    ----------
    path : pathlib.Path
    features : int
        Number of features (connected regions).
    per_class : dict of str to int
        Features per class name.
    """

    path: Path
    features: int
    per_class: dict


def polygonize(
    mosaic,
    output: str | os.PathLike,
    *,
    layer: str | None = None,
    connectivity: int = 4,
    simplify: float | None = None,
    format: str | None = None,
    tile_size: int | None = None,
    overwrite: bool = False,
    progress: ProgressMode = "auto",
) -> Polygons:
    """Write one polygon per connected region of a class map, tile by tile.

    The result equals polygonising the whole image (same regions, same
    outlines): polygons cut by tile edges are merged.  Memory is bounded by
    the tile size and the regions open across the current row of tiles,
    not by the scene.

    Parameters
    ----------
    mosaic : path-like or xarray.DataArray
        A class or cluster map (``.zarr`` from ``rastercore predict`` or
        ``cluster``), or an array like the one :func:`rastercore.open_stack`
        returns.  NaN (and the store's nodata value) is nodata: no polygon.
    output : path-like
        ``.gpkg`` (GeoPackage) or ``.parquet`` (GeoParquet).  Written to
        ``<output>.partial`` and renamed when complete.
    layer : str, optional
        The layer of integer class codes; default ``class``, else ``cluster``.
    connectivity : {4, 8}, default 4
        Pixels of a region are joined by their edges (4), or by their
        corners too (8; a region may then be a MultiPolygon).
    simplify : float, optional
        Simplify the outlines by this tolerance in CRS units (Douglas-Peucker,
        topology-preserving per line).  Every boundary between two regions
        is simplified once, as a line between the points where three or more
        regions (or nodata) meet, walked from its lower end: neighbours get
        exactly the same simplified boundary (no gaps or slivers between
        them), and the result does not depend on the tiles.  Each line keeps
        its end points, does not cross itself and is never reduced to a bare
        chord (small regions keep an area).  Lines are simplified one by one,
        so where a tolerance close to a region's width makes two lines of an
        outline cross, the polygon is repaired (``make_valid``): every
        polygon is valid, but neighbours may overlap slightly there.
        ``area`` stays the region's exact area.
    format : {"gpkg", "parquet"}, optional
        Default from ``output``'s extension (``.parquet``: GeoParquet).
        GeoParquet is streamed through pyarrow (GDAL's Parquet driver cannot
        append).
    tile_size : int, optional
        Side of the tiles read at a time; default the map's own tiles.
    overwrite : bool, default False
        Replace ``output`` if it exists.
    progress : {"auto", "bar", "json", "none"}, default "auto"

    Returns
    -------
    Polygons
        The path, the number of features and the features per class.

    Notes
    -----
    Each feature carries ``class`` (the code), ``class_name`` (from the
    map's ``class_names``, else the code), ``area`` (CRS units squared; pixels
    on a map without georeferencing) and, when the CRS is projected,
    ``area_ha`` (hectares).  Polygons are in the map's CRS; their type is
    Polygon for 4-connectivity without simplification, else MultiPolygon.

    Raises
    ------
    rastercore.errors.ParameterError
        A bad option, no class layer, the vector extra (or pyarrow, for
        GeoParquet) missing.
    rastercore.errors.StoreExistsError
        ``output`` exists and ``overwrite`` is false.
    """
    check_choice(connectivity, "connectivity (--connectivity)", (4, 8))
    tolerance = _tolerance(simplify)
    tile_size = check_tile_size(tile_size)
    check_progress(progress)
    fmt = polygon_format(output, format)
    stack, layer = _class_layer(mosaic, layer)
    grid = grid_of(stack)
    plan = plan_tiles(stack, halo=1, bands=[layer], tile_size=tile_size)
    outline = _Outline(tuple(grid.transform)[:6], grid.width, connectivity, tolerance)
    tasks = tile_tasks(plan, _PolygonTile(outline, _nodata_of(stack), grid.shape))
    fields = _Fields(stack.attrs.get("class_names") if layer in ("class", "cluster") else None, grid)
    with writing(output, overwrite=overwrite) as partial:
        sink = _open_sink(fmt, partial, Path(output).stem, grid.crs, outline.geometry_type, fields)
        with sink, Progress("polygonize", len(tasks), mode=progress) as bar:
            regions = _Regions(plan.grid, connectivity)
            for (tile, _), result in compute_bounded(tasks, lambda task: task[1]):
                sink.write(*result.whole)
                sink.write(*outline.merge(regions.add(tile.index, result.cut)))
                bar.update()
            sink.write(*outline.merge(regions.flush()))
    return Polygons(Path(output), sink.count, sink.per_class())


def _tolerance(simplify) -> float:
    """``simplify`` as a float tolerance (0: none), or a one-line :class:`ParameterError`."""
    if simplify is None:
        return 0.0
    try:
        value = float(simplify)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ParameterError(f"simplify (--simplify) must be a tolerance of 0 or more in CRS units, not {simplify!r}.")
    return value


def polygon_format(output: str | os.PathLike, format: str | None = None) -> str:
    """``"gpkg"`` or ``"parquet"`` for ``output``, once the libraries writing it are known to be installed.

    Raises
    ------
    rastercore.errors.ParameterError
        An unknown format, the vector extra missing, or pyarrow missing for GeoParquet.
    """
    if format is None:
        format = "parquet" if Path(output).suffix.lower() in (".parquet", ".geoparquet") else "gpkg"
    fmt = check_choice(str(format).lower(), "format (--format)", POLYGON_FORMATS)
    try:
        import pyogrio  # noqa: F401
        import shapely
    except ImportError:
        raise ParameterError(_VECTOR + ".") from None
    if int(shapely.__version__.split(".")[0]) < 2:
        raise ParameterError(f"{_VECTOR} (shapely 2 or later; found {shapely.__version__}).")
    if fmt == "parquet":
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise ParameterError("GeoParquet output needs pyarrow: pip install pyarrow (or write a .gpkg).") from None
    return fmt


def _class_layer(mosaic, layer: str | None) -> tuple[xr.DataArray, str]:
    """The ``(band, y, x)`` map and the name of its layer of codes, checked."""
    stack = open_stack(mosaic) if isinstance(mosaic, (str, os.PathLike)) else mosaic
    where = mosaic if isinstance(mosaic, (str, os.PathLike)) else "the map"
    if stack.ndim == 2:
        stack = stack.expand_dims(band=[layer or "class"])
    return stack, class_layer_of(stack, str(where), layer)


def _nodata_of(stack: xr.DataArray) -> float | None:
    """The map's nodata value besides NaN, or None."""
    nodata = stack.rio.nodata if "spatial_ref" in stack.coords else stack.attrs.get("_FillValue")
    return None if nodata is None or np.isnan(nodata) else float(nodata)


# -- per tile -------------------------------------------------------------------------------------------


@dataclass
class _TileResult:
    """One tile's polygons: ``whole`` regions ready to write, ``cut`` pieces of regions that cross its edges."""

    whole: tuple  # (codes, WKB, pixel areas)
    cut: dict  # codes, geoms (pixel coordinates), areas, edges (top, bottom, left, right), nodes


class _PolygonTile:
    """The per-tile work (picklable): polygonise the tile, finish the whole regions, return the cut pieces."""

    def __init__(self, outline: _Outline, nodata: float | None, shape: tuple[int, int]):
        self.outline, self.nodata, self.shape = outline, nodata, shape

    def __dask_tokenize__(self):
        return ("rastercore-polygon-tile", self.outline, self.nodata, self.shape)

    def __call__(self, window: np.ndarray, tile) -> _TileResult:
        import shapely

        codes = _codes(window[0], self.nodata)
        own = tile.interior(codes)
        valid = own != _NODATA
        if not valid.any():
            return _TileResult(_no_rows(), _no_pieces())
        geoms, values = _shapes(own, valid, tile, self.outline.connectivity)
        nodes = _junctions(codes, tile, self.outline.width) if self.outline.tolerance else None
        edges = _edges_touched(geoms, tile, self.shape)
        cut = edges.any(axis=1)
        whole = geoms[~cut]
        rows = (values[~cut], self.outline.finish(whole, nodes), shapely.area(whole))
        pieces = dict(codes=values[cut], geoms=geoms[cut], areas=shapely.area(geoms[cut]), edges=edges[cut],
                      nodes=_on_boundary(geoms[cut], nodes, self.outline.width) if nodes is not None
                      else None)
        return _TileResult(rows, pieces)


def _codes(window: np.ndarray, nodata: float | None) -> np.ndarray:
    """The codes of ``window`` as int64, :data:`_NODATA` where there is none; non-integer codes are refused."""
    valid = ~np.isnan(window) if window.dtype.kind == "f" else np.ones(window.shape, bool)
    if nodata is not None:
        valid &= window != nodata
    values = window[valid]
    if values.size and (np.any(values != np.round(values)) or values.min() < -2**31 or values.max() >= 2**31):
        raise ParameterError("the layer to polygonise holds values that are not integer class codes; pass the "
                             "class (or cluster) layer with layer= (--layer).")
    codes = np.full(window.shape, _NODATA, np.int64)
    codes[valid] = values.astype(np.int64)
    return codes


def _shapes(codes: np.ndarray, valid: np.ndarray, tile, connectivity: int) -> tuple[np.ndarray, np.ndarray]:
    """The tile's polygons in scene pixel coordinates (x = column, y = row) and their codes."""
    import shapely
    from affine import Affine
    from rasterio.features import shapes

    row, col = tile.origin
    geoms, values = [], []
    for geom, value in shapes(codes.astype(np.int32), mask=valid, connectivity=connectivity,
                              transform=Affine.translation(col, row)):
        rings = geom["coordinates"]
        geoms.append(shapely.Polygon(rings[0], rings[1:]))
        values.append(value)
    geoms = np.array(geoms, dtype=object)
    bad = ~shapely.is_valid(geoms)  # GDAL's outlines may pinch (a ring touching itself at a corner)
    if bad.any():
        geoms[bad] = [_polygonal(shapely.make_valid(g)) for g in geoms[bad]]
    return geoms, np.asarray(values, dtype=np.int32)


def _edges_touched(geoms: np.ndarray, tile, shape: tuple[int, int]) -> np.ndarray:
    """``(n, 4)``: whether each polygon reaches the tile's internal top, bottom, left, right edge."""
    import shapely

    (r0, r1), (c0, c1) = (tile.rows.start, tile.rows.stop), (tile.cols.start, tile.cols.stop)
    minx, miny, maxx, maxy = shapely.bounds(geoms).T
    return np.column_stack([(miny == r0) & (r0 > 0), (maxy == r1) & (r1 < shape[0]),
                            (minx == c0) & (c0 > 0), (maxx == c1) & (c1 < shape[1])])


def _junctions(codes: np.ndarray, tile, scene_width: int) -> np.ndarray:
    """Sorted keys of the tile's vertices where three or more regions (or nodata) meet, or two cross.

    A vertex is judged from its four pixels, so it needs the halo: both
    tiles beside an edge find the same junctions on it.
    """
    top, bottom, left, right = tile.halo
    height, width = tile.shape
    padded = np.full((height + 2, width + 2), _NODATA, np.int64)
    padded[1 - top:1 + height + bottom, 1 - left:1 + width + right] = codes
    a, b, c, d = padded[:-1, :-1], padded[:-1, 1:], padded[1:, :-1], padded[1:, 1:]
    distinct = 1 + (b != a) + ((c != a) & (c != b)) + ((d != a) & (d != b) & (d != c))
    crossing = (a == d) & (b == c) & (a != b)
    rows, cols = np.nonzero((distinct >= 3) | crossing)
    return (rows + tile.rows.start) * (scene_width + 1) + cols + tile.cols.start


def _on_boundary(geoms: np.ndarray, nodes: np.ndarray, width: int) -> list[np.ndarray]:
    """For each of ``geoms``, the keys of ``nodes`` on its boundary."""
    if not len(geoms):
        return []
    rings = _grid_rings(geoms)
    keys = _keys(rings.points, width)
    hit = np.isin(keys, nodes)
    owner = rings.part_geom[rings.ring_part[rings.ring_of[hit]]]
    keys = keys[hit]
    order = np.lexsort((keys, owner))
    owner, keys = owner[order], keys[order]
    return [np.unique(k) for k in np.split(keys, np.searchsorted(owner, np.arange(1, len(geoms))))]


def _no_rows() -> tuple:
    return np.zeros(0, np.int32), np.zeros(0, object), np.zeros(0)


def _no_pieces() -> dict:
    return dict(codes=np.zeros(0, np.int32), geoms=np.zeros(0, object), areas=np.zeros(0),
                edges=np.zeros((0, 4), bool), nodes=None)


# -- outlines: merge, simplify, georeference ---------------------------------------------------------------


@dataclass(frozen=True)
class _Outline:
    """Turns pixel-coordinate polygons into what is written: merged, simplified, in the CRS, as WKB."""

    transform: tuple  # a, b, c, d, e, f of the pixel -> CRS affine transform
    width: int
    connectivity: int
    tolerance: float

    @property
    def geometry_type(self) -> str:
        return "Polygon" if self.connectivity == 4 and not self.tolerance else "MultiPolygon"

    def merge(self, groups: list[list[dict]]) -> tuple:
        """Regions, each from its pieces in several tiles, as rows: ``(codes, WKB, pixel areas)``."""
        import shapely

        if not groups:
            return _no_rows()
        merged = np.array([g[0]["geom"] if len(g) == 1 else shapely.union_all([p["geom"] for p in g])
                           for g in groups], dtype=object)
        # Junctions are facts of the whole map: one group's never lie on another's boundary unless theirs too.
        nodes = np.unique(np.concatenate([p["nodes"] for g in groups for p in g])) if self.tolerance else None
        codes = np.array([g[0]["code"] for g in groups], np.int32)
        return codes, self.finish(merged, nodes), np.array([sum(p["area"] for p in g) for g in groups])

    def finish(self, geoms: np.ndarray, nodes: np.ndarray | None) -> np.ndarray:
        """WKB of ``geoms`` (pixel coordinates) in the CRS, simplified if asked."""
        import shapely

        if self.tolerance:
            geoms = self._simplified(geoms, nodes) if len(geoms) else geoms
        else:
            geoms = shapely.transform(geoms, self._to_crs)
        single = shapely.get_type_id(geoms) == 3
        if self.geometry_type == "MultiPolygon" and single.any():
            geoms[single] = shapely.multipolygons(geoms[single][:, np.newaxis])
        return shapely.to_wkb(geoms)

    def _to_crs(self, xy: np.ndarray) -> np.ndarray:
        a, b, c, d, e, f = self.transform
        x, y = xy[:, 0], xy[:, 1]
        return np.column_stack([a * x + b * y + c, d * x + e * y + f])

    def _simplified(self, geoms: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        """``geoms`` as MultiPolygons in the CRS, each boundary line between junctions simplified on its own.

        Vectorised over every ring of ``geoms``: the rings are walked at unit
        steps, each starts at a junction (or, meeting none, at its lowest
        vertex), is cut into lines at the junctions, and each line is
        simplified walked from its lower end, so both regions beside a line
        simplify it alike.
        """
        import shapely

        rings = _grid_rings(geoms)
        lines = _lines(rings, self.width, nodes)
        xy = self._to_crs(lines.points.astype(float))
        simple = shapely.simplify(shapely.linestrings(xy, indices=lines.line), self.tolerance, preserve_topology=True)
        out, out_line = shapely.get_coordinates(simple, return_index=True)
        out, out_line = _no_bare_chords(out, out_line, xy, lines)
        rank = np.arange(len(out_line)) - np.searchsorted(out_line, out_line)
        size = np.bincount(out_line, minlength=lines.count)[out_line]
        rank = np.where(lines.flipped[out_line], size - 1 - rank, rank)  # back to the ring's own direction
        order = np.lexsort((rank, out_line))
        out, out_line = out[order], out_line[order]
        joint = (rank[order] == 0) & ~lines.opens_ring[out_line]  # the previous line's last point again
        ring_xy, ring_of = _exact_if_collapsed(out[~joint], lines.ring[out_line[~joint]], rings, self._to_crs)
        polygons = shapely.polygons(shapely.linearrings(ring_xy, indices=ring_of), indices=rings.ring_part)
        result = shapely.multipolygons(polygons, indices=rings.part_geom)
        bad = np.flatnonzero(~shapely.is_valid(result))
        result[bad] = [shapely.MultiPolygon(list(shapely.get_parts(_polygonal(shapely.make_valid(g)))))
                       for g in result[bad]]
        return result


@dataclass
class _GridRings:
    """Every ring of some pixel-grid polygons, walked at unit steps (each an open cycle)."""

    coords: np.ndarray  # the rings' own vertices (closed), and the ring of each
    coords_ring: np.ndarray
    ring_part: np.ndarray  # the polygon (part) of each ring, and the geometry of each part
    part_geom: np.ndarray
    points: np.ndarray  # (n, 2) int64 vertices at unit steps, and the ring of each
    ring_of: np.ndarray
    start: np.ndarray  # each ring's first point, and its number of points
    count: np.ndarray


def _grid_rings(geoms: np.ndarray) -> _GridRings:
    """The rings of ``geoms`` (pixel coordinates) at unit steps.

    Outlines of pixels run along grid lines, so each segment is horizontal
    or vertical and the unit steps are exact: the same boundary gives the
    same vertices whichever polygon it comes from.
    """
    import shapely

    parts, part_geom = shapely.get_parts(geoms, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    coords, coords_ring = shapely.get_coordinates(rings, return_index=True)
    xy = np.rint(coords).astype(np.int64)
    same = coords_ring[1:] == coords_ring[:-1]
    begin, step, segment_ring = xy[:-1][same], np.diff(xy, axis=0)[same], coords_ring[:-1][same]
    length = np.abs(step).sum(axis=1)
    keep = length > 0
    begin, step, segment_ring, length = begin[keep], step[keep], segment_ring[keep], length[keep]
    segment = np.repeat(np.arange(len(length)), length)
    offset = np.arange(int(length.sum())) - np.repeat(np.cumsum(length) - length, length)
    points = begin[segment] + (step // length[:, np.newaxis])[segment] * offset[:, np.newaxis]
    ring_of = segment_ring[segment]
    count = np.bincount(ring_of, minlength=len(rings))
    return _GridRings(coords, coords_ring, ring_part, part_geom, points, ring_of, np.cumsum(count) - count, count)


@dataclass
class _Lines:
    """The rings cut into lines at the junctions, each walked from its lower end (see ``_Outline._simplified``)."""

    points: np.ndarray  # (n, 2) vertices of every line in turn (a line ends where the next one starts)
    line: np.ndarray  # the line of each point
    count: int
    flipped: np.ndarray  # per line: walked against its ring's direction
    ring: np.ndarray  # per line: its ring
    opens_ring: np.ndarray  # per line: the first of its ring


def _lines(rings: _GridRings, width: int, nodes: np.ndarray) -> _Lines:
    """``rings`` turned to start at a junction (or their lowest vertex) and cut into lines at the junctions."""
    keys = _keys(rings.points, width)
    junction = np.isin(keys, nodes)
    first = np.full(len(rings.count), -1)
    at = np.flatnonzero(junction)
    with_junction, index = np.unique(rings.ring_of[at], return_index=True)
    first[with_junction] = at[index]
    lowest = np.lexsort((keys, rings.ring_of))[rings.start]
    first = np.where(first < 0, lowest, first) - rings.start
    local = np.arange(len(keys)) - rings.start[rings.ring_of]
    turned = rings.start[rings.ring_of] + (local + first[rings.ring_of]) % rings.count[rings.ring_of]
    points, keys, junction = rings.points[turned], keys[turned], junction[turned]
    junction[rings.start] = True
    line_of = np.cumsum(junction) - 1
    begin = np.flatnonzero(junction)
    ring = rings.ring_of[begin]
    body = np.diff(np.append(begin, len(keys)))  # points of each line before its end point
    last_of_ring = np.append(ring[1:] != ring[:-1], True)
    end = np.where(last_of_ring, rings.start[ring], begin + body)
    second = np.minimum(begin + 1, len(keys) - 1)
    flipped = (keys[begin] > keys[end]) | ((keys[begin] == keys[end]) & (keys[second] > keys[begin + body - 1]))
    rank = np.concatenate([np.arange(len(keys)) - begin[line_of], body])
    line = np.concatenate([line_of, np.arange(len(begin))])
    rank = np.where(flipped[line], body[line] - rank, rank)
    order = np.lexsort((rank, line))
    every = np.concatenate([points, points[end]])[order]
    return _Lines(every, line[order], len(begin), flipped, ring, begin == rings.start[ring])


def _no_bare_chords(out: np.ndarray, out_line: np.ndarray, xy: np.ndarray, lines: _Lines):
    """Simplified lines, with lines simplified to a bare chord given back their farthest vertex.

    So a small region keeps an area, and the rule depends on the line only.
    """
    size = np.bincount(out_line, minlength=lines.count)
    length = np.bincount(lines.line, minlength=lines.count)
    bare = (size == 2) & (length > 2)
    if not bare.any():
        return out, out_line
    head = np.searchsorted(lines.line, np.arange(lines.count))
    tail = head + length - 1
    line = lines.line
    (x0, y0), (x1, y1) = xy[head[line]].T, xy[tail[line]].T
    closed = (x0 == x1) & (y0 == y1)
    distance = np.where(closed, np.hypot(xy[:, 0] - x0, xy[:, 1] - y0),
                        np.abs((x1 - x0) * (xy[:, 1] - y0) - (y1 - y0) * (xy[:, 0] - x0)))
    index = np.arange(len(line))
    candidate = np.flatnonzero(bare[line] & (index != head[line]) & (index != tail[line]))
    candidate = candidate[np.lexsort((candidate, -distance[candidate], line[candidate]))]
    chosen_line, at = np.unique(line[candidate], return_index=True)
    keep = ~bare[out_line]
    extra = np.concatenate([head[chosen_line], candidate[at], tail[chosen_line]])
    points = np.concatenate([out[keep], xy[extra]])
    owner = np.concatenate([out_line[keep], np.tile(chosen_line, 3)])
    rank = np.concatenate([np.arange(keep.sum()), np.repeat([0, 1, 2], len(chosen_line))])
    order = np.lexsort((rank, owner))
    return points[order], owner[order]


def _exact_if_collapsed(xy: np.ndarray, ring_of: np.ndarray, rings: _GridRings, to_crs):
    """Ring coordinates, with the rings that collapsed (under 4 points or no area) back to their exact outline."""
    count = np.bincount(ring_of, minlength=len(rings.count))
    x, y = xy[:, 0], xy[:, 1]
    cross = x[:-1] * y[1:] - x[1:] * y[:-1]
    same = ring_of[1:] == ring_of[:-1]
    area = np.bincount(ring_of[:-1][same], weights=cross[same], minlength=len(count))
    collapsed = (count < 4) | (area == 0)
    if not collapsed.any():
        return xy, ring_of
    keep = ~collapsed[ring_of]
    exact = collapsed[rings.coords_ring]
    xy = np.concatenate([xy[keep], to_crs(rings.coords[exact])])
    ring_of = np.concatenate([ring_of[keep], rings.coords_ring[exact]])
    order = np.argsort(ring_of, kind="stable")
    return xy[order], ring_of[order]


def _keys(points: np.ndarray, width: int) -> np.ndarray:
    """A number per grid vertex ``(x, y)``: ``y * (width + 1) + x``."""
    points = np.rint(points).astype(np.int64)
    return points[:, 1] * (width + 1) + points[:, 0]


def _polygonal(geom):
    """The polygons of a geometry collection from ``make_valid`` (lines and points of collapse dropped)."""
    import shapely

    parts = [p for p in shapely.get_parts(geom) if p.geom_type in ("Polygon", "MultiPolygon")]
    parts = [q for p in parts for q in shapely.get_parts(p)]
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


# -- joining pieces across tiles ----------------------------------------------------------------------------


class _Regions:
    """Pieces of regions cut by tile edges: joined across tiles (union-find), released once complete.

    Tiles must arrive in row-major order.  Each piece records the last tile
    (in that order) it could touch; a group of joined pieces is complete
    once that tile, for every piece, has arrived.
    """

    def __init__(self, grid: tuple[int, int], connectivity: int):
        self.ny, self.nx = grid
        self.eight = connectivity == 8
        self.pieces: dict[int, dict] = {}
        self.by_tile: dict[tuple[int, int], list[int]] = {}
        self.parent: dict[int, int] = {}
        self.members: dict[int, list[int]] = {}
        self.last: dict[int, int] = {}  # root -> the last tile its group can reach
        self.heap: list[tuple[int, int]] = []
        self.next_id = 0

    def add(self, index: tuple[int, int], cut: dict) -> list[list[dict]]:
        """Take tile ``index``'s cut pieces; return the groups of pieces now complete."""
        ids = list(range(self.next_id, self.next_id + len(cut["codes"])))
        self.next_id += len(ids)
        for k, (pid, last) in enumerate(zip(ids, self._last_tiles(index, cut["edges"]))):
            self.pieces[pid] = dict(code=int(cut["codes"][k]), geom=cut["geoms"][k], area=float(cut["areas"][k]),
                                    nodes=None if cut["nodes"] is None else cut["nodes"][k])
            self.parent[pid], self.members[pid], self.last[pid] = pid, [pid], last
            heapq.heappush(self.heap, (last, pid))
        if ids:
            self._join(index, ids, cut)
            self.by_tile[index] = ids
        i, j = index
        self.by_tile.pop((i - 1, j - 1), None)  # no tile still to come touches these
        if j == self.nx - 1:
            self.by_tile.pop((i - 1, j), None)
        return self._complete(i * self.nx + j)

    def flush(self) -> list[list[dict]]:
        """Every group still held (after the last tile)."""
        return self._complete(math.inf)

    def _last_tiles(self, index: tuple[int, int], edges: np.ndarray) -> np.ndarray:
        """For each piece, the row-major number of the last tile it may touch (-1: none after this one)."""
        i, j = index
        top, bottom, left, right = edges.T
        later = [np.where(right, i * self.nx + j + 1, -1), np.where(bottom, (i + 1) * self.nx + j, -1)]
        if self.eight and i + 1 < self.ny:  # corners: the tiles below left and below right
            later.append(np.where(right | bottom & (j + 1 < self.nx), (i + 1) * self.nx + j + 1, -1))
            later.append(np.where(left | bottom & (j > 0), (i + 1) * self.nx + j - 1, -1))
        return np.max(later, axis=0)

    def _join(self, index: tuple[int, int], ids: list[int], cut: dict) -> None:
        """Join the new pieces with the held pieces of the tiles before this one that they touch."""
        import shapely

        i, j = index
        neighbours = [(i, j - 1), (i - 1, j)] + ([(i - 1, j - 1), (i - 1, j + 1)] if self.eight else [])
        tree = shapely.STRtree(cut["geoms"])
        for tile in neighbours:
            held = [pid for pid in self.by_tile.get(tile, ()) if pid in self.pieces]
            if not held:
                continue
            geoms = np.array([self.pieces[pid]["geom"] for pid in held], dtype=object)
            old, new = tree.query(geoms, predicate="intersects")
            codes = np.array([self.pieces[pid]["code"] for pid in held])
            same = codes[old] == cut["codes"][new]
            old, new = old[same], new[same]
            if not self.eight:  # a corner point is not a contact
                edge = shapely.relate_pattern(geoms[old], cut["geoms"][new], _EDGE_CONTACT)
                old, new = old[edge], new[edge]
            for a, b in zip(old, new):
                self._union(held[a], ids[b])

    def _find(self, pid: int) -> int:
        root = pid
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[pid] != root:
            self.parent[pid], pid = root, self.parent[pid]
        return root

    def _union(self, a: int, b: int) -> None:
        a, b = self._find(a), self._find(b)
        if a == b:
            return
        if len(self.members[a]) < len(self.members[b]):
            a, b = b, a
        self.parent[b] = a
        self.members[a] += self.members.pop(b)
        self.last[a] = max(self.last[a], self.last.pop(b))
        heapq.heappush(self.heap, (self.last[a], a))

    def _complete(self, done: float) -> list[list[dict]]:
        groups = []
        while self.heap and self.heap[0][0] <= done:
            last, root = heapq.heappop(self.heap)
            if self.last.get(root) != last or self.parent.get(root) != root:
                continue  # a stale entry: the group grew or was released
            del self.last[root]
            members = self.members.pop(root)
            for pid in members:
                del self.parent[pid]
            groups.append([self.pieces.pop(pid) for pid in sorted(members)])
        return groups


# -- writing ----------------------------------------------------------------------------------------------


class _Fields:
    """The attributes of each feature: class code and name, area (CRS units squared), hectares if projected."""

    def __init__(self, class_names, grid):
        a, b, _, d, e, _ = tuple(grid.transform)[:6]
        self.names = [str(n) for n in class_names] if class_names else []
        self.pixel_area = abs(a * e - b * d)
        crs = grid.crs
        self.hectares = None
        if crs is not None and crs.is_projected:
            self.hectares = crs.linear_units_factor[1] ** 2  # m² per CRS unit²

    def name(self, code: int) -> str:
        """The class name of ``code``, else the code."""
        return self.names[code] if 0 <= code < len(self.names) else str(code)

    def columns(self, codes: np.ndarray, pixels: np.ndarray) -> dict:
        names = np.array([self.name(c) for c in codes.tolist()], object)
        area = np.asarray(pixels, float) * self.pixel_area
        columns = {"class": codes.astype(np.int32), "class_name": names, "area": area}
        if self.hectares is not None:
            columns["area_ha"] = area * self.hectares / 1e4
        return columns


class _Sink:
    """Buffers rows and writes them in batches; counts features per class."""

    def __init__(self, fields: _Fields):
        self.fields, self.count, self._per_code = fields, 0, {}
        self._rows: list[tuple] = []
        self._buffered = 0

    def write(self, codes: np.ndarray, wkb: np.ndarray, pixels: np.ndarray) -> None:
        if len(codes):
            self._rows.append((codes, wkb, pixels))
            self._buffered += len(codes)
            if self._buffered >= _BATCH:
                self._flush()

    def _flush(self) -> None:
        codes, wkb, pixels = (np.concatenate(parts) for parts in zip(*self._rows)) if self._rows else _no_rows()
        columns = self.fields.columns(codes, pixels)
        for code, n in zip(*np.unique(codes, return_counts=True)):
            self._per_code[int(code)] = self._per_code.get(int(code), 0) + int(n)
        self.count += len(codes)
        self._rows, self._buffered = [], 0
        self._write(columns, wkb)

    def per_class(self) -> dict:
        """Features written per class name, in the order of the codes."""
        return {self.fields.name(code): self._per_code[code] for code in sorted(self._per_code)}

    def __enter__(self):
        return self

    def __exit__(self, kind, *_):
        if kind is None:
            self._flush()
        self._close()

    def _write(self, columns: dict, wkb: np.ndarray) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        pass


class _GeoPackage(_Sink):
    def __init__(self, path: Path, layer: str, crs, geometry_type: str, fields: _Fields):
        super().__init__(fields)
        self.path, self.layer, self.geometry_type = path, layer, geometry_type
        self.crs = None if crs is None else crs.to_wkt()
        self._created = False

    def _write(self, columns: dict, wkb: np.ndarray) -> None:
        import pyogrio.raw

        if self._created and not len(wkb):
            return
        with warnings.catch_warnings():  # built as <name>.gpkg.partial: GDAL frowns at the extension
            warnings.filterwarnings("ignore", ".*extension", RuntimeWarning)
            warnings.filterwarnings("ignore", "'crs' was not provided", UserWarning)  # a plain pixel grid
            pyogrio.raw.write(self.path, wkb, list(columns.values()), list(columns), layer=self.layer, driver="GPKG",
                              geometry_type=self.geometry_type, crs=self.crs, append=self._created)
        self._created = True


class _GeoParquet(_Sink):
    def __init__(self, path: Path, layer: str, crs, geometry_type: str, fields: _Fields):
        import pyarrow as pa
        import pyarrow.parquet as pq

        super().__init__(fields)
        types = {"class": pa.int32(), "class_name": pa.string(), "area": pa.float64(), "area_ha": pa.float64()}
        names = ["class", "class_name", "area"] + (["area_ha"] if fields.hectares is not None else [])
        geo = {"version": "1.1.0", "primary_column": "geometry",
               "columns": {"geometry": {"encoding": "WKB", "geometry_types": [geometry_type],
                                        "crs": _projjson(crs)}}}
        self.schema = pa.schema([pa.field(n, types[n]) for n in names] + [pa.field("geometry", pa.binary())],
                                metadata={"geo": json.dumps(geo)})
        self.writer = pq.ParquetWriter(path, self.schema, compression="zstd")

    def _write(self, columns: dict, wkb: np.ndarray) -> None:
        import pyarrow as pa

        self.writer.write_table(pa.table({**columns, "geometry": list(wkb)}, schema=self.schema))

    def _close(self) -> None:
        self.writer.close()


def _projjson(crs):
    """The CRS as PROJJSON (GeoParquet's form), or None for a map without one (an undefined CRS)."""
    if crs is None:
        return None
    from pyproj import CRS

    return CRS.from_wkt(crs.to_wkt()).to_json_dict()


def _open_sink(fmt: str, path: Path, layer: str, crs, geometry_type: str, fields: _Fields) -> _Sink:
    sink = _GeoParquet if fmt == "parquet" else _GeoPackage
    return sink(path, layer, crs, geometry_type, fields)
