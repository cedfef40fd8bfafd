"""Fast inference for fitted RBF support vector classifiers.

scikit-learn's ``SVC.predict`` goes through libsvm: double precision, one
sample and one support vector at a time, one ``exp`` call per pair.
:class:`FastRBF` computes the same decision values with a numba kernel:
float32, support vectors stored feature-major so each sample streams over
them in SIMD lanes, a vectorisable ``exp``, GIL released so dask threads run
it in parallel.

The decision values follow libsvm's one-vs-one layout; ``predict`` votes as
libsvm does (ties to the lower class index), ``decision_function``
reproduces scikit-learn's binary / ``"ovo"`` / ``"ovr"`` shapes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["FastRBF"]

_LOG2E = np.float32(1.4426950408889634)
_LN2 = np.float32(0.6931471805599453)


@njit(cache=True, nogil=True, fastmath=True)
def _exp_neg(t, out, bits):
    """``out = exp(t)`` for ``t <= 0``, vectorisable (no libm call per element).

    ``exp(t) = 2**n * exp(y)`` with ``n = round(t / ln 2)`` and
    ``|y| <= ln(2) / 2``; ``exp(y)`` by a degree-6 Taylor polynomial
    (relative error below 1.2e-7); ``2**n`` from the float's exponent bits.
    """
    for s in range(t.size):
        v = max(t[s], np.float32(-87.0))
        n = np.floor(v * _LOG2E + np.float32(0.5))
        y = v - n * _LN2
        p = np.float32(1.0 / 720.0)
        p = p * y + np.float32(1.0 / 120.0)
        p = p * y + np.float32(1.0 / 24.0)
        p = p * y + np.float32(1.0 / 6.0)
        p = p * y + np.float32(0.5)
        p = p * y + np.float32(1.0)
        p = p * y + np.float32(1.0)
        out[s] = p
        bits[s] = (np.int32(n) + np.int32(127)) << np.int32(23)
    scale = bits.view(np.float32)
    for s in range(t.size):
        out[s] *= scale[s]


@njit(cache=True, nogil=True, fastmath=True)
def _ovo_decisions(X, sv_t, gamma, coef, intercept, starts, counts, n_classes):
    """One-vs-one decision values ``(n_samples, n_pairs)`` of an RBF SVC.

    ``sv_t`` is the support vectors transposed, ``(n_features, n_sv)``, so the
    inner loops run over contiguous support vectors (SIMD lanes).
    """
    n, n_features = X.shape
    m = sv_t.shape[1]
    n_pairs = n_classes * (n_classes - 1) // 2
    out = np.empty((n, n_pairs), np.float64)
    dist = np.empty(m, np.float32)
    kernel = np.empty(m, np.float32)
    bits = np.empty(m, np.int32)
    neg_gamma = -gamma
    for i in range(n):
        dist[:] = 0.0
        for f in range(n_features):
            xf = X[i, f]
            for s in range(m):
                d = xf - sv_t[f, s]
                dist[s] += d * d
        for s in range(m):
            dist[s] *= neg_gamma
        _exp_neg(dist, kernel, bits)
        p = 0
        for a in range(n_classes):
            for b in range(a + 1, n_classes):
                total = 0.0  # float64: sums of many support vectors
                for s in range(starts[a], starts[a] + counts[a]):
                    total += coef[b - 1, s] * kernel[s]
                for s in range(starts[b], starts[b] + counts[b]):
                    total += coef[a, s] * kernel[s]
                out[i, p] = total + intercept[p]
                p += 1
    return out


@njit(cache=True, nogil=True)
def _vote(decisions, n_classes):
    """libsvm's one-vs-one vote: index of the winning class per sample."""
    n = decisions.shape[0]
    winners = np.empty(n, np.int64)
    votes = np.empty(n_classes, np.int64)
    for i in range(n):
        votes[:] = 0
        p = 0
        for a in range(n_classes):
            for b in range(a + 1, n_classes):
                if decisions[i, p] > 0:
                    votes[a] += 1
                else:
                    votes[b] += 1
                p += 1
        winners[i] = np.argmax(votes)
    return winners


class FastRBF:
    """A fitted RBF ``SVC`` compiled for fast float32 inference.

    Parameters
    ----------
    svc : sklearn.svm.SVC
        Fitted, with ``kernel="rbf"``.

    Examples
    --------
    >>> fast = FastRBF(svc)
    >>> labels = fast.predict(X)          # same labels as svc.predict(X)
    """

    def __init__(self, svc):
        if getattr(svc, "kernel", None) != "rbf" or not hasattr(svc, "support_vectors_"):
            raise ValueError("FastRBF needs a fitted SVC with kernel='rbf'")
        self.classes_ = np.asarray(svc.classes_)
        self.gamma = np.float32(svc._gamma)
        self.support_vectors_t = np.ascontiguousarray(np.asarray(svc.support_vectors_, dtype=np.float32).T)
        # libsvm's sign: scikit-learn flips the public dual_coef_ of binary models.
        self.dual_coef = np.ascontiguousarray(svc._dual_coef_, dtype=np.float32)
        self.intercept = np.ascontiguousarray(svc._intercept_, dtype=np.float64)
        self.counts = np.ascontiguousarray(svc.n_support_, dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)
        self.decision_function_shape = svc.decision_function_shape

    def _ovo(self, X) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float32)
        return _ovo_decisions(X, self.support_vectors_t, self.gamma, self.dual_coef, self.intercept,
                              self.starts, self.counts, len(self.classes_))

    def predict(self, X) -> np.ndarray:
        """Class labels, as ``SVC.predict``."""
        return self.classes_[_vote(self._ovo(X), len(self.classes_))]

    def decision_function(self, X) -> np.ndarray:
        """Decision values shaped as ``SVC.decision_function``."""
        dec = self._ovo(X)
        n_classes = len(self.classes_)
        if n_classes == 2:
            return -dec[:, 0]  # scikit-learn flips libsvm's binary sign
        if self.decision_function_shape == "ovo":
            return dec
        return _ovr_from_ovo(dec, n_classes)


def _ovr_from_ovo(dec: np.ndarray, n_classes: int) -> np.ndarray:
    """scikit-learn's one-vs-rest transform of one-vs-one decisions (votes + scaled confidence)."""
    votes = np.zeros((dec.shape[0], n_classes))
    confidence = np.zeros((dec.shape[0], n_classes))
    p = 0
    for a in range(n_classes):
        for b in range(a + 1, n_classes):
            votes[:, a] += dec[:, p] > 0
            votes[:, b] += dec[:, p] <= 0
            confidence[:, a] += dec[:, p]
            confidence[:, b] -= dec[:, p]
            p += 1
    return votes + confidence / (3 * (np.abs(confidence) + 1))
