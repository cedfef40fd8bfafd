"""Out-of-core band statistics and normalisation against NumPy."""

from __future__ import annotations

import json

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from numpy.testing import assert_allclose, assert_array_equal

from rastercore.errors import BandNameError, FeatureSpecError
from rastercore.preprocess import NORMALIZE_METHODS, BandStats, Normalizer, compute_band_stats

BINS = 512
CHUNKINGS = [(3, 40, 50), (1, 13, 17), (2, 7, 50)]


@pytest.fixture(scope="module")
def raw():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(3, 40, 50))
    v[1] = 3.0 * v[1] + 2.0 * v[0] + 10.0
    v[2] = rng.gamma(2.0, 1.5, size=(40, 50))
    v[0, 3:7, 5:9] = np.nan
    v[2, 0, :] = -9999.0  # nodata by _FillValue
    v[1, 10, 10] = np.inf
    return v


def stack_of(values, chunks):
    return xr.DataArray(da.from_array(values, chunks=chunks), dims=("band", "y", "x"),
                        coords={"band": ["HH", "HV", "VV"], "y": np.arange(40.0), "x": np.arange(50.0)},
                        attrs={"_FillValue": -9999.0, "units": "dB"})


@pytest.fixture(scope="module")
def clean(raw):
    """What the statistics should see: nodata and inf as NaN."""
    v = raw.copy()
    v[(v == -9999.0) | ~np.isfinite(v)] = np.nan
    return v


@pytest.fixture(scope="module")
def stats_by_chunking(raw):
    with dask.config.set(scheduler="synchronous"):
        return [compute_band_stats(stack_of(raw, c), bins=BINS) for c in CHUNKINGS]


def test_moments_match_numpy(stats_by_chunking, clean):
    s = stats_by_chunking[0]
    assert_array_equal(s.count, np.isfinite(clean).sum(axis=(1, 2)))
    assert_allclose(s.minimum, np.nanmin(clean, axis=(1, 2)))
    assert_allclose(s.maximum, np.nanmax(clean, axis=(1, 2)))
    assert_allclose(s.mean, np.nanmean(clean, axis=(1, 2)), rtol=1e-12)
    assert_allclose(s.std, np.nanstd(clean, axis=(1, 2)), rtol=1e-12)


def test_histogram_and_percentiles(stats_by_chunking, clean):
    s = stats_by_chunking[0]
    width = (s.maximum - s.minimum) / BINS
    for b in range(3):
        v = clean[b][np.isfinite(clean[b])]
        assert_array_equal(s.hist[b], np.histogram(v, BINS, (s.minimum[b], s.maximum[b]))[0])
    for q in (2, 25, 50, 98):
        assert np.all(np.abs(s.percentile(q) - np.nanpercentile(clean, q, axis=(1, 2))) <= 2 * width)
    assert_allclose(s.percentile(0), s.minimum)
    assert_allclose(s.percentile(100), s.maximum)


def test_covariance_over_jointly_valid_pixels(stats_by_chunking, clean):
    flat = clean.reshape(3, -1)
    joint = flat[:, np.isfinite(flat).all(axis=0)]
    assert_allclose(stats_by_chunking[0].covariance, np.cov(joint, ddof=0), rtol=1e-10)
    assert_allclose(stats_by_chunking[0].joint_mean, joint.mean(axis=1), rtol=1e-12)


def test_stats_do_not_depend_on_chunking(stats_by_chunking):
    first = stats_by_chunking[0].to_dict()
    for other in stats_by_chunking[1:]:
        other = other.to_dict()
        assert other["hist"] == first["hist"] and other["count"] == first["count"]
        for key in ("minimum", "maximum", "mean", "std", "covariance"):
            assert_allclose(other[key], first[key], rtol=1e-12)


def test_stats_round_trip(stats_by_chunking):
    s = stats_by_chunking[0]
    again = BandStats.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again.band_names == ["HH", "HV", "VV"]
    assert_allclose(again.percentile(10), s.percentile(10))
    assert_array_equal(again.hist, s.hist)


def numpy_normalised(method, s, clean):
    col = (slice(None), None, None)
    if method == "minmax":
        return (clean - s.minimum[col]) / (s.maximum - s.minimum)[col]
    if method == "zscore":
        return (clean - s.mean[col]) / s.std[col]
    if method == "percentile":
        lo, hi = s.percentile(2)[col], s.percentile(98)[col]
        return (np.clip(clean, lo, hi) - lo) / (hi - lo)
    vals, vecs = np.linalg.eigh(s.covariance)
    w = vecs @ np.diag(1.0 / np.sqrt(vals + 1e-6 * vals.max())) @ vecs.T
    out = np.einsum("ij,jyx->iyx", w, clean - s.joint_mean[col])
    return np.where(np.isnan(clean).any(axis=0), np.nan, out)


@pytest.mark.parametrize("method", NORMALIZE_METHODS)
def test_normalizer_matches_numpy_and_chunking(raw, clean, stats_by_chunking, method):
    s = stats_by_chunking[0]
    norm = Normalizer.from_dict(json.loads(json.dumps(Normalizer(s, method).to_dict())))
    expected = numpy_normalised(method, s, clean)
    results = []
    with dask.config.set(scheduler="synchronous"):
        for chunks in CHUNKINGS:
            out = norm.apply(stack_of(raw, chunks))
            assert isinstance(out.data, da.Array) and out.dtype == np.float32
            assert out.dims == ("band", "y", "x") and out.attrs == {"units": "dB"}
            results.append(out.values)
    assert_allclose(results[0], expected, rtol=1e-5, atol=1e-5)
    for r in results[1:]:
        assert_allclose(r, results[0], rtol=1e-6, atol=1e-6)


def test_zca_whitens(raw, stats_by_chunking):
    with dask.config.set(scheduler="synchronous"):
        out = Normalizer(stats_by_chunking[1], "zca").apply(stack_of(raw, (1, 13, 17))).values
    flat = out.reshape(3, -1)
    flat = flat[:, np.isfinite(flat).all(axis=0)].astype(np.float64)
    assert_allclose(np.cov(flat, ddof=0), np.eye(3), atol=1e-4)


def test_normalizer_errors(raw, stats_by_chunking):
    with pytest.raises(FeatureSpecError, match="valid: minmax"):
        Normalizer(stats_by_chunking[0], "l2")
    with pytest.raises(FeatureSpecError, match="low < high"):
        Normalizer(stats_by_chunking[0], "percentile", low=90, high=10)
    other = stack_of(raw, CHUNKINGS[0]).assign_coords(band=["A", "B", "C"])
    with pytest.raises(BandNameError, match="differ"):
        Normalizer(stats_by_chunking[0]).apply(other)
