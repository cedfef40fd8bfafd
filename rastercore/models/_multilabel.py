"""ThresholdedMultiLabel: one binary estimator per label, each with a tuned decision threshold."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from rastercore.errors import TrainingDataError

from ._common import parallel_map, seeds
from ._predictor import TilePredictor

__all__ = ["ThresholdedMultiLabel", "THRESHOLD_METRICS"]

#: Metrics :meth:`ThresholdedMultiLabel.tune_thresholds` knows by name (``f(y_true, y_pred)``).
THRESHOLD_METRICS = {
    "f1": lambda t, p: f1_score(t, p, zero_division=0.0),
    "accuracy": accuracy_score,
    "balanced_accuracy": balanced_accuracy_score,
}

#: Candidate thresholds on probabilities when ``threshold_grid`` is not given.
DEFAULT_PROBABILITY_GRID = np.round(np.linspace(0.05, 0.95, 19), 2)


def _fit_label(estimator, X, y):
    return estimator.fit(X, y)


def _all_have_proba(est) -> bool:
    base = est.estimator if est.estimator is not None else LogisticRegression()
    return hasattr(base, "predict_proba")


class ThresholdedMultiLabel(ClassifierMixin, BaseEstimator):
    """Multi-label classifier: one binary estimator per label, each with its own decision threshold.

    ``Y`` is ``(n_samples, n_labels)`` with two values per column (0/1).
    Each label gets a clone of ``estimator``.  A label's score is the
    probability of its positive class (``predict_proba[:, 1]``) when the
    estimator has ``predict_proba``, else its ``decision_function``; the
    label is predicted positive where the score is >= its threshold.
    Thresholds start at 0.5 (probabilities) or 0 (decision values) and are
    chosen per label on held-out data by :meth:`tune_thresholds`; they are
    part of the fitted model (``thresholds_``) and saved with it.

    Parameters
    ----------
    estimator : estimator, optional
        Binary classifier cloned for every label; default
        :class:`~sklearn.linear_model.LogisticRegression`.
    threshold_grid : array-like, optional
        Candidate thresholds for :meth:`tune_thresholds`; default 0.05, 0.10,
        ..., 0.95 for probabilities, else 49 quantiles (2 % ... 98 %) of each
        label's validation scores.
    n_jobs : int, optional
        Threads fitting the labels when no dask client is active.
    random_state : int, RandomState or None
        Seeds the label estimators whose ``random_state`` is None.

    Attributes
    ----------
    estimators_ : list of estimators
        One fitted estimator per label.
    classes_ : list of ndarray, or ndarray
        Each label's two classes, the second being the positive one (one
        array when fitted on a 1-D ``y``).
    label_classes_ : list of ndarray
        Each label's two classes, always a list.
    thresholds_ : ndarray of shape (n_labels,)
        Decision threshold of each label.
    threshold_scores_ : ndarray or None
        Each label's validation metric at its threshold (after :meth:`tune_thresholds`).
    threshold_metric_ : str or None
        The metric the thresholds were tuned for.
    n_labels_ : int
        Number of labels.
    single_label_ : bool
        Fitted on a 1-D ``y``: predictions are 1-D.
    n_features_in_ : int
        Number of features seen in fit.
    """

    def __init__(self, *, estimator=None, threshold_grid=None, n_jobs=None, random_state=None):
        self.estimator = estimator
        self.threshold_grid = threshold_grid
        self.n_jobs = n_jobs
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.classifier_tags.multi_class = False
        tags.classifier_tags.multi_label = True
        return tags

    def _as_2d(self, Y, *, fitting: bool) -> np.ndarray:
        Y = check_array(Y, ensure_2d=False, dtype=None, input_name="Y")
        if Y.ndim == 1:
            Y = Y.reshape(-1, 1)
        if Y.ndim != 2:
            raise ValueError(f"Y must be (n_samples, n_labels), one 0/1 column per label; got shape {Y.shape}.")
        if not fitting and Y.shape[1] != self.n_labels_:
            raise ValueError(f"Y has {Y.shape[1]} labels but the model was fitted on {self.n_labels_}.")
        return Y

    def _shaped(self, out2d: np.ndarray) -> np.ndarray:
        """Back to 1-D when fitted on a 1-D ``y`` (a single binary label)."""
        return out2d[:, 0] if self.single_label_ else out2d

    def fit(self, X, y):
        """Fit one clone of ``estimator`` per label; thresholds reset to their defaults.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples, n_labels) or (n_samples,)
            Two values (0/1) per column; a 1-D ``y`` is a single label, and
            the model then predicts 1-D arrays like any binary classifier.

        Returns
        -------
        self
        """
        X, Y = validate_data(self, X, y, multi_output=True)
        check_classification_targets(Y)
        self.single_label_ = np.ndim(Y) == 1
        Y = self._as_2d(Y, fitting=True)
        for j in range(Y.shape[1]):
            values = np.unique(Y[:, j])
            if values.size > 2:
                raise ValueError(
                    f"ThresholdedMultiLabel: Only binary classification is supported per label; "
                    f"label {j} holds {values.size} classes {values.tolist()[:5]} -- give one 0/1 "
                    f"column per label."
                )
            if values.size < 2:
                raise TrainingDataError(
                    f"ThresholdedMultiLabel: label {j} needs two classes (0/1), but the training "
                    f"set holds only one class, {values.tolist()} -- drop the label, or sample a "
                    f"larger area so both classes appear."
                )
        base = self.estimator if self.estimator is not None else LogisticRegression()
        rng = check_random_state(self.random_state)
        estimators = []
        for seed in seeds(rng, Y.shape[1]):
            est = clone(base)
            if "random_state" in est.get_params(deep=False) and est.random_state is None:
                est.set_params(random_state=seed)
            estimators.append(est)
        self.estimators_ = parallel_map(_fit_label, [(e, X, Y[:, j]) for j, e in enumerate(estimators)],
                                        n_jobs=self.n_jobs)
        self.label_classes_ = [np.asarray(e.classes_) for e in self.estimators_]
        self.classes_ = self.label_classes_[0] if self.single_label_ else self.label_classes_
        self.n_labels_ = Y.shape[1]
        self.uses_proba_ = hasattr(self.estimators_[0], "predict_proba")
        self.thresholds_ = np.full(self.n_labels_, 0.5 if self.uses_proba_ else 0.0)
        self.threshold_scores_ = None
        self.threshold_metric_ = None
        return self

    def _scores(self, X) -> np.ndarray:
        if self.uses_proba_:
            return np.column_stack([e.predict_proba(X)[:, 1] for e in self.estimators_])
        return np.column_stack([np.ravel(e.decision_function(X)) for e in self.estimators_])

    def predict_scores(self, X):
        """Each label's score, ``(n_samples, n_labels)``: positive-class probability, else decision value."""
        check_is_fitted(self)
        return self._shaped(self._scores(validate_data(self, X, reset=False)))

    @available_if(_all_have_proba)
    def predict_proba(self, X):
        """Each label's positive-class probability, ``(n_samples, n_labels)``.

        Fitted on a 1-D ``y`` (one label), the ``(n_samples, 2)``
        probabilities of its two classes, as any binary classifier.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        if self.single_label_:
            return self.estimators_[0].predict_proba(X)
        return np.column_stack([e.predict_proba(X)[:, 1] for e in self.estimators_])

    def predict(self, X):
        """Each label's class, ``(n_samples, n_labels)``: positive where its score >= its threshold."""
        check_is_fitted(self)
        positive = self._scores(validate_data(self, X, reset=False)) >= self.thresholds_
        return self._shaped(np.column_stack([self.label_classes_[j][positive[:, j].astype(np.intp)]
                                             for j in range(self.n_labels_)]))

    def tile_predictor(self, *, class_names=None, probabilities=True, fast=True):
        """Prediction layers ``label[<name>]`` (0/1), one per label (names default to 0, 1, ...)."""
        check_is_fitted(self)
        return _LabelLayers(self, class_names or [str(i) for i in range(len(self.thresholds_))])

    def score(self, X, y, sample_weight=None):
        """Subset accuracy: the share of rows with every label right."""
        predicted = self.predict(X)
        return accuracy_score(self._shaped(self._as_2d(y, fitting=False)), predicted,
                              sample_weight=sample_weight)

    def tune_thresholds(self, X_val, Y_val, *, metric="f1"):
        """Choose each label's threshold on held-out data; stores ``thresholds_``.

        For every label, each candidate of the grid (see ``threshold_grid``)
        is scored by ``metric`` on that label's validation column; the best
        wins, ties going to the candidate nearest the default threshold.

        Parameters
        ----------
        X_val : array-like of shape (n_samples, n_features)
            Validation rows (not the training rows).
        Y_val : array-like of shape (n_samples, n_labels)
        metric : {"f1", "accuracy", "balanced_accuracy"} or callable, default "f1"
            ``f1`` is the F1 score of the positive class; a callable is
            called as ``metric(y_true, y_pred)`` with 0/1 arrays, higher is better.

        Returns
        -------
        self
        """
        check_is_fitted(self)
        if callable(metric):
            score_fn, name = metric, getattr(metric, "__name__", "callable")
        elif metric in THRESHOLD_METRICS:
            score_fn, name = THRESHOLD_METRICS[metric], metric
        else:
            raise ValueError(f"metric must be one of {sorted(THRESHOLD_METRICS)} or a callable, "
                             f"got {metric!r}.")
        X_val = validate_data(self, X_val, reset=False)
        Y_val = self._as_2d(Y_val, fitting=False)
        if len(Y_val) != len(X_val):
            raise ValueError(f"X_val has {len(X_val)} rows but Y_val has {len(Y_val)}.")
        scores = self._scores(X_val)
        default = 0.5 if self.uses_proba_ else 0.0
        thresholds, best_scores = np.empty(self.n_labels_), np.empty(self.n_labels_)
        for j in range(self.n_labels_):
            truth = (Y_val[:, j] == self.label_classes_[j][1]).astype(np.int64)
            grid = self._grid(scores[:, j])
            values = np.array([score_fn(truth, (scores[:, j] >= t).astype(np.int64)) for t in grid])
            best = np.flatnonzero(values == values.max())
            pick = best[np.argmin(np.abs(grid[best] - default))]
            thresholds[j], best_scores[j] = grid[pick], values[pick]
        self.thresholds_, self.threshold_scores_, self.threshold_metric_ = thresholds, best_scores, name
        return self

    def _grid(self, scores: np.ndarray) -> np.ndarray:
        if self.threshold_grid is not None:
            return np.unique(np.asarray(self.threshold_grid, dtype=float))
        if self.uses_proba_:
            return DEFAULT_PROBABILITY_GRID
        return np.unique(np.quantile(scores, np.linspace(0.02, 0.98, 49)))


class _LabelLayers(TilePredictor):
    def __init__(self, model, names):
        self.model = model
        self.layers = [f"label[{n}]" for n in names]

    def __call__(self, X):
        return np.asarray(self.model.predict(X), dtype=np.float32).reshape(len(X), -1)
