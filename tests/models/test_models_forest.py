import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from rastercore.models import ShardedForestClassifier, ShardedForestRegressor


def test_merged_forest_is_a_plain_forest_as_good_as_one_grown_on_everything(three_blobs):
    X, y, Xt, yt = three_blobs
    model = ShardedForestClassifier(n_shards=4, n_estimators_per_shard=10, random_state=0).fit(X, y)
    reference = RandomForestClassifier(n_estimators=40, random_state=0).fit(X, y)
    assert isinstance(model.forest_, RandomForestClassifier)
    assert model.forest_.n_estimators == len(model.estimators_) == 40
    np.testing.assert_array_equal(model.classes_, reference.classes_)
    assert abs(model.score(Xt, yt) - reference.score(Xt, yt)) <= 0.04
    assert model.shard_sizes_.sum() == len(y)
    # the merged forest averages its trees, exactly as scikit-learn's forest does
    mean_of_trees = np.mean([tree.predict_proba(Xt.astype(np.float32)) for tree in model.estimators_], axis=0)
    np.testing.assert_allclose(model.predict_proba(Xt), mean_of_trees)
    assert model.feature_importances_.shape == (4,)


@pytest.mark.parametrize("labels", [np.array([0, 1, 2]), np.array(["clear", "ice", "water"])])
def test_a_class_missing_from_some_shards_keeps_its_column(labels):
    rng = np.random.default_rng(0)
    code = np.repeat([0, 1, 2], [150, 148, 2])  # class 2: two rows, so at most two of five shards hold it
    X = rng.normal(size=(300, 3)) + 3.0 * code[:, None]
    y = labels[code]
    model = ShardedForestClassifier(n_shards=5, n_estimators_per_shard=4, random_state=0).fit(X, y)
    np.testing.assert_array_equal(model.classes_, labels)
    proba = model.predict_proba(X)
    assert proba.shape == (300, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    per_tree = np.stack([tree.predict_proba(X.astype(np.float32)) for tree in model.estimators_])
    assert per_tree.shape == (20, 300, 3)
    # trees of the shards without class 2 never predict it; the others do on its rows
    never = np.all(per_tree[:, :, 2] == 0, axis=1)
    assert never.sum() >= 12 and (~never).sum() >= 4
    assert np.all(proba[code == 2, 2] > 0)
    assert set(model.predict(X[code == 0])) == {labels[0]}


def test_seeded_reproducible_and_independent_of_threads(three_blobs):
    X, y, Xt, _ = three_blobs
    a = ShardedForestClassifier(n_shards=3, n_estimators_per_shard=5, random_state=2).fit(X, y)
    b = ShardedForestClassifier(n_shards=3, n_estimators_per_shard=5, random_state=2, n_jobs=2).fit(X, y)
    c = ShardedForestClassifier(n_shards=3, n_estimators_per_shard=5, random_state=3).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(Xt), b.predict_proba(Xt))
    assert not np.array_equal(a.predict_proba(Xt), c.predict_proba(Xt))


def test_regressor_close_to_a_plain_forest():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(1200, 3))
    y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2 + rng.normal(scale=0.1, size=1200)
    X, y, Xt, yt = X[:600], y[:600], X[600:], y[600:]
    model = ShardedForestRegressor(n_shards=3, n_estimators_per_shard=10, random_state=0).fit(X, y)
    reference = RandomForestRegressor(n_estimators=30, random_state=0).fit(X, y)
    assert isinstance(model.forest_, RandomForestRegressor) and model.forest_.n_estimators == 30
    assert model.score(Xt, yt) >= reference.score(Xt, yt) - 0.05
    assert model.score(Xt, yt) >= 0.85
