import dask.array as da
import numpy as np
import pytest
from dask_ml.wrappers import Incremental
from sklearn.kernel_approximation import Nystroem, RBFSampler
from sklearn.linear_model import LinearRegression, SGDClassifier

from rastercore.models import KernelSGD, KernelSGDRegressor


def _stream(model, X, y, *, epochs=4, batch=250, **kwargs):
    for _ in range(epochs):
        for start in range(0, len(y), batch):
            model.partial_fit(X[start:start + batch], y[start:start + batch], **kwargs)
    return model


@pytest.mark.parametrize("kernel", ["nystroem", "rbf_sampler"])
def test_streaming_partial_fit_learns_a_nonlinear_boundary(circles, kernel):
    X, y, Xt, yt = circles
    model = _stream(KernelSGD(kernel=kernel, n_components=60, random_state=0), X, y, classes=[0, 1])
    linear = _stream(SGDClassifier(random_state=0), X, y, classes=[0, 1])
    assert model.score(Xt, yt) >= 0.95
    assert linear.score(Xt, yt) <= 0.75  # the rings are not linearly separable
    expected = Nystroem if kernel == "nystroem" else RBFSampler
    assert isinstance(model.kernel_map_[-1], expected) and model.n_iter_ == 1


def test_kernel_map_is_fitted_once_on_the_first_batch_or_the_given_sample(circles):
    X, y, _, _ = circles
    model = KernelSGD(n_components=20, random_state=0).partial_fit(X[:100], y[:100], classes=[0, 1])
    first = model.kernel_map_
    model.partial_fit(X[100:200], y[100:200])
    assert model.kernel_map_ is first
    np.testing.assert_allclose(first[0].mean_, X[:100].mean(axis=0))
    sample = X[500:900]
    given = KernelSGD(n_components=20, kernel_sample=sample, random_state=0).partial_fit(
        X[:100], y[:100], classes=[0, 1])
    np.testing.assert_allclose(given.kernel_map_[0].mean_, sample.mean(axis=0))
    with pytest.raises(ValueError, match="kernel_sample has 3 features but X has 2"):
        KernelSGD(kernel_sample=np.zeros((5, 3))).fit(X, y)


def test_fit_matches_the_same_pipeline_built_by_hand(circles):
    X, y, Xt, _ = circles
    model = KernelSGD(kernel=None, standardize=False, max_iter=30, tol=None, random_state=0).fit(X, y)
    reference = SGDClassifier(max_iter=30, tol=None, random_state=model.sgd_.random_state).fit(X, y)
    np.testing.assert_allclose(model.decision_function(Xt), reference.decision_function(Xt))


def test_incremental_on_dask_arrays(circles):
    X, y, Xt, yt = circles
    dX, dy = da.from_array(X, chunks=(250, 2)), da.from_array(y, chunks=250)
    wrapper = Incremental(KernelSGD(n_components=60, random_state=0), random_state=0)
    wrapper.fit(dX, dy, classes=[0, 1])
    for _ in range(2):  # more epochs
        wrapper.partial_fit(dX, dy, classes=[0, 1])
    assert isinstance(wrapper.estimator_, KernelSGD)
    predicted = wrapper.predict(da.from_array(Xt, chunks=(500, 2))).compute()
    assert np.mean(predicted == yt) >= 0.95


def test_first_partial_fit_needs_the_classes(circles):
    X, y, _, _ = circles
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        KernelSGD().partial_fit(X[:50], y[:50])


def test_probabilities_with_a_probabilistic_loss(circles):
    X, y, Xt, _ = circles
    assert not hasattr(KernelSGD(), "predict_proba")
    model = KernelSGD(loss="log_loss", n_components=40, random_state=0).fit(X, y)
    proba = model.predict_proba(Xt)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.classes_[proba.argmax(axis=1)], model.predict(Xt))


def test_regressor_streams_a_nonlinear_target():
    rng = np.random.default_rng(0)
    X = rng.uniform(-3, 3, size=(3000, 2))
    y = np.sin(X[:, 0]) + 0.5 * np.cos(2 * X[:, 1]) + rng.normal(scale=0.05, size=3000)
    X, y, Xt, yt = X[:2000], y[:2000], X[2000:], y[2000:]
    model = _stream(KernelSGDRegressor(n_components=100, gamma=1.0, eta0=0.05, random_state=0),
                    X, y, epochs=8)
    linear = _stream(KernelSGDRegressor(kernel=None, random_state=0), X, y, epochs=8)
    best_linear = LinearRegression().fit(X, y).score(Xt, yt)
    assert linear.score(Xt, yt) <= best_linear + 0.01 < 0.6
    assert model.score(Xt, yt) >= 0.9
