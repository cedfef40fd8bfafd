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


# -- LightGBM and XGBoost (the `boost` extra): skipped where they are not installed --------------------------

def _lightgbm():
    return pytest.importorskip("lightgbm")


def _xgboost():
    return pytest.importorskip("xgboost")


BOOSTED_CLASSIFIERS = {
    "lightgbm": lambda: _lightgbm().LGBMClassifier(n_estimators=40, num_leaves=15, verbose=-1, random_state=0),
    "xgboost": lambda: _xgboost().XGBClassifier(n_estimators=40, max_depth=4, tree_method="hist", random_state=0),
}
BOOSTED_REGRESSORS = {
    "lightgbm": lambda: _lightgbm().LGBMRegressor(n_estimators=40, num_leaves=15, verbose=-1, random_state=0),
    "xgboost": lambda: _xgboost().XGBRegressor(n_estimators=40, max_depth=4, tree_method="hist", random_state=0),
}


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("library", sorted(BOOSTED_CLASSIFIERS))
def test_lightgbm_and_xgboost_classifiers_are_the_librarys_to_the_bit(library, n_classes):
    """Same float64 (LightGBM) or float32 (XGBoost) sums in the same order, the same libm exp: equal bits."""
    X, y, _, X_new = _data(n_classes)
    offset = 3 if library == "lightgbm" else 0  # XGBoost takes classes 0..K-1 only
    model = BOOSTED_CLASSIFIERS[library]().fit(X, y + offset)
    fast = fast_predictor(model)
    assert isinstance(fast, CompiledTrees) and fast.has_proba and fast.n_trees == 40 * (1 if n_classes == 2 else 4)
    labels, proba = fast.predict_with_proba(X_new)
    expected = model.predict_proba(X_new)
    assert proba.dtype == expected.dtype
    np.testing.assert_array_equal(proba, expected)
    np.testing.assert_array_equal(labels, model.predict(X_new))
    assert len(np.unique(labels)) == n_classes


@pytest.mark.parametrize("library", sorted(BOOSTED_REGRESSORS))
def test_lightgbm_and_xgboost_regressors_are_the_librarys_to_the_bit(library):
    X, _, score, X_new = _data(2)
    model = BOOSTED_REGRESSORS[library]().fit(X, score)
    fast = fast_predictor(model)
    assert isinstance(fast, CompiledTrees) and not fast.has_proba
    np.testing.assert_array_equal(fast.predict(X_new), model.predict(X_new))


@pytest.mark.filterwarnings("ignore:The argument 'eval_set' is deprecated")  # LightGBM >= 4.7; 4.3 has no eval_X
@pytest.mark.parametrize("library", sorted(BOOSTED_CLASSIFIERS))
def test_lightgbm_and_xgboost_after_early_stopping_use_the_best_iteration(library):
    X, y, _, X_new = _data(3, n=1200)
    fit_on, stop_on = slice(0, 800), slice(800, None)
    if library == "lightgbm":  # LightGBM keeps the trees up to the best iteration only
        lgb = _lightgbm()
        model = lgb.LGBMClassifier(n_estimators=300, learning_rate=0.3, verbose=-1, random_state=0)
        model.fit(X[fit_on], y[fit_on], eval_set=[(X[stop_on], y[stop_on])],
                  callbacks=[lgb.early_stopping(3, verbose=False)])
        best = model.best_iteration_
    else:  # XGBoost keeps the trees grown after it, and its predict leaves them out
        model = _xgboost().XGBClassifier(n_estimators=300, learning_rate=0.3, early_stopping_rounds=3,
                                         tree_method="hist", random_state=0)
        model.fit(X[fit_on], y[fit_on], eval_set=[(X[stop_on], y[stop_on])], verbose=False)
        best = model.best_iteration + 1
        assert best < model.get_booster().num_boosted_rounds()
    assert best < 300
    fast = compiled_trees(model)
    assert fast.n_trees == 3 * best
    labels, proba = fast.predict_with_proba(X_new)
    np.testing.assert_array_equal(proba, model.predict_proba(X_new))
    np.testing.assert_array_equal(labels, model.predict(X_new))


def test_lightgbm_and_xgboost_models_it_does_not_cover_keep_their_own_predict():
    lgb, xgb = _lightgbm(), _xgboost()
    X, y, score, _ = _data(3)
    binary = (score > 0).astype(int)
    X_cat = X.copy()
    X_cat[:, 6] = np.abs(np.round(X_cat[:, 6]))
    zeros = X.copy()
    zeros[::3, 0] = 0
    uncovered = [
        lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X_cat, y, categorical_feature=[6]),
        lgb.LGBMRegressor(n_estimators=5, verbose=-1, linear_tree=True).fit(X, score),
        lgb.LGBMClassifier(n_estimators=5, verbose=-1, zero_as_missing=True).fit(zeros, binary),
        lgb.LGBMClassifier(n_estimators=5, verbose=-1, objective="multiclassova").fit(X, y),
        lgb.LGBMRegressor(n_estimators=5, verbose=-1, objective="l1").fit(X, score),
        xgb.XGBClassifier(n_estimators=5, tree_method="hist", enable_categorical=True, max_cat_to_onehot=1,
                          feature_types=["q"] * 6 + ["c"]).fit(X_cat, y),
        xgb.XGBClassifier(n_estimators=5, missing=0.0).fit(X, binary),  # zeros would take the default branch
        xgb.XGBClassifier(n_estimators=5, booster="dart").fit(X, binary),
        xgb.XGBClassifier(n_estimators=5, objective="multi:softmax").fit(X, y),
        xgb.XGBRegressor(n_estimators=5, objective="reg:absoluteerror").fit(X, score),
    ]
    for model in uncovered:
        assert compiled_trees(model) is None, model


def test_shallow_and_deep_trees_take_both_walks_and_agree():
    """Trees within one ROUND of levels walk without a drop-out, deeper ones in several rounds, over
    several row blocks and a partial last one: both are exact."""
    from rastercore.models._trees import ROUND

    X, y, _, X_new = _data(3, n=3000)
    model = RandomForestClassifier(n_estimators=12, random_state=0).fit(X, y)
    model.estimators_[:6] = RandomForestClassifier(n_estimators=6, max_depth=ROUND - 1, random_state=1).fit(X, y).estimators_
    fast = compiled_trees(model)
    X_new = np.concatenate([X_new] * (3 * fast.row_block // len(X_new) + 1))[:-7]
    assert fast.depths.min() < ROUND and fast.depths.max() > 2 * ROUND
    assert len(X_new) > 2 * fast.row_block and len(X_new) % fast.row_block
    np.testing.assert_array_equal(fast.predict_proba(X_new), model.predict_proba(X_new))
