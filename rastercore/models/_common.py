"""Helpers shared by the estimators: parallel maps, seeds, samples, shards, class checks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from rastercore.errors import TrainingDataError
from rastercore.quotas import class_quotas
from rastercore.scheduler import active_client

__all__: list[str] = []

_MAX_SEED = np.iinfo(np.int32).max


def parallel_map(func: Callable, tasks: Sequence[tuple], *, n_jobs: int | None = None) -> list:
    """``[func(*task) for task in tasks]``, in parallel.

    On the active distributed client when there is one (``client.submit``),
    else on a joblib thread pool of ``n_jobs`` threads (the scikit-learn
    fits used here release the GIL).  Results keep the order of ``tasks``.
    """
    tasks = list(tasks)
    if len(tasks) == 0:
        return []
    dask_client = active_client()
    if dask_client is not None and len(tasks) > 1:
        futures = [dask_client.submit(func, *task, pure=False) for task in tasks]
        return dask_client.gather(futures)
    if len(tasks) == 1 or n_jobs in (None, 1):
        return [func(*task) for task in tasks]
    from joblib import Parallel, delayed

    return Parallel(n_jobs=n_jobs, prefer="threads")(delayed(func)(*task) for task in tasks)


def seeds(rng: np.random.RandomState, n: int) -> list[int]:
    """``n`` integer seeds drawn from ``rng``, for sub-estimators and splitters."""
    return [int(s) for s in rng.randint(_MAX_SEED, size=n)]


def require_two_classes(y: np.ndarray, *, who: str, what: str = "the sample") -> np.ndarray:
    """The sorted classes of ``y``; a :class:`TrainingDataError` if there is only one."""
    classes = np.unique(y)
    if classes.size < 2:
        only = f"one class, {classes[0].item() if isinstance(classes[0], np.generic) else classes[0]!r}" \
            if classes.size else "no rows at all"
        raise TrainingDataError(
            f"{who} needs at least two classes; {what} holds only {only} ({len(y)} rows) -- check "
            f"the target/threshold or sample a larger area."
        )
    return classes


def class_sample(y: np.ndarray, n_samples: int | None, *, balance: bool,
                 rng: np.random.RandomState) -> np.ndarray:
    """Sorted row indices of a random sample of at most ``n_samples`` rows of ``y`` (all rows if None).

    Quotas per class by :func:`rastercore.quotas.class_quotas`: balanced (or
    proportional), a short class giving all it has and the others filling
    the rest, every class keeping at least one row.
    """
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    quotas = counts if n_samples is None else class_quotas(counts, n_samples, balance=balance, fill=True,
                                                            at_least_one=True)
    if np.array_equal(quotas, counts):
        return np.arange(len(y))
    picked = [rng.choice(np.flatnonzero(inverse == k), size=int(q), replace=False)
              for k, q in enumerate(quotas)]
    return np.sort(np.concatenate(picked))


def shard_indices(n_rows: int, n_shards: int, *, rng: np.random.RandomState,
                  y: np.ndarray | None = None) -> list[np.ndarray]:
    """Split ``range(n_rows)`` into at most ``n_shards`` random, near-equal, non-empty shards.

    With ``y`` the split is stratified: each class's rows (in random order)
    are dealt round-robin, so every shard gets ``count // n_shards`` or one
    more row of each class, and shard sizes differ by at most one.
    """
    if n_rows == 0:
        return []
    if y is None:
        order = rng.permutation(n_rows)
    else:
        _, inverse = np.unique(y, return_inverse=True)
        order = np.concatenate([rng.permutation(np.flatnonzero(inverse == k))
                                for k in range(inverse.max() + 1)])
    shard_of = np.empty(n_rows, dtype=np.int64)
    shard_of[order] = np.arange(n_rows) % n_shards
    return [np.flatnonzero(shard_of == s) for s in range(min(n_shards, n_rows))]


def resolve_gamma(gamma, X: np.ndarray) -> float:
    """scikit-learn's SVC ``gamma``: ``"scale"`` -> 1 / (n_features * X.var()), ``"auto"`` -> 1 / n_features."""
    if isinstance(gamma, str):
        if gamma == "scale":
            var = float(np.var(X))
            return 1.0 / (X.shape[1] * var) if var != 0 else 1.0
        if gamma == "auto":
            return 1.0 / X.shape[1]
        raise ValueError(f"gamma must be 'scale', 'auto' or a positive float, got {gamma!r}.")
    return float(gamma)


def fit_svc(params: dict, X: np.ndarray, y: np.ndarray, *, probability: bool, who: str):
    """Fit an RBF ``SVC(**params)``; with ``probability`` also a sigmoid calibration of it.

    scikit-learn 1.9 deprecates ``SVC(probability=True)``; its replacement,
    ``CalibratedClassifierCV(SVC(), ensemble=False)``, is used: the SVC is
    fitted on all rows and the sigmoid on its cross-validated decision values
    (up to 3 stratified, unshuffled -- so deterministic -- folds).  Returns
    ``(svc, calibrator or None)``.
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    svc = SVC(**params)
    if not probability:
        return svc.fit(X, y), None
    folds = min(3, int(np.unique(y, return_counts=True)[1].min()))
    if folds < 2:
        raise TrainingDataError(
            f"{who}: probability=True calibrates on cross-validated scores and needs at least 2 "
            f"rows of every class, but one class has a single row -- sample a larger area or "
            f"set probability=False."
        )
    calibrator = CalibratedClassifierCV(svc, method="sigmoid", ensemble=False, cv=folds).fit(X, y)
    return calibrator.calibrated_classifiers_[0].estimator, calibrator
