"""Compiled tree ensembles give scikit-learn's own probabilities, values and labels, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import (ExtraTreesClassifier, ExtraTreesRegressor, HistGradientBoostingClassifier,
                              HistGradientBoostingRegressor, RandomForestClassifier, RandomForestRegressor)

from rastercore.models import (CompiledTrees, ShardedForestClassifier, ShardedForestRegressor, compiled_trees,
                               fast_predictor)


def _data(n_classes: int, seed: int = 0, n: int = 600, d: int = 7):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    score = X[:, 0] + 0.5 * X[:, 1] * X[:, 2] + rng.normal(0, 0.5, n)
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1]))
    X_new = rng.normal(size=(2000, d)).astype(np.float32)
    X_new[:50] = X[:50]  # rows on the training values: thresholds lie between them, comparisons must agree
    return X, y, score, X_new


CLASSIFIERS = [
    lambda: RandomForestClassifier(n_estimators=20, random_state=0),
    lambda: ExtraTreesClassifier(n_estimators=15, max_depth=8, random_state=0),
    lambda: HistGradientBoostingClassifier(max_iter=30, random_state=0),
    lambda: ShardedForestClassifier(n_shards=3, n_estimators_per_shard=5, random_state=0),
]
REGRESSORS = [
    lambda: RandomForestRegressor(n_estimators=20, random_state=0),
    lambda: ExtraTreesRegressor(n_estimators=10, random_state=0),
    lambda: HistGradientBoostingRegressor(max_iter=30, random_state=0),
    lambda: ShardedForestRegressor(n_shards=2, n_estimators_per_shard=6, random_state=0),
]


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("make", CLASSIFIERS)
def test_classifiers_are_the_librarys_to_the_bit(make, n_classes):
    X, y, _, X_new = _data(n_classes)
    model = make().fit(X, y + 3)  # labels that are not their indices
    fast = fast_predictor(model)
    assert isinstance(fast, CompiledTrees) and fast.has_proba
    labels, proba = fast.predict_with_proba(X_new)
    np.testing.assert_array_equal(proba, model.predict_proba(X_new))
    np.testing.assert_array_equal(labels, model.predict(X_new))


@pytest.mark.parametrize("make", REGRESSORS)
def test_regressors_are_the_librarys_to_the_bit(make):
    X, _, score, X_new = _data(2)
    model = make().fit(X, score)
    fast = fast_predictor(model)
    assert isinstance(fast, CompiledTrees) and not fast.has_proba
    np.testing.assert_array_equal(fast.predict(X_new), model.predict(X_new))


def test_models_it_does_not_cover_keep_their_own_predict():
    X, y, score, _ = _data(3)
    categorical = HistGradientBoostingClassifier(max_iter=3, categorical_features=[6])
    X_cat = X.copy()
    X_cat[:, 6] = np.abs(np.round(X_cat[:, 6]))
    assert compiled_trees(categorical.fit(X_cat, y)) is None
    two_outputs = RandomForestRegressor(n_estimators=3, random_state=0).fit(X, np.column_stack([score, score]))
    assert compiled_trees(two_outputs) is None


def test_prediction_uses_the_compiled_path_and_matches_the_whole_image():
    from rastercore.datasets import SYNTHETIC_THRESHOLD, synthetic_scene
    from rastercore.features import compute_features
    from rastercore.predict import predict_lazy
    from rastercore.sampling import TRAIN, draw_sample

    spec = [{"name": "box_mean", "size": 5}, {"name": "gaussian", "sigma": 1.0}]
    ds = synthetic_scene((80, 90), seed=2, chunks=32)
    sar = np.log(ds["sar"])
    table = draw_sample(sar, ds["target"], spec, n=300, thresholds=SYNTHETIC_THRESHOLD, seed=0)
    X, y = table.subset(TRAIN)
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, y)
    mosaic = predict_lazy(model, sar, spec, class_names=table.class_names).values
    feats = compute_features(sar, spec).values
    rows = feats.reshape(feats.shape[0], -1).T
    np.testing.assert_array_equal(mosaic[0].ravel(), np.searchsorted(model.classes_, model.predict(rows)))
    np.testing.assert_allclose(mosaic[1:].reshape(2, -1).T, model.predict_proba(rows), rtol=1e-6)
