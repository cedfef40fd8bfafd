import numpy as np
import pytest
import xarray as xr
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score

from rastercore.datasets import SYNTHETIC_THRESHOLD, synthetic_scene
from rastercore.errors import RasterCoreDeprecationWarning, SamplingError
from rastercore.features import compute_features
from rastercore.models import load_model
from rastercore.predict import cog_layers, predict, predict_lazy
from rastercore.unsupervised import build_unsupervised, fit_unsupervised, map_unsupervised, save_unsupervised

SPEC = [{"name": "gaussian", "sigma": 2.0}, {"name": "box_std", "size": 5}]


@pytest.fixture(scope="module")
def scene():
    ds = synthetic_scene((256, 256), seed=0, chunks=96, looks=4)  # 40 % of the pixels in class 1
    return np.log(ds["sar"]), ds["target"]


def _all_features(stack, spec):
    """Every pixel's features, whole image at once: the reference."""
    feats = compute_features(stack.chunk({"y": -1, "x": -1}), spec).values
    return feats.reshape(feats.shape[0], -1).T


def test_the_sample_does_not_depend_on_the_tiling(scene):
    sar, _ = scene
    X = {}
    for chunks in (96, 80):
        recorder = _Recorder()
        fit_unsupervised(sar.chunk({"y": chunks, "x": chunks}), SPEC, recorder, n=500, seed=7,
                         progress="none")
        X[chunks] = recorder.X
    assert X[96].shape == (500, 4)
    np.testing.assert_array_equal(X[96], X[80])
    every = _all_features(sar, SPEC)
    rows = {tuple(r) for r in every}
    assert all(tuple(r) in rows for r in X[96])  # each sampled row is some pixel's features


def test_kmeans_map_equals_the_model_on_the_whole_image_and_finds_the_classes(scene, tmp_path):
    sar, target = scene
    model = fit_unsupervised(sar, SPEC, "kmeans", n_clusters=2, n=4000, seed=0, progress="none")
    assert isinstance(model, KMeans) and model.n_pixels_seen_ == 4000
    mosaic = predict_lazy(model, sar, SPEC)
    assert [str(b) for b in mosaic["band"].values] == ["cluster"]
    labels = mosaic.values[0].ravel()
    np.testing.assert_array_equal(labels, model.predict(_all_features(sar, SPEC)))
    truth = (target.values >= SYNTHETIC_THRESHOLD).ravel()
    assert adjusted_rand_score(truth, labels) > 0.8  # 0.88 here

    path = save_unsupervised(model, tmp_path / "km.skops", sar, SPEC, method="kmeans", stream=False, seed=0)
    written = predict(path, sar, tmp_path / "km.zarr", cog=tmp_path / "km.tif", progress="none")
    np.testing.assert_array_equal(written.values, mosaic.values)
    assert cog_layers(written).dtype == np.uint8  # the COG holds the cluster map as classes


def test_streamed_pca_matches_pca_on_every_pixel(scene):
    """With every component kept, IncrementalPCA over tiles is exact (fewer components: an approximation)."""
    sar, _ = scene
    streamed = fit_unsupervised(sar, SPEC, "pca", n_components=4, stream=True, seed=0, progress="none")
    every = _all_features(sar, SPEC)
    assert streamed.n_pixels_seen_ == len(every)
    reference = PCA(4).fit(every)
    cosines = np.abs(np.sum(streamed.components_ * reference.components_, axis=1))
    np.testing.assert_allclose(cosines, 1.0, atol=1e-5)
    np.testing.assert_allclose(streamed.explained_variance_, reference.explained_variance_, rtol=1e-4)
    layers = predict_lazy(streamed, sar, SPEC)
    assert [str(b) for b in layers["band"].values] == [f"component[{i}]" for i in range(4)]
    np.testing.assert_allclose(layers.values.reshape(4, -1).T, streamed.transform(every), rtol=1e-5, atol=1e-5)


def test_streamed_kmeans_sees_every_valid_pixel_and_saved_model_reloads(scene, tmp_path):
    sar, _ = scene
    holed = sar.where(sar["x"] > sar["x"][40])  # a nodata strip: no features there, no label either
    model = fit_unsupervised(holed, SPEC, "kmeans", n_clusters=3, stream=True, epochs=2, progress="none")
    valid = np.isfinite(_all_features(holed, SPEC)).all(axis=1)
    assert model.n_pixels_seen_ == 2 * valid.sum()
    path = save_unsupervised(model, tmp_path / "m.skops", holed, SPEC, method="kmeans", stream=True, seed=0)
    reloaded, manifest = load_model(path, return_manifest=True)
    assert manifest["metadata"]["unsupervised"]["pixels"] == model.n_pixels_seen_
    np.testing.assert_array_equal(reloaded.cluster_centers_, model.cluster_centers_)
    labels = predict_lazy(reloaded, holed, manifest["metadata"]["feature_spec"]).values[0]
    assert np.isnan(labels[:, :40]).all() and np.isfinite(labels.ravel()[valid]).all()


def test_too_few_valid_pixels_and_bad_estimators_are_explained(scene):
    sar, _ = scene
    empty = xr.full_like(sar, np.nan)
    with pytest.raises(SamplingError, match="0 pixels with valid inputs.*at least 2"):
        fit_unsupervised(empty, SPEC, "kmeans", n_clusters=2, progress="none")
    with pytest.raises(ValueError, match="unknown method 'dbscan'.*kmeans"):
        fit_unsupervised(sar, SPEC, "dbscan", progress="none")
    with pytest.raises(TypeError, match="KMeans has no partial_fit"):
        fit_unsupervised(sar, SPEC, KMeans(2), stream=True, progress="none")
    with pytest.raises(ValueError, match="n_clusters is for k-means; give PCA n_components"):
        fit_unsupervised(sar, SPEC, "pca", n_clusters=2, progress="none")
    with pytest.raises(ValueError, match="n_clusters must be a positive integer"):
        build_unsupervised("kmeans", n_clusters=0)


@pytest.mark.parametrize(
    "old,new",
    [({"sample_size": 500}, {"n": 500}), ({"n_components": 2}, {"n_clusters": 2})],
    ids=["sample_size", "n_components for k-means"],
)
def test_old_keywords_still_work_with_a_warning(scene, old, new):
    sar, _ = scene
    (old_name,), (new_name,) = old, new
    current = {"n_clusters": 2, "n": 500}
    with pytest.warns(RasterCoreDeprecationWarning, match=f"{old_name} is now called {new_name}"):
        fitted = fit_unsupervised(sar, SPEC, "kmeans", **{k: v for k, v in current.items() if k != new_name}, **old,
                                  progress="none")
    expected = fit_unsupervised(sar, SPEC, "kmeans", **current, progress="none")
    assert fitted.n_clusters == 2 and fitted.n_pixels_seen_ == 500
    np.testing.assert_array_equal(fitted.cluster_centers_, expected.cluster_centers_)


def test_build_and_map_take_the_old_keywords_too(scene, tmp_path):
    sar, _ = scene
    with pytest.warns(RasterCoreDeprecationWarning, match="k-means: n_components is now called n_clusters"):
        assert build_unsupervised("kmeans", 3).n_clusters == 3  # positional: the old second parameter
    assert build_unsupervised("pca", 3).n_components == 3
    with pytest.warns(RasterCoreDeprecationWarning, match=r"map_unsupervised\(\): sample_size is now called n"):
        _, fitted = map_unsupervised(sar, tmp_path / "k.zarr", SPEC, n_clusters=2, sample_size=300, progress="none")
    assert fitted.n_pixels_seen_ == 300


class _Recorder:
    """An estimator that keeps what it was fitted on."""

    def fit(self, X):
        self.X = X.copy()
        return self
