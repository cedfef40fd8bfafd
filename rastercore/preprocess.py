"""Global per-band statistics and normalisation of a stack, out of core.

:func:`compute_band_stats` reads the stack twice, tile by tile, never holding
the scene in memory: pass 1 gives per-band count, min, max, mean and std
(per-block moments combined with Chan's parallel formula); pass 2 a fixed-bin
histogram between the global min and max (percentiles are interpolated from
its cumulative counts) and the cross-band covariance used for ZCA whitening,
summed by a dask tree reduction.  Two reads are needed because the bins
depend on the global min and max.
Nodata -- NaN, +/-inf, or ``attrs["_FillValue"]`` -- is ignored.

:class:`Normalizer` applies min-max, percentile clip-and-stretch, z-score or
ZCA whitening from those global statistics (never per tile), lazily.  Both
objects round-trip through plain dicts (``to_dict``/``from_dict``) so they
can be stored with a feature spec.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import dask.array as da
import numpy as np
import xarray as xr

from .checks import check_int
from .errors import BandNameError, FeatureSpecError
from .stack import as_float, band_names

__all__ = ["BandStats", "Normalizer", "NormalizationWarning", "compute_band_stats", "NORMALIZE_METHODS"]

NORMALIZE_METHODS = ("minmax", "percentile", "zscore", "zca")


def _pixels(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = block.reshape(block.shape[0], -1).astype(np.float64)
    return flat, np.isfinite(flat)


def _moments(block: np.ndarray) -> np.ndarray:
    """Per band: count, min, max, mean, sum of squared deviations -> (5, B)."""
    flat, ok = _pixels(block)
    n = ok.sum(axis=1).astype(np.float64)
    safe_n = np.maximum(n, 1.0)
    vals = np.where(ok, flat, 0.0)
    mean = vals.sum(axis=1) / safe_n
    m2 = (np.where(ok, flat - mean[:, None], 0.0) ** 2).sum(axis=1)
    lo = np.where(ok, flat, np.inf).min(axis=1, initial=np.inf)
    hi = np.where(ok, flat, -np.inf).max(axis=1, initial=-np.inf)
    return np.stack([n, lo, hi, mean, m2])


def _combine_moments(parts: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    p = np.stack(parts)  # (blocks, 5, B)
    n = p[:, 0].sum(axis=0)
    safe_n = np.maximum(n, 1.0)
    mean = (p[:, 0] * p[:, 3]).sum(axis=0) / safe_n
    m2 = p[:, 4].sum(axis=0) + (p[:, 0] * (p[:, 3] - mean) ** 2).sum(axis=0)
    std = np.sqrt(m2 / safe_n)
    empty = n == 0
    lo, hi = p[:, 1].min(axis=0), p[:, 2].max(axis=0)
    nan = np.full_like(mean, np.nan)
    return (n.astype(np.int64), np.where(empty, nan, lo), np.where(empty, nan, hi),
            np.where(empty, nan, mean), np.where(empty, nan, std))


def _hist_cov(block, lo, hi, bins, mean):
    """Per-band histograms and joint-valid covariance sums, packed in one vector.

    Layout: ``hist (B*bins) | n_joint (1) | sum d (B) | sum d d^T (B*B)`` with
    ``d = x - mean`` over pixels valid in every band.
    """
    flat, ok = _pixels(block)
    nb = flat.shape[0]
    hist = np.zeros((nb, bins), np.float64)
    width = np.where(hi > lo, hi - lo, 1.0)
    for b in range(nb):
        v = flat[b, ok[b]]
        idx = np.clip(((v - lo[b]) / width[b] * bins).astype(np.int64), 0, bins - 1)
        hist[b] = np.bincount(idx, minlength=bins)
    joint = ok.all(axis=0)
    d = flat[:, joint] - np.nan_to_num(mean)[:, None]
    return np.concatenate([hist.ravel(), [joint.sum()], d.sum(axis=1), (d @ d.T).ravel()])


def _per_block(data: da.Array, fn, length: int, *args) -> da.Array:
    """``(length, ny_blocks, nx_blocks)`` array of ``fn(block, *args)`` vectors."""
    def wrapped(block):
        return fn(block, *args).reshape(length, 1, 1)

    grid = data.numblocks
    return data.map_blocks(wrapped, dtype=np.float64, meta=np.empty((0, 0, 0), np.float64),
                           chunks=((length,), (1,) * grid[1], (1,) * grid[2]))


@dataclass(eq=False)
class BandStats:
    """Global statistics of each band of a stack.

    Attributes
    ----------
    band_names : list of str
    count : ndarray of int
        Valid (finite, not ``_FillValue``) pixels per band.
    minimum, maximum, mean, std : ndarray of float
        Per band; ``std`` is the population standard deviation (ddof=0).
    hist : ndarray, shape (band, bins)
        Counts in ``bins`` equal bins between ``minimum`` and ``maximum``.
    covariance : ndarray, shape (band, band)
        Population covariance over pixels valid in every band.
    joint_mean : ndarray
        Per-band mean over those same pixels (the ZCA centre).
    """

    band_names: list
    count: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    hist: np.ndarray
    covariance: np.ndarray
    joint_mean: np.ndarray

    def bin_edges(self, band: int) -> np.ndarray:
        """Histogram bin edges of band number ``band``."""
        return np.linspace(self.minimum[band], self.maximum[band], self.hist.shape[1] + 1)

    def percentile(self, q: float) -> np.ndarray:
        """Per-band ``q``-th percentile (0..100) from the cumulative histogram.

        Linear interpolation inside the bin holding the target rank; the error
        is at most one bin width, ``(max - min) / bins``.
        """
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"percentile must be within [0, 100], got {q!r}")
        out = np.full(len(self.band_names), np.nan)
        for b in range(len(self.band_names)):
            if self.count[b] == 0:
                continue
            cum = np.concatenate([[0], np.cumsum(self.hist[b])])
            out[b] = np.interp(q / 100.0 * cum[-1], cum, self.bin_edges(b))
        return out

    def to_dict(self) -> dict:
        """Plain (JSON/YAML friendly) form."""
        out = {"band_names": list(self.band_names)}
        for key in ("count", "minimum", "maximum", "mean", "std", "hist", "covariance", "joint_mean"):
            out[key] = np.asarray(getattr(self, key)).tolist()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "BandStats":
        """Inverse of :meth:`to_dict`."""
        ints = {"count", "hist"}
        kwargs = {k: np.asarray(data[k], np.int64 if k in ints else np.float64)
                  for k in ("count", "minimum", "maximum", "mean", "std", "hist",
                            "covariance", "joint_mean")}
        return cls(band_names=[str(b) for b in data["band_names"]], **kwargs)


def compute_band_stats(stack: xr.DataArray, *, bins: int = 1024) -> BandStats:
    """Per-band statistics of ``stack`` in two out-of-core passes.

    Parameters
    ----------
    stack : xarray.DataArray
        Dims ``("band", "y", "x")`` with band names; dask-backed preferred.
    bins : int, default 1024
        Histogram bins between each band's global min and max.

    Returns
    -------
    BandStats
    """
    names = band_names(stack)
    nb, bins = len(names), check_int(bins, "bins (--bins)", 2, 2**20)
    data = as_float(stack, np.float64).rechunk({0: -1})
    per_block = _per_block(data, lambda b: _moments(b).ravel(), 5 * nb).compute()
    parts = [per_block[:, i, j].reshape(5, nb) for i in range(per_block.shape[1])
             for j in range(per_block.shape[2])]
    count, lo, hi, mean, std = _combine_moments(parts)
    length = nb * bins + 1 + nb + nb * nb
    sums = _per_block(data, _hist_cov, length, lo, hi, bins, mean).sum(axis=(1, 2)).compute()
    hist = sums[: nb * bins].reshape(nb, bins).round().astype(np.int64)
    n_joint = max(sums[nb * bins], 1.0)
    s1 = sums[nb * bins + 1: nb * bins + 1 + nb] / n_joint
    cov = sums[nb * bins + 1 + nb:].reshape(nb, nb) / n_joint - np.outer(s1, s1)
    return BandStats(names, count, lo, hi, mean, std, hist, cov, np.nan_to_num(mean) + s1)


class NormalizationWarning(UserWarning):
    """A normalisation leaves a band without information (constant or empty over the stack)."""


class Normalizer:
    """Band normalisation from global :class:`BandStats`.

    Parameters
    ----------
    stats : BandStats
        Statistics of the stack (or of the training scene).
    method : {"minmax", "percentile", "zscore", "zca"}, default "zscore"
        ``minmax``: ``(x - min) / (max - min)``.  ``percentile``: stretch the
        ``low``..``high`` percentiles to 0..1 and clip to [0, 1].  ``zscore``:
        ``(x - mean) / std``.  ``zca``: ZCA whitening across bands,
        ``W (x - m)`` with ``W = U diag(1 / sqrt(l + eps * max(l))) U^T`` from
        the covariance ``U diag(l) U^T`` and ``m`` its joint mean.
    low, high : float
        Percentiles for ``percentile`` (default 2 and 98).
    eps : float
        ZCA regulariser, as a fraction of the largest covariance eigenvalue.

    Notes
    -----
    Constant bands (zero range or std) map to 0.  Nodata stays NaN; with
    ``zca`` a NaN in any band makes the pixel NaN in every band.  Arithmetic
    is float64 on float32 input, result float32, the same pixel by pixel in
    :meth:`apply` (lazy, whole stack) and :meth:`apply_block` (one NumPy
    tile), so training and prediction see identical numbers.
    """

    def __init__(self, stats: BandStats, method: str = "zscore", *, low: float = 2.0,
                 high: float = 98.0, eps: float = 1e-6):
        self.check_options(method, low=low, high=high)
        self.stats, self.method = stats, method
        self.low, self.high, self.eps = float(low), float(high), float(eps)
        self._coefficients = None

    @staticmethod
    def check_options(method: str, *, low: float = 2.0, high: float = 98.0) -> None:
        """Raise :class:`FeatureSpecError` for an unknown method or bad percentiles."""
        if method not in NORMALIZE_METHODS:
            raise FeatureSpecError(f"unknown normalisation {method!r}; valid: {', '.join(NORMALIZE_METHODS)}")
        if not 0.0 <= low < high <= 100.0:
            raise FeatureSpecError(f"percentiles need 0 <= low < high <= 100, got low={low}, high={high}")

    def warn_constant_bands(self) -> list[str]:
        """Warn about, and return, the bands this normalisation maps to a constant (no information left).

        A band with a single value over the stack (or an empty one) becomes 0
        everywhere under ``minmax``, ``percentile`` and ``zscore`` (and
        carries nothing under ``zca``): features of it are constant, and
        those that divide by it (``cv``, ``ratio``, ``normalised_difference``)
        are NaN everywhere.
        """
        s = self.stats
        if self.method == "percentile":
            span = s.percentile(self.high) - s.percentile(self.low)
        else:
            span = s.maximum - s.minimum
        flat = [b for b, width, n in zip(s.band_names, span, s.count) if not (n > 0 and width > 0)]
        for band in flat:
            i = list(s.band_names).index(band)
            value = "no valid pixels" if s.count[i] == 0 else f"the single value {float(s.minimum[i]):g}"
            warnings.warn(f"band {band} has {value} over the stack: {self.method} normalisation maps it to a "
                          "constant, so its features carry nothing and those dividing by it (cv, ratio, "
                          "normalised_difference) are NaN everywhere; leave it out of the spec's bands.",
                          NormalizationWarning, stacklevel=4)
        return flat

    @property
    def band_names(self) -> list[str]:
        """Bands the statistics cover, in their order."""
        return list(self.stats.band_names)

    def options(self) -> dict:
        """``{"method", "low", "high", "eps"}`` (everything but the statistics)."""
        return {"method": self.method, "low": self.low, "high": self.high, "eps": self.eps}

    def _shift_scale(self) -> tuple[np.ndarray, np.ndarray, bool]:
        s = self.stats
        if self.method == "minmax":
            lo, span, clip = s.minimum, s.maximum - s.minimum, False
        elif self.method == "percentile":
            lo, hi = s.percentile(self.low), s.percentile(self.high)
            span, clip = hi - lo, True
        else:
            lo, span, clip = s.mean, s.std, False
        return lo, 1.0 / np.where(span > 0, span, np.inf), clip

    def zca_matrix(self) -> np.ndarray:
        """The ``(band, band)`` whitening matrix ``W``."""
        vals, vecs = np.linalg.eigh(self.stats.covariance)
        vals = np.maximum(vals, 0.0)
        reg = self.eps * max(vals.max(initial=0.0), np.finfo(float).tiny)
        return (vecs / np.sqrt(vals + reg)) @ vecs.T

    def _coefs(self):
        if self._coefficients is None:
            if self.method == "zca":
                self._coefficients = (self.zca_matrix(), np.asarray(self.stats.joint_mean, np.float64))
            else:
                self._coefficients = self._shift_scale()
        return self._coefficients

    def apply_block(self, block: np.ndarray, band_names, bands=None) -> np.ndarray:
        """Normalise one NumPy ``(band, y, x)`` block (NaN for nodata).

        Parameters
        ----------
        block : numpy.ndarray
            Pixels; values are taken as float32, as :meth:`apply` does.
        band_names : sequence of str
            Name of each entry along ``block``'s first axis.
        bands : sequence of str, optional
            Bands to return (default: all of ``band_names``).  Each needs
            statistics; ``zca`` needs every band of the statistics in the block.

        Returns
        -------
        numpy.ndarray
            float32, ``(len(bands), y, x)``.
        """
        names = [str(b) for b in band_names]
        bands = names if bands is None else [str(b) for b in bands]
        stats_names = self.band_names
        if self.method == "zca":
            need = stats_names
        else:
            need = bands
        missing = [b for b in need if b not in stats_names or b not in names]
        if missing or not set(bands) <= set(stats_names):
            raise BandNameError(f"bands {names} differ from the statistics' bands {stats_names} "
                                f"(no match for {missing or sorted(set(bands) - set(stats_names))}); "
                                "compute the statistics on this band set")
        block = np.asarray(block)
        out = np.empty((len(bands),) + block.shape[1:], np.float32)
        if self.method == "zca":
            w, centre = self._coefs()
            x = np.stack([block[names.index(b)] for b in stats_names]).astype(np.float32)
            white = _whiten_block(x, w, centre)
            for k, b in enumerate(bands):
                out[k] = white[stats_names.index(b)]
            return out
        shift, scale, clip = self._coefs()
        for k, b in enumerate(bands):
            i = stats_names.index(b)
            plane = (block[names.index(b)].astype(np.float32).astype(np.float64) - shift[i]) * scale[i]
            if clip:
                np.clip(plane, 0.0, 1.0, out=plane)
            out[k] = plane
        return out

    def apply(self, stack: xr.DataArray) -> xr.DataArray:
        """Normalise ``stack`` lazily; same dims and coords, float32."""
        names = band_names(stack)
        if names != self.band_names:
            raise BandNameError(f"stack bands {names} differ from the statistics' bands "
                                f"{self.band_names}; compute stats on this band set")
        data = as_float(stack).rechunk({0: -1})
        out = data.map_blocks(_normalise_block, self, names, dtype=np.float32,
                              meta=np.empty((0, 0, 0), np.float32))
        attrs = {k: v for k, v in stack.attrs.items() if k != "_FillValue"}
        return xr.DataArray(out, dims=stack.dims, coords=stack.coords, attrs=attrs, name=stack.name)

    def to_dict(self) -> dict:
        """Plain (JSON-serialisable) form including the statistics."""
        return {**self.options(), "stats": self.stats.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "Normalizer":
        """Inverse of :meth:`to_dict`."""
        return cls(BandStats.from_dict(data["stats"]), data["method"], low=data.get("low", 2.0),
                   high=data.get("high", 98.0), eps=data.get("eps", 1e-6))

    def __eq__(self, other) -> bool:
        return isinstance(other, Normalizer) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Normalizer({self.method!r}, bands={self.band_names})"

    def __dask_tokenize__(self):
        return ("rastercore-normalizer", repr(self.to_dict()))


def _normalise_block(block: np.ndarray, normalizer: Normalizer, names: list[str]) -> np.ndarray:
    return normalizer.apply_block(block, names)


def _whiten_block(block: np.ndarray, w: np.ndarray, centre: np.ndarray) -> np.ndarray:
    flat = block.reshape(block.shape[0], -1).astype(np.float64) - centre[:, None]
    return (w @ flat).reshape(block.shape).astype(np.float32)
