"""Inputs on different grids are ingested onto one grid, equal to rasterio's whole-image reproject."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import reproject

from rastercore import ingest
from rastercore.errors import MisalignedInputsError, ParameterError
from rastercore.grid import grid_of
from rastercore.stack import RegridNotice
from tests.conftest import UTM, write_tif

ORIGIN = (500_000.0, 4_000_000.0)


def _field(shape, seed):
    """A smooth field plus noise: resampling differences show, values stay in a float32-exact range."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    return (100 + 50 * np.sin(rows / 7.0) * np.cos(cols / 5.0) + rng.normal(0, 3, shape)).astype(np.float32)


def _write(tmp_path, name, values, pixel, *, crs=UTM, origin=ORIGIN, nodata=None):
    transform = Affine(pixel, 0, origin[0], 0, -pixel, origin[1])
    return write_tif(tmp_path / f"{name}.tif", values, crs=crs, transform=transform, nodata=nodata), transform


def _reference(values, transform, crs, grid, method, nodata=None):
    """rasterio.warp.reproject of the whole image onto ``grid``: the independent reference."""
    fill = nodata if nodata is not None else (np.nan if values.dtype.kind == "f" else 0)
    out = np.full(grid.shape, fill, dtype=values.dtype)
    reproject(values, out, src_transform=transform, src_crs=crs, dst_transform=grid.transform, dst_crs=grid.crs,
              resampling=Resampling[method], src_nodata=nodata, dst_nodata=fill)
    return out


@pytest.fixture
def pair(tmp_path):
    """A 10 m band over 1200 x 1000 m and a 20 m band over a larger, offset extent."""
    fine, coarse = _field((120, 100), 0), _field((70, 60), 1)
    a, ta = _write(tmp_path, "B10m", fine, 10.0)
    b, tb = _write(tmp_path, "B20m", coarse, 20.0, origin=(ORIGIN[0] - 40, ORIGIN[1] + 60))
    return (a, fine, ta), (b, coarse, tb)


def test_the_finest_resolution_over_the_intersection_by_default(pair, tmp_path):
    (a, fine, ta), (b, coarse, tb) = pair
    with pytest.warns(RegridNotice, match=r"finest resolution \(10 x 10\) over their intersection \(120 x 100 px"):
        stack = ingest([a, b], tmp_path / "s.zarr", bands=["fine", "coarse"], tile_size=32, progress="none")
    grid = grid_of(stack)
    assert grid.transform == ta and grid.shape == (120, 100)  # the fine band's own pixels: no shift
    np.testing.assert_array_equal(stack.sel(band="fine").values, fine)
    expected = _reference(coarse, tb, CRS.from_user_input(UTM), grid, "bilinear")
    np.testing.assert_array_equal(stack.sel(band="coarse").values, expected)


def test_downsampling_averages_and_the_union_extent(pair, tmp_path):
    (a, fine, ta), (b, coarse, tb) = pair
    stack = ingest([a, b], tmp_path / "s.zarr", bands=["fine", "coarse"], resolution=20.0, extent="union",
                   tile_size=16, progress="none")
    grid = grid_of(stack)
    left, bottom, right, top = grid.bounds
    assert (left, top) == (ORIGIN[0] - 40, ORIGIN[1] + 60) and grid.transform.a == 20.0
    crs = CRS.from_user_input(UTM)
    np.testing.assert_array_equal(stack.sel(band="fine").values, _reference(fine, ta, crs, grid, "average"))
    np.testing.assert_array_equal(stack.sel(band="coarse").values, _reference(coarse, tb, crs, grid, "bilinear"))
    assert np.isnan(stack.sel(band="fine").values).any()  # outside the fine band's extent: nodata, not zero


def test_a_crs_change(pair, tmp_path):
    (a, fine, ta), _ = pair
    other = write_tif(tmp_path / "other.tif", _field((120, 100), 2), transform=ta)
    stack = ingest([a, other], tmp_path / "s.zarr", bands=["a", "b"], crs="EPSG:32632", resolution=12.0,
                   tile_size=32, progress="none")
    grid = grid_of(stack)
    assert grid.crs == CRS.from_epsg(32632)
    np.testing.assert_array_equal(stack.sel(band="a").values,
                                  _reference(fine, ta, CRS.from_user_input(UTM), grid, "bilinear"))


def test_categorical_bands_take_the_nearest_value_and_overrides_win(tmp_path):
    fine = _field((64, 64), 3)
    qa = np.random.default_rng(4).integers(0, 5, (32, 32)).astype(np.uint16)
    a, _ = _write(tmp_path, "B04", fine, 10.0)
    q, tq = _write(tmp_path, "QA", qa, 20.0)
    stack = ingest([a, q], tmp_path / "s.zarr", bands=["B04", "QA"], tile_size=16, progress="none")
    grid = grid_of(stack)
    expected = _reference(qa.astype(np.float32), tq, CRS.from_user_input(UTM), grid, "nearest")
    np.testing.assert_array_equal(stack.sel(band="QA").values, expected)
    assert set(np.unique(stack.sel(band="QA").values)) <= set(range(5))  # no blended categories
    again = ingest([a, q], tmp_path / "t.zarr", bands=["B04", "QA"], resampling="QA=bilinear", tile_size=16,
                   progress="none")  # interpolated: warped to float32, no rounding
    np.testing.assert_array_equal(again.sel(band="QA").values,
                                  _reference(qa.astype(np.float32), tq, CRS.from_user_input(UTM), grid, "bilinear"))
    assert not np.array_equal(again.sel(band="QA").values, stack.sel(band="QA").values)


def test_each_inputs_nodata_is_carried(tmp_path):
    a_values = np.full((40, 40), 7, np.uint16)
    a_values[:5] = 0
    b_values = np.full((40, 40), 9, np.uint16)
    b_values[:, :3] = 65535
    a, _ = _write(tmp_path, "a", a_values, 10.0, nodata=0)
    b, _ = _write(tmp_path, "b", b_values, 10.0, nodata=65535)
    stack = ingest([a, b], tmp_path / "s.zarr", bands=["a", "b"], tile_size=16, progress="none")
    assert stack.dtype == np.float32 and np.isnan(stack.rio.nodata)
    values = stack.values
    assert np.isnan(values[0, :5]).all() and np.isnan(values[1, :, :3]).all()
    assert (values[0, 5:] == 7).all() and (values[1, :, 3:] == 9).all()


def test_bad_grids_are_one_clear_error(pair, tmp_path):
    (a, _, _), (b, _, _) = pair
    far, _ = _write(tmp_path, "far", _field((10, 10), 5), 10.0, origin=(600_000.0, 4_000_000.0))
    with pytest.raises(MisalignedInputsError, match="do not overlap.*--extent union"):
        ingest([a, far], tmp_path / "x.zarr", progress="none")
    wgs, _ = _write(tmp_path, "wgs", _field((10, 10), 6), 0.001, crs="EPSG:4326", origin=(14.0, 36.1))
    with pytest.raises(MisalignedInputsError, match="different CRSs.*--grid REF, or --crs and --resolution"):
        ingest([a, wgs], tmp_path / "x.zarr", progress="none")
    with pytest.raises(ParameterError, match=r"would be .* px \(.* gigapixels\); check --resolution"):
        ingest([a, b], tmp_path / "x.zarr", resolution=1e-6, progress="none")
    with pytest.raises(ParameterError, match="--crs 'EPSG:nonsense' is not a CRS"):
        ingest([a, b], tmp_path / "x.zarr", crs="EPSG:nonsense", resolution=10, progress="none")
    with pytest.raises(ParameterError, match="--resampling names XX"):
        ingest([a, b], tmp_path / "x.zarr", resampling="XX=nearest", progress="none")
    assert not any(p.name.startswith("x.zarr") for p in tmp_path.iterdir())  # nothing was written


def test_the_grid_of_another_raster_is_adopted(pair, tmp_path):
    (a, fine, ta), (b, coarse, tb) = pair
    stack = ingest([a], tmp_path / "s.zarr", bands=["fine"], grid=b, tile_size=16, progress="none")
    with rasterio.open(b) as ref:
        assert grid_of(stack).transform == ref.transform and grid_of(stack).shape == ref.shape
    np.testing.assert_array_equal(stack.values[0], _reference(fine, ta, CRS.from_user_input(UTM), grid_of(stack),
                                                              "average"))


def test_the_cli_and_a_pipeline_take_the_grid_options(pair, tmp_path):
    """``rastercore ingest --resolution --bounds --resampling`` and a YAML ingest step with the same fields
    write the stack rasterio's whole-image reproject gives."""
    from rastercore.cli import main
    from rastercore.pipeline import load_pipeline, run_pipeline
    from rastercore.stack import open_stack

    (a, fine, ta), (b, coarse, tb) = pair
    bounds = (ORIGIN[0] + 100, ORIGIN[1] - 1000, ORIGIN[0] + 900, ORIGIN[1] - 200)
    quiet = ["--scheduler", "sync", "--progress", "none", "--tile-size", "16"]
    assert main(["ingest", str(a), str(b), "-o", str(tmp_path / "cli.zarr"), "--bands", "fine,coarse",
                 "--resolution", "20", "--bounds", ",".join(map(str, bounds)), "--resampling", "coarse=cubic",
                 *quiet]) == 0
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        f"name: grids\noutput_dir: {tmp_path / 'run'}\nsteps:\n"
        f"  - {{kind: ingest, inputs: ['{a}', '{b}'], output: yaml.zarr, bands: [fine, coarse], tile_size: 16,\n"
        f"     resolution: 20, bounds: [{', '.join(map(str, bounds))}], resampling: {{coarse: cubic}}}}\n")
    run_pipeline(load_pipeline(pipeline), progress="none")
    crs = CRS.from_user_input(UTM)
    for stack in (open_stack(tmp_path / "cli.zarr"), open_stack(tmp_path / "run" / "yaml.zarr")):
        grid = grid_of(stack)
        assert grid.bounds == bounds and grid.transform.a == 20.0 and grid.shape == (40, 40)
        np.testing.assert_array_equal(stack.sel(band="fine").values, _reference(fine, ta, crs, grid, "average"))
        np.testing.assert_array_equal(stack.sel(band="coarse").values, _reference(coarse, tb, crs, grid, "cubic"))


def test_bounds_are_checked(pair, tmp_path):
    (a, _, _), (b, _, _) = pair
    for bounds, message in (((1, 2, 3), "four numbers"), ((3, 0, 1, 1), "LEFT < RIGHT"),
                            ((0, 0, 10, 10), "cover none of the inputs"), ("a,b,c,d", "four numbers")):
        with pytest.raises((ParameterError, MisalignedInputsError), match=message):
            ingest([a, b], tmp_path / "x.zarr", bounds=bounds, progress="none")
    assert not any(p.name.startswith("x.zarr") for p in tmp_path.iterdir())
