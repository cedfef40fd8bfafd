"""Training: model families fitted on a sample table, or on every labelled pixel.

:func:`train_from_table` fits one of :data:`MODEL_FAMILIES` on the training
rows of a sample table, scores it on the validation rows and saves it with
everything prediction needs (feature spec, bands, classes, grid).

:func:`train_incremental` computes the features of a few tiles at a time in
parallel on the dask cluster and feeds each tile's labelled pixels to the
model's ``partial_fit`` in the driver, for several epochs, with progress.
Memory holds a few tiles' features (two per worker thread), whatever the
scene size.

:func:`pixel_arrays` gives the same pixels as dask arrays (one block per
tile), for ``dask_ml.wrappers.Incremental`` or any dask-aware estimator.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import xarray as xr

from rastercore.errors import SamplingError
from rastercore.palette import class_colors as palette_colors
from rastercore.progress import ProgressMode
from rastercore.sampling import TRAIN, PixelPlan, SpatialSplit, fit_streaming, plan_pixels

__all__ = ["train_incremental", "pixel_arrays", "train_from_table", "build_model", "MODEL_FAMILIES"]

MODEL_FAMILIES = {
    "svm": "RBF SVC on the (balanced) sample, grid search over C and gamma (rastercore.models.SampledSVC)",
    "cascade-svm": "cascade SVM: shards fitted in parallel, support vectors merged (rastercore.models.CascadeSVC)",
    "forest": "random forest (scikit-learn)",
    "sharded-forest": "forest grown on shards in parallel and merged (rastercore.models.ShardedForest*)",
    "hgb": "histogram gradient boosting (scikit-learn)",
    "sgd": "kernel map + SGD (rastercore.models.KernelSGD*); also streams over every pixel",
    "hurdle": "classifier for value >= threshold, regressor below (rastercore.models.HurdleModel)",
    "multilabel": "one binary model per threshold label, decision thresholds tuned on validation",
}


def build_model(family: str, *, task: str = "classification", seed: int = 0, threshold: float | None = None,
                **params):
    """A new, unfitted estimator of one of :data:`MODEL_FAMILIES`.

    Parameters
    ----------
    family : str
        A key of :data:`MODEL_FAMILIES`.
    task : {"classification", "regression"}
        Picks the classifier or regressor variant.
    seed : int
        ``random_state`` of the estimator.
    threshold : float, optional
        The hurdle threshold (family ``"hurdle"``).
    **params
        Passed to the estimator.
    """
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )

    from rastercore import models

    classify = task == "classification"
    factories = {
        "svm": lambda: models.SampledSVC(random_state=seed, **params),
        "cascade-svm": lambda: models.CascadeSVC(random_state=seed, **params),
        "forest": lambda: (RandomForestClassifier if classify else RandomForestRegressor)(
            **{"n_estimators": 100, "n_jobs": -1, "random_state": seed, **params}),
        "sharded-forest": lambda: (models.ShardedForestClassifier if classify else models.ShardedForestRegressor)(
            random_state=seed, **params),
        "hgb": lambda: (HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor)(
            random_state=seed, **params),
        "sgd": lambda: (models.KernelSGD if classify else models.KernelSGDRegressor)(random_state=seed, **params),
        "hurdle": lambda: models.HurdleModel(threshold=threshold, random_state=seed, **params),
        "multilabel": lambda: models.ThresholdedMultiLabel(random_state=seed, **params),
    }
    if family not in factories:
        raise SamplingError(f"unknown model family {family!r}; choose one of {', '.join(MODEL_FAMILIES)}.")
    if family == "hurdle" and threshold is None:
        raise SamplingError("the hurdle model needs the threshold (value >= threshold is class 1).")
    if family in ("svm", "cascade-svm", "multilabel") and not classify:
        raise SamplingError(f"{family} is a classifier, but the sample is for regression; draw it with thresholds.")
    return factories[family]()


def train_from_table(table, family: str, *, seed: int = 0, params: dict | None = None,
                     labels: list[float] | None = None, path=None, overwrite: bool = False, class_colors=None):
    """Fit a model family on the training rows of a sample table; score and save it.

    Parameters
    ----------
    table : rastercore.sampling.SampleTable
        From :func:`rastercore.sampling.draw_sample` or :func:`rastercore.sampling.read_table`.
    family : str
        One of :data:`MODEL_FAMILIES`.
    seed : int
        Seed of the estimator.
    params : dict, optional
        Estimator parameters.
    labels : list of float, optional
        For ``"multilabel"``: label i is ``value >= labels[i]``; for
        ``"hurdle"``: ``[threshold]`` (default the sample's threshold).
    path : path-like, optional
        Save the fitted model there (``.skops``), with its metadata.
    overwrite : bool
        Replace an existing model file.
    class_colors : mapping, str or sequence, optional
        Colours of the classes (``{"water": "#1f78b4"}`` or
        ``"water=#1f78b4"``; :func:`rastercore.palette.class_colors`), kept
        in the model file for the maps predicted with it; default a palette.

    Returns
    -------
    model, dict
        The fitted estimator and its metadata (including ``validation`` scores and
        ``sample_size``: training and validation rows, per class for classifiers).
    """
    import time

    from rastercore.sampling import VALIDATION

    task = table.attrs.get("task", "classification")
    split = np.asarray(table.split)
    X = np.asarray(table.X)
    y, y_kind = _targets_for(family, table, labels)
    train, val = split == TRAIN, split == VALIDATION
    class_names = (["below", "above"] if family == "hurdle" else
                   [f">= {t:g}" for t in labels] if family == "multilabel" else table.class_names)
    colors = (None if y_kind == "value" and family != "hurdle" or not class_names
              else [list(c) for c in palette_colors(class_names, class_colors)])  # checked before fitting
    threshold = (labels or table.attrs.get("thresholds") or [None])[0]
    model = build_model(family, task="regression" if y_kind == "value" else task, seed=seed, threshold=threshold,
                        **(params or {}))
    start = time.perf_counter()
    model.fit(X[train], y[train])
    if family == "multilabel" and val.any():
        model.tune_thresholds(X[val], y[val])
    seconds = time.perf_counter() - start
    metadata = {
        "family": family,
        "params": {k: v for k, v in (params or {}).items()},
        "task": "regression" if y_kind == "value" and family != "hurdle" else task,
        "feature_spec": table.attrs["feature_spec"],
        "bands": table.attrs["bands"],
        "feature_names": list(table.feature_names),
        "band_ranges": table.attrs.get("band_ranges"),
        "class_names": class_names,
        "thresholds": table.attrs.get("thresholds"),
        "training": {key: table.attrs.get(key) for key in ("crs", "transform", "shape", "seed", "quotas",
                                                          "per_class", "block_size", "validation_fraction", "gap")},
        "fit_seconds": round(seconds, 3),
        "validation": _validation_scores(model, X[val], y[val], family) if val.any() else None,
        "sample_size": _sample_size(y, y_kind, train, val, table.class_names),
    }
    if colors is not None:
        metadata["class_colors"] = colors
    if path is not None:
        from rastercore.models import save_model

        save_model(model, path, metadata=metadata, overwrite=overwrite)
    return model, metadata


def _sample_size(y: np.ndarray, y_kind: str, train: np.ndarray, val: np.ndarray, class_names) -> dict:
    """Rows the model was fitted on and scored on; per class too when it learns classes."""
    size = {"train": int(train.sum()), "validation": int(val.sum())}
    if y_kind == "class" and class_names:
        for split, rows in (("train_per_class", train), ("validation_per_class", val)):
            counts = np.bincount(np.asarray(y[rows], dtype=np.int64), minlength=len(class_names))
            size[split] = {str(name): int(n) for name, n in zip(class_names, counts)}
    return size


def _targets_for(family: str, table, labels):
    """The y a family trains on: class codes, values, or a label matrix."""
    value = None if table.value is None else np.asarray(table.value)
    if family == "hurdle":
        if value is None and table.attrs.get("task") != "regression":
            raise SamplingError("the hurdle model needs the continuous target: draw the sample from a continuous "
                                "target (with --threshold, so the value is kept).")
        return (value if value is not None else np.asarray(table.y)), "value"
    if family == "multilabel":
        if value is None or not labels:
            raise SamplingError("multilabel needs a sample drawn from a continuous target and label thresholds "
                                "(e.g. --labels 0.3,0.6).")
        return np.column_stack([(value >= t).astype(int) for t in labels]), "labels"
    return np.asarray(table.y), "value" if table.attrs.get("task") == "regression" else "class"


def _validation_scores(model, X, y, family: str) -> dict:
    from sklearn import metrics

    if family == "hurdle":
        value = model.predict_value(X)
        return {"rmse": float(np.sqrt(metrics.mean_squared_error(y, value))), "rows": int(len(y))}
    prediction = model.predict(X)
    if family == "multilabel":
        return {"f1_per_label": metrics.f1_score(y, prediction, average=None).tolist(), "rows": int(len(y))}
    if np.issubdtype(np.asarray(y).dtype, np.floating):
        return {"r2": float(metrics.r2_score(y, prediction)),
                "rmse": float(np.sqrt(metrics.mean_squared_error(y, prediction))), "rows": int(len(y))}
    return {"accuracy": float(metrics.accuracy_score(y, prediction)),
            "balanced_accuracy": float(metrics.balanced_accuracy_score(y, prediction)), "rows": int(len(y))}


def _classes(plan: PixelPlan, which: int) -> np.ndarray | None:
    if plan.regression:
        return None
    present = np.flatnonzero(plan.counts[:, which] > 0)
    if present.size < 2:
        raise SamplingError(f"the {'training' if which == TRAIN else 'validation'} pixels hold only class(es) "
                            f"{present.tolist()}; a classifier needs at least two.")
    return np.flatnonzero(plan.counts.sum(axis=1) > 0)


def train_incremental(
    estimator,
    stack: xr.DataArray,
    target: xr.DataArray,
    spec,
    *,
    epochs: int = 3,
    split: SpatialSplit | None = None,
    which: int = TRAIN,
    thresholds=None,
    seed: int = 0,
    progress: ProgressMode = "auto",
):
    """Fit ``estimator.partial_fit`` on every eligible pixel of one split, tile by tile.

    Parameters
    ----------
    estimator : estimator with ``partial_fit``
        E.g. ``rastercore.models.KernelSGD()`` or ``sklearn.linear_model.SGDClassifier()``.
    stack, target, spec, split, thresholds, seed
        As in :func:`rastercore.sampling.draw_sample`.
    epochs : int, default 3
        Passes over the data; tiles are visited in a seeded random order per
        epoch and each tile's rows are shuffled.
    which : int, default TRAIN
        Split to train on (``rastercore.sampling.TRAIN`` or ``VALIDATION``).
    progress : {"auto", "bar", "json", "none"}
        One unit per tile per epoch.

    Returns
    -------
    estimator
        The fitted estimator, with ``n_pixels_seen_`` set.
    """
    plan = plan_pixels(stack, target, spec, split=split, thresholds=thresholds, seed=seed)
    estimator.n_pixels_seen_ = fit_streaming(estimator, plan, which=which, epochs=epochs, seed=seed,
                                             classes=_classes(plan, which), stage="train", progress=progress)
    return estimator


def pixel_arrays(
    stack: xr.DataArray,
    target: xr.DataArray,
    spec,
    *,
    split: SpatialSplit | None = None,
    which: int = TRAIN,
    thresholds=None,
    seed: int = 0,
) -> tuple[da.Array, da.Array, np.ndarray | None]:
    """Features and targets of every eligible pixel as dask arrays, one block per tile.

    Returns
    -------
    X : dask.array (n, n_features) float32, unknown block lengths
    y : dask.array (n,)
    classes : numpy.ndarray or None
        Class codes present (for ``partial_fit(..., classes=...)``); None for regression.
    """
    plan = plan_pixels(stack, target, spec, split=split, thresholds=thresholds, seed=seed)
    classes = _classes(plan, which)
    n_features = plan.n_features
    y_dtype = np.float32 if plan.regression else np.int32
    xs, ys = [], []
    for task in plan.tile_tasks(plan.cutoff_all(which)):
        xs.append(da.from_delayed(dask.delayed(_rows_X)(task, n_features), shape=(np.nan, n_features),
                                  dtype=np.float32))
        ys.append(da.from_delayed(dask.delayed(_rows_y)(task, plan.regression), shape=(np.nan,), dtype=y_dtype))
    return da.concatenate(xs), da.concatenate(ys), classes


def _rows_X(rows, n_features):
    return np.zeros((0, n_features), np.float32) if rows is None else rows["X"]


def _rows_y(rows, regression):
    if rows is None:
        return np.zeros(0, np.float32 if regression else np.int32)
    return rows["value"] if regression else (rows["code"] // 2).astype(np.int32)

