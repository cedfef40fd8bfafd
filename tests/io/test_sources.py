import os
import warnings

import h5py
import numpy as np
import pytest
import zarr

from rastercore.errors import (
    NotGeoreferencedWarning,
    SourceNotFoundError,
    SourceReadError,
    UnsupportedSourceError,
)
from rastercore.io import open_source
from tests.conftest import TRANSFORM, read_tif, write_tif

WINDOW = (slice(7, 61), slice(3, 40))


def test_geotiff_multiband_window(tmp_path, rng):
    data = rng.integers(0, 4000, (3, 80, 50), dtype=np.uint16)
    src = open_source(write_tif(tmp_path / "ms.tif", data, nodata=0))
    assert src.shape == (3, 80, 50) and src.dtype == np.uint16 and src.nodata == 0
    assert src.grid.crs.to_epsg() == 32633 and src.grid.transform == TRANSFORM
    np.testing.assert_array_equal(src.read(WINDOW), data[:, 7:61, 3:40])


@pytest.mark.parametrize("driver,suffix", [("JPEG", ".jpg"), ("PNG", ".png")])
def test_jpeg_png_read_by_window_without_georeferencing(tmp_path, rng, driver, suffix):
    data = rng.integers(0, 255, (90, 70), dtype=np.uint8)
    path = write_tif(tmp_path / f"quicklook{suffix}", data, crs=None, driver=driver)
    with pytest.warns(NotGeoreferencedWarning, match="quicklook"):
        src = open_source(path)
    assert src.sequential and not src.grid.is_georeferenced
    # Compare with GDAL's own whole-image decode (JPEG is lossy, so not with `data`).
    np.testing.assert_array_equal(src.read(WINDOW), read_tif(path)[:, 7:61, 3:40])


@pytest.mark.parametrize("layout", ["2d", "band_first", "band_last"])
def test_hdf5_layouts(tmp_path, rng, layout):
    cube = rng.random((4, 60, 50)).astype(np.float32)
    stored = {"2d": cube[0], "band_first": cube, "band_last": np.moveaxis(cube, 0, -1)}[layout]
    with h5py.File(tmp_path / "cube.h5", "w") as f:
        dset = f.create_dataset("/scene/radiance", data=stored, chunks=True)
        dset.attrs["crs"] = "EPSG:32633"
        dset.attrs["transform"] = TRANSFORM.to_gdal()
    src = open_source(f"{tmp_path / 'cube.h5'}:/scene/radiance", band_axis=-1 if layout == "band_last" else 0)
    expected = cube[:1] if layout == "2d" else cube
    assert src.shape == expected.shape
    assert src.grid.transform == TRANSFORM and src.grid.crs.to_epsg() == 32633
    np.testing.assert_array_equal(src.read(WINDOW), expected[:, 7:61, 3:40])


def test_hdf5_missing_dataset_lists_what_exists(tmp_path):
    with h5py.File(tmp_path / "cube.h5", "w") as f:
        f.create_dataset("/a/b", data=np.zeros((4, 4)))
    with pytest.raises(SourceNotFoundError, match=r"no dataset /nope.*/a/b"):
        open_source(f"{tmp_path / 'cube.h5'}:/nope")
    with pytest.raises(UnsupportedSourceError, match=r"name the dataset.*/a/b"):
        open_source(tmp_path / "cube.h5")


@pytest.mark.parametrize("band_axis", [0, -1])
def test_npy_is_memory_mapped_and_windowed(tmp_path, rng, band_axis):
    cube = rng.random((2, 40, 30))
    np.save(tmp_path / "a.npy", cube if band_axis == 0 else np.moveaxis(cube, 0, -1))
    with pytest.warns(NotGeoreferencedWarning):
        src = open_source(tmp_path / "a.npy", band_axis=band_axis)
    assert src.shape == (2, 40, 30)
    np.testing.assert_array_equal(src.read((slice(5, 20), slice(0, 30))), cube[:, 5:20])


def test_zarr_array(tmp_path, rng):
    data = rng.random((50, 40)).astype(np.float32)
    arr = zarr.create_array(store=str(tmp_path / "plain.zarr"), name="layers/dem", shape=data.shape,
                            chunks=(16, 16), dtype=data.dtype)
    arr[:] = data
    with pytest.warns(NotGeoreferencedWarning):
        src = open_source(f"{tmp_path / 'plain.zarr'}:/layers/dem")
    np.testing.assert_array_equal(src.read(WINDOW)[0], data[7:61, 3:40][:, :])


def test_missing_file_and_non_raster(tmp_path):
    with pytest.raises(SourceNotFoundError, match="nothere.tif"):
        open_source(tmp_path / "nothere.tif")
    (tmp_path / "notes.txt").write_text("not a raster")
    with pytest.raises(UnsupportedSourceError, match="notes.txt"):
        open_source(tmp_path / "notes.txt")
    with pytest.raises(UnsupportedSourceError, match="4 dimensions"):
        np.save(tmp_path / "4d.npy", np.zeros((1, 2, 3, 4)))
        open_source(tmp_path / "4d.npy")


def test_truncated_geotiff_fails_on_read_naming_the_file(tmp_path, rng):
    data = rng.random((512, 512)).astype(np.float32)
    path = write_tif(tmp_path / "cut.tif", data, tiled=True, blockxsize=128, blockysize=128)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    src = open_source(path)  # the header is intact...
    with pytest.raises(SourceReadError, match=r"cut\.tif.*truncated"):
        src.read((slice(384, 512), slice(384, 512)))  # ...the last tiles are gone


def test_geotiff_without_crs_warns(tmp_path, rng):
    path = write_tif(tmp_path / "plain.tif", rng.random((8, 8)), crs=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        open_source(path)
    assert [w.category for w in caught] == [NotGeoreferencedWarning]
