"""LightGBM and XGBoost fitted on every labelled pixel, on the dask cluster, by their own dask integrations.

:func:`train_distributed` turns the TRAIN pixels of a scene into dask
arrays, one block per tile (:func:`rastercore.training.plan_arrays`), keeps
them in the workers' memory, and fits ``lightgbm.DaskLGBMClassifier`` /
``DaskLGBMRegressor`` or ``xgboost.dask.DaskXGBClassifier`` /
``DaskXGBRegressor`` on them with the active ``distributed.Client``: every
worker builds its histograms from the tiles it holds and the libraries
merge them (LightGBM over its own sockets, XGBoost over its collective).
What comes back is the plain in-memory scikit-learn estimator
(``LGBMClassifier``, ``XGBClassifier``, ...), with metadata in the shape
:func:`rastercore.training.train_from_table` gives, so the model saves,
loads and predicts (with the compiled trees of
:func:`rastercore.models.compiled_trees`) like any other.

The TRAIN pixels' features must fit in the workers' memory together: both
libraries hold their training data in memory.  Needs the ``boost`` extra
(``pip install 'rastercore[boost]'``).
"""

from __future__ import annotations

import operator
import time
import warnings

import dask
import dask.array as da
import numpy as np
import xarray as xr

from rastercore.errors import ParameterError, TrainingDataError
from rastercore.features import FeatureSpec
from rastercore.grid import grid_of
from rastercore.palette import class_colors as palette_colors
from rastercore.sampling import TRAIN, VALIDATION, PixelPlan, SpatialSplit, plan_pixels
from rastercore.scheduler import active_client
from rastercore.store import check_output
from rastercore.training import BOOST_FAMILIES, boost_library, check_boost_classes, plan_arrays

__all__ = ["train_distributed", "BAND_VALUES"]

#: The default feature spec: each band's own value (a 1 x 1 window).
BAND_VALUES = [{"name": "window", "r": 0}]


def train_distributed(stack: xr.DataArray, target: xr.DataArray, family: str, *, spec=None,
                      split: SpatialSplit | None = None, thresholds=None, params: dict | None = None, seed: int = 0,
                      client=None, validation: bool = True, path=None, overwrite: bool = False,
                      class_colors=None):
    """Fit LightGBM or XGBoost on every TRAIN pixel of a scene with their dask integrations.

    Parameters
    ----------
    stack : xarray.DataArray
        ``(band, y, x)`` stack (lazy).
    target : xarray.DataArray
        ``(y, x)`` classes or values on the stack's grid, as for
        :func:`rastercore.sampling.draw_sample`.
    family : {"lightgbm", "xgboost"}
        The library.
    spec : FeatureSpec or list of dict, optional
        Features of every pixel; default :data:`BAND_VALUES`, the bands themselves.
    split : SpatialSplit, optional
        Training and validation blocks (default ``SpatialSplit()``); the model
        is fitted on the TRAIN pixels and scored on the VALIDATION ones.
    thresholds : float or list, optional
        Classes ``value >= t`` of a continuous target; without them a
        continuous target is a regression.
    params : dict, optional
        Estimator parameters (``n_estimators``, ``learning_rate``, ...).
    seed : int, default 0
        Seeds the split and the estimator (``random_state``).
    client : distributed.Client, optional
        The cluster to fit on; default the active client.  All of the work
        (features, fitting, scoring) runs on it.
    validation : bool, default True
        Score the model on the VALIDATION pixels, tile by tile on the cluster.
    path : path-like, optional
        Save the model there (:func:`rastercore.models.save_model`) with its metadata.
    overwrite : bool, default False
        Replace an existing model file.
    class_colors : mapping, str or sequence, optional
        Colours of the classes, as for :func:`rastercore.training.train_from_table`.

    Returns
    -------
    model, dict
        The in-memory estimator (``lightgbm.LGBMClassifier`` /
        ``LGBMRegressor``, ``xgboost.XGBClassifier`` / ``XGBRegressor``) and
        its metadata, with the keys of :func:`rastercore.training.train_from_table`'s
        (``family``, ``params``, ``task``, ``feature_spec``, ``bands``,
        ``feature_names``, ``class_names``, ``training``, ``fit_seconds``,
        ``validation``, ``sample_size``, ...); ``band_ranges`` is None.

    Raises
    ------
    ParameterError
        ``family`` is not ``lightgbm`` or ``xgboost``, its package is not
        installed, or there is no ``distributed.Client``.
    SamplingError
        The TRAIN pixels hold fewer than two classes.
    TrainingDataError
        ``xgboost`` with a class that has no TRAIN pixel.
    StoreExistsError
        ``path`` exists and ``overwrite`` is false.
    """
    if family not in BOOST_FAMILIES:
        raise ParameterError(f"train_distributed fits {' or '.join(map(repr, BOOST_FAMILIES))} on every pixel, "
                             f"not {family!r}.")
    library = boost_library(family)
    client = _require_client(client)
    if path is not None:
        check_output(path, overwrite=overwrite)
    spec = FeatureSpec.coerce(BAND_VALUES if spec is None else spec)
    split = SpatialSplit() if split is None else split
    with dask.config.set(scheduler=client):
        plan = plan_pixels(stack, target, spec, split=split, thresholds=thresholds, seed=seed)
        class_names = None if plan.regression else plan.class_names or [str(c) for c in range(len(plan.counts))]
        colors = None if class_names is None else [list(c) for c in palette_colors(class_names, class_colors)]
        if class_names is not None:
            check_boost_classes(family, np.flatnonzero(plan.counts[:, TRAIN]), class_names, where="TRAIN pixels")
        X, y, _ = plan_arrays(plan, TRAIN)
        X, y, train_counts = _hold_on_workers(X, y, client, None if plan.regression else len(class_names),
                                              deal=family == "lightgbm", seed=seed)
        start = time.perf_counter()
        model = _fit(family, library, X, y, classify=not plan.regression, seed=seed, params=params or {},
                     client=client)
        seconds = time.perf_counter() - start
        scores, held_out = _validation_scores(model, plan, client, class_names) if validation else (None, None)
    metadata = _metadata(family, plan, stack, params, class_names, thresholds, seconds, scores,
                         train_counts, held_out)
    if colors is not None:
        metadata["class_colors"] = colors
    if path is not None:
        from rastercore.models import save_model

        save_model(model, path, metadata=metadata, overwrite=overwrite)
    return model, metadata


def _require_client(client):
    """The client to fit on: ``client``, else the active one; a one-line error without either."""
    client = client or active_client()
    if client is None:
        raise ParameterError("train_distributed needs a distributed.Client: LightGBM's and XGBoost's dask "
                             "integrations run on one (start it with rastercore.scheduler.client() or "
                             "distributed.Client(...)).")
    return client


def _hold_on_workers(X: da.Array, y: da.Array, client, n_classes: int | None, *, deal: bool, seed: int):
    """``X`` and ``y`` computed into the workers' memory, without empty blocks, with known block lengths.

    Every tile is computed once (its rows give both blocks) and kept as a
    future, which the returned arrays hold.  With ``deal``, the rows are
    then dealt out so that every worker holds one block made of a random
    share of every tile (:func:`_deal_to_workers`).  Also returns the rows
    per class (classification) or ``[rows]`` (regression).
    """
    x_blocks, y_blocks = list(X.to_delayed().ravel()), list(y.to_delayed())
    futures = client.compute(x_blocks + y_blocks)
    x_parts, y_parts = futures[:len(x_blocks)], futures[len(x_blocks):]
    if deal:
        x_parts, y_parts = _deal_to_workers(x_parts, y_parts, client, seed)
    counts = client.gather(client.map(_label_counts, y_parts, n_classes=n_classes))
    if deal and n_classes is not None:
        _check_every_worker_has_every_class(counts)
    keep = [i for i, c in enumerate(counts) if c.sum() > 0]
    rows = [int(counts[i].sum()) for i in keep]
    X = da.concatenate([da.from_delayed(x_parts[i], (n, X.shape[1]), X.dtype) for i, n in zip(keep, rows)])
    y = da.concatenate([da.from_delayed(y_parts[i], (n,), y.dtype) for i, n in zip(keep, rows)])
    return X, y, np.sum(counts, axis=0)


def _deal_to_workers(x_parts: list, y_parts: list, client, seed: int) -> tuple[list, list]:
    """One ``(X, y)`` block per worker, pinned there, holding a seeded random share of every tile's rows.

    LightGBM's dask training fits a classifier on each worker's own rows and
    learns its classes (and binary or multiclass objective) from them, so a
    worker whose tiles lack a class breaks the training; dealing every
    tile's rows to all workers gives each of them every class (and an even
    load).  A tile's shares are cut where the tile is, so only rows move.
    """
    workers = sorted(client.scheduler_info()["workers"])
    x_held, y_held = [], []
    for k, worker in enumerate(workers):
        shares = [client.submit(_share, x, y, k, len(workers), seed + t)
                  for t, (x, y) in enumerate(zip(x_parts, y_parts))]
        held = client.submit(_stack_shares, shares, workers=[worker])
        x_held.append(client.submit(operator.itemgetter(0), held, workers=[worker]))
        y_held.append(client.submit(operator.itemgetter(1), held, workers=[worker]))
    return x_held, y_held


def _share(X: np.ndarray, y: np.ndarray, k: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Share ``k`` of ``n`` of one tile's rows: every n-th row of a seeded permutation."""
    rows = np.random.default_rng(seed).permutation(len(y))[k::n]
    return X[rows], y[rows]


def _stack_shares(shares: list) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([X for X, _ in shares]), np.concatenate([y for _, y in shares])


def _check_every_worker_has_every_class(counts: list[np.ndarray]) -> None:
    """Refuse a dealt LightGBM training set in which a worker lacks a class the others have."""
    per_worker = np.array(counts)
    lacking = np.flatnonzero((per_worker.sum(axis=0) > 0) & (per_worker == 0).any(axis=0))
    if lacking.size:
        raise TrainingDataError(f"LightGBM's dask training needs every class on every worker, and class code(s) "
                                f"{lacking.tolist()} have too few TRAIN pixels ({per_worker.sum(axis=0)[lacking].tolist()}) "
                                f"for {len(counts)} workers; use fewer workers, a larger area, or family 'xgboost'.")


def _label_counts(y: np.ndarray, n_classes: int | None) -> np.ndarray:
    return np.array([len(y)]) if n_classes is None else np.bincount(y, minlength=n_classes)


def _fit(family: str, library, X: da.Array, y: da.Array, *, classify: bool, seed: int, params: dict, client):
    """The library's dask estimator fitted on ``X``, ``y``, returned as its in-memory scikit-learn estimator."""
    if family == "lightgbm":
        estimator = library.DaskLGBMClassifier if classify else library.DaskLGBMRegressor
        with warnings.catch_warnings():  # LightGBM sets the workers' threads itself, and says so
            warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored", category=UserWarning)
            fitted = estimator(client=client, **{"verbose": -1, "random_state": seed, **params}).fit(X, y)
        return fitted.to_local()
    from xgboost import dask as xgboost_dask

    estimator = xgboost_dask.DaskXGBClassifier if classify else xgboost_dask.DaskXGBRegressor
    fitted = estimator(**{"tree_method": "hist", "random_state": seed, **params})
    fitted.client = client
    fitted.fit(X, y)
    local = (library.XGBClassifier if classify else library.XGBRegressor)(**fitted.get_params())
    local.load_model(bytearray(fitted.get_booster().save_raw(raw_format="ubj")))  # XGBoost's documented copy
    return local


def _validation_scores(model, plan: PixelPlan, client, class_names) -> tuple[dict | None, np.ndarray | None]:
    """Scores on every VALIDATION pixel (as :func:`rastercore.training.train_from_table` reports them) and the
    pixels per class; ``(None, None)`` without validation pixels (or with one class only).

    Each tile is predicted where it is computed; only confusion counts (or
    sums of squares) come back.
    """
    held_out = plan.counts[:, VALIDATION]
    if held_out.sum() == 0 or (class_names is not None and np.count_nonzero(held_out) < 2):
        return None, None
    X, y, _ = plan_arrays(plan, VALIDATION)
    n_classes = None if class_names is None else len(class_names)
    fitted = dask.delayed(model)
    parts = [dask.delayed(_tile_scores)(fitted, x, t, n_classes)
             for x, t in zip(X.to_delayed().ravel(), y.to_delayed())]
    totals = np.sum(client.compute(parts, sync=True), axis=0)
    if n_classes is None:
        rows, total, squares, errors = totals
        spread = squares - total * total / rows
        return {"r2": float(1 - errors / spread) if spread > 0 else float("nan"),
                "rmse": float(np.sqrt(errors / rows)), "rows": int(rows)}, None
    confusion = totals.reshape(n_classes, n_classes)
    support = confusion.sum(axis=1)
    recall = np.diag(confusion)[support > 0] / support[support > 0]
    return {"accuracy": float(np.trace(confusion) / confusion.sum()), "balanced_accuracy": float(recall.mean()),
            "rows": int(confusion.sum())}, support


def _tile_scores(model, X: np.ndarray, y: np.ndarray, n_classes: int | None) -> np.ndarray:
    """One tile's confusion counts (flattened, true class major) or ``[rows, sum y, sum y², sum (y - ŷ)²]``."""
    if n_classes is None:
        if len(y) == 0:
            return np.zeros(4)
        y = y.astype(np.float64)
        error = y - model.predict(X)
        return np.array([len(y), y.sum(), (y * y).sum(), (error * error).sum()])
    if len(y) == 0:
        return np.zeros(n_classes * n_classes, np.int64)
    predicted = np.asarray(model.predict(X), dtype=np.int64)
    return np.bincount(y.astype(np.int64) * n_classes + predicted, minlength=n_classes * n_classes)


def _metadata(family: str, plan: PixelPlan, stack: xr.DataArray, params, class_names, thresholds, seconds: float,
              scores: dict | None, train_counts: np.ndarray, held_out: np.ndarray | None) -> dict:
    """The model's metadata, with the keys :func:`rastercore.training.train_from_table` writes."""
    grid = grid_of(stack)
    split = plan.split
    size = {"train": int(train_counts.sum()), "validation": int(scores["rows"]) if scores else 0}
    if class_names is not None:
        held_out = np.zeros(len(class_names), np.int64) if held_out is None else held_out
        size["train_per_class"] = {str(n): int(c) for n, c in zip(class_names, train_counts)}
        size["validation_per_class"] = {str(n): int(c) for n, c in zip(class_names, held_out)}
    return {
        "family": family,
        "params": dict(params or {}),
        "task": "regression" if plan.regression else "classification",
        "feature_spec": plan.spec.to_dict(),
        "bands": list(plan.bands),
        "feature_names": plan.spec.feature_names(list(plan.bands)),
        "band_ranges": None,
        "class_names": class_names,
        "thresholds": None if thresholds is None else np.atleast_1d(thresholds).astype(float).tolist(),
        "training": {"crs": grid.crs.to_wkt() if grid.crs else None, "transform": list(grid.transform)[:6],
                     "shape": [grid.height, grid.width], "seed": plan.seed, "quotas": plan.counts.tolist(),
                     "per_class": "all", "block_size": split.block_size,
                     "validation_fraction": split.validation_fraction if split.regions is None else None,
                     "gap": plan.spec.halo if split.gap is None else split.gap},
        "fit_seconds": round(seconds, 3),
        "validation": scores,
        "sample_size": size,
    }
