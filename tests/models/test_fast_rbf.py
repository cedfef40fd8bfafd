import numpy as np
import pytest
from sklearn.svm import SVC

from rastercore.models._fast_rbf import FastRBF

# SVC(probability=True) is deprecated in scikit-learn 1.9 but still supported (and used on purpose here).
pytestmark = pytest.mark.filterwarnings("ignore:The `probability` parameter was deprecated:FutureWarning")


@pytest.mark.parametrize("n_classes", [2, 3, 4, 18])  # 18: beyond DENSE_PAIRS_MAX_CLASSES, the per-class loops
@pytest.mark.parametrize("shape", ["ovr", "ovo"])
def test_matches_scikit_learn(n_classes, shape):
    rng = np.random.default_rng(n_classes)
    X = rng.normal(size=(600, 6))
    y = np.digitize(X[:, 0] + 0.5 * X[:, 1] ** 2, np.quantile(X[:, 0] + 0.5 * X[:, 1] ** 2, np.linspace(0, 1, n_classes + 1)[1:-1]))
    svc = SVC(C=5.0, gamma="scale", decision_function_shape=shape).fit(X, y)
    fast = FastRBF(svc)
    assert (fast.pair_weights is None) == (n_classes > 16)
    X_test = rng.normal(size=(2000, 6))
    reference = svc.decision_function(X_test)
    got = fast.decision_function(X_test)
    assert got.shape == reference.shape
    np.testing.assert_allclose(got, reference, atol=1e-4 * max(1.0, np.abs(reference).max()))
    np.testing.assert_array_equal(fast.predict(X_test), svc.predict(X_test))


def test_string_labels_and_float32_input():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3)).astype(np.float32)
    y = np.where(X[:, 0] * X[:, 1] > 0, "water", "land")
    svc = SVC().fit(X, y)
    np.testing.assert_array_equal(FastRBF(svc).predict(X), svc.predict(X))


def test_refuses_other_kernels():
    X = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match="kernel='rbf'"):
        FastRBF(SVC(kernel="linear").fit(X, X[:, 0] > 0))


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_probabilities_match_scikit_learn(n_classes):
    rng = np.random.default_rng(10 + n_classes)
    X = rng.normal(size=(400, 4))
    score = X[:, 0] + np.sin(2 * X[:, 1])
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1]))
    svc = SVC(probability=True, random_state=0).fit(X, y)
    fast = FastRBF(svc)
    X_test = rng.normal(size=(1000, 4))
    np.testing.assert_allclose(fast.predict_proba(X_test), svc.predict_proba(X_test), atol=2e-5)
    labels, proba = fast.predict_with_proba(X_test)
    np.testing.assert_array_equal(labels, svc.predict(X_test))
    with pytest.raises(AttributeError, match="probability=True"):
        FastRBF(SVC().fit(X, y)).predict_proba(X_test)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_fast_stand_in_for_calibrated_sampled_svc(n_classes):
    from rastercore.models import SampledSVC
    from rastercore.models import fast_predictor

    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 3))
    y = np.digitize(X[:, 0] + X[:, 1] ** 2, [0.5, 1.5][: n_classes - 1])
    model = SampledSVC(search=False, probability=True, random_state=0).fit(X, y)
    fast = fast_predictor(model)
    X_test = rng.normal(size=(800, 3))
    labels, proba = fast.predict_with_proba(X_test)
    np.testing.assert_array_equal(labels, model.predict(X_test))
    np.testing.assert_allclose(proba, model.predict_proba(X_test), atol=1e-4)
    plain = fast_predictor(SampledSVC(search=False, random_state=0).fit(X, y))
    assert not plain.has_proba
    np.testing.assert_array_equal(plain.predict(X_test), model.predict(X_test))


@pytest.mark.parametrize("n_classes,loss", [(2, "hinge"), (2, "log_loss"), (3, "log_loss")])
def test_kernel_sgd_stand_in_matches(n_classes, loss):
    from rastercore.models import KernelSGD
    from rastercore.models import FastKernelLinear, fast_predictor

    rng = np.random.default_rng(n_classes)
    X = rng.normal(size=(2000, 5)) * [1, 10, 0.1, 1, 3] + [0, 5, 0, 1, 0]
    score = np.sin(X[:, 0]) + X[:, 1] / 10
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1]))
    model = KernelSGD(loss=loss, n_components=80, random_state=0).fit(X, y)
    fast = fast_predictor(model)
    assert isinstance(fast, FastKernelLinear)
    X_test = rng.normal(size=(3000, 5)) * [1, 10, 0.1, 1, 3] + [0, 5, 0, 1, 0]
    reference = model.decision_function(X_test)
    np.testing.assert_allclose(fast.decision_function(X_test), reference, atol=2e-4 * max(1, np.abs(reference).max()))
    agree = (fast.predict(X_test) == model.predict(X_test)).mean()
    assert agree > 0.999  # rows exactly on the boundary may flip in float32
    if loss == "log_loss":
        labels, proba = fast.predict_with_proba(X_test)
        np.testing.assert_allclose(proba, model.predict_proba(X_test), atol=1e-4)


@pytest.mark.parametrize("linear,scaled", [("sgd", True), ("logistic", True), ("logistic3", False), ("hinge", False)])
def test_scikit_learn_kernel_pipelines_get_the_compiled_stand_in(linear, scaled):
    """An sklearn Pipeline([StandardScaler,] Nystroem(rbf), linear) is predicted by FastKernelLinear."""
    from sklearn.kernel_approximation import Nystroem
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from rastercore.models import FastKernelLinear, fast_predictor

    rng = np.random.default_rng(7)
    X = rng.normal(size=(1500, 4)) * [1, 5, 0.2, 1]
    n_classes = 3 if linear == "logistic3" else 2
    y = np.digitize(np.sin(X[:, 0]) + X[:, 1] / 5, [-0.5, 0.5][: n_classes - 1])
    head = {"sgd": SGDClassifier(loss="log_loss", random_state=0), "hinge": SGDClassifier(random_state=0),
            "logistic": LogisticRegression(max_iter=500), "logistic3": LogisticRegression(max_iter=500)}[linear]
    steps = ([StandardScaler()] if scaled else []) + [Nystroem(gamma=0.3, n_components=60, random_state=0), head]
    model = make_pipeline(*steps).fit(X, y)
    fast = fast_predictor(model)
    assert isinstance(fast, FastKernelLinear)
    X_test = rng.normal(size=(2000, 4)) * [1, 5, 0.2, 1]
    assert (fast.predict(X_test) == model.predict(X_test)).mean() > 0.999
    assert fast.has_proba == (linear != "hinge")
    if fast.has_proba:
        np.testing.assert_allclose(fast.predict_with_proba(X_test)[1], model.predict_proba(X_test), atol=1e-4)


def test_pipelines_without_a_kernel_map_have_no_stand_in():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from rastercore.models import fast_predictor

    X = np.random.default_rng(0).normal(size=(100, 3))
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, X[:, 0] > 0)
    assert fast_predictor(model) is None
