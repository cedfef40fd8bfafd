import warnings

import numpy as np
import pytest
import xarray as xr
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA, KernelPCA
from sklearn.metrics import adjusted_rand_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rastercore.datasets import SYNTHETIC_THRESHOLD, synthetic_scene
from rastercore.errors import ParameterError, RasterCoreDeprecationWarning, SamplingError
from rastercore.features import compute_features
from rastercore.models import FastKernelPCA, fast_predictor, load_model, tile_predictor
from rastercore.predict import cog_layers, predict, predict_lazy
from rastercore.store import open_stack, write_tiles
from rastercore.unsupervised import (DEFAULT_SPEC, build_unsupervised, fit_unsupervised, map_unsupervised,
                                     sample_pixels, save_unsupervised)
from tests.conftest import run_cli

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
    unscaled = fit_unsupervised(sar, SPEC, "kmeans", n_clusters=2, n=4000, seed=0, standardize=False, progress="none")
    assert isinstance(unscaled, KMeans)
    truth = (target.values >= SYNTHETIC_THRESHOLD).ravel()
    # box_std of log intensities is mostly speckle: unscaled, its small spread keeps it out of the way
    assert adjusted_rand_score(truth, predict_lazy(unscaled, sar, SPEC).values.ravel()) > 0.8  # 0.88 here
    model = fit_unsupervised(sar, SPEC, "kmeans", n_clusters=2, n=4000, seed=0, progress="none")
    assert isinstance(model[-1], KMeans) and model.n_pixels_seen_ == 4000
    sample = sample_pixels(sar, SPEC, n=4000, seed=0)["X"]
    np.testing.assert_allclose(model[0].mean_, sample.mean(axis=0), rtol=1e-5)  # standardised by the sample
    mosaic = predict_lazy(model, sar, SPEC)
    assert [str(b) for b in mosaic["band"].values] == ["cluster"]
    labels = mosaic.values[0].ravel()
    np.testing.assert_array_equal(labels, model.predict(_all_features(sar, SPEC)))
    assert adjusted_rand_score(truth, labels) > 0.5  # 0.55 here: standardised, the speckle texture weighs in

    path = save_unsupervised(model, tmp_path / "km.skops", sar, SPEC, method="kmeans", stream=False, seed=0)
    written = predict(path, sar, tmp_path / "km.zarr", cog=tmp_path / "km.tif", progress="none")
    np.testing.assert_array_equal(written.values, mosaic.values)
    assert cog_layers(written).dtype == np.uint8  # the COG holds the cluster map as classes


def test_streamed_pca_matches_pca_on_every_pixel(scene):
    """With every component kept, IncrementalPCA over tiles is exact (fewer components: an approximation).

    The standardisation is fitted on the sample of ``n`` pixels first; PCA then sees every pixel, scaled.
    """
    sar, _ = scene
    streamed = fit_unsupervised(sar, SPEC, "pca", n_components=4, n=3000, stream=True, seed=0, progress="none")
    every = _all_features(sar, SPEC)
    assert streamed.n_pixels_seen_ == len(every)
    sample = sample_pixels(sar, SPEC, n=3000, seed=0)["X"]
    np.testing.assert_allclose(streamed[0].scale_, sample.std(axis=0), rtol=1e-4)
    scaled = (every - sample.mean(axis=0)) / sample.std(axis=0)
    reference = PCA(4).fit(scaled)
    cosines = np.abs(np.sum(streamed[-1].components_ * reference.components_, axis=1))
    np.testing.assert_allclose(cosines, 1.0, atol=1e-5)
    np.testing.assert_allclose(streamed[-1].explained_variance_, reference.explained_variance_, rtol=1e-4)
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
    np.testing.assert_array_equal(reloaded[-1].cluster_centers_, model[-1].cluster_centers_)
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
    assert fitted[-1].n_clusters == 2 and fitted.n_pixels_seen_ == 500
    np.testing.assert_array_equal(fitted[-1].cluster_centers_, expected[-1].cluster_centers_)


def test_build_and_map_take_the_old_keywords_too(scene, tmp_path):
    sar, _ = scene
    with pytest.warns(RasterCoreDeprecationWarning, match="k-means: n_components is now called n_clusters"):
        assert build_unsupervised("kmeans", 3)[-1].n_clusters == 3  # positional: the old second parameter
    assert build_unsupervised("pca", 3)[-1].n_components == 3
    with pytest.warns(RasterCoreDeprecationWarning, match=r"map_unsupervised\(\): sample_size is now called n"):
        _, fitted = map_unsupervised(sar, tmp_path / "k.zarr", SPEC, n_clusters=2, sample_size=300, progress="none")
    assert fitted.n_pixels_seen_ == 300


class _Recorder:
    """An estimator that keeps what it was fitted on."""

    def fit(self, X):
        self.X = X.copy()
        return self


# -- kernel PCA ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kpca(scene):
    """Kernel PCA of the scene's features on 600 sampled pixels, and those pixels' features."""
    sar, _ = scene
    model = fit_unsupervised(sar, SPEC, "kpca", n_components=3, n=600, seed=0, progress="none")
    return model, sample_pixels(sar, SPEC, n=600, seed=0)["X"]


def _float32_close(actual, expected):
    """Equal within float32 arithmetic: relative to each component's spread."""
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_kernel_pca_map_equals_scikit_learn_on_the_sample_and_every_other_pixel(scene, kpca):
    sar, _ = scene
    model, sample = kpca
    reference = make_pipeline(StandardScaler(), KernelPCA(3, kernel="rbf", random_state=0)).fit(sample.astype(float))
    np.testing.assert_allclose(model[-1].X_fit_, reference[-1].X_fit_, rtol=1e-12)  # fitted on exactly the sample
    assert model[-1].gamma_ == pytest.approx(1 / 4)  # 1 / n_features on the standardised features
    assert isinstance(fast_predictor(model), FastKernelPCA)
    _float32_close(fast_predictor(model).transform(sample), reference.transform(sample))
    layers = predict_lazy(model, sar, SPEC)
    assert [str(b) for b in layers["band"].values] == ["component[0]", "component[1]", "component[2]"]
    every = _all_features(sar, SPEC)
    _float32_close(layers.values.reshape(3, -1).T, reference.transform(every))


def test_kernel_pca_tile_by_tile_equals_the_whole_image_and_reloads_from_skops(scene, kpca, tmp_path):
    sar, _ = scene
    model, _ = kpca
    whole = predict_lazy(model, sar.chunk({"y": -1, "x": -1}), SPEC).values
    np.testing.assert_array_equal(predict_lazy(model, sar.chunk({"y": 50, "x": 70}), SPEC).values, whole)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no type outside the allow-list
        path = save_unsupervised(model, tmp_path / "kpca.skops", sar, SPEC, method="kpca", stream=False, seed=0)
    reloaded, manifest = load_model(path, return_manifest=True)
    assert manifest["metadata"]["unsupervised"] == {"method": "kpca", "estimator": "KernelPCA", "stream": False,
                                                    "pixels": 600, "seed": 0, "standardized": True, "gamma": 0.25}
    np.testing.assert_array_equal(reloaded[-1].eigenvectors_, model[-1].eigenvectors_)
    written = predict(path, sar, tmp_path / "kpca.zarr", progress="none")
    np.testing.assert_array_equal(written.values, whole)


def test_kernel_pca_gamma_is_passed_on_and_its_limits_are_explained(scene):
    sar, _ = scene
    model = fit_unsupervised(sar, SPEC, "kpca", n_components=2, n=200, gamma=0.05, progress="none")
    assert model[-1].gamma_ == 0.05 and model.n_pixels_seen_ == 200
    with pytest.raises(ParameterError, match=r"n x n kernel matrix .*at most 20000 pixels: lower n \(-n/--sample\)"):
        fit_unsupervised(sar, SPEC, "kpca", n=30_000, progress="none")
    with pytest.raises(ParameterError, match="cannot stream every pixel"):
        fit_unsupervised(sar, SPEC, "kpca", stream=True, progress="none")
    with pytest.raises(ParameterError, match=r"gamma \(--gamma\) is the RBF kernel's width, for kernel PCA"):
        fit_unsupervised(sar, SPEC, "pca", gamma=0.1, progress="none")


def test_a_tsne_map_is_refused_as_a_view_of_a_sample(scene, tmp_path):
    from sklearn.manifold import TSNE

    sar, _ = scene
    with pytest.raises(ParameterError, match=r"t-SNE is a view of a sample.*rastercore view STACK --method tsne"):
        map_unsupervised(sar, tmp_path / "t.zarr", SPEC, "tsne", progress="none")
    with pytest.raises(ParameterError, match="TSNE has neither predict nor transform"):  # before any fitting
        map_unsupervised(sar, tmp_path / "t.zarr", SPEC, TSNE(), progress="none")
    assert not (tmp_path / "t.zarr").exists()
    with pytest.raises(ParameterError, match="TSNE has neither predict nor transform"):  # was an AttributeError
        tile_predictor(TSNE())


def test_cli_reduce_kpca_and_its_refusals_in_one_line(scene, tmp_path):
    sar, _ = scene
    stack = tmp_path / "s.zarr"
    write_tiles(sar[:, :96, :128], stack, progress="none")
    out = tmp_path / "k.zarr"
    done = run_cli("reduce", stack, "-o", out, "--method", "kpca", "--n-components", "2", "--sample", "300",
                   "--gamma", "0.2", "--scheduler", "sync", "--progress", "none")
    assert "2 components (kernel PCA, gamma 0.2), fitted on 300 pixels" in done.stdout
    assert [str(b) for b in open_stack(out)["band"].values] == ["component[0]", "component[1]"]
    for options, message in [
        (["--method", "tsne"], "rastercore: error: t-SNE is a view of a sample, not a map of every pixel"),
        (["--method", "kpca", "--sample", "25000"], "rastercore: error: kernel PCA keeps an n x n kernel matrix"),
    ]:
        done = run_cli("reduce", stack, "-o", tmp_path / "x.zarr", *options, "--scheduler", "sync", check=False)
        assert done.returncode == 2 and done.stderr.startswith(message), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr + done.stdout


# -- default features ----------------------------------------------------------------------------------------------

def test_default_features_cluster_the_classes_better_than_the_raw_bands():
    """Single-look SAR intensities: the raw bands give a speckle map, the smoothed standardised default the regions."""
    ds = synthetic_scene((192, 192), seed=0, chunks=96)
    sar, truth = ds["sar"], (ds["target"].values >= SYNTHETIC_THRESHOLD).ravel()
    default = predict_lazy(fit_unsupervised(sar, None, "kmeans", n_clusters=2, n=4000, progress="none"),
                           sar, DEFAULT_SPEC).values.ravel()
    raw_spec = [{"name": "window", "r": 0}]
    raw = predict_lazy(fit_unsupervised(sar, raw_spec, KMeans(2, random_state=0, n_init="auto"), n=4000,
                                        progress="none"), sar, raw_spec).values.ravel()
    assert adjusted_rand_score(truth, raw) < 0.2  # 0.01 here (0.10 standardised)
    assert adjusted_rand_score(truth, default) > 0.5  # 0.58 here
