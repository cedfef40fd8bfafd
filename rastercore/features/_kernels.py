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
def clean_plane(src, fill, use_fill, out):
    """``out = float32(src)`` with NaN for +/-inf and (if ``use_fill``) ``src == fill``."""
    ny, nx = src.shape
    nan = np.float32(np.nan)
    inf = np.float32(np.inf)
    for i in range(ny):
        a = src[i]
        o = out[i]
        if use_fill:
            for j in range(nx):
                f = np.float32(a[j])
                bad = (f != f) | (np.abs(f) == inf) | (a[j] == fill)
                o[j] = nan if bad else f
        else:
            for j in range(nx):
                f = np.float32(a[j])
                bad = (f != f) | (np.abs(f) == inf)
                o[j] = nan if bad else f


@njit(**_OPTS)
def all_finite(bits):
    """Whether float32 data, viewed as uint32 ``bits`` (2-D), holds no NaN or +/-inf."""
    ny, nx = bits.shape
    top = np.uint32(0)
    mask = np.uint32(0x7FFFFFFF)
    for i in range(ny):
        a = bits[i]
        for j in range(nx):
            top = max(top, a[j] & mask)
    return top < np.uint32(0x7F800000)


@njit(**_OPTS)
def _pad_row(row, left, right, mode, buf):
    """``buf`` = ``row`` (as float64) extended by ``left``/``right`` edge values."""
    n = row.size
    for j in range(left):
        buf[j] = row[_index(j - left, n, mode)]
    mid = buf[left:left + n]
    for j in range(n):
        mid[j] = row[j]
    tail = buf[left + n:left + n + right]
    for j in range(right):
        tail[j] = row[_index(n + j, n, mode)]


@njit(**_OPTS)
def _symmetry(weights):
    """1 if ``weights`` is symmetric, -1 if antisymmetric (odd length), else 0."""
    nw = weights.size
    if nw % 2 == 0:
        return 0
    r = nw // 2
    sym = True
    anti = weights[r] == 0.0
    for t in range(r):
        if weights[t] != weights[nw - 1 - t]:
            sym = False
        if weights[t] != -weights[nw - 1 - t]:
            anti = False
    return 1 if sym else (-1 if anti else 0)


@njit(**_OPTS)
def _taps(buf, weights, kind, n, acc):
    """``acc[j] = sum_t weights[t] * buf[j + t]`` for ``j < n``, float64.

    Symmetric (``kind`` 1) and antisymmetric (-1) kernels fold the two
    taps of a pair into one multiply, as scipy.ndimage does.  Every inner
    loop runs over contiguous slices with no branch, so it vectorises.
    """
    nw = weights.size
    r = nw // 2
    if kind == 0:
        for j in range(n):
            acc[j] = 0.0
        for t in range(nw):
            w = weights[t]
            b = buf[t:t + n]
            for j in range(n):
                acc[j] += w * b[j]
        return
    wc = weights[r]
    c = buf[r:r + n]
    for j in range(n):
        acc[j] = wc * c[j]
    for t in range(r):
        w = weights[t]
        lo = buf[t:t + n]
        hi = buf[nw - 1 - t:nw - 1 - t + n]
        if kind == 1:
            for j in range(n):
                acc[j] += w * (lo[j] + hi[j])
        else:
            for j in range(n):
                acc[j] += w * (lo[j] - hi[j])


@njit(**_OPTS)
def correlate_rows(src, weights, mode, out):
    """Correlate every row (axis 1) with centred ``weights``."""
    ny, nx = src.shape
    nw = weights.size
    r = nw // 2
    kind = _symmetry(weights)
    buf = np.empty(nx + nw - 1, np.float64)
    acc = np.empty(nx, np.float64)
    for i in range(ny):
        _pad_row(src[i], r, nw - 1 - r, mode, buf)
        _taps(buf, weights, kind, nx, acc)
        o = out[i]
        for j in range(nx):
            o[j] = acc[j]


@njit(**_OPTS)
def correlate_cols(src, weights, mode, out):
    """Correlate every column (axis 0) with centred ``weights``.

    Row by row (:func:`_cols_row`): each output row is a weighted sum of
    whole input rows, so the inner loops run along contiguous memory and
    vectorise.
    """
    nx = src.shape[1]
    kind = _symmetry(weights)
    acc = np.empty(nx, np.float64)
    for i in range(src.shape[0]):
        _cols_row(src, i, weights, kind, mode, acc)
        o = out[i]
        for j in range(nx):
            o[j] = acc[j]


@njit(**_OPTS)
def _cols_row(src, i, weights, kind, mode, acc):
    """Row ``i`` of the axis-0 correlation of ``src``, into float64 ``acc``."""
    ny, nx = src.shape
    nw = weights.size
    r = nw // 2
    if kind == 0:
        for j in range(nx):
            acc[j] = 0.0
        for t in range(nw):
            a = src[_index(i + t - r, ny, mode)]
            w = weights[t]
            for j in range(nx):
                acc[j] += w * a[j]
        return
    c = src[i]
    wc = weights[r]
    for j in range(nx):
        acc[j] = wc * c[j]
    for t in range(r):
        a = src[_index(i + t - r, ny, mode)]
        b = src[_index(i + r - t, ny, mode)]
        w = weights[t]
        if kind == 1:
            for j in range(nx):
                acc[j] += w * (np.float64(a[j]) + np.float64(b[j]))
        else:
            for j in range(nx):
                acc[j] += w * (np.float64(a[j]) - np.float64(b[j]))


@njit(**_OPTS)
def squares(src):
    """``float64(src) ** 2`` (the input of a window's second moment)."""
    out = np.empty(src.shape, np.float64)
    for i in range(src.shape[0]):
        for j in range(src.shape[1]):
            v = np.float64(src[i, j])
            out[i, j] = v * v
    return out


@njit(**_OPTS)
def variance_in_place(mean, sq):
    """``sq = max(sq - mean ** 2, 0)``: window second moments become population variances (float64; NaN stays)."""
    for i in range(sq.shape[0]):
        for j in range(sq.shape[1]):
            v = sq[i, j] - mean[i, j] * mean[i, j]
            sq[i, j] = 0.0 if v < 0.0 else v


@njit(**_OPTS)
def std_over_mean(mean, var, out):
    """``out = sqrt(var) / mean`` in float64, rounded to float32; NaN where ``mean == 0``."""
    for i in range(var.shape[0]):
        for j in range(var.shape[1]):
            m = mean[i, j]
            out[i, j] = np.nan if m == 0.0 else np.sqrt(var[i, j]) / m


@njit(**_OPTS)
def separable(src, w0, w1, mode, round32, out):
    """Correlate along axis 0 with ``w0``, then axis 1 with ``w1``, row by row.

    Equal to :func:`correlate_cols` into a temporary plane followed by
    :func:`correlate_rows` (the intermediate is rounded to float32 when
    ``round32``, as a float32 temporary would be), without the temporary:
    each intermediate row lives in a padded float64 buffer.
    """
    ny, nx = src.shape
    k0 = _symmetry(w0)
    k1 = _symmetry(w1)
    nw = w1.size
    left = nw // 2
    right = nw - 1 - left
    acc = np.empty(nx, np.float64)
    buf = np.empty(nx + nw - 1, np.float64)
    mid = buf[left:left + nx]
    for i in range(ny):
        _cols_row(src, i, w0, k0, mode, mid)
        if round32:
            for j in range(nx):
                mid[j] = np.float32(mid[j])
        for j in range(left):
            buf[j] = mid[_index(j - left, nx, mode)]
        for j in range(right):
            buf[left + nx + j] = mid[_index(nx + j, nx, mode)]
        _taps(buf, w1, k1, nx, acc)
        o = out[i]
        for j in range(nx):
            o[j] = acc[j]


@njit(**_OPTS)
def sobel_magnitude(src, mode, out):
    """``skimage.filters.sobel`` in one pass: ``sqrt((s0**2 + s1**2) / 2)``.

    ``s0``/``s1`` are the 3x3 Sobel responses along axis 0/1 (summed in
    float64, rounded to float32 as scipy's ``convolve`` does); squares, sum
    and root in float32 like scikit-image.
    """
    ny, nx = src.shape
    up = np.empty(nx + 2, np.float64)
    mid = np.empty(nx + 2, np.float64)
    dn = np.empty(nx + 2, np.float64)
    d = np.empty(nx + 2, np.float64)
    sm = np.empty(nx + 2, np.float64)
    root2 = np.float32(np.sqrt(np.float32(2.0)))
    for i in range(ny):
        _pad_row(src[_index(i - 1, ny, mode)], 1, 1, mode, up)
        _pad_row(src[i], 1, 1, mode, mid)
        _pad_row(src[_index(i + 1, ny, mode)], 1, 1, mode, dn)
        for j in range(nx + 2):
            d[j] = up[j] - dn[j]
            sm[j] = 0.25 * up[j] + 0.5 * mid[j] + 0.25 * dn[j]
        d0 = d[0:nx]
        d1 = d[1:nx + 1]
        d2 = d[2:nx + 2]
        s0 = sm[0:nx]
        s2 = sm[2:nx + 2]
        o = out[i]
        for j in range(nx):
            g0 = np.float32(0.25 * d0[j] + 0.5 * d1[j] + 0.25 * d2[j])
            g1 = np.float32(s0[j] - s2[j])
            o[j] = np.sqrt(g0 * g0 + g1 * g1) / root2


@njit(**_OPTS)
def _gradient_row(row, out):
    """``numpy.gradient`` of a float32 row, in float32."""
    n = row.size
    if n < 2:
        for j in range(n):
            out[j] = 0.0
        return
    half = np.float32(0.5)
    out[0] = row[1] - row[0]
    out[n - 1] = row[n - 1] - row[n - 2]
    a = row[0:n - 2]
    b = row[2:n]
    o = out[1:n - 1]
    for j in range(n - 2):
        o[j] = (b[j] - a[j]) * half


@njit(**_OPTS)
def _gradient_rows(src, i):
    """Rows ``lo``, ``hi`` and the divisor of ``numpy.gradient`` along axis 0 at row ``i``."""
    n = src.shape[0]
    lo = i - 1 if i > 0 else 0
    hi = i + 1 if i < n - 1 else n - 1
    return lo, hi, np.float32(1.0 if hi - lo == 1 else 0.5)


@njit(**_OPTS)
def hessian_gradient_eig(src, gy, big, small):
    """Eigenvalues of the Hessian built by ``numpy.gradient`` twice (largest first).

    scikit-image's ``multiscale_basic_features`` texture: ``H_rr =
    grad0(grad0(g))``, ``H_rc = grad1(grad0(g))``, ``H_cc = grad1(grad1(g))``
    with one-sided differences at the edges, in float32; eigenvalues in
    float64.  ``gy`` is a float32 scratch plane of ``src``'s shape.
    """
    ny, nx = src.shape
    if ny < 2:
        gy[:, :] = 0.0
    else:
        for i in range(ny):
            lo, hi, f = _gradient_rows(src, i)
            a = src[lo]
            b = src[hi]
            g = gy[i]
            for j in range(nx):
                g[j] = (b[j] - a[j]) * f
    gx = np.empty(nx, np.float32)
    hrc = np.empty(nx, np.float32)
    hcc = np.empty(nx, np.float32)
    for i in range(ny):
        _gradient_row(src[i], gx)
        _gradient_row(gy[i], hrc)
        _gradient_row(gx, hcc)
        lo, hi, f = _gradient_rows(gy, i)
        a = gy[lo]
        b = gy[hi]
        if ny < 2:
            f = np.float32(0.0)
        ob = big[i]
        os = small[i]
        for j in range(nx):
            hrr = np.float64((b[j] - a[j]) * f)
            cc = np.float64(hcc[j])
            rc = np.float64(hrc[j])
            mean = 0.5 * (hrr + cc)
            half = 0.5 * (hrr - cc)
            h = np.sqrt(rc * rc + half * half)
            ob[j] = mean + h
            os[j] = mean - h


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
