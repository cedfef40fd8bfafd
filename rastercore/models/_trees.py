"""Compiled tree ensembles: scikit-learn's forests and gradient-boosted trees predicted by one numba traversal.

Every tree of the ensemble is flattened into shared node arrays (feature,
threshold, children, leaf values); one kernel walks all of them for a block
of rows, tree after tree, and adds each leaf's value into the rows' sums in
the library's own order, so the sums, and the probabilities and labels made
from them, are the library's to the last bit:

* random forests and extra trees (classifier and regressor, and
  :class:`rastercore.models.ShardedForestClassifier` / ``Regressor``):
  the mean over trees of the leaf's class fractions (or value);
* histogram gradient boosting (classifier and regressor): the baseline
  plus every iteration's tree values, turned into probabilities or values
  by the model's own loss.

Thresholds are compared as scikit-learn compares them: the feature value as
float32 (forests cast their input so; gradient boosting reads float64, and
the features rastercore computes are float32, so both see the same
number) against the float64 threshold.  Rows must be finite, which is all
that prediction passes on.  Models these paths do not cover (categorical
splits, multi-output forests) predict with their own ``predict``.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["CompiledTrees", "compiled_trees"]


NODE = np.dtype([("threshold", "<f4"), ("feature", "<i4"), ("left", "<i4"), ("leaf", "<i4")])
"""One node in 16 bytes (one load per step): a leaf points to itself with an infinite threshold."""

ROW_BLOCK = 512
"""Rows walked together through one tree: their features and the tree's upper nodes stay in cache."""


@numba.njit(cache=True)
def _breadth_first(left, right, feature, threshold):
    """A tree's nodes re-laid breadth first with siblings side by side, so that ``child = left + (x > t)``.

    Returns the fields of the :data:`NODE` records by new position
    (threshold, feature, left, leaf) and the tree's depth.  A leaf points
    to itself with an infinite threshold and keeps its old id in ``leaf``
    (its value's row); an inner node has ``leaf`` -1.
    """
    n = left.shape[0]
    order = np.empty(n, np.int64)
    level = np.zeros(n, np.int64)
    thresholds = np.empty(n, np.float32)
    features = np.zeros(n, np.int32)
    lefts = np.empty(n, np.int32)
    leaves = np.full(n, -1, np.int32)
    order[0], head, tail, depth = 0, 0, 1, 0
    while head < tail:
        old = order[head]
        if left[old] < 0:
            thresholds[head], lefts[head], leaves[head] = np.inf, head, old
        else:
            order[tail], order[tail + 1] = left[old], right[old]
            level[tail] = level[tail + 1] = level[head] + 1
            depth = max(depth, level[head] + 1)
            thresholds[head], features[head], lefts[head] = _floor32(threshold[old]), feature[old], tail
            tail += 2
        head += 1
    return thresholds, features, lefts, leaves, depth


@numba.njit(cache=True)
def _floor32(value):
    """The largest float32 not above ``value``: for a float32 ``x``, ``x <= value`` exactly when ``x <= it``."""
    rounded = np.float32(value)
    if np.float64(rounded) > value:
        rounded = np.nextafter(rounded, np.float32(-np.inf))
    return rounded


@numba.njit(cache=True, nogil=True)
def _ensemble_sums(X, nodes, roots, depths, value_offsets, tree_output, leaf_values, init, block):
    """``init`` plus, for every tree in order, the value of the leaf each row of ``X`` (float32) reaches.

    Rows go through a tree ``block`` at a time and level by level, every
    row one step per level (a leaf loops on itself), so that the walks of
    different rows overlap in the processor instead of waiting on each
    other.  ``tree_output[t]`` is the output column tree ``t`` adds to, or
    -1 for a tree whose leaves hold a value for every output.
    """
    n_rows, n_out = X.shape[0], init.shape[0]
    sums = np.empty((n_rows, n_out))
    for i in range(n_rows):
        sums[i] = init
    at = np.empty(block, np.int64)
    for start in range(0, n_rows, block):
        m = min(block, n_rows - start)
        for t in range(roots.shape[0]):
            root = roots[t]
            for r in range(m):
                at[r] = root
            for _ in range(depths[t]):
                for r in range(m):
                    node = nodes[at[r]]
                    at[r] = node["left"] + (X[start + r, node["feature"]] > node["threshold"])
            out, offset = tree_output[t], value_offsets[t]
            for r in range(m):
                row = offset + nodes[at[r]]["leaf"]
                if out >= 0:
                    sums[start + r, out] += leaf_values[row, 0]
                else:
                    for k in range(n_out):
                        sums[start + r, k] += leaf_values[row, k]
    return sums


class CompiledTrees:
    """A fitted tree ensemble laid out for :func:`_ensemble_sums`: the fast-predict stand-in of the model.

    Attributes
    ----------
    has_proba : bool
        Whether :meth:`predict_with_proba` is available (classifiers).
    n_trees, n_nodes : int
        Size of the ensemble.
    """

    def __init__(self, model, trees: list[tuple], *, outputs: list[int], n_out: int, init: np.ndarray,
                 finish, decide=None):
        self.model, self._finish, self._decide = model, finish, decide
        laid = [_breadth_first(np.asarray(left, np.int64), np.asarray(right, np.int64),
                               np.asarray(feature, np.int64), np.asarray(threshold, np.float64))
                for feature, threshold, left, right, _ in trees]
        sizes = np.array([len(fields[0]) for fields in laid])
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.nodes = np.empty(int(sizes.sum()), dtype=NODE)
        for (threshold, feature, left, leaf, _), start, size in zip(laid, offsets, sizes):
            block = self.nodes[start:start + size]
            block["threshold"], block["feature"], block["left"], block["leaf"] = threshold, feature, left + start, leaf
        self.roots = offsets
        self.depths = np.array([fields[4] for fields in laid], dtype=np.int64)
        values = [np.asarray(t[4], dtype=np.float64) for t in trees]
        self.value_offsets = np.concatenate([[0], np.cumsum([len(v) for v in values])[:-1]]).astype(np.int64)
        self.leaf_values = np.ascontiguousarray(np.concatenate(values))
        self.tree_output = np.asarray(outputs, dtype=np.int64)
        self.init = np.asarray(init, dtype=np.float64).reshape(n_out)
        self.has_proba = hasattr(model, "classes_")
        self.n_trees, self.n_nodes = len(trees), int(sizes.sum())

    def sums(self, X: np.ndarray) -> np.ndarray:
        """The ensemble's raw sums ``(n, n_outputs)`` for the (finite, float32) rows of ``X``."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        return _ensemble_sums(X, self.nodes, self.roots, self.depths, self.value_offsets, self.tree_output,
                              self.leaf_values, self.init, ROW_BLOCK)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._finish(self.sums(X))

    def predict_with_proba(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sums = self.sums(X)
        proba = self._finish(sums)
        return self.model.classes_.take(self._decide(sums, proba), axis=0), proba

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.has_proba:
            return self.predict_with_proba(X)[0]
        return self._finish(self.sums(X))


def compiled_trees(model) -> CompiledTrees | None:
    """A :class:`CompiledTrees` stand-in for a fitted scikit-learn tree ensemble, or None for other models."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.ensemble._forest import BaseForest

    if isinstance(model, (HistGradientBoostingClassifier, HistGradientBoostingRegressor)):
        return _boosted(model)
    members = getattr(model, "estimators_", None)
    if isinstance(model, BaseForest) or (members is not None and hasattr(model, "n_shards")):
        return _forest(model, list(members))
    return None


def _forest(model, members: list) -> CompiledTrees | None:
    """Mean of the trees' leaf class fractions (classifier) or values (regressor)."""
    if not members or getattr(model, "n_outputs_", 1) != 1:
        return None
    classify = hasattr(model, "classes_")
    trees = []
    for member in members:
        tree = member.tree_
        values = tree.value[:, 0, :]  # a classifier's leaves hold class fractions: its predict_proba as they are
        if classify and values.shape[1] != len(model.classes_):
            return None
        trees.append((tree.feature, tree.threshold, tree.children_left, tree.children_right, values))
    n_out = trees[0][4].shape[1]
    n = len(trees)
    return CompiledTrees(model, trees, outputs=[-1] * n, n_out=n_out, init=np.zeros(n_out),
                         finish=(lambda s: s / n) if classify else (lambda s: s[:, 0] / n),
                         decide=lambda sums, proba: np.argmax(proba, axis=1))  # as the forest's predict


def _boosted(model) -> CompiledTrees | None:
    """The baseline plus every iteration's trees, turned into probabilities or values by the model's loss."""
    if getattr(model, "_preprocessor", None) is not None:
        return None  # categorical features are encoded first: not this path
    trees, outputs = [], []
    for iteration in model._predictors:
        for k, predictor in enumerate(iteration):
            nodes = predictor.nodes
            if nodes["is_categorical"].any():
                return None
            leaf = nodes["is_leaf"].astype(bool)
            trees.append((nodes["feature_idx"], nodes["num_threshold"], np.where(leaf, -1, nodes["left"].astype(np.int64)),
                          np.where(leaf, -1, nodes["right"].astype(np.int64)), nodes["value"].reshape(-1, 1)))
            outputs.append(k)
    baseline = np.asarray(model._baseline_prediction, dtype=np.float64).ravel()
    if not trees:
        return None
    if hasattr(model, "classes_"):
        return CompiledTrees(model, trees, outputs=outputs, n_out=len(baseline), init=baseline,
                             finish=model._loss.predict_proba, decide=_boosted_classes)
    return CompiledTrees(model, trees, outputs=outputs, n_out=len(baseline), init=baseline,
                         finish=lambda raw: model._loss.link.inverse(raw.ravel()))


def _boosted_classes(raw: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Class indices as HistGradientBoostingClassifier.predict takes them: from the raw sums, not the rounded
    probabilities (``raw > 0`` for two classes)."""
    return (raw.ravel() > 0).astype(int) if raw.shape[1] == 1 else np.argmax(raw, axis=1)
