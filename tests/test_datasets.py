import numpy as np
import pytest
import rasterio
from scipy.ndimage import uniform_filter
from sklearn.linear_model import LogisticRegression

from rastercore.datasets import SYNTHETIC_THRESHOLD, synthetic_scene, write_synthetic_scene
from rastercore.errors import RasterCoreDeprecationWarning, StoreExistsError


def test_same_pixels_for_any_tiling_and_seed_matters():
    whole = synthetic_scene((300, 410), seed=5, chunks=512)
    tiled = synthetic_scene((300, 410), seed=5, chunks=97)
    np.testing.assert_array_equal(whole["sar"].values, tiled["sar"].values)
    np.testing.assert_array_equal(whole["target"].values, tiled["target"].values)
    other = synthetic_scene((300, 410), seed=6, chunks=512)
    assert not np.allclose(whole["target"].values, other["target"].values)


def test_scene_is_georeferenced_with_named_bands():
    scene = synthetic_scene((64, 32))
    assert list(scene["sar"].band.values) == ["HH", "HV"]
    assert scene["sar"].rio.crs.to_epsg() == 32633 and scene["target"].rio.transform().a == 10.0
    assert scene["sar"].dtype == np.float32 and scene["sar"].shape == (2, 64, 32)


@pytest.fixture(scope="module")
def scene():
    ds = synthetic_scene((512, 512), seed=1, chunks=256)
    return ds["sar"].values, ds["target"].values


def test_target_forms_regions_and_speckle_is_multiplicative(scene):
    sar, target = scene
    assert 0 <= target.min() and target.max() <= 1
    fraction = (target >= SYNTHETIC_THRESHOLD).mean()
    assert 0.1 < fraction < 0.5
    # Regions, not salt-and-pepper: a class-1 pixel's neighbours are mostly class 1 too.
    cls = target >= SYNTHETIC_THRESHOLD
    assert (cls[1:] == cls[:-1]).mean() > 0.97
    # Single-look speckle: intensity std about equal to its mean within a flat patch.
    flat = sar[0][np.abs(target - 0.3) < 0.01]
    assert 0.7 < flat.std() / flat.mean() < 1.5


def test_neighbourhood_recovers_the_target_but_one_pixel_does_not(scene):
    sar, target = scene
    y = (target >= SYNTHETIC_THRESHOLD).ravel()
    per_pixel = np.log(sar.reshape(2, -1).T)
    means = np.log(np.stack([uniform_filter(b, 9) for b in sar]).reshape(2, -1).T)
    rows = np.random.default_rng(0).choice(y.size, 20000, replace=False)
    pixel_acc = LogisticRegression().fit(per_pixel[rows], y[rows]).score(per_pixel, y)
    window_acc = LogisticRegression().fit(means[rows], y[rows]).score(means, y)
    assert (1 - pixel_acc) > 5 * (1 - window_acc), (pixel_acc, window_acc)
    assert window_acc > 0.97 and pixel_acc < 0.93


def test_write_synthetic_scene_geotiffs(tmp_path):
    paths = write_synthetic_scene(tmp_path, (200, 150), seed=2, tile_size=64, progress="none")
    lazy = synthetic_scene((200, 150), seed=2)
    with rasterio.open(paths["HV"]) as src:
        assert src.crs.to_epsg() == 32633 and src.profile["tiled"]
        np.testing.assert_array_equal(src.read(1), lazy["sar"].sel(band="HV").values)
    with rasterio.open(paths["target"]) as src:
        np.testing.assert_array_equal(src.read(1), lazy["target"].values)
    with pytest.raises(StoreExistsError, match="HH.tif"):
        write_synthetic_scene(tmp_path, (200, 150), progress="none")


@pytest.mark.filterwarnings("ignore:Use `@` matmul instead:PendingDeprecationWarning")  # re-emitted by pytest.warns
def test_write_synthetic_scene_tile_is_the_old_name_of_tile_size(tmp_path):
    with pytest.warns(RasterCoreDeprecationWarning, match=r"write_synthetic_scene\(\): tile is now called tile_size"):
        paths = write_synthetic_scene(tmp_path, (40, 30), seed=2, tile=16, progress="none")
    with rasterio.open(paths["HH"]) as src:
        np.testing.assert_array_equal(src.read(1), synthetic_scene((40, 30), seed=2)["sar"].sel(band="HH").values)
