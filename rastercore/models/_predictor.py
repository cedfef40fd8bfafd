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
    (:class:`FastKernelLinear`).  For projections the stand-in has
    ``transform(X)`` instead: ``KernelPCA(kernel="rbf")``, alone or after a
    ``StandardScaler`` (:class:`FastKernelPCA`).
``tile_predictor(*, class_names, probabilities, fast)``
    A :class:`TilePredictor` of its own, for outputs that are not the
    standard ones (:class:`HurdleModel`: ``class`` and ``value``;
    :class:`ThresholdedMultiLabel`: ``label[...]``).

Otherwise the layers follow from scikit-learn's estimator kinds:
classifiers give ``class`` (index into the class names) and ``p[<class>]``
probabilities, regressors ``value``, clusterers ``cluster``, and
projections without ``predict`` ``component[<i>]``.  A model with neither
``predict`` nor ``transform`` (t-SNE, which only embeds the rows it was
fitted on) cannot map pixels and is refused.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import is_classifier, is_clusterer

from rastercore.errors import ParameterError

__all__ = ["TilePredictor", "tile_predictor", "fast_predictor", "uncertainty", "UNCERTAINTY_LAYERS",
           "CLASS_LAYER_GROUPS", "VALUE_LAYER_GROUPS"]


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


UNCERTAINTY_LAYERS = ("maxprob", "margin", "entropy")
"""Per-pixel uncertainty of a classifier with probabilities: the highest probability, the margin between the
two highest, and the entropy of the probabilities divided by its maximum, log(number of classes)."""

CLASS_LAYER_GROUPS = ("class", "proba", *UNCERTAINTY_LAYERS)
"""What a classifier can write (``layers=``/``--layers``): ``proba`` stands for one ``p[<class>]`` per class."""

VALUE_LAYER_GROUPS = ("value", "spread")
"""What a regressor can write: ``spread`` is the standard deviation across an ensemble's members (forests)."""


class ClassLayers(TilePredictor):
    """``class`` (index into the model's classes) and, as asked, ``p[<class>]`` and uncertainty layers."""

    def __init__(self, model, *, class_names=None, probabilities: bool = True, layers=None, fast=None):
        self.model, self.fast = model, fast
        names = class_names or [str(c) for c in model.classes_]
        groups = _groups(layers, CLASS_LAYER_GROUPS, ("class", "proba") if probabilities else ("class",))
        needs = [g for g in groups if g != "class"]
        if needs and not _has_proba(model):
            if layers is not None:
                raise ParameterError(f"--layers {','.join(needs)} needs class probabilities, which "
                                     f"{type(model).__name__} does not give; ask for class only.")
            groups = ["class"]
        self.groups = groups
        self.with_proba = any(g != "class" for g in groups)
        # FastRBF gives each row's index into its classes_ directly: the class layer when those are the model's
        self.direct_index = hasattr(fast, "class_index") and np.array_equal(fast.classes_, model.classes_)
        self.layers = [layer for g in groups
                       for layer in ([f"p[{n}]" for n in names] if g == "proba" else [g])]

    def __call__(self, X):
        fast = self.fast if self.fast is not None and (not self.with_proba or self.fast.has_proba) else None
        if self.groups == ["class"]:  # class only: one column, no stacking
            index = (fast.class_index(X) if self.direct_index
                     else np.searchsorted(self.model.classes_, (fast or self.model).predict(X)))
            return index.astype(np.float32)[:, np.newaxis]
        if fast is not None:
            labels, proba = fast.predict_with_proba(X) if self.with_proba else (fast.predict(X), None)
        else:
            labels = self.model.predict(X)
            proba = self.model.predict_proba(X) if self.with_proba else None
        proba = None if proba is None else np.asarray(proba, dtype=np.float64)
        columns = []
        for group in self.groups:
            if group == "class":
                columns.append(np.searchsorted(self.model.classes_, labels))
            elif group == "proba":
                columns += list(proba.T)
            else:
                columns.append(uncertainty(proba, group))
        return np.column_stack(columns).astype(np.float32)


def uncertainty(proba: np.ndarray, kind: str) -> np.ndarray:
    """One of :data:`UNCERTAINTY_LAYERS` for each row of class probabilities ``proba`` ``(n, n_classes)``.

    ``maxprob``: the highest probability; ``margin``: the highest minus the
    second highest (1 with one class); ``entropy``: ``-sum(p log p) /
    log(n_classes)``, 0 for a certain pixel and 1 for equal probabilities.
    """
    if kind == "maxprob":
        return proba.max(axis=1)
    if kind == "margin":
        if proba.shape[1] < 2:
            return np.ones(len(proba))
        top2 = np.partition(proba, -2, axis=1)[:, -2:]
        return top2[:, 1] - top2[:, 0]
    if proba.shape[1] < 2:
        return np.zeros(len(proba))
    p = np.clip(proba, 0, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=1) / np.log(proba.shape[1])


class PredictLayer(TilePredictor):
    """One layer holding the model's ``predict``: ``value`` for regressors, ``cluster`` for clusterers."""

    def __init__(self, model, name: str):
        self.model = model
        self.layers = [name]

    def __call__(self, X):
        return np.asarray(self.model.predict(X), dtype=np.float32).reshape(-1, 1)


class ValueLayers(TilePredictor):
    """A regressor's ``value`` and, for an ensemble of regressors (forests), their ``spread`` (standard deviation)."""

    def __init__(self, model, layers=None, fast=None):
        self.model, self.predict = model, (fast or model).predict
        self.layers = _groups(layers, VALUE_LAYER_GROUPS, ("value",))
        if "spread" in self.layers and not _members(model):
            raise ParameterError(f"--layers spread needs an ensemble (a forest), and {type(model).__name__} is not "
                                 "one; ask for value only.")

    def __call__(self, X):
        if "spread" not in self.layers:
            return np.asarray(self.predict(X), dtype=np.float32).reshape(-1, 1)
        members = np.stack([np.asarray(m.predict(X), dtype=np.float64) for m in _members(self.model)])
        outputs = {"value": np.asarray(self.predict(X), dtype=np.float64), "spread": members.std(axis=0)}
        return np.column_stack([outputs[g] for g in self.layers]).astype(np.float32)


def _members(model) -> list:
    """The fitted members of an averaging ensemble of regressors (a forest's trees), else []."""
    members = getattr(model, "estimators_", None)
    if members is None or not hasattr(model, "n_estimators") and not hasattr(model, "n_shards"):
        return []
    members = list(np.ravel(members))
    return members if members and all(hasattr(m, "predict") for m in members) else []


def _groups(layers, allowed: tuple[str, ...], default: tuple[str, ...]) -> list[str]:
    """The asked layer groups (a list or ``"class,proba"``), checked against ``allowed``; ``default`` if None."""
    if layers is None:
        return list(default)
    groups = [g.strip() for g in layers.split(",")] if isinstance(layers, str) else [str(g) for g in layers]
    unknown = [g for g in groups if g not in allowed]
    if unknown or not groups or len(set(groups)) != len(groups):
        raise ParameterError(f"--layers {','.join(groups) or repr('')}: this model writes any of "
                             f"{', '.join(allowed)}, each once.")
    return groups


class ComponentLayers(TilePredictor):
    """``component[<i>]`` layers: a projection's ``transform`` (PCA, kernel PCA, ...), compiled when ``fast``."""

    def __init__(self, model, fast=None):
        self.model, self.transform = model, (fast or model).transform
        self.layers = [f"component[{i}]" for i in range(len(model.get_feature_names_out()))]

    def __call__(self, X):
        return np.asarray(self.transform(X), dtype=np.float32)


def tile_predictor(model, *, class_names=None, probabilities: bool = True, fast: bool = True,
                   layers=None) -> TilePredictor:
    """The :class:`TilePredictor` of a fitted model (see the module's protocol).

    Parameters
    ----------
    model : fitted estimator
    class_names : list of str, optional
        Names of the classes, for layer names (default the labels).
    probabilities : bool, default True
        Probability layers when the model gives them (with ``layers`` None).
    fast : bool, default True
        Use the model's compiled fast path (:func:`fast_predictor`) when it has one.
    layers : sequence of str or str, optional
        The layers to write, in order: for a classifier any of
        :data:`CLASS_LAYER_GROUPS` (``proba`` is one ``p[<class>]`` per
        class), for a regressor any of :data:`VALUE_LAYER_GROUPS`.  Default:
        ``class`` and ``proba`` (``value`` for a regressor).  Models with
        layers of their own (hurdle, multi-label, clusterers, projections)
        take none.

    Raises
    ------
    ParameterError
        A layer this model cannot write.
    """
    own = getattr(model, "tile_predictor", None)
    fixed = callable(own) or is_clusterer(model) or not (is_classifier(model) or hasattr(model, "predict"))
    if layers is not None and fixed:
        raise ParameterError(f"--layers: {type(model).__name__} writes its own layers; leave --layers out.")
    if callable(own):
        return own(class_names=class_names, probabilities=probabilities, fast=fast)
    if is_clusterer(model):
        return PredictLayer(model, "cluster")
    if not hasattr(model, "predict"):
        if not hasattr(model, "transform"):
            raise ParameterError(f"{type(model).__name__} has neither predict nor transform, so it cannot map "
                                 "pixels it was not fitted on (t-SNE is such a view of a sample: draw it with "
                                 "`rastercore view`).")
        return ComponentLayers(model, fast=fast_predictor(model) if fast else None)
    if is_classifier(model):
        return ClassLayers(model, class_names=class_names, probabilities=probabilities, layers=layers,
                           fast=fast_predictor(model) if fast else None)
    return ValueLayers(model, layers, fast=fast_predictor(model) if fast else None)


def fast_predictor(model):
    """A compiled stand-in for ``model.predict`` / ``predict_proba``, or None.

    The estimator's own ``fast_predictor()`` when it has one, else an
    adapter for scikit-learn's RBF ``SVC``, Nystroem kernel-map pipelines,
    and tree ensembles (forests, extra trees, histogram gradient boosting:
    :class:`rastercore.models.CompiledTrees`).  The stand-in has ``predict(X)``, ``has_proba`` and, when
    ``has_proba``, ``predict_with_proba(X) -> (labels, proba)``; for an RBF kernel PCA (alone or after a
    ``StandardScaler``) it is a :class:`rastercore.models.FastKernelPCA` with ``transform(X)``.
    """
    own = getattr(model, "fast_predictor", None)
    if callable(own):
        return own()
    from sklearn.pipeline import Pipeline
    from sklearn.svm import SVC

    from ._fast_rbf import kernel_pca_predictor

    kernel_pca = kernel_pca_predictor(model)
    if kernel_pca is not None:
        return kernel_pca
    if isinstance(model, SVC):
        from ._fast_rbf import rbf_svc_predictor

        return rbf_svc_predictor(model)
    if isinstance(model, Pipeline):
        return _kernel_pipeline_fast(model)
    from ._trees import compiled_trees

    return compiled_trees(model)


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
