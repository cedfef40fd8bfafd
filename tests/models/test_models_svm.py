import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.svm import SVC

from rastercore.errors import RasterCoreError, TrainingDataError
from rastercore.models import SampledSVC
from rastercore.quotas import class_quotas


def test_without_sampling_or_search_it_is_a_plain_svc(three_blobs):
    X, y, Xt, _ = three_blobs
    model = SampledSVC(search=False, n_samples=None, C=3.0, random_state=0).fit(X, y)
    reference = SVC(C=3.0).fit(X, y)
    np.testing.assert_array_equal(model.predict(Xt), reference.predict(Xt))
    np.testing.assert_allclose(model.decision_function(Xt), reference.decision_function(Xt))
    np.testing.assert_array_equal(model.support_vectors_, reference.support_vectors_)
    np.testing.assert_array_equal(model.classes_, [0, 1, 2])
    assert model.best_params_ == {"C": 3.0, "gamma": "scale"} and model.cv_results_ is None


def test_balanced_sample_takes_equal_rows_per_class():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], [900, 60, 40])
    X = rng.normal(size=(len(y), 2)) + y[:, None]
    model = SampledSVC(search=False, n_samples=300, random_state=0).fit(X, y)
    counts = np.bincount(y[model.sample_indices_])
    # the two small classes give all they have; the large one fills the rest
    np.testing.assert_array_equal(counts, [200, 60, 40])
    model = SampledSVC(search=False, n_samples=90, random_state=0).fit(X, y)
    np.testing.assert_array_equal(np.bincount(y[model.sample_indices_]), [30, 30, 30])
    proportional = SampledSVC(search=False, n_samples=100, balance=False, random_state=0).fit(X, y)
    np.testing.assert_array_equal(np.bincount(y[proportional.sample_indices_]), [90, 6, 4])
    assert len(np.unique(model.sample_indices_)) == len(model.sample_indices_)


def test_class_quotas_keep_every_class():
    np.testing.assert_array_equal(class_quotas(np.array([1000, 1]), 10, balance=False, fill=True, at_least_one=True),
                                  [9, 1])
    np.testing.assert_array_equal(class_quotas(np.array([5, 5]), 10**9, balance=True, fill=True), [5, 5])


def test_search_picks_the_best_cross_validated_parameters(moons):
    X, y, Xt, yt = moons
    grid = {"C": [0.1, 10.0], "gamma": [0.05, 2.0]}
    folds = StratifiedKFold(3)
    model = SampledSVC(param_grid=grid, cv=folds, n_samples=300, random_state=0).fit(X, y)
    results = model.cv_results_
    best = int(np.argmax(results["mean_test_score"]))
    assert model.best_params_ == results["params"][best]
    assert model.best_score_ == pytest.approx(results["mean_test_score"][best])
    assert model.svc_.C == model.best_params_["C"] and model.svc_.gamma == model.best_params_["gamma"]
    # the same search run by hand with scikit-learn on the same sample agrees
    Xs, ys = X[model.sample_indices_], y[model.sample_indices_]
    reference = GridSearchCV(SVC(), grid, cv=folds).fit(Xs, ys)
    assert reference.best_params_ == model.best_params_
    np.testing.assert_allclose(reference.cv_results_["mean_test_score"], results["mean_test_score"])
    assert model.score(Xt, yt) >= SVC(C=0.1, gamma=0.05).fit(Xs, ys).score(Xt, yt)


def test_default_grid_is_relative_to_the_scale_gamma(moons):
    X, y, _, _ = moons
    model = SampledSVC(n_samples=120, random_state=0).fit(X, y)
    Xs = X[model.sample_indices_]
    scale = 1.0 / (X.shape[1] * Xs.var())
    gammas = sorted(set(model.cv_results_["param_gamma"]))
    np.testing.assert_allclose(gammas, [0.1 * scale, scale, 10 * scale])
    assert len(model.cv_results_["params"]) == 12


def test_one_class_is_a_clear_error():
    X = np.random.default_rng(0).normal(size=(50, 3))
    with pytest.raises(TrainingDataError, match=r"at least two classes.*only one class, 7.*threshold"):
        SampledSVC().fit(X, np.full(50, 7))
    err = TrainingDataError("x")
    assert isinstance(err, ValueError) and isinstance(err, RasterCoreError)


def test_search_needs_cv_rows_per_class():
    X = np.random.default_rng(0).normal(size=(30, 2))
    y = np.r_[np.zeros(28), np.ones(2)]
    with pytest.raises(TrainingDataError, match=r"cv=3 rows of every class.*search=False"):
        SampledSVC(cv=3, random_state=0).fit(X, y)


def test_probabilities_only_when_asked(moons):
    X, y, Xt, _ = moons
    plain = SampledSVC(search=False, random_state=0).fit(X, y)
    assert not hasattr(plain, "predict_proba") and plain.calibrator_ is None
    model = SampledSVC(search=False, probability=True, random_state=0).fit(X, y)
    proba = model.predict_proba(Xt)
    assert proba.shape == (len(Xt), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.mean(proba.argmax(axis=1) == model.predict(Xt)) > 0.97
    # probability=True does not change the SVC itself
    np.testing.assert_array_equal(model.predict(Xt), plain.predict(Xt))


def test_seeded_and_reproducible(moons):
    X, y, Xt, _ = moons
    a = SampledSVC(n_samples=100, param_grid={"C": [1, 10]}, random_state=3).fit(X, y)
    b = SampledSVC(n_samples=100, param_grid={"C": [1, 10]}, random_state=3).fit(X, y)
    c = SampledSVC(n_samples=100, param_grid={"C": [1, 10]}, random_state=4).fit(X, y)
    np.testing.assert_array_equal(a.sample_indices_, b.sample_indices_)
    np.testing.assert_array_equal(a.predict(Xt), b.predict(Xt))
    assert not np.array_equal(a.sample_indices_, c.sample_indices_)
