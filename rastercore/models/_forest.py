"""ShardedForest: random forests grown on shards in parallel, merged into one forest."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._common import parallel_map, require_two_classes, seeds, shard_indices

__all__ = ["ShardedForestClassifier", "ShardedForestRegressor"]


def _grow_classifier(X, y, classes, params):
    """A RandomForestClassifier on one shard that knows every class of the training set.

    A class the shard lacks is added as one zero-weight row (a copy of the
    shard's first row): zero-weight rows never reach a split or a leaf value,
    but the forest's ``classes_`` -- and every tree's output columns -- are
    then the full, sorted class list, the same in every shard.
    """
    missing = np.setdiff1d(classes, y)
    weight = None
    if missing.size:
        X = np.concatenate([X, np.repeat(X[:1], missing.size, axis=0)])
        y = np.concatenate([y, missing.astype(y.dtype)])
        weight = np.concatenate([np.ones(len(y) - missing.size), np.zeros(missing.size)])
    return RandomForestClassifier(**params).fit(X, y, sample_weight=weight)


def _grow_regressor(X, y, params):
    return RandomForestRegressor(**params).fit(X, y)


def _merge(forests: list, n_jobs):
    """One forest holding every tree of ``forests`` (the first forest, extended)."""
    merged = forests[0]
    merged.estimators_ = [tree for forest in forests for tree in forest.estimators_]
    merged.n_estimators = len(merged.estimators_)
    merged.n_jobs = n_jobs
    return merged


class _ShardedForestBase(BaseEstimator):
    def _forest_params(self, seed: int) -> dict:
        params = dict(n_estimators=self.n_estimators_per_shard, criterion=self.criterion,
                      max_depth=self.max_depth, min_samples_split=self.min_samples_split,
                      min_samples_leaf=self.min_samples_leaf, max_features=self.max_features,
                      max_leaf_nodes=self.max_leaf_nodes, bootstrap=self.bootstrap,
                      n_jobs=1, random_state=seed)
        if hasattr(self, "class_weight"):
            params["class_weight"] = self.class_weight
        return params

    def _check_shard_params(self):
        for name in ("n_shards", "n_estimators_per_shard"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")

    @property
    def estimators_(self):
        """Every tree of the merged forest."""
        check_is_fitted(self)
        return self.forest_.estimators_

    @property
    def feature_importances_(self):
        """Impurity-based feature importances of the merged forest."""
        check_is_fitted(self)
        return self.forest_.feature_importances_

    def predict(self, X):
        """Predictions of the merged forest for the rows of ``X``."""
        check_is_fitted(self)
        return self.forest_.predict(validate_data(self, X, reset=False, dtype=np.float32))


_PARAMS_DOC = """
    n_shards : int, default 4
        Shards of the training set (stratified by class for the classifier).
    n_estimators_per_shard : int, default 25
        Trees grown on each shard.
    criterion, max_depth, min_samples_split, min_samples_leaf, max_features, max_leaf_nodes, bootstrap
        As in scikit-learn's random forests.
    n_jobs : int, optional
        Threads for the shards when no dask client is active, and for prediction.
    random_state : int, RandomState or None
        Seeds the shards and every shard's forest."""


class ShardedForestClassifier(ClassifierMixin, _ShardedForestBase):
    __doc__ = f"""Random forest grown shard by shard in parallel and merged into one forest.

    The training set is split into ``n_shards`` stratified, seeded shards; a
    :class:`~sklearn.ensemble.RandomForestClassifier` of
    ``n_estimators_per_shard`` trees is grown on each, in parallel (on the
    active ``distributed.Client`` when there is one, else on ``n_jobs``
    threads), and all trees are merged into one ordinary
    ``RandomForestClassifier`` (``forest_``) that predicts by averaging every
    tree's class probabilities.

    Every shard is fitted with the full class list: a class missing from a
    shard (a rare class with fewer rows than shards) is added there as one
    zero-weight row, which never influences a tree but makes every tree
    output one probability column per class of the whole training set, in
    the same order.  Trees from such a shard give that class probability 0.

    Parameters
    ----------{_PARAMS_DOC}
    class_weight : dict, "balanced", "balanced_subsample" or None
        As in :class:`~sklearn.ensemble.RandomForestClassifier` (per shard).

    Attributes
    ----------
    forest_ : sklearn.ensemble.RandomForestClassifier
        The merged forest (``n_estimators`` = shards x trees per shard).
    classes_ : ndarray
        Class labels.
    n_classes_ : int
        Number of classes.
    shard_sizes_ : ndarray
        Rows in each shard.
    n_features_in_ : int
        Number of features seen in fit.
    """

    def __init__(self, *, n_shards=4, n_estimators_per_shard=25, criterion="gini", max_depth=None,
                 min_samples_split=2, min_samples_leaf=1, max_features="sqrt", max_leaf_nodes=None,
                 bootstrap=True, class_weight=None, n_jobs=None, random_state=None):
        self.n_shards = n_shards
        self.n_estimators_per_shard = n_estimators_per_shard
        self.criterion = criterion
        self.max_depth = max_depth
        self.min_samples_split = min_samples_split
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.max_leaf_nodes = max_leaf_nodes
        self.bootstrap = bootstrap
        self.class_weight = class_weight
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X, y):
        """Grow a forest on every shard in parallel and merge them.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        self._check_shard_params()
        classes = require_two_classes(y, who="ShardedForestClassifier")
        rng = check_random_state(self.random_state)
        shards = shard_indices(len(y), self.n_shards, rng=np.random.RandomState(seeds(rng, 1)[0]), y=y)
        shard_seeds = seeds(rng, len(shards))
        forests = parallel_map(_grow_classifier,
                               [(X[s], y[s], classes, self._forest_params(seed))
                                for s, seed in zip(shards, shard_seeds)], n_jobs=self.n_jobs)
        self.forest_ = _merge(forests, self.n_jobs)
        self.classes_ = self.forest_.classes_
        self.n_classes_ = len(self.classes_)
        self.shard_sizes_ = np.array([len(s) for s in shards])
        return self

    def predict_proba(self, X):
        """Mean class probabilities of all trees; columns follow ``classes_``."""
        check_is_fitted(self)
        return self.forest_.predict_proba(validate_data(self, X, reset=False, dtype=np.float32))

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))


class ShardedForestRegressor(RegressorMixin, _ShardedForestBase):
    __doc__ = f"""Random forest regressor grown shard by shard in parallel and merged into one forest.

    As :class:`ShardedForestClassifier`, with random (unstratified) shards
    and :class:`~sklearn.ensemble.RandomForestRegressor` forests; the merged
    forest averages every tree's prediction.

    Parameters
    ----------{_PARAMS_DOC}

    Attributes
    ----------
    forest_ : sklearn.ensemble.RandomForestRegressor
        The merged forest.
    shard_sizes_ : ndarray
        Rows in each shard.
    n_features_in_ : int
        Number of features seen in fit.
    """

    def __init__(self, *, n_shards=4, n_estimators_per_shard=25, criterion="squared_error",
                 max_depth=None, min_samples_split=2, min_samples_leaf=1, max_features=1.0,
                 max_leaf_nodes=None, bootstrap=True, n_jobs=None, random_state=None):
        self.n_shards = n_shards
        self.n_estimators_per_shard = n_estimators_per_shard
        self.criterion = criterion
        self.max_depth = max_depth
        self.min_samples_split = min_samples_split
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.max_leaf_nodes = max_leaf_nodes
        self.bootstrap = bootstrap
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X, y):
        """Grow a forest on every shard in parallel and merge them.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        X, y = validate_data(self, X, y, dtype=np.float32, y_numeric=True)
        self._check_shard_params()
        rng = check_random_state(self.random_state)
        shards = shard_indices(len(y), self.n_shards, rng=np.random.RandomState(seeds(rng, 1)[0]))
        shard_seeds = seeds(rng, len(shards))
        forests = parallel_map(_grow_regressor,
                               [(X[s], y[s], self._forest_params(seed))
                                for s, seed in zip(shards, shard_seeds)], n_jobs=self.n_jobs)
        self.forest_ = _merge(forests, self.n_jobs)
        self.shard_sizes_ = np.array([len(s) for s in shards])
        return self
