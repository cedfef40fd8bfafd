"""CascadeSVC: the cascade SVM of Graf et al. (2004), shards fitted in parallel."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.svm import SVC
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from rastercore.errors import TrainingDataError

from ._common import parallel_map, require_two_classes, resolve_gamma, seeds, shard_indices
from ._fast_rbf import rbf_svc_predictor

__all__ = ["CascadeSVC"]


def _fit_rows(X_rows: np.ndarray, y_rows: np.ndarray, rows: np.ndarray, params: dict):
    """Fit an SVC on one set of training rows; return (its support-vector rows, the model).

    ``X_rows``/``y_rows`` are the data of ``rows`` (what is shipped to a
    worker).  A set holding a single class cannot be fitted: all its rows are
    carried forward, with no model.
    """
    if np.unique(y_rows).size < 2:
        return rows, None
    svc = SVC(**params).fit(X_rows, y_rows)
    return rows[svc.support_], svc


def _calibration_split(y: np.ndarray, fraction: float, *, rng: np.random.RandomState):
    """(training rows, calibration rows): a seeded, stratified ``fraction`` (>= 2 rows) of each class held out."""
    calibration = []
    for k in np.unique(y):
        rows = np.flatnonzero(y == k)
        if len(rows) < 3:
            raise TrainingDataError(
                f"CascadeSVC: probability=True holds out 2 rows of every class to calibrate on, "
                f"but class {k.item() if isinstance(k, np.generic) else k!r} has only {len(rows)} "
                f"-- sample a larger area or set probability=False."
            )
        n = min(len(rows) - 1, max(2, int(round(fraction * len(rows)))))
        calibration.append(rng.choice(rows, size=n, replace=False))
    calibration = np.sort(np.concatenate(calibration))
    return np.setdiff1d(np.arange(len(y)), calibration), calibration


def _has_probability(est) -> bool:
    return bool(est.probability)


class CascadeSVC(ClassifierMixin, BaseEstimator):
    """Cascade support vector classifier (Graf et al., 2004).

    The training set is split into ``n_shards`` stratified, seeded shards and
    an SVC is fitted on each in parallel (on the active ``distributed.Client``
    when there is one, else on ``n_jobs`` threads).  Only each shard's support
    vectors go on: sets are merged in pairs, level by level, an SVC is fitted
    on the union of each pair and its support vectors kept, until one set
    remains; the final SVC is fitted on it.  With ``feedback=True`` that
    final support set is added to every first-level shard and the cascade runs
    once more (Graf et al.'s feedback pass).

    A shard, or a merged pair, holding a single class cannot be fitted: its
    rows are carried forward whole.  ``gamma`` is resolved once on the whole
    training set, so every SVC of the cascade uses the same kernel.

    Parameters
    ----------
    C : float, default 1.0
        Regularisation of every SVC.
    gamma : {"scale", "auto"} or float, default "scale"
        RBF kernel width; ``"scale"`` is 1 / (n_features * X.var()) of the full training set.
    n_shards : int, default 4
        First-level shards (rounded down to the number of rows).
    feedback : bool, default False
        Run one feedback pass.
    probability : bool, default False
        Make :meth:`predict_proba` available: a seeded, stratified
        ``calibration_fraction`` of the rows (at least 2 per class) is held
        out of the cascade, and a sigmoid of the final SVC's decision values
        is fitted on them (``CalibratedClassifierCV(FrozenEstimator(svc_))``,
        Platt scaling).  Held-out rows are needed because the final SVC's
        own training rows are its support vectors, all at the margin.  :meth:`predict` follows the SVC's
        decision, so it can disagree with the argmax of the probabilities
        near the boundary.
    calibration_fraction : float, default 0.1
        Share of each class held out for the calibration (``probability=True``).
    class_weight : dict or "balanced", optional
        Passed to every SVC.
    tol : float, default 1e-3
        libsvm stopping tolerance.
    cache_size : float, default 200
        libsvm kernel cache per SVC, in MiB.
    n_jobs : int, optional
        Threads for the shards when no dask client is active.
    random_state : int, RandomState or None
        Seeds the shards and the calibration rows.

    Attributes
    ----------
    svc_ : sklearn.svm.SVC
        The final SVC.
    calibrator_ : sklearn.calibration.CalibratedClassifierCV or None
        The sigmoid calibration of ``svc_`` on the held-out rows (``probability=True``), else None.
    classes_ : ndarray
        Class labels.
    gamma_ : float
        The kernel width every SVC used.
    support_ : ndarray
        Training-set rows of the final support vectors, in the order of
        ``svc_.support_vectors_``.
    shard_sizes_ : ndarray
        Rows in each first-level shard (they sum to the training-set size,
        less the calibration rows with ``probability=True``).
    level_sizes_ : list of ndarray
        Per pass, the number of support-vector rows left after each level.
    n_passes_ : int
        Cascade passes run (2 with feedback, else 1).
    n_features_in_ : int
        Number of features seen in fit.
    """

    def __init__(self, *, C=1.0, gamma="scale", n_shards=4, feedback=False, probability=False,
                 calibration_fraction=0.1, class_weight=None, tol=1e-3, cache_size=200, n_jobs=None,
                 random_state=None):
        self.C = C
        self.gamma = gamma
        self.n_shards = n_shards
        self.feedback = feedback
        self.probability = probability
        self.calibration_fraction = calibration_fraction
        self.class_weight = class_weight
        self.tol = tol
        self.cache_size = cache_size
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X, y):
        """Run the cascade and fit the final SVC.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels; at least two classes.

        Returns
        -------
        self
        """
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        if not isinstance(self.n_shards, numbers.Integral) or self.n_shards < 1:
            raise ValueError(f"n_shards must be a positive integer, got {self.n_shards!r}.")
        if self.probability and not 0 < self.calibration_fraction < 1:
            raise ValueError(f"calibration_fraction must be between 0 and 1, got {self.calibration_fraction!r}.")
        self.classes_ = require_two_classes(y, who="CascadeSVC")
        rng = check_random_state(self.random_state)
        shard_seed, calibration_seed = seeds(rng, 2)
        train, calibration = np.arange(len(y)), None
        if self.probability:
            train, calibration = _calibration_split(y, self.calibration_fraction,
                                                    rng=np.random.RandomState(calibration_seed))
        self.gamma_ = resolve_gamma(self.gamma, X[train])
        params = dict(kernel="rbf", C=self.C, gamma=self.gamma_, class_weight=self.class_weight,
                      tol=self.tol, cache_size=self.cache_size)
        shards = [train[s] for s in shard_indices(len(train), self.n_shards, y=y[train],
                                                  rng=np.random.RandomState(shard_seed))]
        self.shard_sizes_ = np.array([len(s) for s in shards])

        (support, model), levels = self._cascade(X, y, shards, params)
        self.level_sizes_ = [levels]
        if self.feedback:
            fed = [np.union1d(shard, support) for shard in shards]
            (support, model), levels = self._cascade(X, y, fed, params)
            self.level_sizes_.append(levels)
        self.n_passes_ = len(self.level_sizes_)
        if model is None:  # cannot happen with two classes, kept as a guard
            rows = np.sort(support)
            model = SVC(**params).fit(X[rows], y[rows])
            support = rows[model.support_]
        self.svc_, self.support_ = model, support
        self.calibrator_ = None
        if self.probability:
            # the SVC is frozen: the two "folds" only split the held-out rows for prediction
            self.calibrator_ = CalibratedClassifierCV(FrozenEstimator(model), method="sigmoid", cv=2)
            self.calibrator_.fit(X[calibration], y[calibration])
        return self

    def _cascade(self, X, y, sets, params):
        """One pass: fit the first level in parallel, merge pairs until one set is left.

        Returns ((support rows, model or None), support rows left after each level).
        """
        results = parallel_map(_fit_rows, [(X[s], y[s], s, params) for s in sets],
                               n_jobs=self.n_jobs)
        levels = [sum(len(r[0]) for r in results)]
        while len(results) > 1:
            pairs = [(results[i], results[i + 1]) for i in range(0, len(results) - 1, 2)]
            carried = [results[-1]] if len(results) % 2 else []
            unions = [np.union1d(a[0], b[0]) for a, b in pairs]
            merged = parallel_map(_fit_rows, [(X[u], y[u], u, params) for u in unions],
                                  n_jobs=self.n_jobs)
            results = merged + carried
            levels.append(sum(len(r[0]) for r in results))
        return results[0], np.array(levels)

    @property
    def support_vectors_(self):
        """Support vectors of the final SVC."""
        check_is_fitted(self)
        return self.svc_.support_vectors_

    def fast_predictor(self):
        """The compiled stand-in for :meth:`predict` / :meth:`predict_proba` (:class:`rastercore.models.FastRBF`)."""
        check_is_fitted(self)
        return rbf_svc_predictor(self.svc_, self.calibrator_)

    def decision_function(self, X):
        """Signed distance to the separating surface of the final SVC."""
        check_is_fitted(self)
        return self.svc_.decision_function(validate_data(self, X, reset=False))

    def predict(self, X):
        """Class labels for the rows of ``X``."""
        check_is_fitted(self)
        return self.svc_.predict(validate_data(self, X, reset=False))

    @available_if(_has_probability)
    def predict_proba(self, X):
        """Class probabilities (sigmoid-calibrated decision values); needs ``probability=True``."""
        check_is_fitted(self)
        return self.calibrator_.predict_proba(validate_data(self, X, reset=False))

    @available_if(_has_probability)
    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`; needs ``probability=True``."""
        return np.log(self.predict_proba(X))
