"""compute_features: lazy DataArray output and seamless tiling."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from skimage.feature import multiscale_basic_features

from rastercore.errors import BandNameError
from rastercore.features import FeatureSpec, compute_features, features_for_block

NY, NX = 24, 30


def make_stack(values, chunks, *, attrs=None):
    nb, ny, nx = values.shape
    return xr.DataArray(
        da.from_array(values, chunks=chunks), dims=("band", "y", "x"),
        coords={"band": ["HH", "HV"][:nb], "y": 100.0 - np.arange(ny), "x": 5.0 + np.arange(nx),
                "spatial_ref": 0},
        attrs=dict(attrs or {"_FillValue": np.nan, "units": "dB"}),
    )


@pytest.fixture(scope="module")
def values():
    v = np.random.default_rng(0).random((2, NY, NX)).astype(np.float32) + 0.1
    v[0, 5, 7] = np.nan
    v[1, 20:, 0:2] = np.nan
    return v


@pytest.fixture(autouse=True, scope="module")
def synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


def test_output_is_lazy_with_stack_coords(values):
    stack = make_stack(values, (1, 10, 12))
    feats = compute_features(stack, [{"name": "gaussian", "sigma": 1, "bands": ["HV"]},
                                     {"name": "ratio", "a": "HH", "b": "HV"}])
    assert isinstance(feats.data, da.Array)
    assert feats.dims == ("feature", "y", "x") and feats.dtype == np.float32
    assert list(feats.feature.values) == ["gaussian(sigma=1)[HV]", "ratio(a=HH,b=HV)"]
    assert_array_equal(feats.y, stack.y)
    assert_array_equal(feats.x, stack.x)
    assert "spatial_ref" in feats.coords and "band" not in feats.coords
    assert feats.attrs == {"units": "dB"}
    assert feats.chunks[1:] == ((10, 10, 4), (12, 12, 6))


def test_threaded_scheduler_gives_the_same_result(values):
    spec = [{"name": "structure_eig", "sigma": 1}, {"name": "box_max", "size": 5},
            {"name": "glcm", "vmin": 0.1, "vmax": 1.1, "size": 3, "levels": 4}]
    whole = features_for_block(values, spec, ["HH", "HV"])
    with dask.config.set(scheduler="threads", num_workers=2):
        got = compute_features(make_stack(values, (2, 7, 9)), spec).values
    assert_array_equal(got, whole)


def test_fill_value_becomes_nan_and_numpy_input_works():
    raw = np.random.default_rng(0).integers(1, 100, (1, 12, 14)).astype(np.uint16)
    raw[0, 3, 3] = 0
    stack = xr.DataArray(raw, dims=("band", "y", "x"), coords={"band": ["HH"]},
                         attrs={"_FillValue": 0})
    out = compute_features(stack, [{"name": "box_mean", "size": 3}]).values[0]
    assert np.isnan(out[2:5, 2:5]).all() and np.isfinite(out).sum() == 12 * 14 - 9


def test_not_a_stack_is_rejected():
    arr = xr.DataArray(np.zeros((3, 4)), dims=("y", "x"))
    with pytest.raises(BandNameError, match="dims"):
        compute_features(arr, [{"name": "box_mean"}])


def test_halo_larger_than_chunks_and_image(values):
    spec = [{"name": "gaussian", "sigma": 4}, {"name": "box_mean", "size": 3}]  # halo 16
    whole = features_for_block(values, spec, ["HH", "HV"])
    for chunks in [(2, 5, 7), (1, 3, 29)]:
        got = compute_features(make_stack(values, chunks), spec).values
        assert_array_equal(got, whole)
    big = compute_features(make_stack(values, (2, 5, 7)), [{"name": "gaussian", "sigma": 10}])
    assert_array_equal(big.values, features_for_block(values, [{"name": "gaussian", "sigma": 10}],
                                                      ["HH", "HV"]))


def test_chunked_multiscale_matches_skimage(values):
    clean = np.nan_to_num(values, nan=0.5)
    feats = compute_features(make_stack(clean, (2, 9, 11)),
                             [{"name": "multiscale_basic", "sigma_min": 1, "sigma_max": 2}])
    expected = multiscale_basic_features(np.moveaxis(clean, 0, -1), sigma_min=1, sigma_max=2,
                                         channel_axis=-1)
    assert_allclose(feats.values, np.moveaxis(expected, -1, 0), rtol=1e-5, atol=1e-6)


CANDIDATES = [
    {"name": "gaussian", "sigma": 0.7},
    {"name": "gaussian", "sigma": 1.6, "bands": ["HV"]},
    {"name": "gradient_magnitude", "sigma": 1.0},
    {"name": "laplacian", "sigma": 0.8},
    {"name": "dog", "sigma": 0.6, "sigma2": 1.3},
    {"name": "hessian_eig", "sigma": 1.2},
    {"name": "structure_eig", "sigma": 0.7, "rho": 1.0},
    {"name": "box_mean", "size": 5},
    {"name": "box_std", "size": 3},
    {"name": "box_min", "size": 3},
    {"name": "box_max", "size": 7},
    {"name": "cv", "size": 5},
    {"name": "window", "r": 1},
    {"name": "glcm", "size": 5, "levels": 4, "vmin": 0.1, "vmax": 1.1},
    {"name": "ratio", "a": "HH", "b": "HV"},
    {"name": "normalised_difference", "a": "HV", "b": "HH"},
    {"name": "multiscale_basic", "sigma_min": 0.5, "sigma_max": 1},
]


def chunking(n):
    cuts = st.sets(st.integers(1, n - 1), max_size=4)
    return cuts.map(lambda c: tuple(np.diff([0, *sorted(c), n]).tolist()))


@settings(max_examples=15, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(st.sampled_from(CANDIDATES), min_size=1, max_size=3,
                        unique_by=lambda d: repr(d)),
       ychunks=chunking(NY), xchunks=chunking(NX), band_chunk=st.sampled_from([1, 2]))
def test_tiles_equal_whole_image(values, entries, ychunks, xchunks, band_chunk):
    spec = FeatureSpec(entries)
    whole = compute_features(make_stack(values, (2, NY, NX)), spec).values
    tiled = compute_features(make_stack(values, (band_chunk, ychunks, xchunks)), spec)
    assert_array_equal(tiled.values, whole)
    assert_array_equal(whole, features_for_block(values, spec, ["HH", "HV"]))
