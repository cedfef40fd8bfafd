import numpy as np
import pytest
import rasterio
import rioxarray
import xarray as xr

import rastercore
from rastercore.errors import RasterCoreDeprecationWarning
from rastercore.features import compute_features
from rastercore.models import save_model
from rastercore.predict import predict_lazy
from rastercore.unsupervised import DEFAULT_SPEC
from tests.conftest import write_tif

SPEC = [{"name": "gaussian", "sigma": 1.5}, {"name": "ratio", "a": "HV", "b": "HH"}]


@pytest.fixture
def scene(tmp_path, hh_hv):
    """The same raster as a rioxarray DataArray (named bands) and as an ingested rastercore stack."""
    _, values = hh_hv
    path = write_tif(tmp_path / "scene.tif", values, nodata=-1.0)
    opened = rioxarray.open_rasterio(path, chunks=128).assign_coords(band=["HH", "HV"])
    stack = rastercore.ingest(path, tmp_path / "s.zarr", bands=["HH", "HV"], tile_size=128, progress="none")
    return opened, stack


def test_features_from_rioxarray_equal_those_of_the_ingested_stack(scene):
    opened, stack = scene
    feats = opened.rc.features(SPEC)
    assert feats.chunks is not None and feats.rio.crs == stack.rio.crs
    np.testing.assert_array_equal(feats.values, compute_features(stack, SPEC).values)
    assert opened.rc.band_names == ["HH", "HV"]


def test_predict_with_a_model_file_and_cluster(scene, tmp_path):
    from sklearn.ensemble import RandomForestClassifier

    opened, stack = scene
    X = compute_features(stack, SPEC).values.reshape(3, -1).T
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, X[:, 0] > np.median(X[:, 0]))
    path = save_model(model, tmp_path / "m.skops", metadata={"feature_spec": SPEC, "class_names": ["low", "high"]})
    layers = opened.rc.predict(path)
    assert [str(b) for b in layers["band"].values] == ["class", "p[low]", "p[high]"]
    np.testing.assert_array_equal(layers.values, predict_lazy(model, stack, SPEC).values)

    clusters, kmeans = opened.rc.cluster(3, n=1000, return_model=True)
    assert [str(b) for b in clusters["band"].values] == ["cluster"] and clusters.rio.crs == stack.rio.crs
    labels = clusters.values[0].ravel()
    default = compute_features(stack, DEFAULT_SPEC).values  # each band smoothed at two scales, standardised
    np.testing.assert_array_equal(labels, kmeans.predict(default.reshape(len(default), -1).T))
    assert kmeans[-1].n_clusters == 3 and kmeans.n_pixels_seen_ == 1000
    components, pca = opened.rc.pca(2, n=1000, return_model=True)
    assert components.shape == (2, 300, 200) and pca[-1].n_components == 2
    np.testing.assert_array_equal(opened.rc.pca(2, n=1000).values, components.values)


def test_writers_keep_the_grid(scene, tmp_path):
    opened, stack = scene
    stored = opened.rc.to_store(tmp_path / "o.zarr", tile_size=64, progress="none")
    assert stored.chunks[1][0] == 64 and stored.rio.crs == stack.rio.crs
    np.testing.assert_array_equal(stored.values, opened.values)
    opened.rc.to_cog(tmp_path / "o.tif", progress="none")
    with rasterio.open(tmp_path / "o.tif") as src:
        assert src.crs == stack.rio.crs and src.transform == stack.rio.transform()
        np.testing.assert_array_equal(src.read(), opened.values)
    stats = opened.rc.stats()
    np.testing.assert_allclose(stats.mean, np.nanmean(np.where(opened.values == -1, np.nan, opened.values),
                                                      axis=(1, 2)), rtol=1e-5)


def test_a_cluster_map_goes_on_into_a_store(scene, tmp_path):
    opened, _ = scene
    clusters = opened.rc.cluster(3)
    assert "model" not in clusters.attrs
    stored = clusters.rc.to_store(tmp_path / "c.zarr", progress="none")
    assert [str(b) for b in stored["band"].values] == ["cluster"] and stored.rio.crs == clusters.rio.crs
    np.testing.assert_array_equal(stored.values, clusters.values)


@pytest.mark.parametrize("method", ["cluster", "pca"])
def test_sample_size_is_the_old_name_of_n(scene, method):
    opened, _ = scene
    with pytest.warns(RasterCoreDeprecationWarning, match=rf"\.rc\.{method}\(\): sample_size is now called n"):
        old, model = getattr(opened.rc, method)(2, sample_size=500, return_model=True)
    assert model.n_pixels_seen_ == 500
    np.testing.assert_array_equal(old.values, getattr(opened.rc, method)(2, n=500).values)


def test_a_dataarray_without_bands_gets_a_clear_error():
    with pytest.raises(rastercore.errors.BandNameError, match="dims"):
        xr.DataArray(np.zeros((4, 4)), dims=("y", "x")).rc.features(SPEC)
