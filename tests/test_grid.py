import numpy as np
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from rastercore.grid import Grid, attach_grid, grid_of


def test_attach_and_read_back_grid():
    grid = Grid(4, 3, Affine(2.0, 0, 100.0, 0, -2.0, 50.0), CRS.from_epsg(32633))
    data = attach_grid(xr.DataArray(np.zeros((4, 3)), dims=("y", "x")), grid, nodata=-1)
    np.testing.assert_allclose(data.x, [101, 103, 105])
    np.testing.assert_allclose(data.y, [49, 47, 45, 43])
    assert grid_of(data) == grid
    assert data.rio.nodata == -1


def test_bounds_and_alignment():
    grid = Grid(10, 20, Affine(1.0, 0, 0.0, 0, -1.0, 10.0), None)
    assert grid.bounds == (0.0, 0.0, 20.0, 10.0)
    assert grid.is_georeferenced
    assert not Grid(10, 20).is_georeferenced
    shifted = Grid(10, 20, Affine(1.0, 0, 0.5, 0, -1.0, 10.0), None)
    assert not grid.aligned_with(shifted)
    assert grid.aligned_with(Grid(10, 20, Affine(1.0, 0, 1e-12, 0, -1.0, 10.0), None))
