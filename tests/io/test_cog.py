import numpy as np
import pytest
import rasterio
import rioxarray

from rastercore import ingest, write_cog
from rastercore.errors import ParameterError, RasterCoreDeprecationWarning, StoreExistsError
from rastercore.io.cog import write_geotiff
from tests.conftest import TRANSFORM, write_tif


@pytest.fixture
def stack(tmp_path, rng):
    data = rng.integers(1, 4000, (3, 1100, 700), dtype=np.uint16)
    data[:, :5, :5] = 0
    path = write_tif(tmp_path / "ms.tif", data, nodata=0)
    return ingest(path, tmp_path / "ms.zarr", bands=["red", "green", "nir"], tile_size=256, progress="none"), data


def test_cog_round_trip_through_rasterio_and_rioxarray(tmp_path, stack):
    stack, data = stack
    out = write_cog(stack, tmp_path / "ms.tif.cog.tif", blocksize=256, progress="none")
    with rasterio.open(out) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.profile["tiled"] and src.block_shapes[0] == (256, 256)
        assert src.compression.name == "deflate"
        levels = src.overviews(1)  # halvings until the coarsest level fits one block
        assert levels[:2] == [2, 4] and 1100 / levels[-1] <= 256 < 1100 / levels[-2]
        assert src.crs.to_epsg() == 32633 and src.transform == TRANSFORM and src.nodata == 0
        assert src.descriptions == ("red", "green", "nir")
        np.testing.assert_array_equal(src.read(), data)
        # The first overview level is the 2x2 average GDAL computed from our pixels.
        overview = src.read(1, out_shape=(550, 350))
    expected = data[0].reshape(550, 2, 350, 2).astype(float)
    valid = expected.reshape(550, 2, 350, 2) != 0
    mean = (expected * valid).sum(axis=(1, 3)) / np.maximum(valid.sum(axis=(1, 3)), 1)
    np.testing.assert_allclose(overview[3:, 3:], mean[3:, 3:], atol=1)
    opened = rioxarray.open_rasterio(out)
    assert opened.rio.crs == stack.rio.crs and opened.rio.transform() == stack.rio.transform()
    np.testing.assert_array_equal(opened.x.values, stack.x.values)
    np.testing.assert_array_equal(opened.y.values, stack.y.values)


def test_single_layer_and_refusal_to_overwrite(tmp_path, stack):
    stack, data = stack
    layer = stack.sel(band="nir").astype(np.float32)
    out = write_cog(layer, tmp_path / "nir.tif", progress="none")
    with pytest.raises(StoreExistsError, match=r"nir\.tif already exists"):
        write_cog(layer, out, progress="none")
    write_cog(layer * 2, out, overwrite=True, progress="none")
    with rasterio.open(out) as src:
        assert src.count == 1 and src.dtypes[0] == "float32"
        np.testing.assert_array_equal(src.read(1), data[2] * 2)
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob("*.tmp"))


@pytest.mark.filterwarnings("ignore:Use `@` matmul instead:PendingDeprecationWarning")  # re-emitted by pytest.warns
@pytest.mark.parametrize("writer", [write_cog, write_geotiff])
def test_data_is_the_old_name_of_stack(tmp_path, stack, writer):
    stack, data = stack
    with pytest.warns(RasterCoreDeprecationWarning, match=rf"{writer.__name__}\(\): data is now called stack"):
        out = writer(data=stack.sel(band="nir"), path=tmp_path / "nir.tif", progress="none")
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(1), data[2])


@pytest.mark.parametrize("option, value, listed", [
    ("compress", "BOGUS", "DEFLATE, ZSTD, LZW"),
    ("resampling", "max", "nearest, average, bilinear"),  # a rasterio name GDAL builds no overview with
    ("resampling", "nearst", "nearest, average, bilinear"),
])
def test_export_options_are_checked_before_anything_is_written(tmp_path, stack, option, value, listed):
    stack, _ = stack
    with pytest.raises(ParameterError, match=rf"{option} \(--{option}\) must be one of .*{listed}.*not '{value}'"):
        write_cog(stack, tmp_path / "out" / "ms.tif", **{option: value}, progress="none")
    assert not (tmp_path / "out").exists()


def test_options_in_any_case_and_stale_temporaries_removed(tmp_path, stack):
    stack, data = stack
    out = tmp_path / "nir.tif"
    stale = tmp_path / "nir.tif.tiled.partial"
    write_tif(stale, data[:1, :100, :100])  # left by a killed run: GDAL would open it as a whole GeoTIFF
    write_cog(stack.sel(band="nir"), out, compress="zstd", resampling="CUBIC_SPLINE", progress="none")
    with rasterio.open(out) as src:
        assert src.compression.name == "zstd" and src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        np.testing.assert_array_equal(src.read(1), data[2])
    assert sorted(p.name for p in tmp_path.glob("nir.tif*")) == ["nir.tif"]
