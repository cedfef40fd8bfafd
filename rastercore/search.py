"""Spatially cross-validated hyper-parameter search for the model families.

Neighbouring pixels are alike, so folds of random pixels score a model on
near-copies of its training rows and reward over-fitting.  The folds here
are made of the sample's spatial blocks (the table's ``block`` column): all
rows of a block land in the same fold, and, with ``gap``, training rows whose
feature window (``gap`` pixels around them) reaches a block of the held-out
fold are left out of that fold's training rows, as the sample's own
train / validation split does.

:func:`search` runs scikit-learn's :class:`~sklearn.model_selection.GridSearchCV`
(or :class:`~sklearn.model_selection.RandomizedSearchCV` with ``n_iter``) over
those folds, on the dask cluster through joblib's dask backend when a
``distributed.Client`` is active, and returns the best parameters and a
report of every candidate's mean, spread and per-fold scores.
:data:`DEFAULT_GRIDS` holds a small grid per family.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import numbers

import numpy as np

from rastercore.errors import ParameterError, TrainingDataError
from rastercore.scheduler import active_client

__all__ = ["DEFAULT_GRIDS", "DEFAULT_FOLDS", "spatial_folds", "search", "search_grid", "check_grid"]

#: Folds of the search unless told otherwise.
DEFAULT_FOLDS = 3

#: Small default grids per family (``"default"``).  For ``svm`` the ``gamma`` values are
#: multiples of the sample's ``"scale"`` value 1 / (n_features * X.var()) (see :func:`search_grid`).
DEFAULT_GRIDS = {
    "svm": {"C": [1.0, 10.0, 100.0], "gamma": [0.1, 1.0, 10.0]},
    "forest": {"max_features": ["sqrt", 0.5], "min_samples_leaf": [1, 5]},
    "extra-trees": {"max_features": ["sqrt", 0.5], "min_samples_leaf": [1, 5]},
    "hgb": {"learning_rate": [0.05, 0.2], "max_leaf_nodes": [15, 31]},
    "logistic": {"C": [0.01, 0.1, 1.0, 10.0, 100.0]},
    "sgd": {"alpha": [1e-5, 1e-4, 1e-3]},
    "lightgbm": {"learning_rate": [0.05, 0.2], "num_leaves": [15, 63]},
    "xgboost": {"learning_rate": [0.05, 0.3], "max_depth": [4, 8]},
}


def check_grid(family: str, grid, *, name: str = "search (--search)") -> dict | str:
    """``grid`` if it is ``"default"`` or a mapping of parameter names to non-empty lists; else a ParameterError.

    Parameter names are not checked here (see
    :func:`rastercore.pipeline.check_train_params`), only the shape of the grid
    and that ``family`` can be searched.
    """
    if family not in DEFAULT_GRIDS:
        raise ParameterError(f"{name}: the {family} model cannot be searched; use one of "
                             f"{', '.join(DEFAULT_GRIDS)}, or drop {name.split()[0]}.")
    if isinstance(grid, str):
        if grid != "default":
            raise ParameterError(f"{name} must be 'default' or a JSON object of lists such as "
                                 f"'{{\"C\": [1, 10]}}', not {grid!r}.")
        return grid
    if not isinstance(grid, dict) or not grid:
        raise ParameterError(f"{name} must be 'default' or a non-empty JSON object of lists such as "
                             f"'{{\"C\": [1, 10]}}', not {grid!r}.")
    for key, values in grid.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ParameterError(f"{name}: {key!r} needs a non-empty list of values, e.g. "
                                 f"'{{\"{key}\": [1, 10]}}', not {values!r}.")
    return grid


def search_grid(family: str, grid, X) -> dict:
    """The concrete grid of a search: ``grid``, or the family's default grid resolved for ``X``.

    ``"default"`` (or None) gives :data:`DEFAULT_GRIDS` ``[family]``; for
    ``svm`` its ``gamma`` factors are multiplied by the ``"scale"`` value of ``X``.
    """
    if grid is None or isinstance(grid, str):
        check_grid(family, "default" if grid is None else grid)
        grid = {key: list(values) for key, values in DEFAULT_GRIDS[family].items()}
        if family == "svm":
            X = np.asarray(X, dtype=np.float64)
            variance = float(X.var())
            scale = 1.0 / (X.shape[1] * variance) if variance > 0 else 1.0
            grid["gamma"] = [float(f * scale) for f in grid["gamma"]]
        return grid
    check_grid(family, grid)
    return {key: list(values) for key, values in grid.items()}


def spatial_folds(blocks, y=None, n_splits: int = DEFAULT_FOLDS, *, rows=None, cols=None, gap: int = 0,
                  block_size: int | None = None, shape=None, stratify: bool | None = None,
                  name: str = "the search") -> list[tuple[np.ndarray, np.ndarray]]:
    """Cross-validation folds made of whole spatial blocks, with an optional gap.

    Parameters
    ----------
    blocks : array-like of int, shape (n,)
        Block index of every row (:attr:`rastercore.sampling.SampleTable.block`).
    y : array-like, shape (n,), optional
        Targets; integer class codes make the folds stratified
        (:class:`~sklearn.model_selection.StratifiedGroupKFold`), other
        targets give :class:`~sklearn.model_selection.GroupKFold`.
    n_splits : int, default 3
        Number of folds; needs at least as many distinct blocks.
    rows, cols : array-like of int, shape (n,), optional
        Pixel position of every row; needed with ``gap``.
    gap : int, default 0
        Training rows whose ``(2 gap + 1)²`` window reaches a block of the
        held-out fold are left out of that fold's training rows (the
        sample's ``gap``, by default the feature halo).
    block_size : int, optional
        Side of the blocks (the table's ``attrs["block_size"]``); needed with ``gap``.
    shape : (int, int), optional
        ``(height, width)`` of the scene (``attrs["shape"]``); needed with ``gap``.
    stratify : bool, optional
        Force stratified folds or not; default: stratified for integer ``y``.
    name : str
        What the folds are for, in error messages.

    Returns
    -------
    list of (train_indices, test_indices)
        One pair per fold; every block's rows are in exactly one test set.

    Raises
    ------
    rastercore.errors.TrainingDataError
        Fewer distinct blocks than folds, or a fold left without training rows.
    """
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    blocks = np.asarray(blocks).astype(np.int64, copy=False)
    if not isinstance(n_splits, numbers.Integral) or isinstance(n_splits, bool) or n_splits < 2:
        raise ParameterError(f"folds must be an integer >= 2 for {name}, not {n_splits!r}.")
    n_blocks = len(np.unique(blocks))
    if n_blocks < n_splits:
        raise TrainingDataError(f"{name} needs at least {n_splits} spatial blocks for {n_splits} folds, but the "
                                f"training rows lie in {n_blocks}; draw the sample with a smaller --block-size "
                                f"or a larger area, or use fewer folds.")
    y_arr = None if y is None else np.asarray(y)
    if stratify is None:
        stratify = y_arr is not None and y_arr.ndim == 1 and np.issubdtype(y_arr.dtype, np.integer)
    X_dummy = np.zeros((len(blocks), 1))
    if stratify:
        splitter = StratifiedGroupKFold(n_splits=n_splits)
        import warnings

        with warnings.catch_warnings():  # "the least populated class has only k members": expected with few blocks
            warnings.filterwarnings("ignore", message=".*least populated class.*", category=UserWarning)
            folds = list(splitter.split(X_dummy, y_arr, groups=blocks))
    else:
        folds = list(GroupKFold(n_splits=n_splits).split(X_dummy, groups=blocks))
    if gap:
        if rows is None or cols is None or block_size is None or shape is None:
            raise ParameterError("spatial_folds: a gap needs rows, cols, block_size and shape.")
        near = _NearBlocks(np.asarray(rows), np.asarray(cols), int(gap), int(block_size), shape)
        folds = [(train[~near.touches(np.unique(blocks[test]))[train]], test) for train, test in folds]
    for k, (train, _) in enumerate(folds):
        if len(train) == 0:
            raise TrainingDataError(f"{name}: fold {k + 1} has no training rows left; use fewer folds or a "
                                    f"larger sample.")
    return folds


def _check_every_fold_has_every_class(y: np.ndarray, folds) -> None:
    """Refuse folds whose training rows lack a class: XGBoost's classifier learns the classes 0..K-1 only."""
    classes = np.unique(y)
    for k, (train, _) in enumerate(folds):
        missing = np.setdiff1d(classes, y[train])
        if missing.size:
            raise TrainingDataError(f"the search: fold {k + 1}'s training rows hold no pixel of class code(s) "
                                    f"{missing.tolist()}, and family 'xgboost' needs every class in every fit; "
                                    f"use fewer folds, a larger sample, or family 'lightgbm'.")


class _NearBlocks:
    """Which rows' ``(2 gap + 1)²`` windows reach given blocks (block ids as in the sample table)."""

    def __init__(self, rows, cols, gap, block_size, shape):
        height, width = int(shape[0]), int(shape[1])
        self.per_row = math.ceil(width / block_size)
        lo_r = np.maximum(rows - gap, 0) // block_size
        hi_r = np.minimum(rows + gap, height - 1) // block_size
        lo_c = np.maximum(cols - gap, 0) // block_size
        hi_c = np.minimum(cols + gap, width - 1) // block_size
        span_r = int((hi_r - lo_r).max(initial=0)) + 1
        span_c = int((hi_c - lo_c).max(initial=0)) + 1
        # every block a window overlaps, one array of block ids per (dy, dx) offset (clipped repeats are harmless)
        self.windows = [np.minimum(lo_r + dy, hi_r) * self.per_row + np.minimum(lo_c + dx, hi_c)
                        for dy, dx in itertools.product(range(span_r), range(span_c))]

    def touches(self, blocks) -> np.ndarray:
        hit = np.zeros(len(self.windows[0]) if self.windows else 0, bool)
        for ids in self.windows:
            hit |= np.isin(ids, blocks)
        return hit


def _plain(value):
    """A JSON-friendly scalar (numpy scalars to Python)."""
    return value.item() if isinstance(value, np.generic) else value


def search(family: str, X, y, blocks, grid="default", *, estimator, scoring: str | None = None,
           n_iter: int | None = None, seed: int = 0, n_splits: int = DEFAULT_FOLDS, rows=None, cols=None,
           gap: int = 0, block_size: int | None = None, shape=None) -> tuple[dict, dict]:
    """Spatially cross-validated grid (or randomised) search of one family's parameters.

    Parameters
    ----------
    family : str
        The model family (a key of :data:`DEFAULT_GRIDS`), for the default grid.
    X : array-like, shape (n, n_features)
    y : array-like, shape (n,)
        Class codes or values of the rows (training rows only: keep validation rows out).
    blocks : array-like of int, shape (n,)
        Spatial block of every row; folds are made of whole blocks (:func:`spatial_folds`).
    grid : "default" or dict of str to list
        Parameter values to try (names as in ``params`` of
        :func:`rastercore.training.build_model`), or the family's :data:`DEFAULT_GRIDS`.
    estimator : estimator
        The unfitted estimator, with its fixed parameters
        (:func:`rastercore.training.build_model`).  For a scikit-learn
        ``Pipeline`` the names address its last step.
    scoring : str, optional
        A scikit-learn scorer name; default ``"balanced_accuracy"`` for
        classifiers, ``"r2"`` for regressors.
    n_iter : int, optional
        Try this many random candidates of the grid (``RandomizedSearchCV``)
        instead of all of them.
    seed : int
        Seeds the random candidates.
    n_splits, rows, cols, gap, block_size, shape
        The folds, as in :func:`spatial_folds`.

    Returns
    -------
    best_params : dict
        The parameters of the candidate with the best mean score.
    report : dict
        JSON-friendly: ``folds``, ``blocks``, ``gap``, ``scoring``,
        ``strategy`` (``"grid"`` or ``"random"``), ``candidates`` (each
        ``params``, ``mean``, ``std``, ``scores`` per fold, ``rank``) and ``best``
        (``params``, ``mean``, ``std``).
    """
    from sklearn.base import is_classifier
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
    from sklearn.pipeline import Pipeline

    X = np.asarray(X)
    y = np.asarray(y)
    grid = search_grid(family, grid, X)
    folds = spatial_folds(blocks, y, n_splits, rows=rows, cols=cols, gap=gap, block_size=block_size, shape=shape,
                          stratify=is_classifier(estimator) and np.issubdtype(y.dtype, np.integer))
    if family == "xgboost" and is_classifier(estimator):
        _check_every_fold_has_every_class(y, folds)
    scoring = scoring or ("balanced_accuracy" if is_classifier(estimator) else "r2")
    prefix = f"{estimator.steps[-1][0]}__" if isinstance(estimator, Pipeline) else ""
    sk_grid = {(key if "__" in key else prefix + key): values for key, values in grid.items()}
    n_candidates = math.prod(len(v) for v in grid.values())
    if n_iter is not None and (not isinstance(n_iter, numbers.Integral) or n_iter < 1):
        raise ParameterError(f"n_iter (--n-iter) must be a positive integer, not {n_iter!r}.")
    common = dict(scoring=scoring, cv=folds, refit=False, error_score="raise")
    if n_iter is not None and n_iter < n_candidates:
        searcher = RandomizedSearchCV(estimator, sk_grid, n_iter=int(n_iter), random_state=seed, **common)
        strategy = "random"
    else:
        searcher = GridSearchCV(estimator, sk_grid, **common)
        strategy = "grid"
    if active_client() is not None:
        import joblib

        searcher.set_params(n_jobs=-1)
        backend = joblib.parallel_config(backend="dask")
    else:
        backend = contextlib.nullcontext()
    with backend:
        searcher.fit(X, y)
    results = searcher.cv_results_
    names = {sk: key for key, sk in zip(grid, sk_grid)}
    candidates = []
    for i, params in enumerate(results["params"]):
        scores = [float(results[f"split{k}_test_score"][i]) for k in range(len(folds))]
        candidates.append({"params": {names.get(k, k): _plain(v) for k, v in params.items()},
                           "mean": float(results["mean_test_score"][i]), "std": float(results["std_test_score"][i]),
                           "scores": scores, "rank": int(results["rank_test_score"][i])})
    best = candidates[int(searcher.best_index_)]
    report = {"folds": len(folds), "blocks": int(len(np.unique(np.asarray(blocks)))), "gap": int(gap),
              "scoring": scoring, "strategy": strategy, "candidates": candidates,
              "best": {"params": dict(best["params"]), "mean": best["mean"], "std": best["std"]}}
    return dict(best["params"]), report
