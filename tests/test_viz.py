import matplotlib.image
import numpy as np
import pytest
import xarray as xr

from rastercore import ingest
from rastercore.errors import RasterCoreDeprecationWarning, StoreExistsError
from rastercore.viz import overview, quicklook


def test_overview_is_the_block_mean(tmp_path, hh_hv):
    (hh, hv), expected = hh_hv
    stack = ingest([hh, hv], tmp_path / "s.zarr", tile_size=128, progress="none")
    small = overview(stack, max_size=100)  # 300 x 200 -> factor 3 -> 100 x 66
    reference = expected[:, :, :198].reshape(2, 100, 3, 66, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(small.values, reference, rtol=1e-5)


def test_quicklook_png_sizes_and_refusal(tmp_path, hh_hv):
    (hh, hv), _ = hh_hv
    stack = ingest([hh, hv], tmp_path / "s.zarr", tile_size=128, progress="none")
    rgb = matplotlib.image.imread(quicklook(stack, tmp_path / "q.png", max_size=100))
    assert rgb.shape[:2] == (100, 66) and rgb.shape[2] in (3, 4)
    assert rgb[..., :3].std() > 0.05  # stretched, not blank
    grey = matplotlib.image.imread(quicklook(stack.sel(band="HV"), tmp_path / "hv.png"))
    assert grey.shape[:2] == (300, 200)
    assert np.allclose(grey[..., 0], grey[..., 1])
    with pytest.raises(StoreExistsError, match=r"q\.png"):
        quicklook(stack, tmp_path / "q.png")


def test_evaluation_figures(tmp_path):
    import xarray as xr

    from rastercore.evaluate import evaluate_classes
    from rastercore.viz import class_overview, comparison_figure, confusion_figure, probability_figure

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, (300, 200)).astype(np.int32)
    pred = np.where(rng.random(truth.shape) < 0.9, truth, 0).astype(np.float32)
    prediction = xr.DataArray(pred, dims=("y", "x")).chunk(64)
    target = xr.DataArray(truth, dims=("y", "x")).chunk(64)
    small = class_overview(prediction, max_size=100)
    assert small.shape == (100, 67) and set(np.unique(small)) <= {0.0, 1.0, 2.0}  # codes, never averages
    metrics = evaluate_classes(prediction, target, class_names=["water", "field", "forest"])
    for path in (comparison_figure(prediction, target, tmp_path / "cmp.png", class_names=["water", "field", "forest"]),
                 confusion_figure(metrics, tmp_path / "cm.png")):
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image[..., :3].std() > 0.05
    proba = xr.DataArray(rng.random((3, 60, 40)).astype(np.float32), dims=("band", "y", "x"),
                         coords={"band": ["class", "p[a]", "p[b]"]}).chunk({"y": 30})
    assert matplotlib.image.imread(probability_figure(proba, tmp_path / "p.png")).shape[1] > 400
    with pytest.raises(ValueError, match="no probability layers"):
        probability_figure(proba.sel(band=["class"]), tmp_path / "q.png")
    with pytest.raises(StoreExistsError):
        confusion_figure(metrics, tmp_path / "cm.png")


def test_quicklook_of_a_cluster_map_has_one_colour_per_cluster(tmp_path):
    codes = np.zeros((60, 90), np.float32)
    codes[:, 30:60], codes[:, 60:] = 1, 2
    codes[:5, :5] = np.nan
    mosaic = xr.DataArray(codes[None], dims=("band", "y", "x"), coords={"band": ["cluster"]})
    image = matplotlib.image.imread(quicklook(mosaic, tmp_path / "c.png", max_size=45))
    assert image.shape[:2] == (30, 45)
    colours = {tuple(np.round(px, 3)) for px in image.reshape(-1, image.shape[-1])}
    assert len(colours) == 4  # three clusters and transparent nodata: no blended codes at the edges
    assert image[0, 0, 3] == 0 and image[-1, -1, 3] == 1


def test_data_is_the_old_name_of_stack(tmp_path, hh_hv):
    (hh, hv), _ = hh_hv
    stack = ingest([hh, hv], tmp_path / "s.zarr", tile_size=128, progress="none")
    with pytest.warns(RasterCoreDeprecationWarning, match=r"overview\(\): data is now called stack"):
        small = overview(data=stack, max_size=100)
    np.testing.assert_array_equal(small.values, overview(stack, max_size=100).values)
    with pytest.warns(RasterCoreDeprecationWarning, match=r"quicklook\(\): data is now called stack"):
        old = quicklook(data=stack, path=tmp_path / "old.png", max_size=100)
    new = quicklook(stack=stack, path=tmp_path / "new.png", max_size=100)
    np.testing.assert_array_equal(matplotlib.image.imread(old), matplotlib.image.imread(new))
