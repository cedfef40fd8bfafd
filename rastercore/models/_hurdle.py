"""HurdleModel: a classifier for "at or above the threshold", a regressor for the rest."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from rastercore.errors import TrainingDataError

from ._common import seeds
from ._predictor import TilePredictor

__all__ = ["HurdleModel"]


def _seeded(estimator, seed: int):
    """``clone(estimator)``, with ``random_state`` set to ``seed`` when it has one left at None."""
    estimator = clone(estimator)
    if "random_state" in estimator.get_params(deep=False) and estimator.random_state is None:
        estimator.set_params(random_state=seed)
    return estimator


class HurdleModel(RegressorMixin, BaseEstimator):
    """Two-part ("hurdle") model of a continuous target with a class above a threshold.

    Rows with ``y >= threshold`` form class 1 (e.g. ice, water, built-up
    land), the rest class 0.  A classifier learns the class on every row; a
    regressor learns the value on the class-0 rows only, so it is not
    distorted by the saturated class.

    Prediction: :meth:`predict_class` gives the class, :meth:`predict_value`
    the regressor's value (for every row, whatever its class), and
    :meth:`predict` the combined hurdle prediction -- ``above_value``
    (default: ``threshold`` itself) where the class is 1, else the
    regressor's value, clipped to at most ``threshold`` when ``clip=True``.
    ``predict`` therefore returns one float per row, like any scikit-learn
    regressor, and is what :meth:`score` (R²) scores.  Use
    ``above_value=np.nan`` to mark class-1 rows as missing instead.

    Parameters
    ----------
    classifier : estimator, optional
        Classifier of ``y >= threshold`` (cloned); default
        :class:`~sklearn.ensemble.HistGradientBoostingClassifier`.
    regressor : estimator, optional
        Regressor of ``y`` on rows below the threshold (cloned); default
        :class:`~sklearn.ensemble.HistGradientBoostingRegressor`.
    threshold : float, default 0.6
        The hurdle (the class boundary of rastercore's synthetic scenes).
    above_value : float, optional
        What :meth:`predict` gives class-1 rows; default ``threshold``.
    clip : bool, default True
        Clip regressor values in :meth:`predict` to at most ``threshold``, so
        a class-0 prediction never lands in the class-1 range.
    random_state : int, RandomState or None
        Seeds the classifier and regressor whose ``random_state`` is None.

    Attributes
    ----------
    classifier_ : estimator
        The fitted classifier (classes 0 and 1).
    regressor_ : estimator
        The regressor fitted on the rows with ``y < threshold``.
    n_below_, n_above_ : int
        Training rows on each side of the threshold.
    n_features_in_ : int
        Number of features seen in fit.
    """

    def __init__(self, *, classifier=None, regressor=None, threshold=0.6, above_value=None,
                 clip=True, random_state=None):
        self.classifier = classifier
        self.regressor = regressor
        self.threshold = threshold
        self.above_value = above_value
        self.clip = clip
        self.random_state = random_state

    def fit(self, X, y):
        """Fit the classifier on every row and the regressor on the rows below the threshold.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            The continuous target.

        Returns
        -------
        self
        """
        X, y = validate_data(self, X, y, y_numeric=True)
        if not isinstance(self.threshold, numbers.Real) or not np.isfinite(self.threshold):
            raise ValueError(f"threshold must be a finite number, got {self.threshold!r}.")
        above = y >= self.threshold
        self.n_above_, self.n_below_ = int(above.sum()), int((~above).sum())
        if self.n_above_ == 0 or self.n_below_ == 0:
            side = "below" if self.n_above_ == 0 else "at or above"
            raise TrainingDataError(
                f"HurdleModel needs rows on both sides of threshold={self.threshold}, but the "
                f"target holds only one class: all {len(y)} rows are {side} it -- check the "
                f"threshold or sample a larger area."
            )
        clf_seed, reg_seed = seeds(check_random_state(self.random_state), 2)
        classifier = self.classifier if self.classifier is not None else HistGradientBoostingClassifier()
        regressor = self.regressor if self.regressor is not None else HistGradientBoostingRegressor()
        self.classifier_ = _seeded(classifier, clf_seed).fit(X, above.astype(np.int64))
        self.regressor_ = _seeded(regressor, reg_seed).fit(X[~above], y[~above])
        return self

    def predict_class(self, X):
        """1 where the target is predicted at or above ``threshold``, else 0."""
        check_is_fitted(self)
        return np.asarray(self.classifier_.predict(validate_data(self, X, reset=False)))

    def predict_value(self, X):
        """The regressor's value for every row (the below-threshold model), unclipped."""
        check_is_fitted(self)
        return np.asarray(self.regressor_.predict(validate_data(self, X, reset=False)), dtype=float)

    def tile_predictor(self, *, class_names=None, probabilities=True, fast=True):
        """Prediction layers ``class`` (1 at or above ``threshold``) and ``value`` (the regressor's)."""
        check_is_fitted(self)
        return _HurdleLayers(self)

    def predict(self, X):
        """The hurdle prediction: ``above_value`` for class-1 rows, else the (clipped) regressor value."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        value = np.asarray(self.regressor_.predict(X), dtype=float)
        if self.clip:
            value = np.minimum(value, self.threshold)
        above_value = self.threshold if self.above_value is None else self.above_value
        return np.where(self.classifier_.predict(X) == 1, float(above_value), value)


class _HurdleLayers(TilePredictor):
    layers = ["class", "value"]

    def __init__(self, model):
        self.model = model

    def __call__(self, X):
        return np.column_stack([self.model.predict_class(X), self.model.predict_value(X)]).astype(np.float32)
