import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.metrics import brier_score_loss
from sklearn.svm import SVC

import rastercore.models._cascade as cascade_module
from rastercore.errors import TrainingDataError
from rastercore.models import CascadeSVC
from rastercore.models._common import shard_indices


def test_accuracy_close_to_a_plain_svc_on_all_data(moons, three_blobs):
    for X, y, Xt, yt in (moons, three_blobs):
        full = SVC(C=1.0).fit(X, y)
        model = CascadeSVC(n_shards=4, random_state=0).fit(X, y)
        assert abs(model.score(Xt, yt) - full.score(Xt, yt)) <= 0.02
        assert np.mean(model.predict(Xt) == full.predict(Xt)) >= 0.97
        # the final support set is a small part of the training set, on the true boundary
        assert len(model.support_) < 0.6 * len(y)
        assert len(np.unique(model.support_)) == len(model.support_) and model.support_.max() < len(y)
        np.testing.assert_array_equal(model.support_vectors_, X[model.support_])


def test_every_training_row_goes_into_exactly_one_first_level_shard(moons, monkeypatch):
    X, y, _, _ = moons
    seen = []
    real = cascade_module._fit_rows

    def recording(X_rows, y_rows, rows, params):
        seen.append(np.array(rows))
        np.testing.assert_array_equal(X_rows, X[rows])  # each worker gets its rows' data
        return real(X_rows, y_rows, rows, params)

    monkeypatch.setattr(cascade_module, "_fit_rows", recording)
    model = CascadeSVC(n_shards=5, random_state=0).fit(X, y)
    first_level = np.concatenate(seen[:5])
    np.testing.assert_array_equal(np.sort(first_level), np.arange(len(y)))
    assert model.shard_sizes_.sum() == len(y) and len(model.shard_sizes_) == 5
    assert len(seen) == 5 + 2 + 1 + 1  # 5 shards -> 3 sets -> 2 -> 1
    levels = model.level_sizes_[0]
    assert len(levels) == 4 and levels[-1] == len(model.support_)


def test_stratified_shards_are_balanced():
    y = np.repeat([0, 1], [90, 10])
    shards = shard_indices(100, 4, rng=np.random.RandomState(0), y=y)
    np.testing.assert_array_equal(np.sort(np.concatenate(shards)), np.arange(100))
    assert [len(s) for s in shards] == [25, 25, 25, 25]
    assert all(np.sum(y[s]) in (2, 3) for s in shards)


def test_seeded_and_reproducible_on_threads(moons):
    X, y, Xt, _ = moons
    a = CascadeSVC(n_shards=4, random_state=1).fit(X, y)
    b = CascadeSVC(n_shards=4, random_state=1, n_jobs=2).fit(X, y)
    np.testing.assert_array_equal(a.support_, b.support_)
    np.testing.assert_array_equal(a.decision_function(Xt), b.decision_function(Xt))


def test_single_class_shards_are_carried_forward():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = np.zeros(200, dtype=int)
    y[[10, 20]] = 1  # two rows of class 1: at most two of six shards see it
    X[[10, 20]] += 4.0
    model = CascadeSVC(C=100.0, n_shards=6, random_state=0).fit(X, y)
    np.testing.assert_array_equal(model.classes_, [0, 1])
    assert {10, 20} <= set(model.support_.tolist())
    full = SVC(C=100.0).fit(X, y)
    grid = np.stack(np.meshgrid(np.linspace(-3, 7, 30), np.linspace(-3, 7, 30)), -1).reshape(-1, 2)
    np.testing.assert_array_equal(model.predict(grid), full.predict(grid))
    assert model.predict(X[[10, 20]]).tolist() == [1, 1]


def test_feedback_pass_and_probabilities(moons):
    X, y, Xt, yt = moons
    model = CascadeSVC(n_shards=4, feedback=True, probability=True, random_state=0).fit(X, y)
    assert model.n_passes_ == 2 and len(model.level_sizes_) == 2
    assert abs(model.score(Xt, yt) - SVC().fit(X, y).score(Xt, yt)) <= 0.02
    proba = model.predict_proba(Xt)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.mean(proba.argmax(axis=1) == model.predict(Xt)) > 0.97
    # 10 % of each class was held out of the cascade to calibrate on
    assert model.shard_sizes_.sum() == len(y) - 40
    reference = CalibratedClassifierCV(SVC(), ensemble=False).fit(X, y).predict_proba(Xt)
    assert brier_score_loss(yt, proba[:, 1]) <= brier_score_loss(yt, reference[:, 1]) + 0.02


def test_one_class_is_a_clear_error():
    with pytest.raises(TrainingDataError, match="at least two classes"):
        CascadeSVC().fit(np.zeros((10, 2)), np.ones(10))


def test_fast_rbf_stand_in_reproduces_the_calibrated_cascade(three_blobs):
    # rastercore.predict evaluates SVC-based models through FastRBF; it relies on svc_ / calibrator_
    from rastercore.models import fast_predictor

    X, y, Xt, _ = three_blobs
    model = CascadeSVC(n_shards=3, probability=True, random_state=0).fit(X, y)
    labels, proba = fast_predictor(model).predict_with_proba(Xt)
    np.testing.assert_array_equal(labels, model.predict(Xt))
    np.testing.assert_allclose(proba, model.predict_proba(Xt), atol=1e-4)
