"""SampledSVC: an RBF support vector classifier fitted on a (class-balanced) sample."""

from __future__ import annotations

import contextlib
import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, StratifiedKFold
from sklearn.svm import SVC
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from rastercore.errors import TrainingDataError
from rastercore.scheduler import active_client

from ._budget import reduce_support_vectors
from ._common import class_sample, fit_svc, require_two_classes, resolve_gamma, seeds
from ._fast_rbf import rbf_svc_predictor

__all__ = ["SampledSVC", "DEFAULT_C_GRID", "DEFAULT_GAMMA_FACTORS"]

#: C values searched when ``search=True`` and no ``param_grid`` is given.
DEFAULT_C_GRID = (0.1, 1.0, 10.0, 100.0)
#: gamma values searched by default, as multiples of the ``"scale"`` value 1 / (n_features * X.var()).
DEFAULT_GAMMA_FACTORS = (0.1, 1.0, 10.0)


def _plain_cv_results(cv_results: dict) -> dict:
    """``GridSearchCV.cv_results_`` without masked arrays: numbers as arrays, parameters as lists."""
    out = {}
    for key, value in cv_results.items():
        if isinstance(value, np.ma.MaskedArray):
            out[key] = value.tolist()
        elif key == "params":
            out[key] = [dict(p) for p in value]
        else:
            out[key] = np.asarray(value)
    return out


def _has_probability(est) -> bool:
    return bool(est.probability)


class SampledSVC(ClassifierMixin, BaseEstimator):
    """RBF support vector classifier fitted on a class-balanced sample, with an optional grid search.

    A kernel SVM costs between O(n²) and O(n³) to train, so it is fitted on a
    random sample of at most ``n_samples`` rows (equal rows per class when
    ``balance=True``).  With ``search=True`` the sample is first used by
    scikit-learn's :class:`~sklearn.model_selection.GridSearchCV` to choose
    ``C`` and ``gamma`` by ``cv``-fold cross-validation -- spatial folds of
    whole blocks when :meth:`fit` is given the rows' ``groups`` (the sample
    table's ``block`` column; neighbouring pixels are alike, so folds of
    random pixels leak), else stratified random folds; when a
    ``distributed.Client`` is active the search runs on the cluster through
    joblib's dask backend.  The final :class:`~sklearn.svm.SVC` is refitted on
    the whole sample with the best parameters.

    Parameters
    ----------
    C : float, default 1.0
        Regularisation of the RBF SVC, used when ``search=False`` (and as the fallback grid
        value when ``param_grid`` names no ``C``).
    gamma : {"scale", "auto"} or float, default "scale"
        RBF kernel width, as in :class:`~sklearn.svm.SVC`, used when
        ``search=False`` (and when ``param_grid`` names no ``gamma``).
    n_samples : int or None, default 10_000
        Largest training sample; ``None`` uses every row.
    balance : bool, default True
        Draw equal numbers of rows per class (a class with too few rows gives
        all it has); ``False`` draws in proportion to the classes.
    search : bool, default True
        Choose ``C`` and ``gamma`` by cross-validated grid search.
    param_grid : dict or list of dict, optional
        Grid for the search, keys any :class:`~sklearn.svm.SVC` parameters.
        Default: ``C`` in :data:`DEFAULT_C_GRID` times ``gamma`` in
        :data:`DEFAULT_GAMMA_FACTORS` multiples of the sample's ``"scale"`` value.
    cv : int or cross-validation splitter, default 3
        Folds of the search; an int means stratified folds of whole groups
        (:class:`~sklearn.model_selection.StratifiedGroupKFold`) when ``fit``
        has ``groups``, else seeded, shuffled stratified folds of rows.  A
        splitter is given the sample's ``groups``.
    scoring : str or callable, optional
        Search score (default: accuracy).
    probability : bool, default False
        Also fit a sigmoid calibration of the final SVC's decision values
        (scikit-learn's ``CalibratedClassifierCV(SVC(), ensemble=False)``, the
        replacement of the deprecated ``SVC(probability=True)``), so
        :meth:`predict_proba` is available; :meth:`predict` still follows the
        SVC's decision, so it can disagree with the argmax of the probabilities
        near the boundary.
    class_weight : dict or "balanced", optional
        Passed to :class:`~sklearn.svm.SVC`.
    cache_size : float, default 500
        Kernel cache of libsvm, in MiB.
    max_support_vectors : int, optional
        Support-vector budget: when the final SVC has more support vectors,
        they are replaced by at most this many prototypes whose coefficients
        are refitted to the SVC's decision values
        (:func:`rastercore.models.reduce_support_vectors`).  Prediction time
        falls with the count.  The reduced model's labels are compared with
        the full SVC's on rows the refit did not see (a fifth of the sample,
        and the rows outside it); :attr:`budget_` records the result.
    budget_tolerance : float, default 0.01
        Largest fraction of those labels the budget may change: beyond it
        ``fit`` raises :class:`~rastercore.errors.TrainingDataError` rather
        than keep a model that answers differently.
    n_jobs : int, optional
        Parallel fits of the search when no dask client is active.
    random_state : int, RandomState or None
        Seeds the sample and the search folds.

    Attributes
    ----------
    svc_ : sklearn.svm.SVC
        The final fitted SVC (``svc_.support_vectors_``, ``svc_.dual_coef_``...).
    calibrator_ : sklearn.calibration.CalibratedClassifierCV or None
        The probability calibration of ``svc_`` (``probability=True``), else None.
    classes_ : ndarray
        Class labels.
    best_params_ : dict
        ``C`` and ``gamma`` of the final SVC (the search's best, or the given ones).
    best_score_ : float or None
        Best mean cross-validated score (``None`` without a search).
    cv_results_ : dict or None
        The search's ``cv_results_`` (parameter columns as plain lists).
    sample_indices_ : ndarray
        Rows of the training set that formed the sample.
    budget_ : dict or None
        With ``max_support_vectors``: ``support_vectors`` (the full SVC's),
        ``kept``, ``agreement`` (fraction of the checked labels the reduced
        model leaves unchanged), ``rows`` checked and ``tolerance``; None
        without a budget.
    n_features_in_ : int
        Number of features seen in fit.
    """

    # checked by fit and, before any work, by ``rastercore train --params``
    _parameter_constraints = {
        "max_support_vectors": [Interval(numbers.Integral, 2, None, closed="left"), None],
        "budget_tolerance": [Interval(numbers.Real, 0, 1, closed="both")],
    }

    def __init__(self, *, C=1.0, gamma="scale", n_samples=10_000, balance=True, search=True,
                 param_grid=None, cv=3, scoring=None, probability=False, class_weight=None,
                 cache_size=500, max_support_vectors=None, budget_tolerance=0.01, n_jobs=None,
                 random_state=None):
        self.C = C
        self.gamma = gamma
        self.n_samples = n_samples
        self.balance = balance
        self.search = search
        self.param_grid = param_grid
        self.cv = cv
        self.scoring = scoring
        self.probability = probability
        self.class_weight = class_weight
        self.cache_size = cache_size
        self.max_support_vectors = max_support_vectors
        self.budget_tolerance = budget_tolerance
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X, y, groups=None):
        """Draw the sample, search ``C`` and ``gamma`` if asked, and fit the final SVC.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels; at least two classes.
        groups : array-like of shape (n_samples,), optional
            Spatial block of every row (``SampleTable.block``): the search's
            folds then hold whole blocks, so no block is split between
            fitting and scoring.

        Returns
        -------
        self
        """
        if groups is not None:
            groups = np.asarray(groups)
            if groups.shape[:1] != np.shape(y)[:1]:
                raise ValueError(f"groups must have one entry per row: {groups.shape[0]} for {np.shape(y)[0]} rows.")
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        if self.n_samples is not None and (not isinstance(self.n_samples, numbers.Integral)
                                           or self.n_samples < 2):
            raise ValueError(f"n_samples must be an integer >= 2 or None, got {self.n_samples!r}.")
        self.classes_ = require_two_classes(y, who="SampledSVC")
        self._validate_params()
        rng = check_random_state(self.random_state)
        sample_seed, fold_seed, budget_seed = seeds(rng, 3)
        self.sample_indices_ = class_sample(y, self.n_samples, balance=self.balance,
                                            rng=np.random.RandomState(sample_seed))
        Xs, ys = X[self.sample_indices_], y[self.sample_indices_]
        params = {"C": self.C, "gamma": self.gamma}
        self.cv_results_, self.best_score_ = None, None
        if self.search:
            search = self._run_search(Xs, ys, fold_seed=fold_seed,
                                      groups=None if groups is None else groups[self.sample_indices_])
            params.update(search.best_params_)
            self.cv_results_ = _plain_cv_results(search.cv_results_)
            self.best_score_ = float(search.best_score_)
        self.best_params_ = params
        self.svc_, self.calibrator_ = fit_svc(self._svc_params(params), Xs, ys,
                                              probability=self.probability, who="SampledSVC")
        self.budget_ = None
        if self.max_support_vectors is not None:
            self._reduce(X, np.random.RandomState(budget_seed))
        return self

    def _reduce(self, X, rng: np.random.RandomState) -> None:
        """Replace ``svc_`` by its reduced set; refuse it when it changes too many labels."""
        full = self.svc_
        n_full = int(full.n_support_.sum())
        if n_full <= self.max_support_vectors:
            self.budget_ = {"support_vectors": n_full, "kept": n_full, "agreement": 1.0, "rows": 0,
                            "tolerance": self.budget_tolerance}
            return
        sample = rng.permutation(self.sample_indices_)
        n_held = max(1, len(sample) // 5)
        refit_rows, held_out = sample[n_held:], sample[:n_held]
        outside = np.setdiff1d(np.arange(len(X)), self.sample_indices_)
        check = np.concatenate([held_out, rng.permutation(outside)[:20_000]])
        reduced = reduce_support_vectors(full, self.max_support_vectors, X[refit_rows],
                                         random_state=int(rng.randint(2**31 - 1)))
        agreement = float(np.mean(full.predict(X[check]) == reduced.predict(X[check])))
        self.budget_ = {"support_vectors": n_full, "kept": int(reduced.n_support_.sum()),
                        "agreement": round(agreement, 5), "rows": int(len(check)),
                        "tolerance": self.budget_tolerance}
        if 1 - agreement > self.budget_tolerance:
            raise TrainingDataError(
                f"SampledSVC: max_support_vectors={self.max_support_vectors} (of {n_full}) changes "
                f"{100 * (1 - agreement):.2f} % of {len(check)} held-out labels, more than "
                f"budget_tolerance={self.budget_tolerance:g} -- raise max_support_vectors or budget_tolerance."
            )
        self.svc_ = reduced
        if self.calibrator_ is not None:  # the sigmoid maps the reduced SVC's decisions from now on
            self.calibrator_.calibrated_classifiers_[0].estimator = reduced

    def _svc_params(self, params=None) -> dict:
        kwargs = dict(kernel="rbf", C=self.C, gamma=self.gamma, class_weight=self.class_weight,
                      cache_size=self.cache_size)
        kwargs.update(params or {})
        return kwargs

    def _grid(self, X):
        if self.param_grid is not None:
            return self.param_grid
        scale = resolve_gamma("scale", X)
        return {"C": list(DEFAULT_C_GRID), "gamma": [f * scale for f in DEFAULT_GAMMA_FACTORS]}

    def _run_search(self, X, y, *, fold_seed, groups=None) -> GridSearchCV:
        cv = self.cv
        if isinstance(cv, numbers.Integral) and groups is not None:
            n_groups = len(np.unique(groups))
            if n_groups < cv:
                raise TrainingDataError(
                    f"SampledSVC: the search over C and gamma needs at least cv={cv} spatial blocks, but the "
                    f"sample's rows lie in {n_groups} -- sample a larger area or smaller blocks, lower cv, "
                    f"or set search=False."
                )
            cv = StratifiedGroupKFold(n_splits=cv)
        elif isinstance(cv, numbers.Integral):
            smallest = int(np.unique(y, return_counts=True)[1].min())
            if smallest < cv:
                raise TrainingDataError(
                    f"SampledSVC: the search over C and gamma needs at least cv={cv} rows of every "
                    f"class, but the sample holds only {smallest} of one class -- sample a larger "
                    f"area, lower cv, or set search=False."
                )
            cv = StratifiedKFold(n_splits=cv, shuffle=True, random_state=fold_seed)
        search = GridSearchCV(SVC(**self._svc_params()), self._grid(X), cv=cv,
                              scoring=self.scoring, refit=False, error_score="raise",
                              n_jobs=self.n_jobs)
        client = active_client()
        if client is not None:
            import joblib

            search.set_params(n_jobs=-1)
            backend = joblib.parallel_config(backend="dask")
        else:
            backend = contextlib.nullcontext()
        with backend:
            if groups is None:
                search.fit(X, y)
            else:
                import warnings

                with warnings.catch_warnings():  # few blocks of a class: StratifiedGroupKFold warns, folds stay whole
                    warnings.filterwarnings("ignore", message=".*least populated class.*", category=UserWarning)
                    search.fit(X, y, groups=groups)
        return search

    @property
    def support_vectors_(self):
        """Support vectors of the final SVC (``svc_.support_vectors_``)."""
        check_is_fitted(self)
        return self.svc_.support_vectors_

    def fast_predictor(self):
        """The compiled stand-in for :meth:`predict` / :meth:`predict_proba` (:class:`rastercore.models.FastRBF`)."""
        check_is_fitted(self)
        return rbf_svc_predictor(self.svc_, self.calibrator_)

    def decision_function(self, X):
        """Signed distance to the separating surface, as :meth:`sklearn.svm.SVC.decision_function`."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return self.svc_.decision_function(X)

    def predict(self, X):
        """Class labels for the rows of ``X``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return self.svc_.predict(X)

    @available_if(_has_probability)
    def predict_proba(self, X):
        """Class probabilities (sigmoid-calibrated decision values); needs ``probability=True``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return self.calibrator_.predict_proba(X)

    @available_if(_has_probability)
    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`; needs ``probability=True``."""
        return np.log(self.predict_proba(X))
