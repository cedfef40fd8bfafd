"""Compiled tree ensembles give scikit-learn's own probabilities, values and labels, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import (ExtraTreesClassifier, ExtraTreesRegressor, HistGradientBoostingClassifier,
                              HistGradientBoostingRegressor, RandomForestClassifier, RandomForestRegressor)

from rastercore.models import (CompiledTrees, ShardedForestClassifier, ShardedForestRegressor, compiled_trees,
                               fast_predictor)


@pytest.fixture(params=["partition", "walk"])
def kernel(request, monkeypatch):
    """Each kernel in turn for the ensembles built in the test: the AVX-512 walk where the processor has it."""
    from rastercore.models import _avx512, _trees

    if request.param == "walk":
        if not _avx512.has_avx512():
            pytest.skip("the walk needs AVX-512; this processor has none, and predicts with the partition kernel")
        monkeypatch.setattr(_trees, "WALK_MIN_NODES", 0)
        monkeypatch.setattr(_trees, "WALK_BLOCK_ROWS", 256)  # several blocks, the last one partial
    else:
        monkeypatch.setattr(_trees, "WALK_MIN_NODES", 1 << 62)
    return request.param


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
def test_classifiers_are_the_librarys_to_the_bit(make, n_classes, kernel):
    X, y, _, X_new = _data(n_classes)
    model = make().fit(X, y + 3)  # labels that are not their indices
    fast = fast_predictor(model)
    assert isinstance(fast, CompiledTrees) and fast.has_proba and fast.kernel == kernel
    labels, proba = fast.predict_with_proba(X_new)
    np.testing.assert_array_equal(proba, model.predict_proba(X_new))
    np.testing.assert_array_equal(labels, model.predict(X_new))


@pytest.mark.parametrize("make", REGRESSORS)
def test_regressors_are_the_librarys_to_the_bit(make, kernel):
    X, _, score, X_new = _data(2)
    model = make().fit(X, score)
    fast = fast_predictor(model)
    assert isinstance(fast, CompiledTrees) and not fast.has_proba and fast.kernel == kernel
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
def test_lightgbm_and_xgboost_classifiers_are_the_librarys_to_the_bit(library, n_classes, kernel):
    """Same float64 (LightGBM) or float32 (XGBoost) sums in the same order, the same libm exp: equal bits."""
    X, y, _, X_new = _data(n_classes)
    offset = 3 if library == "lightgbm" else 0  # XGBoost takes classes 0..K-1 only
    model = BOOSTED_CLASSIFIERS[library]().fit(X, y + offset)
    fast = fast_predictor(model)
    assert isinstance(fast, CompiledTrees) and fast.has_proba and fast.n_trees == 40 * (1 if n_classes == 2 else 4)
    assert fast.kernel == kernel
    labels, proba = fast.predict_with_proba(X_new)
    expected = model.predict_proba(X_new)
    assert proba.dtype == expected.dtype
    np.testing.assert_array_equal(proba, expected)
    np.testing.assert_array_equal(labels, model.predict(X_new))
    assert len(np.unique(labels)) == n_classes


@pytest.mark.parametrize("library", sorted(BOOSTED_REGRESSORS))
def test_lightgbm_and_xgboost_regressors_are_the_librarys_to_the_bit(library, kernel):
    X, _, score, X_new = _data(2)
    model = BOOSTED_REGRESSORS[library]().fit(X, score)
    fast = fast_predictor(model)
    assert isinstance(fast, CompiledTrees) and not fast.has_proba and fast.kernel == kernel
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


def _random_tree(rng, n_features, depth, X):
    """Node arrays (feature, threshold, left, right, values) of a random tree ``depth`` levels deep along its
    leftmost path and lopsided elsewhere, its thresholds on the rows' own values or between them (float64, as
    scikit-learn stores them)."""
    feature, threshold, left, right = [], [], [], []

    def grow(level, spine=True):
        here = len(feature)
        feature.append(0), threshold.append(np.inf), left.append(-1), right.append(-1)
        if level < depth and (spine or rng.random() < 0.55):
            f = int(rng.integers(n_features))
            a, b = X[rng.integers(len(X), size=2), f].astype(np.float64)
            feature[here], threshold[here] = f, a if rng.random() < 0.5 else (a + b) / 2
            left[here] = grow(level + 1, spine)
            right[here] = grow(level + 1, False)
        return here

    grow(0)
    values = rng.normal(size=(len(feature), 3))
    return (np.array(feature), np.array(threshold), np.array(left), np.array(right), values)


def _walk_reference(tree, x):
    """The leaf row ``x`` reaches, one comparison at a time, in float64 (``x <= threshold`` goes left)."""
    feature, threshold, left, right, _ = tree
    node = 0
    while left[node] >= 0:
        node = left[node] if np.float64(x[feature[node]]) <= threshold[node] else right[node]
    return node


def test_trees_of_every_shape_over_several_blocks_match_a_walk_row_by_row(monkeypatch, kernel):
    """A tree that is one leaf, shallow trees and deep lopsided ones, over row blocks with a partial last one:
    every row's sums are those of walking each tree node by node, tree after tree."""
    from rastercore.models import _trees

    monkeypatch.setattr(_trees, "MAX_BLOCK_ROWS", 64)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(64 * 5 + 7, 5)).astype(np.float32)
    X[::4, 2] = X[::8, 2].repeat(2)[: len(X[::4])]  # repeated values: rows on a threshold
    trees = [_random_tree(rng, 5, depth, X) for depth in (0, 1, 3, 8, 25, 25)]
    assert len(trees[0][0]) == 1 and max(len(t[0]) for t in trees) > 60  # a lone leaf, and deep trees
    outputs = [-1, 0, 2, -1, 1, -1]
    fast = CompiledTrees(None, trees, outputs=outputs, n_out=3, init=np.array([0.5, -1.0, 2.0]),
                         finish=lambda s: s)
    assert fast.kernel == kernel
    expected = np.tile([0.5, -1.0, 2.0], (len(X), 1))
    for tree, out in zip(trees, outputs):
        values = tree[4][[_walk_reference(tree, x) for x in X]]
        if out >= 0:
            expected[:, out] += values[:, 0]
        else:
            expected += values
    assert _trees.block_rows(X.shape[1]) == 64
    np.testing.assert_array_equal(fast.sums(X), expected)
    assert fast.sums(X[:0]).shape == (0, 3)


def test_packed_nodes_give_back_each_feature_and_left_child_or_refuse_when_a_tree_is_too_large():
    from rastercore.models._avx512 import pack_nodes

    rng = np.random.default_rng(0)
    roots = np.array([0, 5, 3005])
    lefts = np.concatenate([rng.integers(0, 5, 5), 5 + rng.integers(0, 3000, 3000), 3005 + rng.integers(0, 9, 9)])
    features = rng.integers(0, 72, len(lefts)).astype(np.uint32)
    features[7] = 71
    words, bits = pack_nodes(features, lefts.astype(np.uint32), roots)
    assert bits == 7 and words.dtype == np.uint32
    np.testing.assert_array_equal(words & ((1 << bits) - 1), features)
    np.testing.assert_array_equal((words >> bits) + np.repeat(roots, [5, 3000, 9]), lefts)
    features[7] = (1 << 21) - 1  # 21 bits of feature leave 11 for a place: the 3000-node tree does not fit
    assert pack_nodes(features, lefts.astype(np.uint32), roots) is None


def test_rows_too_wide_for_the_walks_32_bit_indices_are_partitioned(monkeypatch):
    """Checked on any processor: the walk is stood in for by a spy, as if the processor had AVX-512."""
    from rastercore.models import _trees

    monkeypatch.setattr(_trees, "WALK_MIN_NODES", 0)
    X, y, _, X_new = _data(3)
    fast = compiled_trees(RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y))
    assert fast.kernel == "walk"
    monkeypatch.setattr(_trees, "WALK_BLOCK_ROWS", (1 << 31) // X.shape[1] + 1)  # a block's last index: 2**31 or more

    def overflow(*args):
        raise AssertionError("walked with 32-bit indices that overflow")

    monkeypatch.setattr(_trees, "has_avx512", lambda: True)
    monkeypatch.setattr(_trees, "walk_sums", overflow)
    np.testing.assert_array_equal(fast.predict_proba(X_new), fast.model.predict_proba(X_new))


def test_forests_are_walked_where_the_processor_has_avx512_and_boosting_is_partitioned(monkeypatch):
    """The kernel is chosen by the trees' size; the processor is asked where the sums are computed (an ensemble
    built on an AVX-512 machine may predict on one without)."""
    from rastercore.models import _trees

    X, y, _, X_new = _data(2, n=3000)
    forest = compiled_trees(RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y))
    boosting = compiled_trees(HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(X, y))
    assert forest.n_nodes > _trees.WALK_MIN_NODES * forest.n_trees
    assert boosting.n_nodes <= _trees.WALK_MIN_NODES * boosting.n_trees
    assert forest.kernel == "walk" and boosting.kernel == "partition"

    def no_avx512(*args):
        raise AssertionError("walked on a processor without AVX-512")

    monkeypatch.setattr(_trees, "has_avx512", lambda: False)
    monkeypatch.setattr(_trees, "walk_sums", no_avx512)
    np.testing.assert_array_equal(forest.predict_proba(X_new), forest.model.predict_proba(X_new))
