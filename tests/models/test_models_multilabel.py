import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.svm import LinearSVC

from rastercore.errors import TrainingDataError
from rastercore.models import ThresholdedMultiLabel


@pytest.fixture
def labels():
    """Three labels of four features, one of them rare (about 8 % positive) and noisy."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2400, 4))
    score = np.column_stack([X[:, 0] + X[:, 1], X[:, 2] - 0.5 * X[:, 0], X[:, 3] + 0.5 * X[:, 1]])
    noisy = score + rng.normal(scale=0.8, size=score.shape)
    Y = (noisy > [0.0, 0.3, 1.8]).astype(int)
    return (X[:800], Y[:800]), (X[800:1600], Y[800:1600]), (X[1600:], Y[1600:])


def test_one_plain_classifier_per_label(labels):
    (X, Y), _, (Xt, _) = labels
    model = ThresholdedMultiLabel().fit(X, Y)
    assert model.n_labels_ == 3 and len(model.estimators_) == 3
    np.testing.assert_array_equal(model.thresholds_, [0.5, 0.5, 0.5])
    for j in range(3):
        reference = LogisticRegression().fit(X, Y[:, j])
        np.testing.assert_allclose(model.predict_proba(Xt)[:, j], reference.predict_proba(Xt)[:, 1])
        np.testing.assert_array_equal(model.predict(Xt)[:, j], reference.predict(Xt))


def test_tuned_thresholds_raise_f1_on_new_data(labels):
    (X, Y), (Xv, Yv), (Xt, Yt) = labels
    model = ThresholdedMultiLabel().fit(X, Y)
    before = f1_score(Yt, model.predict(Xt), average=None)
    model.tune_thresholds(Xv, Yv, metric="f1")
    after = f1_score(Yt, model.predict(Xt), average=None)
    assert model.threshold_metric_ == "f1"
    assert model.thresholds_[2] < 0.5  # the rare label needs a lower bar
    assert after[2] >= before[2] + 0.05
    assert after.mean() >= before.mean()
    # each stored score is the best the grid gives on the validation data
    proba = model.predict_proba(Xv)
    for j in range(3):
        grid_best = max(f1_score(Yv[:, j], proba[:, j] >= t) for t in np.linspace(0.05, 0.95, 19))
        assert model.threshold_scores_[j] == pytest.approx(grid_best)
        assert model.threshold_scores_[j] == pytest.approx(
            f1_score(Yv[:, j], proba[:, j] >= model.thresholds_[j]))


def test_decision_function_estimators_and_other_metrics(labels):
    (X, Y), (Xv, Yv), (Xt, Yt) = labels
    model = ThresholdedMultiLabel(estimator=LinearSVC()).fit(X, Y)
    np.testing.assert_array_equal(model.thresholds_, [0.0, 0.0, 0.0])
    assert not hasattr(model, "predict_proba")
    model.tune_thresholds(Xv, Yv, metric="accuracy")
    scores = model.predict_scores(Xv)
    for j in range(3):
        assert scores[:, j].min() <= model.thresholds_[j] <= scores[:, j].max()
    np.testing.assert_array_equal(model.predict(Xt), (model.predict_scores(Xt) >= model.thresholds_).astype(int))
    custom = ThresholdedMultiLabel(threshold_grid=[0.3, 0.7]).fit(X, Y)
    custom.tune_thresholds(Xv, Yv, metric=lambda t, p: -np.mean(p))  # prefers predicting 0
    np.testing.assert_array_equal(custom.thresholds_, [0.7, 0.7, 0.7])
    with pytest.raises(ValueError, match="metric must be one of"):
        custom.tune_thresholds(Xv, Yv, metric="auc")
    with pytest.raises(ValueError, match="Y has 2 labels but the model was fitted on 3"):
        custom.tune_thresholds(Xv, Yv[:, :2])


def test_a_label_with_one_class_is_a_clear_error(labels):
    (X, Y), _, _ = labels
    Y = Y.copy()
    Y[:, 1] = 0
    with pytest.raises(TrainingDataError, match=r"label 1 needs two classes.*only one class"):
        ThresholdedMultiLabel().fit(X, Y)


def test_a_single_1d_label_behaves_like_a_binary_classifier(labels):
    (X, Y), (Xv, Yv), (Xt, _) = labels
    model = ThresholdedMultiLabel().fit(X, Y[:, 2]).tune_thresholds(Xv, Yv[:, 2])
    assert model.predict(Xt).shape == (len(Xt),) and model.predict_proba(Xt).shape == (len(Xt), 2)
    np.testing.assert_array_equal(model.classes_, [0, 1])
