"""Compiled tree ensembles: scikit-learn's forests and gradient-boosted trees predicted by compiled numba kernels.

Every tree of the ensemble is flattened into shared node arrays (feature,
threshold, children, leaf values), breadth first; a kernel sends a block of
rows through all of them, tree after tree, and adds each leaf's value into
the sums of the rows that reach it in the library's own order, so the sums,
and the probabilities and labels made from them, are the library's to the
last bit.  :func:`_ensemble_sums` sorts the rows through a tree (each node
partitions its rows between its children); where the processor has
AVX-512, the trees of forests are walked 16 rows a step instead
(:mod:`rastercore.models._avx512`, chosen by :class:`CompiledTrees`).
Covered:

* random forests and extra trees (classifier and regressor, and
  :class:`rastercore.models.ShardedForestClassifier` / ``Regressor``):
  the mean over trees of the leaf's class fractions (or value);
* histogram gradient boosting (classifier and regressor): the baseline
  plus every iteration's tree values, turned into probabilities or values
  by the model's own loss;
* LightGBM's ``LGBMClassifier`` / ``LGBMRegressor`` (from
  ``booster_.dump_model()``): every tree's leaf values summed in float64
  (the boosting's starting score is folded into the first trees), then the
  sigmoid (binary), the softmax (multiclass) or nothing (objective
  ``regression``), as LightGBM computes them;
* XGBoost's ``XGBClassifier`` / ``XGBRegressor`` (from the booster's JSON
  model): the base margin plus every tree's leaf value summed in float32,
  as XGBoost sums them, then its sigmoid (``binary:logistic``), softmax
  (``multi:softprob``) or nothing (``reg:squarederror``).

Thresholds are compared as the library compares them: the feature value as
float32 (forests cast their input so; gradient boosting and LightGBM read
float64, and the features rastercore computes are float32, so all see the
same number) against the threshold, ``x <= t`` going left (XGBoost's
``x < t`` is ``x <= `` the float32 just below ``t``).  The exponentials of
the link functions are the C library's (through numba), as in LightGBM and
XGBoost, so their probabilities are matched to the last bit too.  Rows must
be finite, which is all that prediction passes on.  Models these paths do
not cover (categorical splits, multi-output forests, LightGBM's linear trees
or zero-as-missing splits, DART and other objectives) predict with their
own ``predict``.
"""

from __future__ import annotations

import json
import math

import numba
import numpy as np

from ._avx512 import has_avx512, pack_nodes, walk_sums

__all__ = ["CompiledTrees", "compiled_trees"]


BLOCK_BYTES = 8 << 20
"""Features of the rows predicted together, at most: they are copied feature-major once per block, and every
tree of the ensemble then sorts the block's rows."""

MAX_BLOCK_ROWS = 16384
"""Rows predicted together, at most.  The more rows go through a tree at once, the less each of its nodes
costs per row.  Measured on 72 features (bench/bench_trees.py, AMD EPYC host, kernel alone): forests 1.2-1.7x
faster with 16384 rows than with 4096, and 32768 within the run-to-run noise of 16384; boosting within 6 % from
4096 to 32768 rows."""


WALK_MIN_NODES = 100
"""Trees of more nodes than this on average go through the AVX-512 walk where the processor has it; smaller ones
(gradient boosting's, 61 nodes at most by default) are partitioned.  Measured on an Intel Xeon host (kernels
alone, one core, 2026-12-03): on bench_trees.py's 72 noisy features (bench/bench_tree_kernels.py), forests of
2,000-14,000 nodes a tree 1.9-2.2x faster walked, boosting (61 nodes a tree) as fast or 1.25x faster; on a raster
scene's 6 features (the middle 448 x 448 pixels of bench_families.py's 2048 x 2048 scene), forests of 110 and
410 nodes a tree 1.05x and 1.1x faster walked, boosting (59-61 nodes a tree) 1.3-1.4x slower."""

WALK_BLOCK_ROWS = 2048
"""Rows walked together through a tree: their features stay in the L2 cache (72 features: 576 KiB).  With 4096
rows the forests took up to 1.2x as long, with 8192 (and 8 vectors) up to 1.3x (Intel Xeon host, 2 MiB of L2 a
core; measured before the nodes were packed)."""


@numba.njit(cache=True)
def _breadth_first(left, right, feature, threshold):
    """A tree's nodes re-laid breadth first with siblings side by side (the right child follows the left).

    Returns, by new position, the threshold, feature, left child and leaf
    arrays, and the tree's depth.  A leaf keeps its old id in ``leaf`` (its
    value's row) and is its own left child with an infinite threshold, so
    that a walk stepping ``left + (x > threshold)`` stays on it; an inner
    node has ``leaf`` -1.  The nodes of one depth are consecutive, in the
    order of their parents.
    """
    n = left.shape[0]
    order = np.empty(n, np.int64)
    level = np.zeros(n, np.int64)
    thresholds = np.full(n, np.inf, np.float32)
    features = np.zeros(n, np.uint32)
    lefts = np.zeros(n, np.int64)
    leaves = np.full(n, -1, np.int32)
    order[0], head, tail, depth = 0, 0, 1, 0
    while head < tail:
        old = order[head]
        if left[old] < 0:
            leaves[head], lefts[head] = old, head
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


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _ensemble_sums(X, thresholds, features, lefts, leaves, roots, value_offsets, tree_output, leaf_values, init,
                   block):
    """``init`` plus, for every tree in order, the value of the leaf each row of ``X`` (float32) reaches.

    Rows go through the ensemble ``block`` at a time, their features
    copied feature-major.  A tree sorts the block's rows instead of walking
    them one by one: depth after depth, the rows at each node are
    partitioned by its split into its two children's lists, so that a
    node's feature, threshold and children are read once per block rather
    than once per row, the comparisons run down one feature's column, and
    no row waits on the load of its next node.  A leaf of one value adds it
    to the sums of the rows it holds; a leaf of a value per output notes
    its value's row for them, and after the tree every row of the block
    adds its leaf's values to its sums.  ``tree_output[t]`` is the
    output column tree ``t`` adds to, or -1 for a tree whose leaves hold a
    value for every output.
    """
    n_rows, n_features, n_out = X.shape[0], X.shape[1], init.shape[0]
    sums = np.empty((n_rows, n_out), init.dtype)  # summed in the library's precision: float64, or float32 (XGBoost)
    for i in range(n_rows):
        sums[i] = init
    block = max(1, min(block, n_rows))
    columns = np.empty(n_features * block, np.float32)
    rows, spare = np.empty(block, np.uint32), np.empty(block, np.uint32)  # a depth's rows, by node; the next's
    leaf_of = np.empty(block, np.uint32)  # the value row of the leaf each row of the block reaches in a tree
    largest = lefts.shape[0] - roots[-1] if roots.shape[0] else 0
    for t in range(1, roots.shape[0]):
        largest = max(largest, roots[t] - roots[t - 1])
    at_node = np.empty(largest, np.uint64)  # rows each node of the tree holds, by its place in the tree
    one = np.uint64(1)
    for start in range(0, n_rows, block):
        m = min(block, n_rows - start)
        for r in range(m):
            for j in range(n_features):
                columns[j * m + r] = X[start + r, j]
        for t in range(roots.shape[0]):  # written out in one function: as inlined helpers, up to 16 % slower
            for r in range(m):
                rows[r] = r
            root, output = roots[t], tree_output[t]
            at_node[0] = np.uint64(m)
            begin, end = root, root + 1  # the nodes of one depth
            while begin < end:
                taken, given, n_inner = np.uint64(0), np.uint64(0), 0  # unsigned: no negative-index checks
                for node in range(begin, end):
                    n = at_node[node - root]
                    if leaves[node] >= 0:  # its rows end here
                        value = value_offsets[t] + leaves[node]
                        if output >= 0:  # one value: added at once
                            v = leaf_values[value, 0]
                            for k in range(taken, taken + n):
                                sums[start + rows[k], output] += v
                        else:  # a value per output: the leaf's value row noted for each row, added below
                            for k in range(taken, taken + n):
                                leaf_of[rows[k]] = np.uint32(value)
                    else:
                        child, n_left = lefts[node], np.uint64(0)
                        if n > 0:
                            column, threshold = np.uint64(features[node]) * np.uint64(m), thresholds[node]
                            front, back = given, given + n - one
                            # Left-going rows from the front, the others from the back, without a branch: a row
                            # is written at both ends, and only the end it belongs to moves past it.
                            for k in range(taken, taken + n):
                                r = rows[k]
                                right = np.uint64(columns[column + np.uint64(r)] > threshold)
                                spare[front] = r
                                spare[back] = r
                                front += one - right
                                back -= right
                            n_left = front - given
                        at_node[child - root], at_node[child + 1 - root] = n_left, n - n_left
                        given += n
                        n_inner += 1
                    taken += n
                rows, spare = spare, rows
                begin, end = end, end + 2 * n_inner
            # A forest's leaves hold a value per output: they are added in one pass down the block, with sequential
            # sums, instead of at each leaf into its scattered rows' (0-16 % faster on bench_trees' forests; for
            # boosting's one value per leaf, 6-12 % slower on a raster scene's features, so it is added at the leaf).
            if output < 0:
                for r in range(m):
                    value = leaf_of[r]
                    for j in range(n_out):
                        sums[start + r, j] += leaf_values[value, j]
    return sums


class CompiledTrees:
    """A fitted tree ensemble laid out for :func:`_ensemble_sums`: the fast-predict stand-in of the model.

    Parameters
    ----------
    model : fitted estimator
        The ensemble (its ``classes_`` label the decisions).
    trees : list of (feature, threshold, left, right, values)
        Per tree, node arrays: a split sends ``x <= threshold`` to ``left``;
        leaves have ``left`` -1 and their row of ``values`` ``(n_nodes, 1 or n_out)``.
    outputs : list of int
        The output column each tree adds to, or -1 for a value per output.
    n_out : int
        Number of raw sums per row.
    init : array-like
        The sums' starting values ``(n_out,)``.
    finish : callable
        Raw sums to probabilities (classifiers) or values (regressors).
    decide : callable, optional
        ``(sums, proba) -> class indices`` (classifiers).
    dtype : numpy dtype, default float64
        Precision of the leaf values and the sums: the library's own.

    Attributes
    ----------
    has_proba : bool
        Whether :meth:`predict_with_proba` is available (classifiers).
    n_trees, n_nodes : int
        Size of the ensemble.
    kernel : {"partition", "walk"}
        How rows go through the trees: :func:`_ensemble_sums` (rows
        partitioned at every node), or, for trees of more than
        :data:`WALK_MIN_NODES` nodes on average whose nodes fit
        :func:`rastercore.models._avx512.pack_nodes`' words, "walk":
        :func:`rastercore.models._avx512.walk_sums` (16 rows a step in
        lockstep) on a processor with AVX-512, partitioned on any other.
        Both give the same sums.
    """

    def __init__(self, model, trees: list[tuple], *, outputs: list[int], n_out: int, init: np.ndarray,
                 finish, decide=None, dtype=np.float64):
        self.model, self._finish, self._decide = model, finish, decide
        laid = [_breadth_first(np.asarray(left, np.int64), np.asarray(right, np.int64),
                               np.asarray(feature, np.int64), np.asarray(threshold, np.float64))
                for feature, threshold, left, right, _ in trees]
        sizes = np.array([len(fields[0]) for fields in laid])
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.thresholds, self.features, self.leaves = (np.concatenate([fields[k] for fields in laid]) for k in (0, 1, 3))
        self.lefts = np.concatenate([fields[2] + start for fields, start in zip(laid, offsets)]).astype(np.uint32)
        self.roots = offsets
        self.depths = np.array([fields[4] for fields in laid], dtype=np.int64)
        values = [np.asarray(t[4], dtype=dtype) for t in trees]
        self.value_offsets = np.concatenate([[0], np.cumsum([len(v) for v in values])[:-1]]).astype(np.int64)
        self.leaf_values = np.ascontiguousarray(np.concatenate(values))
        self.tree_output = np.asarray(outputs, dtype=np.int64)
        self.init = np.asarray(init, dtype=dtype).reshape(n_out)
        self.has_proba = hasattr(model, "classes_")
        self.n_trees, self.n_nodes = len(trees), int(sizes.sum())
        deep = self.n_nodes > WALK_MIN_NODES * self.n_trees
        self.walk_nodes = pack_nodes(self.features, self.lefts, self.roots) if deep else None
        self.kernel = "partition" if self.walk_nodes is None else "walk"

    def sums(self, X: np.ndarray) -> np.ndarray:
        """The ensemble's raw sums ``(n, n_outputs)`` for the (finite, float32) rows of ``X``."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        # Asked where the sums are computed: the ensemble may have been built on another machine (a dask client).
        walk = self.kernel == "walk" and has_avx512()
        if walk and X.shape[1] * WALK_BLOCK_ROWS < 1 << 31:  # a row's feature is a 32-bit index into the block
            return walk_sums(X, self.thresholds, *self.walk_nodes, self.leaves, self.roots, self.depths,
                             self.value_offsets, self.tree_output, self.leaf_values, self.init, WALK_BLOCK_ROWS)
        return _ensemble_sums(X, self.thresholds, self.features, self.lefts, self.leaves, self.roots,
                              self.value_offsets, self.tree_output, self.leaf_values, self.init, block_rows(X.shape[1]))

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


def block_rows(n_features: int) -> int:
    """Rows predicted together: :data:`MAX_BLOCK_ROWS`, fewer when their features would exceed :data:`BLOCK_BYTES`."""
    return int(max(1, min(MAX_BLOCK_ROWS, BLOCK_BYTES // (4 * max(n_features, 1)))))


def compiled_trees(model) -> CompiledTrees | None:
    """A :class:`CompiledTrees` stand-in for a fitted tree ensemble, or None for other models.

    Covers scikit-learn's forests, extra trees and histogram gradient
    boosting, rastercore's sharded forests, and LightGBM's and XGBoost's
    scikit-learn estimators (see the module's notes for what each path
    leaves to the library's own ``predict``).  LightGBM and XGBoost are
    imported only for their own models.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.ensemble._forest import BaseForest

    library = type(model).__module__.split(".")[0]
    if library == "lightgbm":
        return _lightgbm(model)
    if library == "xgboost":
        return _xgboost(model)
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


@numba.njit(cache=True)
def _libm_exp_flat(x):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = math.exp(x[i])  # the C library's exp (expf for float32)
    return out


@numba.njit(cache=True)
def _libm_log(x):
    return math.log(x)  # the C library's log (logf for a float32)


def _exp(x: np.ndarray) -> np.ndarray:
    """``exp`` of every element by the C library, in ``x``'s precision, as LightGBM and XGBoost compute it.

    NumPy's own vectorised ``exp`` may differ from it in the last bit.
    """
    x = np.ascontiguousarray(x)
    return _libm_exp_flat(x.reshape(-1)).reshape(x.shape)


def _softmax(raw: np.ndarray) -> np.ndarray:
    """Row-wise softmax as LightGBM and XGBoost compute it, in ``raw``'s precision.

    Shifted by the row's maximum; the exponentials are summed in class
    order in float64 (XGBoost too sums its float32 ones in a double), and
    the sum is rounded to ``raw``'s precision before dividing.
    """
    e = _exp(raw - raw.max(axis=1, keepdims=True))
    total = e[:, 0].astype(np.float64)
    for k in range(1, e.shape[1]):
        total += e[:, k]
    return e / total.astype(e.dtype)[:, None]


def _argmax(sums: np.ndarray, proba: np.ndarray) -> np.ndarray:
    return np.argmax(proba, axis=1)


def _first_column(raw: np.ndarray) -> np.ndarray:
    return raw[:, 0]


def _lightgbm(model) -> CompiledTrees | None:
    """LightGBM's ``LGBMClassifier`` / ``LGBMRegressor``, from ``booster_.dump_model()``.

    The dump holds the iterations ``predict`` uses (up to the best one after
    early stopping); the trees of one iteration add to one output each.
    """
    from lightgbm import LGBMClassifier, LGBMRegressor

    if not isinstance(model, (LGBMClassifier, LGBMRegressor)):
        return None
    dump = model.booster_.dump_model()
    link = _lightgbm_link(dump["objective"], isinstance(model, LGBMClassifier))
    trees = [_lightgbm_tree(info["tree_structure"]) for info in dump["tree_info"]]
    if link is None or dump.get("average_output") or not trees or any(tree is None for tree in trees):
        return None
    n_out = int(dump["num_tree_per_iteration"])
    finish, decide = link
    return CompiledTrees(model, trees, outputs=[t % n_out for t in range(len(trees))], n_out=n_out,
                         init=np.zeros(n_out), finish=finish, decide=decide)


def _lightgbm_link(objective: str, classify: bool):
    """``(finish, decide)`` of a LightGBM objective (``"binary sigmoid:1"``, ``"multiclass num_class:3"``,
    ``"regression"``), or None for one this path does not cover."""
    name, *options = objective.split()
    if classify and name == "binary":
        scale = float(dict(option.split(":", 1) for option in options).get("sigmoid", 1.0))
        return (lambda raw: _lightgbm_sigmoid(raw, scale)), _argmax
    if classify and name == "multiclass":
        return _softmax, _argmax
    if not classify and objective == "regression":
        return _first_column, None
    return None


def _lightgbm_sigmoid(raw: np.ndarray, scale: float) -> np.ndarray:
    """LightGBM's binary probabilities ``(1 - p, p)`` with ``p = 1 / (1 + exp(-sigmoid * raw))``."""
    p = 1.0 / (1.0 + _exp(-scale * raw[:, 0]))
    return np.column_stack([1.0 - p, p])


def _lightgbm_tree(root: dict) -> tuple | None:
    """The node arrays of one tree of LightGBM's JSON dump (``x <= threshold`` goes left), or None.

    None for a categorical split (``decision_type`` ``"=="``), a split
    sending zeros the default way (``missing_type`` ``"Zero"``) or a linear
    tree (leaves with coefficients).
    """
    nodes, left, right = [], [], []  # nodes: (feature, threshold, value)
    pending = [(root, None)]
    while pending:
        node, link = pending.pop()
        here = len(nodes)
        if link is not None:
            side, parent = link
            side[parent] = here
        left.append(-1)
        right.append(-1)
        if "leaf_value" in node:
            if "leaf_coeff" in node:
                return None
            nodes.append((0, np.inf, node["leaf_value"]))
        elif node["decision_type"] != "<=" or node["missing_type"] == "Zero":
            return None
        else:
            nodes.append((node["split_feature"], node["threshold"], 0.0))
            pending += [(node["right_child"], (right, here)), (node["left_child"], (left, here))]
    feature, threshold, value = zip(*nodes)
    return (np.asarray(feature, np.int64), np.asarray(threshold, np.float64), np.asarray(left, np.int64),
            np.asarray(right, np.int64), np.asarray(value, np.float64).reshape(-1, 1))


_XGBOOST_LINKS = {
    ("binary:logistic", True): "sigmoid",
    ("multi:softprob", True): "softmax",
    ("reg:squarederror", False): "identity",
}
"""The objectives the XGBoost path covers, by (objective, classifier)."""


def _xgboost(model) -> CompiledTrees | None:
    """XGBoost's ``XGBClassifier`` / ``XGBRegressor``, from the booster's JSON model.

    Only gradient-boosted trees (not DART or linear boosters) with NaN as
    the missing value, numerical splits and one value per leaf; the trees
    up to the best iteration after early stopping, as ``predict`` takes them.
    """
    from xgboost import XGBClassifier, XGBRegressor

    if not isinstance(model, (XGBClassifier, XGBRegressor)) or not _missing_is_nan(model.missing):
        return None
    learner = json.loads(model.get_booster().save_raw(raw_format="json"))["learner"]
    booster, params = learner["gradient_booster"], learner["learner_model_param"]
    link = _XGBOOST_LINKS.get((learner["objective"]["name"], isinstance(model, XGBClassifier)))
    if booster["name"] != "gbtree" or link is None or int(params.get("num_target", 1)) > 1:
        return None
    forest = booster["model"]
    stop = _xgboost_trees_used(model, forest)
    trees = [_xgboost_tree(tree) for tree in forest["trees"][:stop]]
    if not trees or any(tree is None for tree in trees):
        return None
    n_out = max(int(params["num_class"]), 1)
    base = np.broadcast_to(np.asarray(json.loads(params["base_score"]), np.float32).ravel(), (n_out,))
    finish, decide = {"sigmoid": (_xgboost_sigmoid, _above_half), "softmax": (_softmax, _argmax),
                      "identity": (_first_column, None)}[link]
    if link == "sigmoid":  # base_score is a probability: its margin, as XGBoost takes it (in float32)
        one = np.float32(1)
        base = np.array([-np.float32(_libm_log(one / base[0] - one))], np.float32)
    return CompiledTrees(model, trees, outputs=forest["tree_info"][:stop], n_out=n_out, init=base, finish=finish,
                         decide=decide, dtype=np.float32)


def _missing_is_nan(missing) -> bool:
    return missing is None or (isinstance(missing, float) and math.isnan(missing))


def _xgboost_trees_used(model, forest: dict) -> int:
    """How many trees XGBoost's ``predict`` uses: all, or those up to the best iteration (early stopping)."""
    try:
        best = model.best_iteration
    except AttributeError:
        return len(forest["trees"])
    return int(forest["iteration_indptr"][best + 1])


def _xgboost_tree(tree: dict) -> tuple | None:
    """The node arrays of one tree of XGBoost's JSON model, or None (categorical splits, vector leaves).

    XGBoost sends ``x < t`` left (both float32): that is ``x <=`` the float32
    just below ``t``.  A leaf's value is its ``split_conditions`` entry.
    """
    if int(tree["tree_param"].get("size_leaf_vector", 1) or 1) > 1 or any(tree.get("split_type", ())):
        return None
    left = np.asarray(tree["left_children"], np.int64)
    condition = np.asarray(tree["split_conditions"], np.float32)
    leaf = left < 0
    threshold = np.where(leaf, np.float32(np.inf), np.nextafter(condition, np.float32(-np.inf)))
    value = np.where(leaf, condition, np.float32(0)).reshape(-1, 1)
    return (np.asarray(tree["split_indices"], np.int64), threshold.astype(np.float64), left,
            np.asarray(tree["right_children"], np.int64), value)


def _xgboost_sigmoid(raw: np.ndarray) -> np.ndarray:
    """XGBoost's binary probabilities ``(1 - p, p)``, float32: ``p = 1 / (exp(min(-raw, 88.7)) + 1)``."""
    one = np.float32(1)
    p = one / (_exp(np.minimum(-raw[:, 0], np.float32(88.7))) + one)
    return np.column_stack([one - p, p])


def _above_half(sums: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """XGBClassifier's binary decision: class 1 where its probability is above 0.5."""
    return (proba[:, 1] > 0.5).astype(np.int64)
