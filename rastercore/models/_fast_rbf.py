"""Fast inference for fitted RBF kernel models: support vector classifiers, Nystroem maps, kernel PCA.

scikit-learn's ``SVC.predict`` goes through libsvm: double precision, one
sample and one support vector at a time, one ``exp`` call per pair.
:class:`FastRBF` computes the same decision values with a numba kernel:
float32, support vectors stored feature-major so each sample streams over
them in SIMD lanes, a vectorisable ``exp``, GIL released so dask threads run
it in parallel.

The decision values follow libsvm's one-vs-one layout; ``predict`` votes as
libsvm does (ties to the lower class index), ``decision_function``
reproduces scikit-learn's binary / ``"ovo"`` / ``"ovr"`` shapes.
:class:`FastKernelLinear` (a linear model on a Nystroem map) and
:class:`FastKernelPCA` (``KernelPCA(kernel="rbf").transform``) run the same
loop over their fitted rows.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["FastRBF", "FastKernelLinear", "FastKernelPCA", "FastCalibratedRBF", "rbf_svc_predictor",
           "kernel_pca_predictor"]

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


@njit(cache=True, nogil=True, inline="always")
def _scratch(m):
    """Per-call buffers of :func:`_kernel_row` for ``m`` support vectors or centres: ``dist``, ``kernel``, ``bits``."""
    return np.empty(m, np.float32), np.empty(m, np.float32), np.empty(m, np.int32)


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _kernel_row(X, i, sv_t, neg_gamma, dist, kernel, bits):
    """``kernel[s] = exp(neg_gamma |X[i] - sv_s|^2)`` for every support vector (``dist``, ``bits``: scratch).

    Inlined by numba into its callers: as a call, the SVC loop took 9 % longer (measured).
    """
    n_features, m = sv_t.shape
    dist[:] = 0.0
    for f in range(n_features):
        xf = X[i, f]
        for s in range(m):
            d = xf - sv_t[f, s]
            dist[s] += d * d
    for s in range(m):
        dist[s] *= neg_gamma
    _exp_neg(dist, kernel, bits)


@njit(cache=True, nogil=True, fastmath=True)
def _ovo_decisions(X, sv_t, gamma, coef, intercept, starts, counts, n_classes):
    """One-vs-one decision values ``(n_samples, n_pairs)`` of an RBF SVC.

    ``sv_t`` is the support vectors transposed (and padded), ``(n_features, n_sv)``, so the
    inner loops run over contiguous support vectors (SIMD lanes).
    """
    n, n_features = X.shape
    m = sv_t.shape[1]
    n_pairs = n_classes * (n_classes - 1) // 2
    out = np.empty((n, n_pairs), np.float64)
    dist, kernel, bits = _scratch(m)
    neg_gamma = -gamma
    for i in range(n):
        _kernel_row(X, i, sv_t, neg_gamma, dist, kernel, bits)
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


@njit(cache=True, nogil=True, fastmath=True)
def _ovo_dense(X, sv_t, gamma, pair_weights, intercept):
    """One-vs-one decision values ``(n_samples, n_pairs)``, each pair's weights spread over every support vector.

    ``pair_weights[p]`` holds pair ``p``'s dual coefficients at its two
    classes' support vectors and zeros elsewhere, and the support vectors
    are padded with zero-weight ones to a multiple of 16, so every loop runs
    over all of them in whole SIMD lanes: more multiply-adds than
    :func:`_ovo_decisions` but 2-2.8x faster up to 12 classes (its loops
    over each class's range of support vectors did not vectorise well).
    """
    n, n_features = X.shape
    m = sv_t.shape[1]
    n_pairs = pair_weights.shape[0]
    out = np.empty((n, n_pairs), np.float64)
    dist, kernel, bits = _scratch(m)
    neg_gamma = -gamma
    for i in range(n):
        _kernel_row(X, i, sv_t, neg_gamma, dist, kernel, bits)
        for p in range(n_pairs):
            total = 0.0  # float64: sums of many support vectors
            for s in range(m):
                total += pair_weights[p, s] * kernel[s]
            out[i, p] = total + intercept[p]
    return out


def _pair_weights(dual_coef, starts, counts, n_classes: int, width: int) -> np.ndarray:
    """libsvm's one-vs-one coefficients as one dense row per pair over ``width`` (padded) support vectors."""
    rows = np.zeros((n_classes * (n_classes - 1) // 2, width), np.float32)
    p = 0
    for a in range(n_classes):
        for b in range(a + 1, n_classes):
            rows[p, starts[a]:starts[a] + counts[a]] = dual_coef[b - 1, starts[a]:starts[a] + counts[a]]
            rows[p, starts[b]:starts[b] + counts[b]] = dual_coef[a, starts[b]:starts[b] + counts[b]]
            p += 1
    return rows


_LANES = 16
"""Support vectors are padded to a multiple of this (float32 lanes of a 512-bit vector)."""

DENSE_PAIRS_MAX_CLASSES = 16
"""Up to this many classes :class:`FastRBF` uses :func:`_ovo_dense` (measured: 2.1x at 12 classes, slower at 30)."""


@njit(cache=True, nogil=True, fastmath=True)
def _rbf_row(x, shift, scale, centres_t, gamma, z, dist, kernel, bits):
    """``kernel[s] = exp(-gamma |(x - shift) / scale - c_s|^2)`` for every centre (``z`` (1, n_features), ``dist``,
    ``bits``: scratch)."""
    for f in range(z.shape[1]):
        z[0, f] = (x[f] - shift[f]) / scale[f]
    _kernel_row(z, 0, centres_t, -gamma, dist, kernel, bits)


@njit(cache=True, nogil=True, fastmath=True)
def _kernel_linear(X, shift, scale, centres_t, gamma, weights, bias):
    """``exp(-gamma |(x - shift) / scale - c|^2) @ weights + bias`` for every row: a linear model on a Nystroem map."""
    n, n_features = X.shape
    m = centres_t.shape[1]
    n_out = weights.shape[1]
    out = np.empty((n, n_out), np.float64)
    dist, kernel, bits = _scratch(m)
    z = np.empty((1, n_features), np.float32)
    for i in range(n):
        _rbf_row(X[i], shift, scale, centres_t, gamma, z, dist, kernel, bits)
        for o in range(n_out):
            total = 0.0
            for s in range(m):
                total += kernel[s] * weights[s, o]
            out[i, o] = total + bias[o]
    return out


@njit(cache=True, nogil=True, fastmath=True)
def _centred_kernel_projection(X, shift, scale, fitted_t, gamma, alphas_t, alpha_sums, bias):
    """Kernel PCA of every row: the RBF kernel against the fitted rows, centred, times the scaled eigenvectors.

    Centring ``k - column_means - mean(k) + overall_mean`` is folded in:
    ``k @ alphas - mean(k) * alpha_sums + bias`` with ``bias`` holding the
    row-independent terms.
    """
    n, n_features = X.shape
    m = fitted_t.shape[1]
    n_out = alphas_t.shape[0]
    out = np.empty((n, n_out), np.float64)
    dist, kernel, bits = _scratch(m)
    z = np.empty((1, n_features), np.float32)
    for i in range(n):
        _rbf_row(X[i], shift, scale, fitted_t, gamma, z, dist, kernel, bits)
        kernel_mean = 0.0
        for s in range(m):
            kernel_mean += kernel[s]
        kernel_mean /= m
        for o in range(n_out):
            total = 0.0
            for s in range(m):
                total += kernel[s] * alphas_t[o, s]
            out[i, o] = total - kernel_mean * alpha_sums[o] + bias[o]
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


def _votes(decisions: np.ndarray, n_classes: int) -> np.ndarray:
    """:func:`_vote`; with two classes, the sign of the one decision (a tie, 0, goes to the second class)."""
    if n_classes == 2:
        return (~(decisions[:, 0] > 0)).astype(np.int64)
    return _vote(decisions, n_classes)


@njit(cache=True, nogil=True)
def _sigmoid(dec, a, b):
    """libsvm's Platt sigmoid, written to avoid overflow."""
    f = dec * a + b
    if f >= 0:
        return np.exp(-f) / (1.0 + np.exp(-f))
    return 1.0 / (1.0 + np.exp(f))


@njit(cache=True, nogil=True)
def _coupled_probabilities(decisions, prob_a, prob_b, n_classes):
    """Pairwise Platt probabilities coupled as in Wu, Lin & Weng (2004), like scikit-learn's libsvm (two classes too)."""
    n = decisions.shape[0]
    out = np.empty((n, n_classes))
    r = np.empty((n_classes, n_classes))
    q = np.empty((n_classes, n_classes))
    qp = np.empty(n_classes)
    p = np.empty(n_classes)
    min_prob = 1e-7
    eps = 0.005 / n_classes
    max_iter = max(100, n_classes)
    for i in range(n):
        k = 0
        for a in range(n_classes):
            for b in range(a + 1, n_classes):
                v = min(max(_sigmoid(decisions[i, k], prob_a[k], prob_b[k]), min_prob), 1 - min_prob)
                r[a, b] = v
                r[b, a] = 1 - v
                k += 1
        for t in range(n_classes):
            p[t] = 1.0 / n_classes
            q[t, t] = 0.0
            for j in range(t):
                q[t, t] += r[j, t] * r[j, t]
                q[t, j] = q[j, t]
            for j in range(t + 1, n_classes):
                q[t, t] += r[j, t] * r[j, t]
                q[t, j] = -r[j, t] * r[t, j]
        for _ in range(max_iter):
            pqp = 0.0
            for t in range(n_classes):
                qp[t] = 0.0
                for j in range(n_classes):
                    qp[t] += q[t, j] * p[j]
                pqp += p[t] * qp[t]
            max_error = 0.0
            for t in range(n_classes):
                max_error = max(max_error, abs(qp[t] - pqp))
            if max_error < eps:
                break
            for t in range(n_classes):
                diff = (-qp[t] + pqp) / q[t, t]
                p[t] += diff
                pqp = (pqp + diff * (diff * q[t, t] + 2 * qp[t])) / (1 + diff) / (1 + diff)
                for j in range(n_classes):
                    qp[j] = (qp[j] + diff * q[t, j]) / (1 + diff)
                    p[j] /= 1 + diff
        out[i, :] = p
    return out


def _rows(X) -> np.ndarray:
    """``X`` as float32 rows for the kernels: a C- or Fortran-ordered array as it is (a tile's features
    come pixel-major as a transposed view), anything else copied."""
    X = np.asarray(X)
    if X.dtype == np.float32 and (X.flags.c_contiguous or X.flags.f_contiguous):
        return X
    return np.ascontiguousarray(X, dtype=np.float32)


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
        # Transposed and padded with zero vectors to whole SIMD lanes; no coefficient ever weighs the padding.
        vectors = np.asarray(svc.support_vectors_, dtype=np.float32)
        self.support_vectors_t = np.zeros((vectors.shape[1], -(-vectors.shape[0] // _LANES) * _LANES), np.float32)
        self.support_vectors_t[:, : vectors.shape[0]] = vectors.T
        # libsvm's sign: scikit-learn flips the public dual_coef_ of binary models.
        self.dual_coef = np.ascontiguousarray(svc._dual_coef_, dtype=np.float32)
        self.intercept = np.ascontiguousarray(svc._intercept_, dtype=np.float64)
        self.counts = np.ascontiguousarray(svc.n_support_, dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)
        self.pair_weights = None
        if len(self.classes_) <= DENSE_PAIRS_MAX_CLASSES:
            self.pair_weights = _pair_weights(self.dual_coef, self.starts, self.counts, len(self.classes_),
                                              self.support_vectors_t.shape[1])
        self.decision_function_shape = svc.decision_function_shape
        import warnings

        with warnings.catch_warnings():  # SVC(probability=True): deprecated in scikit-learn 1.9
            warnings.simplefilter("ignore", FutureWarning)
            self.prob_a = np.ascontiguousarray(getattr(svc, "probA_", ()), dtype=np.float64)
            self.prob_b = np.ascontiguousarray(getattr(svc, "probB_", ()), dtype=np.float64)
        self.has_proba = self.prob_a.size > 0
    def _ovo(self, X) -> np.ndarray:
        X = _rows(X)
        if self.pair_weights is not None:
            return _ovo_dense(X, self.support_vectors_t, self.gamma, self.pair_weights, self.intercept)
        return _ovo_decisions(X, self.support_vectors_t, self.gamma, self.dual_coef, self.intercept,
                              self.starts, self.counts, len(self.classes_))

    def predict(self, X) -> np.ndarray:
        """Class labels, as ``SVC.predict``."""
        return self.classes_[self.class_index(X)]

    def class_index(self, X) -> np.ndarray:
        """Index into ``classes_`` of each row's class (what a class map stores)."""
        return _votes(self._ovo(X), len(self.classes_))

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, as ``SVC.predict_proba`` (needs ``probability=True``)."""
        if not self.has_proba:
            raise AttributeError("the SVC was fitted without probability=True")
        return _coupled_probabilities(self._ovo(X), self.prob_a, self.prob_b, len(self.classes_))

    def predict_with_proba(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Labels and probabilities from one kernel evaluation."""
        if not self.has_proba:
            raise AttributeError("the SVC was fitted without probability=True")
        dec = self._ovo(X)
        labels = self.classes_[_votes(dec, len(self.classes_))]
        return labels, _coupled_probabilities(dec, self.prob_a, self.prob_b, len(self.classes_))

    def predict_with_decision(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Labels and ``SVC.decision_function`` values from one kernel evaluation."""
        dec = self._ovo(X)
        return self.classes_[_votes(dec, len(self.classes_))], self._shaped(dec)

    def decision_function(self, X) -> np.ndarray:
        """Decision values shaped as ``SVC.decision_function``."""
        return self._shaped(self._ovo(X))

    def _shaped(self, dec: np.ndarray) -> np.ndarray:
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


class FastCalibratedRBF:
    """An RBF SVC + its sigmoid calibration (a fitted ``CalibratedClassifierCV``) on the fast kernel."""

    def __init__(self, svc, calibrator):
        self.rbf = FastRBF(svc)
        self.calibrated = calibrator.calibrated_classifiers_[0]
        self.classes_ = self.rbf.classes_
        self.has_proba = True

    def predict(self, X):
        return self.rbf.predict(X)

    def predict_with_proba(self, X):
        labels, dec = self.rbf.predict_with_decision(X)
        return labels, calibrated_proba(self.calibrated, dec)


def rbf_svc_predictor(svc, calibrator=None):
    """The fast stand-in of a fitted RBF ``SVC`` (with its fitted sigmoid ``calibrator``), else None."""
    if getattr(svc, "kernel", None) != "rbf":
        return None
    return FastCalibratedRBF(svc, calibrator) if calibrator is not None else FastRBF(svc)


def calibrated_proba(calibrated, decision: np.ndarray) -> np.ndarray:
    """Probabilities of a fitted ``_CalibratedClassifier`` from precomputed decision values.

    The fitted calibrators map each decision column (``calibrator.predict``);
    the classes are combined as scikit-learn does (binary: ``1 - p``;
    multiclass: normalised to sum to one).
    """
    columns = decision.reshape(len(decision), -1)
    n_classes = len(calibrated.classes)
    proba = np.zeros((len(columns), n_classes))
    for index, (values, calibrator) in enumerate(zip(columns.T, calibrated.calibrators)):
        proba[:, index + 1 if n_classes == 2 else index] = calibrator.predict(values)
    if n_classes == 2:
        proba[:, 0] = 1.0 - proba[:, 1]
    else:
        total = proba.sum(axis=1, keepdims=True)
        proba = np.divide(proba, total, out=np.full_like(proba, 1 / n_classes), where=total != 0)
    return np.clip(proba, 0.0, 1.0)


class FastKernelLinear:
    """A linear model on a Nystroem RBF map (optionally after standardising), on a numba kernel.

    The linear model on the Nystroem features ``N k(z)`` is folded into one
    weight matrix ``N.T @ coef.T``, so each row costs one pass over the map's
    centres, the same loop as :class:`FastRBF`.  Decisions match scikit-learn
    within float32 tolerance.  Built by :meth:`rastercore.models.KernelSGD.fast_predictor`
    and, for a scikit-learn ``Pipeline`` of ``[StandardScaler,] Nystroem(kernel="rbf"),
    <linear classifier>``, by :func:`rastercore.models.fast_predictor`.

    Parameters
    ----------
    nystroem : sklearn.kernel_approximation.Nystroem
        Fitted, with ``kernel="rbf"``.
    linear : fitted linear classifier
        ``coef_``, ``intercept_`` and ``classes_`` (``SGDClassifier``,
        ``LogisticRegression``, ``LinearSVC``, ...).
    scaler : sklearn.preprocessing.StandardScaler, optional
        Fitted scaler applied before the map.
    proba : {"ovr", "softmax"} or None
        How the linear model turns decisions into probabilities: ``"ovr"``
        (``SGDClassifier(loss="log_loss")``: logistic per class, normalised),
        ``"softmax"`` (multinomial ``LogisticRegression``), or None (no
        probabilities).
    """

    def __init__(self, nystroem, linear, *, scaler=None, proba: str | None = None):
        n_features = nystroem.components_.shape[1]
        self.shift = np.zeros(n_features, np.float32) if scaler is None else scaler.mean_.astype(np.float32)
        self.scale = np.ones(n_features, np.float32) if scaler is None else scaler.scale_.astype(np.float32)
        self.centres_t = np.ascontiguousarray(nystroem.components_.T, dtype=np.float32)
        self.gamma = np.float32(nystroem.gamma if nystroem.gamma is not None else 1.0 / n_features)
        coef = np.atleast_2d(linear.coef_)
        self.weights = np.ascontiguousarray(nystroem.normalization_.T @ coef.T, dtype=np.float64)
        self.bias = np.atleast_1d(linear.intercept_).astype(np.float64)
        self.classes_ = np.asarray(linear.classes_)
        self.proba = proba
        self.has_proba = proba is not None

    def decision_function(self, X) -> np.ndarray:
        dec = _kernel_linear(_rows(X), self.shift, self.scale, self.centres_t,
                             self.gamma, self.weights, self.bias)
        return dec[:, 0] if dec.shape[1] == 1 else dec

    def predict(self, X) -> np.ndarray:
        return self._labels(self.decision_function(X))

    def _labels(self, dec):
        return self.classes_[(dec > 0).astype(int)] if dec.ndim == 1 else self.classes_[np.argmax(dec, axis=1)]

    def predict_with_proba(self, X):
        from scipy.special import expit, softmax

        dec = self.decision_function(X)
        if dec.ndim == 1:
            p = expit(dec)
            return self._labels(dec), np.column_stack([1 - p, p])
        if self.proba == "softmax":
            return self._labels(dec), softmax(dec, axis=1)
        proba = expit(dec)
        total = proba.sum(axis=1, keepdims=True)
        return self._labels(dec), np.divide(proba, total, out=np.full_like(proba, 1 / proba.shape[1]), where=total != 0)


class FastKernelPCA:
    """A fitted RBF ``KernelPCA`` (optionally after a ``StandardScaler``) on a numba kernel.

    ``transform`` equals ``KernelPCA.transform`` within float32 tolerance:
    the RBF kernel between each row and the fitted rows (float32, the loop
    of :class:`FastRBF`), centred as scikit-learn's ``KernelCenterer``
    centres it, times the eigenvectors divided by the square roots of their
    eigenvalues (components with a zero eigenvalue give 0, as in
    scikit-learn).  Built by :func:`rastercore.models.fast_predictor` for a
    ``KernelPCA(kernel="rbf")`` or a ``Pipeline([StandardScaler(), KernelPCA(kernel="rbf")])``.

    Parameters
    ----------
    kpca : sklearn.decomposition.KernelPCA
        Fitted, with ``kernel="rbf"``.
    scaler : sklearn.preprocessing.StandardScaler, optional
        Fitted scaler applied before the kernel.
    """

    has_proba = False

    def __init__(self, kpca, *, scaler=None):
        if getattr(kpca, "kernel", None) != "rbf" or not hasattr(kpca, "eigenvectors_"):
            raise ValueError("FastKernelPCA needs a fitted KernelPCA with kernel='rbf'")
        n_features = kpca.X_fit_.shape[1]
        self.shift = np.zeros(n_features, np.float32) if scaler is None else _scaler_shift(scaler, n_features)
        self.scale = np.ones(n_features, np.float32) if scaler is None else _scaler_scale(scaler, n_features)
        self.fitted_t = np.ascontiguousarray(np.asarray(kpca.X_fit_, dtype=np.float32).T)
        self.gamma = np.float32(kpca.gamma_)
        alphas = _scaled_alphas(kpca.eigenvectors_, kpca.eigenvalues_)
        centerer = kpca._centerer
        self.alphas_t = np.ascontiguousarray(alphas.T)
        self.alpha_sums = alphas.sum(axis=0)
        self.bias = -centerer.K_fit_rows_ @ alphas + centerer.K_fit_all_ * self.alpha_sums
        self.n_components = alphas.shape[1]

    def transform(self, X) -> np.ndarray:
        """``(n, n_components)`` projections, as ``KernelPCA.transform`` (after the scaler)."""
        return _centred_kernel_projection(_rows(X), self.shift, self.scale,
                                          self.fitted_t, self.gamma, self.alphas_t, self.alpha_sums, self.bias)


def _scaled_alphas(eigenvectors: np.ndarray, eigenvalues: np.ndarray) -> np.ndarray:
    """Eigenvectors over the square roots of their eigenvalues; zero where the eigenvalue is zero (as scikit-learn)."""
    alphas = np.zeros_like(eigenvectors, dtype=np.float64)
    nonzero = np.flatnonzero(eigenvalues)
    alphas[:, nonzero] = eigenvectors[:, nonzero] / np.sqrt(eigenvalues[nonzero])
    return alphas


def _scaler_shift(scaler, n_features: int) -> np.ndarray:
    """What a fitted ``StandardScaler`` subtracts (its ``mean_`` only ``with_mean``)."""
    if not scaler.with_mean or scaler.mean_ is None:
        return np.zeros(n_features, np.float32)
    return np.asarray(scaler.mean_, np.float32)


def _scaler_scale(scaler, n_features: int) -> np.ndarray:
    """What a fitted ``StandardScaler`` divides by (``scale_`` is None without ``with_std``)."""
    return np.ones(n_features, np.float32) if scaler.scale_ is None else np.asarray(scaler.scale_, np.float32)


def kernel_pca_predictor(model):
    """:class:`FastKernelPCA` for a fitted ``KernelPCA(kernel="rbf")`` or ``[StandardScaler,] KernelPCA(rbf)``
    pipeline, else None."""
    from sklearn.decomposition import KernelPCA
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    steps = [s for _, s in model.steps if s not in (None, "passthrough")] if isinstance(model, Pipeline) else [model]
    scaler = steps.pop(0) if len(steps) == 2 and isinstance(steps[0], StandardScaler) else None
    if len(steps) != 1 or not isinstance(steps[0], KernelPCA) or steps[0].kernel != "rbf":
        return None
    return FastKernelPCA(steps[0], scaler=scaler)
