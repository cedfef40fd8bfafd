"""Training on every labelled pixel, streamed tile by tile.

:func:`train_incremental` computes the features of a batch of tiles in
parallel on the dask cluster and feeds each tile's labelled pixels to the
model's ``partial_fit`` in the driver, for several epochs, with progress.
Memory holds one batch of tiles' features, whatever the scene size.

:func:`pixel_arrays` gives the same pixels as dask arrays (one block per
tile), for ``dask_ml.wrappers.Incremental`` or any dask-aware estimator.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import xarray as xr

from rastercore.errors import SamplingError
from rastercore.progress import Progress, ProgressMode
from rastercore.sampling import TRAIN, PixelPlan, SpatialSplit, plan_pixels

__all__ = ["train_incremental", "pixel_arrays"]


def _split_cutoff(plan: PixelPlan, which: int) -> np.ndarray:
    cutoff = np.zeros(plan.counts.shape)
    cutoff[:, which] = 1.0  # every key is < 1: take all pixels of that split
    return cutoff


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
    classes = _classes(plan, which)
    tasks = plan.tile_tasks(_split_cutoff(plan, which))
    rng = np.random.default_rng(seed)
    batch = max(2, 2 * _threads())
    seen = 0
    with Progress("train", epochs * len(tasks), mode=progress) as bar:
        for _ in range(epochs):
            order = rng.permutation(len(tasks))
            for start in range(0, len(order), batch):
                chunk = [tasks[i] for i in order[start:start + batch]]
                for rows in dask.compute(*chunk):
                    if rows is not None and len(rows["code"]):
                        seen += _partial_fit(estimator, rows, plan, classes, rng)
                bar.update(len(chunk))
    estimator.n_pixels_seen_ = seen
    return estimator


def _partial_fit(estimator, rows: dict, plan: PixelPlan, classes, rng) -> int:
    shuffle = rng.permutation(len(rows["code"]))
    X = rows["X"][shuffle]
    y = rows["value"][shuffle] if plan.regression else (rows["code"][shuffle] // 2)
    if classes is None:
        estimator.partial_fit(X, y)
    else:
        estimator.partial_fit(X, y, classes=classes)
    return len(y)


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
    n_features = len(plan.spec.feature_names(plan.bands))
    y_dtype = np.float32 if plan.regression else np.int32
    xs, ys = [], []
    for task in plan.tile_tasks(_split_cutoff(plan, which)):
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


def _threads() -> int:
    from rastercore.tiles import _worker_threads

    return _worker_threads()
