"""KernelSGD / KernelSGDRegressor: an approximate kernel map, then SGD, trainable batch by batch."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.kernel_approximation import Nystroem, RBFSampler
from sklearn.linear_model import SGDClassifier, SGDRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ._common import require_two_classes, resolve_gamma, seeds

__all__ = ["KernelSGD", "KernelSGDRegressor", "KERNELS"]

#: Kernel maps by name (``None``: the SGD model sees the, optionally standardised, input).
KERNELS = ("nystroem", "rbf_sampler", None)


class _KernelMapMixin:
    """The input side shared by both estimators: standardise, then an approximate RBF kernel map."""

    def _check_kernel_params(self):
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {self.kernel!r}.")
        if not isinstance(self.n_components, numbers.Integral) or self.n_components < 1:
            raise ValueError(f"n_components must be a positive integer, got {self.n_components!r}.")

    def _fit_map(self, X, seed: int):
        """Fit the scaler and kernel map on ``kernel_sample`` if given, else on ``X``."""
        self._check_kernel_params()
        base = X
        if self.kernel_sample is not None:
            base = check_array(self.kernel_sample, dtype=np.float64)
            if base.shape[1] != X.shape[1]:
                raise ValueError(
                    f"kernel_sample has {base.shape[1]} features but X has {X.shape[1]}; "
                    f"give a sample of the same features."
                )
        steps = []
        if self.standardize:
            steps.append(StandardScaler())
        if self.kernel is not None:
            scaled = steps[0].fit_transform(base) if steps else base
            gamma = resolve_gamma("scale" if self.gamma is None else self.gamma, scaled)
            n_components = self.n_components
            if self.kernel == "nystroem":
                n_components = min(n_components, base.shape[0])
                steps.append(Nystroem(kernel="rbf", gamma=gamma, n_components=n_components,
                                      random_state=seed))
            else:
                steps.append(RBFSampler(gamma=gamma, n_components=n_components, random_state=seed))
        self.kernel_map_ = make_pipeline(*steps).fit(base) if steps else None

    def _features(self, X):
        return X if self.kernel_map_ is None else self.kernel_map_.transform(X)


_KERNEL_PARAMS_DOC = """
    kernel : {"nystroem", "rbf_sampler"} or None, default "nystroem"
        Approximate RBF kernel map: :class:`~sklearn.kernel_approximation.Nystroem`
        or :class:`~sklearn.kernel_approximation.RBFSampler`; ``None`` for a
        linear model on the input.
    n_components : int, default 100
        Dimension of the kernel map (Nystroem: at most the rows it is fitted on).
    gamma : float, optional
        RBF width; default 1 / (n_features * variance) of the (standardised)
        data the map is fitted on.
    standardize : bool, default True
        Standardise the input first (statistics from the same data as the map).
    kernel_sample : array-like of shape (n, n_features), optional
        Rows to fit the scaler and kernel map on; default the data given to
        :meth:`fit`, or the first batch given to :meth:`partial_fit`.  Give a
        representative sample when streaming, since the first batch may not be."""


class KernelSGD(_KernelMapMixin, ClassifierMixin, BaseEstimator):
    __doc__ = f"""Approximate-kernel linear classifier trained by SGD, usable batch by batch.

    An optional standardisation and approximate RBF kernel map, fitted once,
    feed a :class:`~sklearn.linear_model.SGDClassifier`.  :meth:`partial_fit`
    streams batches (``classes`` needed on the first call), so the model
    works with ``dask_ml.wrappers.Incremental`` on dask arrays larger than
    memory; :meth:`fit` trains on one in-memory set for ``max_iter`` epochs.

    Parameters
    ----------{_KERNEL_PARAMS_DOC}
    loss : str, default "hinge"
        SGDClassifier loss; ``"log_loss"`` or ``"modified_huber"`` enable :meth:`predict_proba`.
    penalty, alpha, l1_ratio, learning_rate, eta0, power_t, average, class_weight
        As in :class:`~sklearn.linear_model.SGDClassifier`.
    max_iter : int, default 1000
        Epochs of :meth:`fit` (``partial_fit`` does one pass per call).
    tol : float or None, default 1e-3
        Stopping criterion of :meth:`fit`.
    random_state : int, RandomState or None
        Seeds the kernel map and SGD.

    Attributes
    ----------
    kernel_map_ : sklearn.pipeline.Pipeline or None
        The fitted scaler and kernel map.
    sgd_ : sklearn.linear_model.SGDClassifier
        The linear model on the mapped features.
    classes_ : ndarray
        Class labels.
    n_iter_ : int
        Epochs run by the last :meth:`fit` (1 after each :meth:`partial_fit`).
    n_features_in_ : int
        Number of input features.
    """

    def __init__(self, *, kernel="nystroem", n_components=100, gamma=None, standardize=True,
                 kernel_sample=None, loss="hinge", penalty="l2", alpha=1e-4, l1_ratio=0.15,
                 learning_rate="optimal", eta0=0.01, power_t=0.5, average=False, max_iter=1000,
                 tol=1e-3, class_weight=None, random_state=None):
        self.kernel = kernel
        self.n_components = n_components
        self.gamma = gamma
        self.standardize = standardize
        self.kernel_sample = kernel_sample
        self.loss = loss
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.learning_rate = learning_rate
        self.eta0 = eta0
        self.power_t = power_t
        self.average = average
        self.max_iter = max_iter
        self.tol = tol
        self.class_weight = class_weight
        self.random_state = random_state

    def _sgd(self, seed):
        return SGDClassifier(loss=self.loss, penalty=self.penalty, alpha=self.alpha,
                             l1_ratio=self.l1_ratio, learning_rate=self.learning_rate,
                             eta0=self.eta0, power_t=self.power_t, average=self.average,
                             max_iter=self.max_iter, tol=self.tol, class_weight=self.class_weight,
                             random_state=seed)

    def fit(self, X, y):
        """Fit the kernel map and the SGD model on one in-memory training set.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        require_two_classes(y, who="KernelSGD")
        map_seed, sgd_seed = seeds(check_random_state(self.random_state), 2)
        self._fit_map(X, map_seed)
        self.sgd_ = self._sgd(sgd_seed).fit(self._features(X), y)
        self.classes_ = self.sgd_.classes_
        self.n_iter_ = self.sgd_.n_iter_
        return self

    def partial_fit(self, X, y, classes=None):
        """One pass of SGD over a batch; the first call also fits the kernel map.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like, optional
            Every class of the whole training set; required on the first call.

        Returns
        -------
        self
        """
        first = not hasattr(self, "sgd_")
        X, y = validate_data(self, X, y, dtype=np.float64, reset=first)
        check_classification_targets(y)
        if first:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit "
                                 "(every class of the whole training set, e.g. classes=[0, 1]).")
            map_seed, sgd_seed = seeds(check_random_state(self.random_state), 2)
            self._fit_map(X, map_seed)
            self.sgd_ = self._sgd(sgd_seed)
        self.sgd_.partial_fit(self._features(X), y, classes=classes)
        self.classes_ = self.sgd_.classes_
        self.n_iter_ = self.sgd_.n_iter_
        return self

    def decision_function(self, X):
        """Confidence scores of the linear model on the mapped features."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.sgd_.decision_function(self._features(X))

    def predict(self, X):
        """Class labels for the rows of ``X``."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.sgd_.predict(self._features(X))

    def fast_predictor(self):
        """The compiled stand-in for :meth:`predict` (:class:`rastercore.models.FastKernelLinear`), or None.

        Covers the Nystroem map (the default); probabilities for ``loss="log_loss"``.
        """
        check_is_fitted(self)
        steps = dict(self.kernel_map_.steps) if self.kernel_map_ is not None else {}
        if "nystroem" not in steps:
            return None
        from ._fast_rbf import FastKernelLinear

        return FastKernelLinear(steps["nystroem"], self.sgd_, scaler=steps.get("standardscaler"),
                                proba="ovr" if self.loss == "log_loss" else None)

    def _has_proba(self):
        return self.loss in ("log_loss", "modified_huber")

    @available_if(_has_proba)
    def predict_proba(self, X):
        """Class probabilities; needs ``loss="log_loss"`` or ``"modified_huber"``."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.sgd_.predict_proba(self._features(X))

    @available_if(_has_proba)
    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))


class KernelSGDRegressor(_KernelMapMixin, RegressorMixin, BaseEstimator):
    __doc__ = f"""Approximate-kernel linear regressor trained by SGD, usable batch by batch.

    The regression counterpart of :class:`KernelSGD`: an optional
    standardisation and approximate RBF kernel map, then a
    :class:`~sklearn.linear_model.SGDRegressor`; :meth:`partial_fit` streams
    batches (``dask_ml.wrappers.Incremental``).

    Parameters
    ----------{_KERNEL_PARAMS_DOC}
    loss : str, default "squared_error"
        SGDRegressor loss.
    penalty, alpha, l1_ratio, epsilon, learning_rate, eta0, power_t, average
        As in :class:`~sklearn.linear_model.SGDRegressor`.
    max_iter : int, default 1000
        Epochs of :meth:`fit`.
    tol : float or None, default 1e-3
        Stopping criterion of :meth:`fit`.
    random_state : int, RandomState or None
        Seeds the kernel map and SGD.

    Attributes
    ----------
    kernel_map_ : sklearn.pipeline.Pipeline or None
        The fitted scaler and kernel map.
    sgd_ : sklearn.linear_model.SGDRegressor
        The linear model on the mapped features.
    n_iter_ : int
        Epochs run by the last :meth:`fit` (1 after each :meth:`partial_fit`).
    n_features_in_ : int
        Number of input features.
    """

    def __init__(self, *, kernel="nystroem", n_components=100, gamma=None, standardize=True,
                 kernel_sample=None, loss="squared_error", penalty="l2", alpha=1e-4,
                 l1_ratio=0.15, epsilon=0.1, learning_rate="invscaling", eta0=0.01, power_t=0.25,
                 average=False, max_iter=1000, tol=1e-3, random_state=None):
        self.kernel = kernel
        self.n_components = n_components
        self.gamma = gamma
        self.standardize = standardize
        self.kernel_sample = kernel_sample
        self.loss = loss
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.epsilon = epsilon
        self.learning_rate = learning_rate
        self.eta0 = eta0
        self.power_t = power_t
        self.average = average
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def _sgd(self, seed):
        return SGDRegressor(loss=self.loss, penalty=self.penalty, alpha=self.alpha,
                            l1_ratio=self.l1_ratio, epsilon=self.epsilon,
                            learning_rate=self.learning_rate, eta0=self.eta0, power_t=self.power_t,
                            average=self.average, max_iter=self.max_iter, tol=self.tol,
                            random_state=seed)

    def fit(self, X, y):
        """Fit the kernel map and the SGD model on one in-memory training set.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        map_seed, sgd_seed = seeds(check_random_state(self.random_state), 2)
        self._fit_map(X, map_seed)
        self.sgd_ = self._sgd(sgd_seed).fit(self._features(X), y)
        self.n_iter_ = self.sgd_.n_iter_
        return self

    def partial_fit(self, X, y):
        """One pass of SGD over a batch; the first call also fits the kernel map.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        first = not hasattr(self, "sgd_")
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True, reset=first)
        if first:
            map_seed, sgd_seed = seeds(check_random_state(self.random_state), 2)
            self._fit_map(X, map_seed)
            self.sgd_ = self._sgd(sgd_seed)
        self.sgd_.partial_fit(self._features(X), y)
        self.n_iter_ = self.sgd_.n_iter_
        return self

    def predict(self, X):
        """Predicted values for the rows of ``X``."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.sgd_.predict(self._features(X))
