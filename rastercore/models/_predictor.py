"""How a fitted model predicts the pixels of a tile: its output layers and its fast path, decided once.

Prediction asks :func:`tile_predictor` once, when the model is loaded, for a
:class:`TilePredictor`: the names of the layers it writes and a function
from feature rows to those layers.  Nothing is decided per tile.

The protocol, for estimators that want more than the defaults:

``fast_predictor()``
    A compiled stand-in for the estimator's ``predict`` (and, when its
    ``has_proba`` is true, ``predict_with_proba(X) -> (labels, proba)``),
    or None.  :class:`rastercore.models.SampledSVC`, :class:`CascadeSVC`
    and :class:`KernelSGD` implement it.  Estimators that cannot carry the
    method get an adapter here: scikit-learn's RBF ``SVC`` (:class:`FastRBF`)
    and ``Pipeline([StandardScaler,] Nystroem(kernel="rbf"), <linear classifier>)``
    (:class:`FastKernelLinear`).
``tile_predictor(*, class_names, probabilities, fast)``
    A :class:`TilePredictor` of its own, for outputs that are not the
    standard ones (:class:`HurdleModel`: ``class`` and ``value``;
    :class:`ThresholdedMultiLabel`: ``label[...]``).

Otherwise the layers follow from scikit-learn's estimator kinds:
classifiers give ``class`` (index into the class names) and ``p[<class>]``
probabilities, regressors ``value``, clusterers ``cluster``, and
projections without ``predict`` ``component[<i>]``.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import is_classifier, is_clusterer

__all__ = ["TilePredictor", "tile_predictor", "fast_predictor"]


class TilePredictor:
    """Output layers of a model and how to compute them from feature rows.

    Attributes
    ----------
    layers : list of str
        Names of the output layers, in order.
    """

    layers: list[str]

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """``(n, len(layers))`` float32 outputs for the rows of ``X`` (all finite features)."""
        raise NotImplementedError


class ClassLayers(TilePredictor):
    """``class`` (index into the model's classes) and, optionally, ``p[<class>]`` layers."""

    def __init__(self, model, *, class_names=None, probabilities: bool = True, fast=None):
        self.model, self.fast = model, fast
        names = class_names or [str(c) for c in model.classes_]
        self.with_proba = probabilities and _has_proba(model)
        self.layers = ["class"] + ([f"p[{n}]" for n in names] if self.with_proba else [])

    def __call__(self, X):
        fast = self.fast if self.fast is not None and (not self.with_proba or self.fast.has_proba) else None
        if fast is not None:
            labels, proba = fast.predict_with_proba(X) if self.with_proba else (fast.predict(X), None)
        else:
            labels = self.model.predict(X)
            proba = self.model.predict_proba(X) if self.with_proba else None
        columns = [np.searchsorted(self.model.classes_, labels)]
        if proba is not None:
            columns += list(np.asarray(proba).T)
        return np.column_stack(columns).astype(np.float32)


class PredictLayer(TilePredictor):
    """One layer holding the model's ``predict``: ``value`` for regressors, ``cluster`` for clusterers."""

    def __init__(self, model, name: str):
        self.model = model
        self.layers = [name]

    def __call__(self, X):
        return np.asarray(self.model.predict(X), dtype=np.float32).reshape(-1, 1)


class ComponentLayers(TilePredictor):
    """``component[<i>]`` layers: a projection's ``transform`` (PCA, ...)."""

    def __init__(self, model):
        self.model = model
        self.layers = [f"component[{i}]" for i in range(len(model.get_feature_names_out()))]

    def __call__(self, X):
        return np.asarray(self.model.transform(X), dtype=np.float32)


def tile_predictor(model, *, class_names=None, probabilities: bool = True, fast: bool = True) -> TilePredictor:
    """The :class:`TilePredictor` of a fitted model (see the module's protocol).

    Parameters
    ----------
    model : fitted estimator
    class_names : list of str, optional
        Names of the classes, for layer names (default the labels).
    probabilities : bool, default True
        Probability layers when the model gives them.
    fast : bool, default True
        Use the model's compiled fast path (:func:`fast_predictor`) when it has one.
    """
    own = getattr(model, "tile_predictor", None)
    if callable(own):
        return own(class_names=class_names, probabilities=probabilities, fast=fast)
    if is_clusterer(model):
        return PredictLayer(model, "cluster")
    if not hasattr(model, "predict") and hasattr(model, "transform"):
        return ComponentLayers(model)
    if is_classifier(model):
        return ClassLayers(model, class_names=class_names, probabilities=probabilities,
                           fast=fast_predictor(model) if fast else None)
    return PredictLayer(model, "value")


def fast_predictor(model):
    """A compiled stand-in for ``model.predict`` / ``predict_proba``, or None.

    The estimator's own ``fast_predictor()`` when it has one, else an
    adapter for scikit-learn's RBF ``SVC`` and Nystroem kernel-map
    pipelines.  The stand-in has ``predict(X)``, ``has_proba`` and, when
    ``has_proba``, ``predict_with_proba(X) -> (labels, proba)``.
    """
    own = getattr(model, "fast_predictor", None)
    if callable(own):
        return own()
    from sklearn.pipeline import Pipeline
    from sklearn.svm import SVC

    if isinstance(model, SVC):
        from ._fast_rbf import rbf_svc_predictor

        return rbf_svc_predictor(model)
    if isinstance(model, Pipeline):
        return _kernel_pipeline_fast(model)
    return None


def _kernel_pipeline_fast(pipeline):
    """FastKernelLinear for ``[StandardScaler,] Nystroem(rbf), <linear classifier>``, else None."""
    from sklearn.kernel_approximation import Nystroem
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.preprocessing import StandardScaler

    from ._fast_rbf import FastKernelLinear

    steps = [step for _, step in pipeline.steps if step not in (None, "passthrough")]
    scaler = steps.pop(0) if steps and isinstance(steps[0], StandardScaler) else None
    if len(steps) != 2 or not isinstance(steps[0], Nystroem) or steps[0].kernel != "rbf":
        return None
    nystroem, linear = steps
    if not is_classifier(linear) or not hasattr(linear, "coef_"):
        return None
    if scaler is not None and (not scaler.with_mean or not scaler.with_std):
        return None
    proba = None
    if isinstance(linear, SGDClassifier) and linear.loss == "log_loss":
        proba = "ovr"
    elif isinstance(linear, LogisticRegression):
        proba = "ovr" if linear.solver == "liblinear" else "softmax"
    return FastKernelLinear(nystroem, linear, scaler=scaler, proba=proba)


def _has_proba(model) -> bool:
    try:
        return hasattr(model, "predict_proba")
    except AttributeError:  # available_if raising for SVC(probability=False)
        return False
