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
from rastercore.features import FeatureSpec, compute_features, features_for_block, load_features

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


def test_load_features_is_the_whole_image_in_one_numpy_array(values):
    spec = [{"name": "multiscale_basic", "sigma_min": 0.5, "sigma_max": 2}, {"name": "box_mean", "size": 3}]
    stack = make_stack(values, (2, 7, 9))
    loaded = load_features(stack, spec)
    assert type(loaded.data) is np.ndarray and loaded.data.flags.c_contiguous
    assert_array_equal(loaded.values, features_for_block(values, spec, ["HH", "HV"]))
    xr.testing.assert_identical(loaded, compute_features(stack, spec).compute())
    img = np.moveaxis(values[:1], 0, -1).astype(np.float64)  # and scikit-image's own, where there is no NaN
    reference = np.moveaxis(multiscale_basic_features(np.nan_to_num(img, nan=0.5), channel_axis=-1, sigma_min=0.5,
                                                      sigma_max=2), -1, 0)
    one_band = load_features(make_stack(np.nan_to_num(values[:1], nan=0.5), (1, 7, 9)), spec[:1])
    assert_allclose(one_band.values, reference, atol=2e-6)


def test_stored_stack_with_threads_equals_the_whole_image(tmp_path):
    """The window path (tiles read from the store, input and output buffers reused per thread) with 2 threads."""
    from rastercore import open_stack
    from rastercore.features import write_features
    from rastercore.store import write_tiles

    values = np.random.default_rng(3).random((2, 150, 170)).astype(np.float32)
    write_tiles(make_stack(values, (2, 64, 64)), tmp_path / "s.zarr", progress="none")  # uneven edge tiles
    spec = [{"name": "gaussian", "sigma": 2.0}, {"name": "box_std", "size": 5}, {"name": "ratio", "a": "HH", "b": "HV"}]
    whole = features_for_block(values, spec, ["HH", "HV"]).copy()
    with dask.config.set(scheduler="threads", num_workers=2):
        lazy = compute_features(open_stack(tmp_path / "s.zarr"), spec).values
        stored = write_features(open_stack(tmp_path / "s.zarr"), spec, tmp_path / "f.zarr", progress="none").values
    assert_array_equal(lazy, whole)
    assert_array_equal(stored, whole)


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


# -- stored stacks: windows read straight from zarr ------------------------

FILL = -1.0


@pytest.fixture(scope="module")
def stored(tmp_path_factory, values):
    """``values`` written as a rastercore store (4 x 3 tiles of 8 x 12) with a nodata value."""
    from rastercore.store import write_tiles

    raw = np.where(np.isnan(values), FILL, values).astype(np.float32)
    raw[0, 0, 3] = np.inf
    path = tmp_path_factory.mktemp("stored") / "s.zarr"
    write_tiles(make_stack(raw, (2, 8, 12), attrs={"_FillValue": FILL}), path, progress="none")
    return path, raw


@pytest.mark.parametrize("spec", [
    [{"name": "gaussian", "sigma": 1.5}, {"name": "ratio", "a": "HH", "b": "HV"}],
    [{"name": "box_mean", "size": 5, "bands": ["HV"]}, {"name": "structure_eig", "sigma": 0.8}],
    [{"name": "multiscale_basic", "sigma_max": 2}],
    [{"name": "gaussian", "sigma": 4}],  # halo 16: windows span several tiles
])
def test_stored_stack_windows_equal_map_overlap(stored, spec):
    from rastercore import open_stack
    from rastercore.store import store_reader

    path, raw = stored
    stack = open_stack(path)
    assert store_reader(stack) is not None  # the direct path is taken
    direct = compute_features(stack, spec)
    assert direct.chunks[1:] == ((8, 8, 8), (12, 12, 6))
    in_memory = compute_features(make_stack(raw, (2, 8, 12), attrs={"_FillValue": FILL}), spec)
    assert_array_equal(direct.values, in_memory.values)
    assert_array_equal(direct.values, features_for_block(raw, spec, ["HH", "HV"], nodata=FILL))
    assert np.isnan(direct.values[:, 0, 3]).any()  # inf is nodata (in HH)
    rechunked = open_stack(path, chunks={"band": 1, "y": 5, "x": 7})
    assert store_reader(rechunked) is not None
    assert_array_equal(compute_features(rechunked, spec).values, in_memory.values)
    changed = stack.sel(band=["HV", "HH"])
    assert store_reader(changed) is None  # any change falls back to map_overlap
    assert_array_equal(compute_features(changed, spec).values,
                       features_for_block(raw[::-1], spec, ["HV", "HH"], nodata=FILL))


def test_write_features_any_tile_size(stored, tmp_path):
    from rastercore import open_stack
    from rastercore.features import write_features

    path, raw = stored
    spec = [{"name": "gaussian", "sigma": 1.0}, {"name": "box_max", "size": 3}]
    expected = features_for_block(raw, spec, ["HH", "HV"], nodata=FILL)
    for i, (stack, tile) in enumerate([(open_stack(path), 16), (open_stack(path), None),
                                       (open_stack(path).sel(band=["HH", "HV"]) * 1, 10)]):
        out = write_features(stack, spec, tmp_path / f"f{i}.zarr", tile_size=tile, progress="none")
        assert out.dims == ("feature", "y", "x")
        assert out.chunks[1][0] == (tile or 12)  # default: the stored tile width
        assert_array_equal(out.values, expected)


def test_chunk_cache_budgets_and_single_reads():
    import threading

    from rastercore.store import ChunkCache

    cache = ChunkCache(budget=10 * 8)
    reads = []

    def reader(key, n=1):
        return lambda: reads.append(key) or np.zeros(n)

    for k in range(12):
        cache.get(("a", 0, k), reader(k))
    assert cache.nbytes == 80 and len(reads) == 12
    cache.get(("a", 0, 11), reader("again"))
    cache.get(("a", 0, 0), reader("evicted"))
    assert reads[-1] == "evicted"
    for k in range(3):
        cache.get(("b", 0, k), reader(("b", k)), group_budget=16)  # group held to 2 entries
    assert sum(1 for key in cache._items if key[0] == "b") == 2
    cache.drop(("a",))
    assert all(key[0] == "b" for key in cache._items)
    cache.get(("c", 0, 0), reader("big", 100))  # larger than the budget: returned, not kept
    assert ("c", 0, 0) not in cache._items

    gate, slow_reads = threading.Event(), []

    def slow():
        slow_reads.append(1)
        gate.wait(5)
        return np.ones(1)

    threads = [threading.Thread(target=cache.get, args=(("d", 0, 0), slow)) for _ in range(4)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    assert len(slow_reads) == 1


def test_stack_helpers():
    from rastercore.stack import as_float, band_names

    raw = np.array([[[1, 0], [np.inf, 3]]], np.float64)
    stack = xr.DataArray(raw, dims=("band", "y", "x"), coords={"band": ["A"]}, attrs={"_FillValue": 0})
    assert band_names(stack) == ["A"]
    out = as_float(stack).compute()
    assert out.dtype == np.float32 and np.isnan(out[0, 0, 1]) and np.isnan(out[0, 1, 0]) and out[0, 1, 1] == 3
    with pytest.raises(BandNameError):
        band_names(stack[0])


def test_crop_equals_slicing_and_buffers_are_reused_only_when_free(values):
    from rastercore.features import release_buffers

    spec = [{"name": "multiscale_basic", "sigma_max": 1}, {"name": "gaussian", "sigma": 1.0},
            {"name": "structure_eig", "sigma": 0.7}]
    whole = features_for_block(values, spec, ["HH", "HV"]).copy()
    crop = (3, 2, 0, 5)
    got = features_for_block(values, spec, ["HH", "HV"], crop=crop)
    assert got.flags.c_contiguous
    assert_array_equal(got, whole[:, 3:NY - 2, 0:NX - 5])
    with pytest.raises(ValueError, match="crop"):
        features_for_block(values, spec, ["HH", "HV"], crop=(NY, 0, 0, 0))
    # a result still referenced is never handed out again; a dropped one may be
    first = features_for_block(values, spec, ["HH", "HV"], crop=crop)
    second = features_for_block(values, spec, ["HH", "HV"], crop=crop)
    assert not np.shares_memory(first, second)
    assert_array_equal(first, second)
    del first
    third = features_for_block(values, spec, ["HH", "HV"], crop=crop)
    assert not np.shares_memory(third, second)
    assert_array_equal(third, whole[:, 3:NY - 2, 0:NX - 5])
    assert_array_equal(second, whole[:, 3:NY - 2, 0:NX - 5])  # untouched by the later calls
    release_buffers()
