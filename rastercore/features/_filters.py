"""Separable filters on 2-D float32 planes, built from the Numba kernels.

Each function takes a C-contiguous 2-D array and returns new float32 arrays
(float64 only where stated).  Passes run along axis 0 and then axis 1, like
``scipy.ndimage``'s separable filters, with a float32 intermediate.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from . import _kernels as K
from ._kernels import NEAREST, REFLECT

__all__ = [
    "NEAREST",
    "REFLECT",
    "TRUNCATE",
    "gaussian_radius",
    "gaussian",
    "box_mean",
    "box_moments",
    "box_cv",
    "extremum",
    "sobel_magnitude",
    "hessian_gradient_eig",
    "gradient",
    "eigvals_sym2",
    "window_values",
    "glcm_props",
    "quantise",
    "hypot_scaled",
    "safe_divide",
    "radius_for",
]

TRUNCATE = 4.0
"""Gaussian kernels are cut at ``TRUNCATE`` standard deviations (as scipy)."""


def gaussian_radius(sigma: float) -> int:
    """Half-width of scipy's Gaussian kernel: ``int(TRUNCATE * sigma + 0.5)``."""
    return int(TRUNCATE * float(sigma) + 0.5)


@lru_cache(maxsize=256)
def _gaussian_weights(sigma: float, order: int) -> np.ndarray:
    """Correlation weights of scipy's ``gaussian_filter1d`` (same formula)."""
    radius = gaussian_radius(sigma)
    x = np.arange(-radius, radius + 1)
    sigma2 = sigma * sigma
    phi = np.exp(-0.5 / sigma2 * x**2)
    phi = phi / phi.sum()
    if order == 0:
        weights = phi
    else:
        exps = np.arange(order + 1)
        q = np.zeros(order + 1)
        q[0] = 1.0
        deriv = np.diag(exps[1:], 1) + np.diag(np.ones(order) / -sigma2, -1)
        for _ in range(order):
            q = deriv.dot(q)
        weights = (x[:, None] ** exps).dot(q) * phi
    weights = np.ascontiguousarray(weights[::-1], dtype=np.float64)
    weights.flags.writeable = False
    return weights


def _separable(img, w0, w1, mode, dtype=np.float32, *, out=None):
    """Axis 0 then axis 1, fused row by row."""
    out = np.empty(img.shape, dtype) if out is None else out
    K.separable(img, w0, w1, mode, np.dtype(dtype) == np.float32, out)
    return out


def gaussian(img, sigma, *, order=(0, 0), mode=REFLECT, out=None):
    """Gaussian smoothing (or derivative, ``order`` per axis) at ``sigma``.

    Matches ``scipy.ndimage.gaussian_filter(img, sigma, order, mode=...,
    truncate=4.0)``.  ``out`` (a float32 plane of ``img``'s shape) may be
    given to avoid allocating.
    """
    sigma = float(sigma)
    w0 = _gaussian_weights(sigma, int(order[0]))
    w1 = _gaussian_weights(sigma, int(order[1]))
    return _separable(img, w0, w1, mode, out=out)


def _uniform(size):
    return np.full(int(size), 1.0 / int(size))


def box_mean(img, size, *, mode=REFLECT, out=None):
    """Mean over a ``size`` x ``size`` window (``scipy.ndimage.uniform_filter``)."""
    w = _uniform(size)
    return _separable(img, w, w, mode, out=out)


def box_moments(img, size, *, mode=REFLECT):
    """Window mean and population variance, both float64.

    The variance is ``E[x^2] - E[x]^2`` accumulated in float64 and clipped at
    zero.
    """
    w = _uniform(size)
    mean = _separable(img, w, w, mode, np.float64)  # the kernel reads any input as float64
    var = _separable(K.squares(img), w, w, mode, np.float64)
    K.variance_in_place(mean, var)
    return mean, var


def box_cv(img, size, *, mode=REFLECT):
    """Window standard deviation over mean (:func:`box_moments`), float32; NaN where the mean is 0."""
    mean, var = box_moments(img, size, mode=mode)
    out = np.empty(img.shape, np.float32)
    K.std_over_mean(mean, var, out)
    return out


def extremum(img, size, *, is_max, mode=REFLECT):
    """Minimum or maximum over a ``size`` x ``size`` window; NaN propagates."""
    tmp = np.empty(img.shape, np.float32)
    out = np.empty(img.shape, np.float32)
    K.extremum_cols(img, int(size), mode, bool(is_max), tmp)
    K.extremum_rows(tmp, int(size), mode, bool(is_max), out)
    return out


def sobel_magnitude(img, *, mode=REFLECT, out=None):
    """``skimage.filters.sobel``: ``sqrt((s_0**2 + s_1**2) / 2)``, in one pass."""
    out = np.empty(img.shape, np.float32) if out is None else out
    K.sobel_magnitude(img, mode, out)
    return out


def hessian_gradient_eig(img, *, big=None, small=None, scratch=None):
    """Eigenvalues (largest first) of the Hessian from ``numpy.gradient`` twice.

    scikit-image's ``multiscale_basic_features`` texture channels, in one
    pass over ``img`` plus one for the first derivative (``scratch``).
    """
    big = np.empty(img.shape, np.float32) if big is None else big
    small = np.empty(img.shape, np.float32) if small is None else small
    scratch = np.empty(img.shape, np.float32) if scratch is None else scratch
    K.hessian_gradient_eig(img, scratch, big, small)
    return big, small


def gradient(img, axis):
    """``numpy.gradient(img, axis=axis)`` (one-sided differences at edges)."""
    out = np.empty(img.shape, np.float32)
    K.gradient(img, int(axis), out)
    return out


def eigvals_sym2(a, b, c):
    """Eigenvalues of the symmetric 2x2 field ``[[a, b], [b, c]]``, largest first."""
    big = np.empty(a.shape, np.float32)
    small = np.empty(a.shape, np.float32)
    K.eigvals_sym2(a, b, c, big, small)
    return big, small


def window_values(img, r, *, mode=REFLECT):
    """Values at every offset within radius ``r``: shape ``((2r+1)**2, ny, nx)``."""
    n = 2 * int(r) + 1
    out = np.empty((n * n,) + img.shape, np.float32)
    K.window_values(img, int(r), mode, out)
    return out


def quantise(img, vmin, vmax, levels):
    """Grey levels ``floor((x - vmin) / (vmax - vmin) * levels)`` clipped to range.

    NaN becomes ``-1``.
    """
    scaled = (img.astype(np.float64) - vmin) * (levels / (vmax - vmin))
    nan = np.isnan(scaled)
    q = np.clip(np.floor(np.where(nan, 0.0, scaled)), 0, levels - 1).astype(np.int32)
    q[nan] = -1
    return q


def glcm_props(img, size, *, vmin, vmax, levels, distance, mode=REFLECT):
    """GLCM (contrast, homogeneity, entropy) per window: shape ``(3, ny, nx)``."""
    q = quantise(img, vmin, vmax, levels)
    out = np.empty((3,) + img.shape, np.float32)
    K.glcm_props(q, int(size), int(levels), int(distance), mode, out)
    return out


def hypot_scaled(parts):
    """``sqrt(sum(p**2))`` in float32, used for gradient magnitudes."""
    acc = np.zeros(parts[0].shape, np.float32)
    for p in parts:
        acc += p * p
    return np.sqrt(acc)


def safe_divide(num, den):
    """``num / den`` in float64 with NaN where ``den == 0``; float32 result."""
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den == 0.0, np.nan, num / np.where(den == 0.0, 1.0, den))
    return out.astype(np.float32)


def radius_for(*sigmas: float) -> int:
    """Largest Gaussian radius among ``sigmas`` (0 when none)."""
    return max((gaussian_radius(s) for s in sigmas), default=0)

