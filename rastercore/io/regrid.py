"""One grid for inputs on different grids: which grid, and how each band is resampled onto it.

Real inputs rarely share a grid (Sentinel-2 at 10, 20 and 60 m; Landsat's
15 m pan beside 30 m bands; SAR and optical in different projections).
:func:`choose_grid` picks the stack's grid -- the one given (``--grid`` a
raster or stack, or ``--resolution`` with ``--crs`` / ``--bounds``), else,
for inputs in one CRS, the finest input resolution over their
intersection (or union), on the finest input's own pixel lattice, so its
pixels are not shifted.  :func:`resampling_for` picks how a band is
resampled: nearest for categorical bands (quality and class layers), else
average when its pixels are finer than the grid's and bilinear otherwise.
The resampling itself is GDAL's warped VRT, window by window
(:func:`rastercore.io.open_source` with ``match=``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import rasterio
from affine import Affine
from rasterio.crs import CRS

from rastercore.errors import MisalignedInputsError, ParameterError
from rastercore.grid import Grid

__all__ = ["choose_grid", "check_bounds", "RESAMPLING_METHODS", "resampling_for", "CATEGORICAL_NAMES", "MAX_PIXELS"]

CATEGORICAL_NAMES = re.compile(r"(^|[^a-z])(qa|bqa|scl|mask|cloud|class|classes|label|labels|lc|landcover)"
                               r"([^a-z]|$)", re.I)
"""Band names that hold categories (quality bits, scene classification, masks): resampled by nearest neighbour."""

MAX_PIXELS = 10**12
"""A grid with more pixels than this (a terapixel) is refused as a mistake (a resolution in the wrong unit)."""

RESAMPLING_METHODS = ("nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode", "min", "max",
                      "med", "q1", "q3", "sum", "rms")


def choose_grid(grids: Sequence[Grid], names: Sequence[str], *, grid: Grid | None = None,
                resolution: float | None = None, crs=None, bounds: Sequence[float] | None = None,
                extent: str = "intersection") -> tuple[Grid, str | None]:
    """The stack's grid for inputs on ``grids`` (named ``names`` in messages), and a notice when it was chosen.

    Parameters
    ----------
    grids : sequence of Grid
        The inputs' grids.
    names : sequence of str
        The inputs, for messages.
    grid : Grid, optional
        Use this grid (``--grid``).
    resolution : float, optional
        Pixel size in the grid's CRS units (``--resolution``).
    crs : optional
        CRS of the grid (``--crs``); default the inputs' (refused if they differ).
    bounds : (left, bottom, right, top), optional
        Extent of the grid, in its CRS (``--bounds``); default the inputs'
        intersection or union.
    extent : {"intersection", "union"}
        Which extent of the inputs to cover by default.

    Returns
    -------
    (Grid, str or None)
        The grid, and a sentence describing a grid chosen by default (None
        when the inputs already share one, or the grid was given).
    """
    if grid is not None:
        return grid, None
    if extent not in ("intersection", "union"):
        raise ParameterError(f"extent (--extent) must be 'intersection' or 'union', not {extent!r}")
    target_crs = _target_crs(grids, names, crs)
    if bounds is not None:
        bounds = check_bounds(bounds)
        _refuse_outside(bounds, [_bounds_in(g, target_crs) for g in grids], names)
    if resolution is None and bounds is None and crs is None and all(g.aligned_with(grids[0]) for g in grids):
        return grids[0], None
    if any(g.crs != target_crs for g in grids) and bounds is None:
        bounds = _union_or_intersection([_bounds_in(g, target_crs) for g in grids], names, extent)
    finest = min(grids, key=lambda g: abs(g.transform.a) * abs(g.transform.e))
    if resolution is None:
        if finest.crs != target_crs:
            raise MisalignedInputsError(
                f"the inputs are in other CRSs than {target_crs.to_string()}; give the pixel size in it with "
                "--resolution (or adopt a raster's grid with --grid).")
        chosen = _on_lattice(finest, bounds or _union_or_intersection([g.bounds for g in grids], names, extent))
        notice = (f"the inputs are on different grids; the stack takes the finest resolution "
                  f"({abs(finest.transform.a):g} x {abs(finest.transform.e):g}) over their {extent} "
                  f"({chosen.height} x {chosen.width} px, {target_crs.to_string()}); choose another with --grid, "
                  "--resolution or --extent.")
        return _checked(chosen), notice
    res = float(resolution)
    if not res > 0:
        raise ParameterError(f"resolution (--resolution) must be a positive pixel size, not {resolution}")
    left, bottom, right, top = bounds or _union_or_intersection(
        [_bounds_in(g, target_crs) for g in grids], names, extent)
    left, top = math.floor(left / res) * res, math.ceil(top / res) * res  # pixels on multiples of res
    width, height = math.ceil((right - left) / res), math.ceil((top - bottom) / res)
    return _checked(Grid(height, width, Affine(res, 0, left, 0, -res, top), target_crs)), None


def check_bounds(bounds) -> tuple[float, float, float, float]:
    """``bounds`` as ``(left, bottom, right, top)`` floats, or a :class:`ParameterError` saying what is wrong."""
    try:
        values = tuple(float(v) for v in (bounds.split(",") if isinstance(bounds, str) else bounds))
    except (TypeError, ValueError):
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ParameterError(f"bounds (--bounds) must be four numbers LEFT,BOTTOM,RIGHT,TOP, not {bounds!r}.")
    left, bottom, right, top = values
    if not (left < right and bottom < top):
        raise ParameterError(f"bounds (--bounds) {left:g},{bottom:g},{right:g},{top:g} are not LEFT,BOTTOM,RIGHT,TOP "
                             "with LEFT < RIGHT and BOTTOM < TOP.")
    return values


def _refuse_outside(bounds, boxes, names) -> None:
    """Bounds that miss every input would make a stack of nodata only: refused."""
    left, bottom, right, top = bounds
    if not any(left < r and l < right and bottom < t and b < top for l, b, r, t in boxes):
        covered = ", ".join(f"{n} ({', '.join(f'{v:.6g}' for v in box)})" for n, box in zip(names, boxes))
        raise MisalignedInputsError(f"--bounds {left:g},{bottom:g},{right:g},{top:g} cover none of the inputs: "
                                    f"{covered}; give bounds in the grid's CRS that overlap them.")


def _target_crs(grids: Sequence[Grid], names: Sequence[str], crs) -> CRS:
    if crs is not None:
        try:
            with rasterio.Env():  # GDAL's own message goes to logging, not stderr: the error below is the one line
                return CRS.from_user_input(crs)
        except Exception as err:  # noqa: BLE001 - rasterio's CRSError and pyproj's alike
            raise ParameterError(f"--crs {crs!r} is not a CRS rasterio understands ({err}); "
                                 "give e.g. EPSG:32633") from None
    crss = {g.crs for g in grids}
    if len(crss) > 1:
        listing = ", ".join(f"{n} ({g.crs.to_string() if g.crs else 'no CRS'})" for n, g in zip(names, grids))
        raise MisalignedInputsError(f"the inputs are in different CRSs: {listing}; choose the stack's grid with "
                                    "--grid REF, or --crs and --resolution.")
    return grids[0].crs


def _bounds_in(grid: Grid, crs) -> tuple[float, float, float, float]:
    if grid.crs == crs or crs is None:
        return grid.bounds
    from rasterio.warp import transform_bounds

    return transform_bounds(grid.crs, crs, *grid.bounds, densify_pts=21)


def _union_or_intersection(boxes, names, extent: str) -> tuple[float, float, float, float]:
    lefts, bottoms, rights, tops = zip(*boxes)
    if extent == "union":
        return min(lefts), min(bottoms), max(rights), max(tops)
    box = max(lefts), max(bottoms), min(rights), min(tops)
    if box[0] >= box[2] or box[1] >= box[3]:
        raise MisalignedInputsError(f"the inputs do not overlap ({', '.join(names)}); ingest them separately, "
                                    "or cover all of them with --extent union.")
    return box


def _on_lattice(reference: Grid, bounds) -> Grid:
    """The pixels of ``reference``'s lattice (its origin and pixel size) that cover ``bounds``."""
    t = reference.transform
    left, bottom, right, top = bounds
    c0 = math.floor((left - t.c) / t.a + 1e-9)
    c1 = math.ceil((right - t.c) / t.a - 1e-9)
    r0 = math.floor((top - t.f) / t.e + 1e-9)
    r1 = math.ceil((bottom - t.f) / t.e - 1e-9)
    return Grid(r1 - r0, c1 - c0, t @ Affine.translation(c0, r0), reference.crs)


def _checked(grid: Grid) -> Grid:
    pixels = grid.height * grid.width
    if grid.height < 1 or grid.width < 1:
        raise ParameterError(f"the stack's grid would be empty ({grid.height} x {grid.width} px); check the bounds.")
    if pixels > MAX_PIXELS:
        raise ParameterError(f"the stack's grid would be {grid.height} x {grid.width} px ({pixels / 1e9:,.0f} "
                             "gigapixels); check --resolution (is it in the CRS's units?) and --bounds.")
    return grid


def resampling_for(name: str, dtype, source_grid: Grid, grid: Grid, overrides: Mapping[str, str] | None = None,
                   *, categorical: bool = False) -> str:
    """How to resample band ``name`` from ``source_grid`` onto ``grid``.

    ``overrides`` (``--resampling BAND=METHOD``) wins; categorical bands
    (``categorical``, or a name such as QA, SCL, mask, class: see
    :data:`CATEGORICAL_NAMES`) take ``nearest``; continuous ones
    ``average`` when their pixels are finer than the grid's, else ``bilinear``.
    """
    if overrides and name in overrides:
        method = overrides[name]
        if method not in RESAMPLING_METHODS:
            raise ParameterError(f"--resampling {name}={method}: unknown method; choose one of "
                                 f"{', '.join(RESAMPLING_METHODS)}")
        return method
    if categorical or CATEGORICAL_NAMES.search(name):
        return "nearest"
    src = abs(source_grid.transform.a * source_grid.transform.e)
    dst = abs(grid.transform.a * grid.transform.e)
    same_crs = source_grid.crs == grid.crs
    return "average" if same_crs and src < dst * (1 - 1e-9) else "bilinear"
