"""Prior correction: a classifier trained on one class mix, predicting for another.

A model fitted on a class-balanced sample learns posteriors ``p_s(c | x)``
under the sample's class frequencies ``pi_s(c)`` (the training priors).  On a
scene whose classes occur with frequencies ``pi_t(c)`` (the target priors)
the posteriors are, as long as ``p(x | c)`` is the same in both (Saerens,
Latinne & Decaestecker 2002, eq. 2.3)::

    p_t(c | x) = p_s(c | x) * pi_t(c) / pi_s(c)  /  sum_k p_s(k | x) * pi_t(k) / pi_s(k)

and the decision maximising the expected overall accuracy on the scene is
the arg-max of ``p_t``.  :class:`PriorCorrected` wraps a fitted classifier
with this correction (its compiled fast path included);
:func:`prior_correction` decides, for :func:`rastercore.training.train_from_table`,
which priors a model is corrected to and records them.

The priors are known here, not estimated: the training priors are the class
frequencies of the training rows, the scene's are the class frequencies of
its eligible pixels, which :func:`rastercore.sampling.draw_sample` counts
anyway (``table.attrs["counts"]``), so the EM re-estimation of Saerens et al.
is not needed.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from rastercore.errors import ParameterError

__all__ = ["PriorCorrected", "PRIOR_CHOICES", "shift_priors", "parse_priors", "check_priors", "prior_correction",
           "prior_weighted_accuracy", "validation_by_priors", "PriorCorrectionWarning"]

PRIOR_CHOICES = ("balanced", "scene")
"""The named choices of ``priors`` (``--priors``); a mapping class name -> prior is the third kind."""

#: Train and target priors closer than this (relative) need no correction.
_SAME_PRIORS_RTOL = 0.01


class PriorCorrectionWarning(UserWarning):
    """Prior correction was asked for but cannot be applied (the model gives no class probabilities)."""


def shift_priors(proba, train_priors, target_priors) -> np.ndarray:
    """Class probabilities under ``train_priors`` moved to ``target_priors`` (Saerens et al. 2002).

    Parameters
    ----------
    proba : array (n, n_classes)
        Probabilities ``p_s(c | x)`` of a model fitted under the training priors.
    train_priors, target_priors : array (n_classes,)
        Class priors, in the columns' order; each is normalised to sum 1.

    Returns
    -------
    numpy.ndarray (n, n_classes) float64
        ``p_s(c | x) pi_t(c) / pi_s(c)``, renormalised per row.  A row whose
        every class with a positive target prior has probability 0 gets the
        target priors.
    """
    train = np.asarray(train_priors, dtype=np.float64)
    target = np.asarray(target_priors, dtype=np.float64)
    train, target = train / train.sum(), target / target.sum()
    scaled = np.asarray(proba, dtype=np.float64) * (target / train)
    total = scaled.sum(axis=1, keepdims=True)
    out = np.divide(scaled, total, out=np.zeros_like(scaled), where=total > 0)
    empty = total[:, 0] <= 0
    if empty.any():
        out[empty] = target
    return out


def _aligned_priors(priors, classes, name: str) -> np.ndarray:
    """``priors`` (one per class of ``classes``, or a mapping label -> prior) as a checked array summing to 1."""
    classes = list(np.asarray(classes).tolist())
    if isinstance(priors, Mapping):
        lookup = {str(k): v for k, v in priors.items()}
        missing = [c for c in classes if str(c) not in lookup]
        if missing:
            raise ParameterError(f"{name} gives no prior for class(es) {', '.join(map(str, missing))}; give one "
                                 f"per class of the model ({', '.join(map(str, classes))}).")
        priors = [lookup[str(c)] for c in classes]
    try:
        values = np.asarray(priors, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be numbers, one per class, not {priors!r}.") from None
    if values.shape != (len(classes),):
        raise ParameterError(f"{name} holds {values.size} priors but the model has {len(classes)} classes "
                             f"({', '.join(map(str, classes))}); give one per class, in that order.")
    if not np.isfinite(values).all() or (values < 0).any():
        raise ParameterError(f"{name} must be finite and non-negative, not {values.tolist()}.")
    if values.sum() <= 0:
        raise ParameterError(f"{name} are all zero; give a positive prior to at least one class.")
    return values / values.sum()


def _gives_proba(model) -> bool:
    try:
        return hasattr(model, "predict_proba")
    except AttributeError:  # available_if raising for SVC(probability=False)
        return False


def _no_proba_message(model) -> str:
    return (f"prior correction needs class probabilities, which {type(model).__name__} does not give (an SVM "
            "needs probability=True); train with priors='balanced' (--priors balanced) or a model with "
            "probabilities.")


class PriorCorrected(ClassifierMixin, BaseEstimator):
    """A fitted classifier whose probabilities and decisions are moved to other class priors.

    ``predict_proba`` is the wrapped model's, multiplied by
    ``target_priors / train_priors`` and renormalised per row
    (:func:`shift_priors`; Saerens, Latinne & Decaestecker 2002);
    ``predict`` is its arg-max.  The wrapped model's compiled fast path
    (:func:`rastercore.models.fast_predictor`: :class:`FastRBF`,
    :class:`CompiledTrees`, ...) stays in use through :meth:`fast_predictor`.

    Parameters
    ----------
    model : fitted classifier with ``predict_proba``
        The model as trained.
    train_priors : array-like or mapping
        Class frequencies the model was trained under: one per class of
        ``model.classes_`` (in that order), or a mapping class label -> prior.
        Normalised to sum 1; each must be positive.
    target_priors : array-like or mapping
        Class frequencies to predict for (e.g. the scene's), likewise;
        non-negative, normalised to sum 1.
    source : str, optional
        Where the target priors come from, for reports (``"scene"``,
        ``"custom"``...).

    Attributes
    ----------
    classes_ : numpy.ndarray
        The wrapped model's classes.
    n_features_in_ : int
        The wrapped model's, when it has one.

    Raises
    ------
    ParameterError
        When predicting: the wrapped model gives no class probabilities, or
        the priors are not one non-negative number per class (a training
        prior of 0: a class the model was not trained on).

    Notes
    -----
    The wrapper does not refit: ``fit`` only checks the wrapped model and
    the priors (as scikit-learn's ``FrozenEstimator``).
    """

    def __init__(self, model, train_priors, target_priors, source=None):
        self.model = model
        self.train_priors = train_priors
        self.target_priors = target_priors
        self.source = source

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self.model, "classes_")

    @property
    def classes_(self) -> np.ndarray:
        return self.model.classes_

    @property
    def n_features_in_(self) -> int:
        return self.model.n_features_in_

    @property
    def feature_names_in_(self) -> np.ndarray:
        return self.model.feature_names_in_

    def fit(self, X=None, y=None, **fit_params):
        """Check the wrapped (already fitted) model and the priors; nothing is refitted.

        Returns
        -------
        self
        """
        self.priors()
        return self

    def priors(self) -> tuple[np.ndarray, np.ndarray]:
        """The checked ``(train, target)`` priors, in ``classes_`` order, each summing to 1."""
        if not hasattr(self.model, "classes_"):
            raise ParameterError(f"PriorCorrected wraps a fitted classifier; {type(self.model).__name__} is not "
                                 "fitted (no classes_).")
        if not _gives_proba(self.model):
            raise ParameterError(_no_proba_message(self.model))
        train = _aligned_priors(self.train_priors, self.classes_, "train_priors")
        target = _aligned_priors(self.target_priors, self.classes_, "target_priors")
        if (train <= 0).any():
            zero = [str(c) for c, p in zip(np.asarray(self.classes_).tolist(), train) if p <= 0]
            raise ParameterError(f"train_priors gives class(es) {', '.join(zero)} a prior of 0, but the model was "
                                 "trained on them; give the class frequencies of its training rows.")
        return train, target

    def predict_proba(self, X) -> np.ndarray:
        """Probabilities under the target priors: :func:`shift_priors` of the wrapped model's."""
        train, target = self.priors()
        return shift_priors(self.model.predict_proba(X), train, target)

    def predict_log_proba(self, X) -> np.ndarray:
        """Logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        """The class of highest probability under the target priors."""
        return np.asarray(self.classes_).take(np.argmax(self.predict_proba(X), axis=1), axis=0)

    def fast_predictor(self):
        """The wrapped model's compiled stand-in with corrected probabilities, or None when it has none.

        Raises
        ------
        ParameterError
            The wrapped model gives no class probabilities.
        """
        from ._predictor import fast_predictor

        train, target = self.priors()
        inner = fast_predictor(self.model)
        if inner is None or not getattr(inner, "has_proba", False):
            return None
        return FastPriorCorrected(inner, np.asarray(self.classes_), train, target)

    def report(self, class_names=None) -> dict:
        """``{"used", "train", "target"}``: the priors by class name (for a mosaic's attrs, a report)."""
        train, target = self.priors()
        names = [str(n) for n in class_names or []]
        labels = [names[c] if isinstance(c, int) and 0 <= c < len(names) else str(c)
                  for c in np.asarray(self.classes_).tolist()]
        return {"used": self.source or "custom", "train": dict(zip(labels, map(float, train))),
                "target": dict(zip(labels, map(float, target)))}


class FastPriorCorrected:
    """The compiled stand-in of :class:`PriorCorrected`: the wrapped model's stand-in, probabilities corrected."""

    has_proba = True

    def __init__(self, inner, classes: np.ndarray, train: np.ndarray, target: np.ndarray):
        self.inner, self.classes, self.train, self.target = inner, classes, train, target

    def predict_with_proba(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        proba = shift_priors(self.inner.predict_with_proba(X)[1], self.train, self.target)
        return self.classes.take(np.argmax(proba, axis=1), axis=0), proba

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_with_proba(X)[0]


# --- choosing the priors of a trained model ------------------------------------------


def parse_priors(value, *, name: str = "priors (--priors)"):
    """A ``priors`` choice from the CLI or YAML: None, ``"balanced"``, ``"scene"`` or a mapping class -> prior.

    Text starting with ``{`` is read as a JSON object.  Prior values are
    checked here (finite, non-negative, not all zero); the class names only
    once the model's classes are known (:func:`prior_correction`).

    Raises
    ------
    ParameterError
        Anything else: an unknown word, JSON that is not an object, a
        negative or non-numeric prior.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as err:
                raise ParameterError(f"{name} is not valid JSON ({err}); give e.g. "
                                     "'{\"water\": 0.3, \"land\": 0.7}'.") from None
        elif text in PRIOR_CHOICES:
            return text
        else:
            raise ParameterError(f"{name} must be 'balanced', 'scene' or a JSON object of class priors such as "
                                 f"'{{\"water\": 0.3, \"land\": 0.7}}', not {value!r}.")
    if not isinstance(value, Mapping) or not value:
        raise ParameterError(f"{name} must be 'balanced', 'scene' or a mapping class name -> prior, not {value!r}.")
    out = {}
    for key, prior in value.items():
        if isinstance(prior, bool) or not isinstance(prior, (int, float)) or not math.isfinite(prior) or prior < 0:
            raise ParameterError(f"{name}: the prior of class {key!r} must be a finite number >= 0, not {prior!r}.")
        out[str(key)] = float(prior)
    if sum(out.values()) <= 0:
        raise ParameterError(f"{name}: the priors are all zero; give a positive prior to at least one class.")
    return out


def check_priors(priors, class_names):
    """:func:`parse_priors`, and a mapping's class names checked against ``class_names``: before any fitting.

    Raises
    ------
    ParameterError
        As :func:`parse_priors`; a mapping naming a class the sample does
        not have, or leaving one out.
    """
    choice = parse_priors(priors)
    if isinstance(choice, dict):
        _check_names(choice, [str(n) for n in class_names or []])
    return choice


def _check_names(priors: dict, names: list[str]) -> None:
    unknown = sorted(set(priors) - set(names))
    missing = [n for n in names if n not in priors]
    if unknown or missing:
        what = (f"names class(es) {', '.join(map(repr, unknown))}, which the sample does not have" if unknown
                else f"gives no prior for class(es) {', '.join(map(repr, missing))}")
        raise ParameterError(f"priors (--priors) {what}; give one prior per class of {', '.join(map(repr, names))}.")


def _frequencies(counts, names: list[str]) -> dict[str, float] | None:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return None if total <= 0 else {name: float(c / total) for name, c in zip(names, counts)}


def prior_correction(model, priors, *, class_names, y_train, scene_counts=None) -> tuple[object, dict]:
    """The model to save for a ``priors`` choice, and the record of the priors for its metadata.

    Parameters
    ----------
    model : fitted classifier
        Trained on rows whose classes are codes into ``class_names``.
    priors : None, "balanced", "scene" or mapping
        ``"scene"``: correct to the scene's class frequencies
        (``scene_counts``); ``"balanced"``: no correction (the model as
        trained); a mapping class name -> prior: correct to those priors
        (every class named, normalised to sum 1).  None (the default) is
        ``"scene"`` where it applies: a model with probabilities and a scene
        whose frequencies are known and differ from the training rows'; no
        correction otherwise, silently.
    class_names : list of str
        Names of class codes 0, 1, ...
    y_train : array of int
        Class codes of the training rows (their frequencies are the training priors).
    scene_counts : array of int, optional
        Eligible pixels of each class in the scene (``counts`` of the sample
        table summed over the splits).

    Returns
    -------
    model, dict
        The model (a :class:`PriorCorrected` when corrected) and ``{"used":
        "balanced" | "scene" | "custom", "corrected": bool, "train": {name:
        prior}, "scene": {name: prior} or None, "target": {name: prior}}``,
        with a ``"note"`` when no correction was made for a reason.

    Raises
    ------
    ParameterError
        A mapping naming an unknown class or not every class, a negative
        prior; ``"scene"`` asked for a sample table that records no scene
        counts.

    Warns
    -----
    PriorCorrectionWarning
        A correction was asked for explicitly but the model gives no class
        probabilities: it is saved uncorrected.
    """
    explicit = priors is not None
    choice = parse_priors("scene" if priors is None else priors)
    names = [str(n) for n in class_names]
    y_train = np.asarray(y_train, dtype=np.int64)
    train = _frequencies(np.bincount(y_train, minlength=len(names))[: len(names)], names)
    scene = None if scene_counts is None else _frequencies(np.asarray(scene_counts)[: len(names)], names)
    record = {"used": "balanced", "corrected": False, "train": train, "scene": scene, "target": train}
    if choice == "balanced":
        return model, record
    if isinstance(choice, dict):
        _check_names(choice, names)
        target, used = _frequencies([choice[n] for n in names], names), "custom"
    elif scene is None:
        note = ("the sample table records no scene class counts (drawn by an older rastercore?), so the model "
                "cannot be corrected to the scene's class frequencies")
        if explicit:
            raise ParameterError(f"priors (--priors) scene: {note}; draw the sample again, give the priors as "
                                 "a mapping, or use 'balanced'.")
        return model, {**record, "note": note}
    else:
        target, used = scene, "scene"
    if not _gives_proba(model):
        note = (f"{type(model).__name__} gives no class probabilities, so it is saved as trained "
                f"(priors 'balanced'), not corrected to the {used} priors")
        if explicit:
            warnings.warn(f"{note}; train a model with probabilities (an SVM: params probability=true) to correct it.",
                          PriorCorrectionWarning, stacklevel=3)
        return model, {**record, "note": note}
    codes = np.asarray(model.classes_, dtype=np.int64)
    train_p = np.array([train[names[c]] for c in codes])
    target_p = np.array([target[names[c]] for c in codes])
    if target_p.sum() <= 0:
        raise ParameterError("priors (--priors) give every class the model was trained on a prior of 0.")
    record = {**record, "used": used, "target": target}
    if np.allclose(target_p / target_p.sum(), train_p / train_p.sum(), rtol=_SAME_PRIORS_RTOL, atol=0):
        return model, {**record, "note": "the training rows already have these class frequencies"}
    return PriorCorrected(model, train_p.tolist(), target_p.tolist(), source=used), {**record, "corrected": True}


def prior_weighted_accuracy(y, prediction, priors: np.ndarray) -> float:
    """Accuracy of ``prediction`` were the classes of ``y`` as frequent as ``priors`` (by class code).

    ``sum_c pi(c) recall(c)`` over the classes present in ``y``, the priors
    renormalised over them: the overall accuracy expected on a scene with
    those class frequencies, from rows drawn with any other.
    """
    y, prediction = np.asarray(y, dtype=np.int64), np.asarray(prediction, dtype=np.int64)
    priors = np.asarray(priors, dtype=np.float64)
    present = [c for c in np.unique(y) if c < len(priors) and priors[c] > 0]
    if not present:
        return float("nan")
    weights = np.array([priors[c] for c in present])
    recalls = np.array([np.mean(prediction[y == c] == c) for c in present])
    return float((weights * recalls).sum() / weights.sum())


def validation_by_priors(model, record: dict, X, y, class_names) -> dict | None:
    """Validation scores of the model as trained and corrected to the priors of ``record``, or None.

    The corrected model is the saved one when ``record["corrected"]``; for a
    model saved as trained, the correction to the scene's priors (when they
    are known and the model gives probabilities), so the report shows both.
    Each holds ``accuracy`` and ``balanced_accuracy`` on the validation rows
    as drawn, and ``target_accuracy``: the accuracy with the classes
    weighted to the target priors (:func:`prior_weighted_accuracy`), the
    overall accuracy to expect on the scene.
    """
    from sklearn import metrics

    names = [str(n) for n in class_names]
    if isinstance(model, PriorCorrected):
        trained, corrected, target, to = model.model, model, record["target"], record["used"]
    else:
        to = "scene"
        target = record.get("scene")
        if target is None or not _gives_proba(model) or not hasattr(model, "classes_"):
            return None
        codes = np.asarray(model.classes_, dtype=np.int64)
        train_p = [record["train"][names[c]] for c in codes]
        target_p = [target[names[c]] for c in codes]
        if min(train_p) <= 0 or sum(target_p) <= 0:
            return None
        trained, corrected = model, PriorCorrected(model, train_p, target_p, source="scene")
    priors = np.array([target.get(n, 0.0) for n in names])

    def scores(estimator):
        prediction = estimator.predict(X)
        return {"accuracy": float(metrics.accuracy_score(y, prediction)),
                "balanced_accuracy": float(metrics.balanced_accuracy_score(y, prediction)),
                "target_accuracy": prior_weighted_accuracy(y, prediction, priors)}

    return {"priors": to, "rows": int(len(y)),
            "uncorrected": scores(trained), "corrected": scores(corrected)}
