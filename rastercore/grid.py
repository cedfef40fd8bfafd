"""The pixel grid of a raster: shape, affine transform and CRS.

Georeferencing travels in the data as rioxarray's CF ``spatial_ref``
coordinate; this module is the one place that turns a :class:`Grid` into
xarray coordinates and back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

__all__ = ["Grid", "attach_grid", "grid_of"]


@dataclass(frozen=True)
class Grid:
    """Shape, transform and CRS of a raster.

    Parameters
    ----------
    height, width : int
        Size in pixels.
    transform : affine.Affine
        Maps (col, row) of a pixel's upper-left corner to (x, y).
    crs : rasterio.crs.CRS or None
        Coordinate reference system; ``None`` for a plain pixel grid.
    """

    height: int
    width: int
    transform: Affine = Affine.identity()
    crs: CRS | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return (self.height, self.width)

    @property
    def is_georeferenced(self) -> bool:
        """True when the grid has a CRS or a non-identity transform."""
        return self.crs is not None or self.transform != Affine.identity()

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` of the outer pixel edges."""
        x0, y0 = self.transform @ (0, 0)
        x1, y1 = self.transform @ (self.width, self.height)
        return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))

    def x_coords(self) -> np.ndarray:
        """x of pixel centres, one per column (north-up grids)."""
        t = self.transform
        return t.c + t.a * (np.arange(self.width) + 0.5)

    def y_coords(self) -> np.ndarray:
        """y of pixel centres, one per row (north-up grids)."""
        t = self.transform
        return t.f + t.e * (np.arange(self.height) + 0.5)

    def aligned_with(self, other: Grid, *, rel_tol: float = 1e-9) -> bool:
        """True if both grids have the same shape, transform and CRS."""
        return (
            self.shape == other.shape
            and self.transform.almost_equals(other.transform, precision=rel_tol * _scale(self.transform))
            and self.crs == other.crs
        )

    def describe(self) -> str:
        """One line: shape, CRS and transform, for error messages."""
        crs = self.crs.to_string() if self.crs else "no CRS"
        t = self.transform
        return f"{self.height} x {self.width} px, {crs}, origin ({t.c:g}, {t.f:g}), pixel ({t.a:g}, {t.e:g})"


def _scale(transform: Affine) -> float:
    return max(abs(transform.a), abs(transform.e), abs(transform.c), abs(transform.f), 1.0)


def attach_grid(data: xr.DataArray, grid: Grid, *, nodata=None) -> xr.DataArray:
    """Give ``data`` (dims ``..., y, x``) the coordinates and CF georeferencing of ``grid``.

    Parameters
    ----------
    data : xarray.DataArray
        Array whose last two dims are ``("y", "x")`` and match ``grid.shape``.
    grid : Grid
        Grid to attach.
    nodata : scalar, optional
        Nodata value, recorded as the ``_FillValue`` attribute rioxarray reads.

    Returns
    -------
    xarray.DataArray
        A new array with ``x``/``y`` pixel-centre coordinates, a
        ``spatial_ref`` coordinate and, if given, the nodata attribute.
    """
    data = data.assign_coords(y=grid.y_coords(), x=grid.x_coords())
    if grid.crs is not None:
        data = data.rio.write_crs(grid.crs)
    data = data.rio.write_transform(grid.transform)
    if nodata is not None:
        data = data.rio.write_nodata(nodata, encoded=False)
    return data


def grid_of(data: xr.DataArray) -> Grid:
    """Read the :class:`Grid` of an array carrying rioxarray georeferencing."""
    height, width = data.sizes["y"], data.sizes["x"]
    transform = data.rio.transform(recalc=False) if "spatial_ref" in data.coords else Affine.identity()
    return Grid(height, width, transform, data.rio.crs)
