"""Numba kernels on single 2-D planes (no Python work per pixel).

Every kernel reads a C-contiguous 2-D array and writes into a caller-owned
output array, so one compiled specialisation serves float32 and float64
planes alike.  Sums are accumulated in float64.  Edges use an index map:

* ``REFLECT`` -- scipy.ndimage ``mode='reflect'`` (``d c b a | a b c d | d c b a``,
  NumPy's ``'symmetric'``), repeated for windows wider than the plane;
* ``NEAREST`` -- scipy.ndimage ``mode='nearest'`` (edge value repeated).

NaN propagates: an output whose window (support) touches a NaN is NaN, like
scipy.ndimage's linear filters (a zero weight times NaN is still NaN).
"""

from __future__ import annotations

import numpy as np
from numba import njit

REFLECT = 0
NEAREST = 1

_OPTS = dict(cache=True, nogil=True)


@njit(**_OPTS)
def _index(i, n, mode):
    """Map a possibly out-of-range index ``i`` into ``[0, n)``."""
    if 0 <= i < n:
        return i
    if mode == NEAREST:
        return 0 if i < 0 else n - 1
    period = 2 * n
    i = i % period
    if i >= n:
        i = period - 1 - i
    return i


@njit(**_OPTS)
def correlate_rows(src, weights, mode, out):
    """Correlate every row (axis 1) with centred ``weights``."""
    ny, nx = src.shape
    nw = weights.size
    r = nw // 2
    buf = np.empty(nx + 2 * r, np.float64)
    for i in range(ny):
        for j in range(nx + 2 * r):
            buf[j] = src[i, _index(j - r, nx, mode)]
        for j in range(nx):
            acc = 0.0
            for t in range(nw):
                acc += weights[t] * buf[j + t]
            out[i, j] = acc


@njit(**_OPTS)
def correlate_cols(src, weights, mode, out):
    """Correlate every column (axis 0) with centred ``weights``."""
    ny, nx = src.shape
    nw = weights.size
    r = nw // 2
    acc = np.empty(nx, np.float64)
    for i in range(ny):
        acc[:] = 0.0
        for t in range(nw):
            ii = _index(i + t - r, ny, mode)
            w = weights[t]
            for j in range(nx):
                acc[j] += w * src[ii, j]
        for j in range(nx):
            out[i, j] = acc[j]


@njit(**_OPTS)
def _better(v, best, is_max):
    return v > best if is_max else v < best


@njit(**_OPTS)
def extremum_rows(src, size, mode, is_max, out):
    """Running minimum or maximum of ``size`` values along axis 1."""
    ny, nx = src.shape
    r = size // 2
    buf = np.empty(nx + 2 * r, np.float64)
    for i in range(ny):
        for j in range(nx + 2 * r):
            buf[j] = src[i, _index(j - r, nx, mode)]
        for j in range(nx):
            best = buf[j]
            for t in range(size):
                v = buf[j + t]
                if v != v:
                    best = v
                    break
                if _better(v, best, is_max):
                    best = v
            out[i, j] = best


@njit(**_OPTS)
def extremum_cols(src, size, mode, is_max, out):
    """Running minimum or maximum of ``size`` values along axis 0."""
    ny, nx = src.shape
    r = size // 2
    best = np.empty(nx, np.float64)
    for i in range(ny):
        ii = _index(i - r, ny, mode)
        for j in range(nx):
            best[j] = src[ii, j]
        for t in range(1, size):
            ii = _index(i + t - r, ny, mode)
            for j in range(nx):
                v = src[ii, j]
                b = best[j]
                if b != b:
                    continue
                if v != v or _better(v, b, is_max):
                    best[j] = v
        for j in range(nx):
            out[i, j] = best[j]


@njit(**_OPTS)
def gradient(src, axis, out):
    """``numpy.gradient`` along ``axis``: central inside, one-sided at edges."""
    ny, nx = src.shape
    n = ny if axis == 0 else nx
    if n < 2:
        out[:, :] = 0.0
        return
    for i in range(ny):
        for j in range(nx):
            k = i if axis == 0 else j
            lo = k - 1 if k > 0 else 0
            hi = k + 1 if k < n - 1 else n - 1
            if axis == 0:
                d = src[hi, j] - src[lo, j]
            else:
                d = src[i, hi] - src[i, lo]
            out[i, j] = d / (hi - lo)


@njit(**_OPTS)
def eigvals_sym2(a, b, c, big, small):
    """Eigenvalues of ``[[a, b], [b, c]]`` per pixel, largest first."""
    ny, nx = a.shape
    for i in range(ny):
        for j in range(nx):
            aa = np.float64(a[i, j])
            cc = np.float64(c[i, j])
            bb = np.float64(b[i, j])
            mean = 0.5 * (aa + cc)
            half = 0.5 * (aa - cc)
            h = np.sqrt(bb * bb + half * half)
            big[i, j] = mean + h
            small[i, j] = mean - h


@njit(**_OPTS)
def window_values(src, r, mode, out):
    """Copy the value at every offset ``(dy, dx)`` in ``[-r, r]^2``.

    ``out[k]`` holds offset ``(dy, dx) = (k // (2r+1) - r, k % (2r+1) - r)``.
    """
    ny, nx = src.shape
    k = 0
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            for i in range(ny):
                ii = _index(i + dy, ny, mode)
                for j in range(nx):
                    out[k, i, j] = src[ii, _index(j + dx, nx, mode)]
            k += 1


@njit(**_OPTS)
def glcm_props(q, size, levels, distance, mode, out):
    """GLCM contrast, homogeneity and entropy in a ``size`` x ``size`` window.

    ``q`` holds grey levels ``0 .. levels-1`` (``-1`` marks NaN).  For each
    of the offsets (0, d), (d, d), (d, 0), (d, -d) the symmetric, normalised
    co-occurrence matrix of the pairs lying inside the window is formed and
    its properties are averaged over the four directions (as
    ``skimage.feature.graycoprops`` of ``graycomatrix(..., symmetric=True,
    normed=True)``).  ``out`` has shape (3, ny, nx).
    """
    ny, nx = q.shape
    r = size // 2
    qp = np.empty((ny + 2 * r, nx + 2 * r), np.int32)
    for i in range(ny + 2 * r):
        ii = _index(i - r, ny, mode)
        for j in range(nx + 2 * r):
            qp[i, j] = q[ii, _index(j - r, nx, mode)]
    counts = np.zeros(levels * levels, np.float64)
    touched = np.empty(2 * size * size, np.int64)
    oys = (0, distance, distance, distance)
    oxs = (distance, distance, 0, -distance)
    for i in range(ny):
        for j in range(nx):
            has_nan = False
            for wy in range(size):
                for wx in range(size):
                    if qp[i + wy, j + wx] < 0:
                        has_nan = True
            if has_nan:
                out[0, i, j] = np.nan
                out[1, i, j] = np.nan
                out[2, i, j] = np.nan
                continue
            con = 0.0
            hom = 0.0
            ent = 0.0
            for o in range(4):
                oy = oys[o]
                ox = oxs[o]
                npairs = 0
                nt = 0
                c_acc = 0.0
                h_acc = 0.0
                for wy in range(max(0, -oy), min(size, size - oy)):
                    for wx in range(max(0, -ox), min(size, size - ox)):
                        a = qp[i + wy, j + wx]
                        b = qp[i + wy + oy, j + wx + ox]
                        d2 = (a - b) * (a - b)
                        c_acc += d2
                        h_acc += 1.0 / (1.0 + d2)
                        npairs += 1
                        for cell in (a * levels + b, b * levels + a):
                            if counts[cell] == 0.0:
                                touched[nt] = cell
                                nt += 1
                            counts[cell] += 1.0
                con += c_acc / npairs
                hom += h_acc / npairs
                total = 2.0 * npairs
                e = 0.0
                for t in range(nt):
                    p = counts[touched[t]] / total
                    e -= p * np.log(p)
                    counts[touched[t]] = 0.0
                ent += e
            out[0, i, j] = con / 4.0
            out[1, i, j] = hom / 4.0
            out[2, i, j] = ent / 4.0
