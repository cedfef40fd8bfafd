"""The support-vector budget: reduced sets against the full SVC, scikit-learn's own evaluation as reference."""

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.svm import SVC

from rastercore.errors import TrainingDataError
from rastercore.models import FastRBF, SampledSVC, load_model, reduce_support_vectors, save_model
from rastercore.models._budget import class_budgets


@pytest.fixture(scope="module")
def noisy_three_classes():
    """Three overlapping classes in 6-D: an SVC keeps most of its 2,000 training rows as support vectors."""
    X, y = make_classification(5000, 6, n_informative=4, n_redundant=0, n_classes=3, n_clusters_per_class=2,
                               class_sep=1.5, random_state=1)
    return X[:2000], y[:2000], X[2000:], y[2000:]


def test_class_budgets_share_the_budget_in_proportion():
    np.testing.assert_array_equal(class_budgets(np.array([300, 100]), 40), [30, 10])
    shares = class_budgets(np.array([500, 3, 97]), 50)
    assert shares.sum() == 50 and shares.min() >= 1 and shares[0] > shares[2] > 0
    np.testing.assert_array_equal(class_budgets(np.array([5, 7]), 100), [5, 7])  # nothing to cut
    np.testing.assert_array_equal(class_budgets(np.array([90, 1, 1, 8]), 4), [1, 1, 1, 1])
    with pytest.raises(TrainingDataError, match="at least 3"):
        class_budgets(np.array([10, 10, 10]), 2)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_reduced_svc_keeps_the_budget_and_the_answers(noisy_three_classes, n_classes):
    X, y, X_test, y_test = noisy_three_classes
    keep, keep_test = y < n_classes, y_test < n_classes
    X, y, X_test = X[keep], y[keep], X_test[keep_test]
    svc = SVC(C=10.0).fit(X, y)
    vectors, dual, counts = svc.support_vectors_.copy(), svc.dual_coef_.copy(), svc.n_support_.copy()
    budget = int(svc.n_support_.sum()) // 4
    reduced = reduce_support_vectors(svc, budget, X, random_state=0)
    assert reduced.n_support_.sum() <= budget < svc.n_support_.sum()
    # the fitted SVC itself is left as it was (the reduced one is a copy)
    np.testing.assert_array_equal(svc.support_vectors_, vectors)
    np.testing.assert_array_equal(svc.dual_coef_, dual)
    np.testing.assert_array_equal(svc.n_support_, counts)
    agreement = np.mean(reduced.predict(X_test) == svc.predict(X_test))
    assert agreement > 0.98, agreement
    # scikit-learn's libsvm evaluates the reduced model as FastRBF does
    np.testing.assert_array_equal(FastRBF(reduced).predict(X_test), reduced.predict(X_test))
    if n_classes == 2:  # the public decision: sum of dual_coef_ * kernel + intercept_, computed here by hand
        expected = rbf_kernel(X_test, reduced.support_vectors_, gamma=svc._gamma) @ reduced.dual_coef_[0]
        np.testing.assert_allclose(reduced.decision_function(X_test), expected + reduced.intercept_[0], atol=1e-9)


def test_a_model_within_budget_is_returned_unchanged(moons):
    X, y, _, _ = moons
    svc = SVC().fit(X, y)
    assert reduce_support_vectors(svc, int(svc.n_support_.sum()), X) is svc


def test_sampled_svc_with_a_budget_predicts_like_the_full_one(noisy_three_classes, tmp_path):
    X, y, X_test, _ = noisy_three_classes
    params = dict(search=False, n_samples=1500, C=10.0, random_state=0)
    full = SampledSVC(**params).fit(X, y)
    budgeted = SampledSVC(**params, max_support_vectors=100).fit(X, y)
    report = budgeted.budget_
    assert report["support_vectors"] == full.svc_.n_support_.sum() > 300
    assert report["kept"] == budgeted.svc_.n_support_.sum() <= 100
    assert report["rows"] == 300 + 500 and 1 - report["agreement"] <= report["tolerance"] == 0.01
    agreement = np.mean(budgeted.predict(X_test) == full.predict(X_test))
    assert agreement >= 0.98, agreement
    np.testing.assert_array_equal(budgeted.fast_predictor().predict(X_test), budgeted.predict(X_test))
    loaded = load_model(save_model(budgeted, tmp_path / "m.skops"))
    np.testing.assert_array_equal(loaded.predict(X_test), budgeted.predict(X_test))
    assert full.budget_ is None


def test_probabilities_follow_the_reduced_svc(noisy_three_classes):
    X, y, X_test, _ = noisy_three_classes
    model = SampledSVC(search=False, n_samples=900, probability=True, max_support_vectors=150,
                       budget_tolerance=0.05, random_state=0).fit(X, y)
    assert model.calibrator_.calibrated_classifiers_[0].estimator is model.svc_
    labels, proba = model.fast_predictor().predict_with_proba(X_test[:200])
    np.testing.assert_allclose(proba, model.predict_proba(X_test[:200]), atol=1e-5)
    np.testing.assert_array_equal(labels, model.predict(X_test[:200]))


def test_a_budget_that_changes_the_answers_is_refused(noisy_three_classes):
    X, y, _, _ = noisy_three_classes
    with pytest.raises(TrainingDataError, match=r"max_support_vectors=6 .* held-out labels, more than "
                                                r"budget_tolerance=0.01 -- raise max_support_vectors"):
        SampledSVC(search=False, n_samples=1500, C=10.0, max_support_vectors=6, random_state=0).fit(X, y)
    with pytest.raises(TrainingDataError, match="cannot keep one support vector of each of the 3 classes"):
        SampledSVC(search=False, n_samples=300, max_support_vectors=2, budget_tolerance=1.0).fit(X, y)
    with pytest.raises(ValueError, match="'max_support_vectors' parameter of SampledSVC must be an int"):
        SampledSVC(max_support_vectors=1).fit(X, y)
