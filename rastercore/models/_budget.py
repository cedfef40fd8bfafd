"""A support-vector budget: a fitted RBF SVC approximated by fewer vectors (a reduced set).

Prediction costs one kernel evaluation per support vector per pixel, so a
model with 2,000 support vectors maps a scene about ten times slower than
one with 200.  :func:`reduce_support_vectors` replaces a fitted SVC's
support vectors by at most ``budget`` prototypes and refits the dual
coefficients of every one-vs-one pair to reproduce the pair's decision
values, the "reduced set" of Burges (1996) fitted by least squares on the
data rather than in the kernel's feature space:

1. the budget is shared between the classes in proportion to their support
   vectors (at least one each);
2. each class's prototypes are the weighted k-means centres of its support
   vectors (weights: the vectors' total absolute dual coefficient);
3. for the pair of classes ``a < b``, the coefficients of the prototypes of
   ``a`` and ``b`` are the least-squares fit of the full model's decision
   values (intercept removed) on the given rows; the intercept is kept.

The result is an ordinary :class:`sklearn.svm.SVC` (libsvm's layout), so
scikit-learn's own ``predict`` evaluates it and :class:`FastRBF` runs it;
how often its labels differ from the full model's is for the caller to
measure (:class:`rastercore.models.SampledSVC` does, and refuses a budget
that changes more labels than its tolerance).
"""

from __future__ import annotations

import copy

import numpy as np
from sklearn.metrics.pairwise import rbf_kernel

from rastercore.errors import TrainingDataError

from ._fast_rbf import FastRBF

__all__ = ["reduce_support_vectors", "class_budgets"]


def class_budgets(counts: np.ndarray, budget: int) -> np.ndarray:
    """Prototypes per class: ``budget`` shared in proportion to ``counts``, at least 1 and at most the count each.

    A budget below the number of classes is a :class:`~rastercore.errors.TrainingDataError`.

    Largest remainders get the rounding's spare places, so the total is
    ``min(budget, counts.sum())``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if budget < len(counts):
        raise TrainingDataError(f"max_support_vectors={budget} cannot keep one support vector of each of the "
                                f"{len(counts)} classes -- give at least {len(counts)}.")
    if budget >= counts.sum():
        return counts.copy()
    share = np.maximum(1, np.minimum(counts, np.floor(budget * counts / counts.sum()).astype(np.int64)))
    while share.sum() > budget:  # the floor of one per class overshot: take from the largest shares
        share[np.argmax(share)] -= 1
    remainder = budget * counts / counts.sum() - share
    for k in np.argsort(-remainder, kind="stable"):
        if share.sum() == budget:
            break
        if share[k] < counts[k]:
            share[k] += 1
    return share


def _prototypes(vectors: np.ndarray, weights: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` weighted k-means centres of ``vectors`` (the vectors themselves when there are no more than ``k``)."""
    if k >= len(vectors):
        return vectors
    from sklearn.cluster import KMeans

    kmeans = KMeans(n_clusters=k, n_init=3, random_state=seed)
    return kmeans.fit(vectors, sample_weight=weights + 1e-12).cluster_centers_


def reduce_support_vectors(svc, budget: int, X: np.ndarray, *, random_state: int = 0):
    """A copy of the fitted RBF ``svc`` with at most ``budget`` support vectors, fitted to its decisions on ``X``.

    Parameters
    ----------
    svc : sklearn.svm.SVC
        Fitted, ``kernel="rbf"``.
    budget : int
        Largest number of support vectors to keep (at least one per class).
    X : ndarray of shape (n_rows, n_features)
        Rows on which the reduced decision values are fitted to the full
        model's: the training sample is the natural choice (it is where the
        scene's pixels lie).
    random_state : int
        Seeds the k-means of the prototypes.

    Returns
    -------
    sklearn.svm.SVC
        ``svc`` itself when it has no more than ``budget`` support vectors,
        else a reduced copy.
    """
    counts = np.asarray(svc.n_support_, dtype=np.int64)
    keep = class_budgets(counts, budget)
    if np.array_equal(keep, counts):
        return svc

    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    vectors = np.asarray(svc.support_vectors_, dtype=np.float64)
    dual = np.asarray(svc._dual_coef_, dtype=np.float64)  # libsvm's sign, one row per other class
    prototypes = [_prototypes(vectors[s:s + c], np.abs(dual[:, s:s + c]).sum(axis=0), int(k), random_state)
                  for s, c, k in zip(starts, counts, keep)]
    new_starts = np.concatenate([[0], np.cumsum(keep)[:-1]])
    reduced_vectors = np.concatenate(prototypes)
    X = np.asarray(X, dtype=np.float64)
    kernel = rbf_kernel(X, reduced_vectors, gamma=float(svc._gamma))
    intercept = np.asarray(svc._intercept_, dtype=np.float64)
    targets = FastRBF(svc)._ovo(X) - intercept  # the full model's pair decisions, without their intercepts
    coef = np.zeros((len(counts) - 1, len(reduced_vectors)))
    pair = 0
    for a in range(len(counts)):
        for b in range(a + 1, len(counts)):
            cols_a = np.arange(new_starts[a], new_starts[a] + keep[a])
            cols_b = np.arange(new_starts[b], new_starts[b] + keep[b])
            beta = np.linalg.lstsq(kernel[:, np.concatenate([cols_a, cols_b])], targets[:, pair], rcond=None)[0]
            coef[b - 1, cols_a] = beta[: len(cols_a)]  # libsvm: a vector of class a weighs pair (a, b) in row b-1
            coef[a, cols_b] = beta[len(cols_a):]  # ... and a vector of class b weighs it in row a
            pair += 1
    return _with_support_vectors(svc, reduced_vectors, coef, keep)


def _with_support_vectors(svc, vectors: np.ndarray, coef: np.ndarray, counts: np.ndarray):
    """A copy of ``svc`` whose libsvm model is ``vectors`` with dual coefficients ``coef`` (libsvm's sign)."""
    reduced = copy.deepcopy(svc)
    reduced.support_vectors_ = np.ascontiguousarray(vectors)
    reduced._dual_coef_ = np.ascontiguousarray(coef)
    # scikit-learn's public sign flips for two classes (BaseLibSVM.fit does the same)
    reduced.dual_coef_ = -reduced._dual_coef_ if len(counts) == 2 else reduced._dual_coef_
    reduced._n_support = np.asarray(counts, dtype=np.int32)
    reduced.support_ = np.full(len(vectors), -1, dtype=np.int32)  # prototypes, not rows of the training set
    return reduced
