"""The tile engine: per-tile work with a halo equals the whole-image computation, on both read paths.

Every stage that runs on the engine (features, fused prediction, sampling
candidates, unsupervised maps) is checked here on a *stored* stack with
uneven tiles, against a whole-image reference: the store path is the one
users take after ``rastercore ingest``.  The overlap path (in-memory or any
dask array) is checked by each stage's own tests and below.
"""

import dask
import numpy as np
import pytest
import xarray as xr
from scipy import ndimage
from sklearn.svm import SVC

from rastercore.datasets import SYNTHETIC_THRESHOLD, synthetic_scene
from rastercore.engine import Tile, map_located, map_tiles, plan_tiles, tile_tasks
from rastercore.features import compute_features
from rastercore.predict import predict_lazy
from rastercore.sampling import TRAIN, SpatialSplit, draw_sample
from rastercore.store import open_stack, write_tiles
from rastercore.unsupervised import fit_unsupervised

SPEC = [{"name": "box_mean", "size": 7}, {"name": "gaussian", "sigma": 1.5, "bands": ["HV"]}]


class BoxSum:
    """A per-tile function: the (2 halo + 1)² window sum of band 0, reflect at the scene edge (like scipy)."""

    def __init__(self, halo):
        self.halo = halo

    def __dask_tokenize__(self):
        return ("box-sum", self.halo)

    def __call__(self, window, tile, *extras):
        size = 2 * self.halo + 1
        summed = ndimage.uniform_filter(window[0].astype(np.float64), size, mode="reflect") * size**2
        out = tile.interior(summed[np.newaxis]).astype(np.float32)
        for extra in extras:  # extras come as the tile's own block, no halo
            assert extra.shape == tile.shape
            out = out + extra
        return out


@pytest.fixture(scope="module")
def values():
    return np.random.default_rng(0).random((2, 61, 47)).astype(np.float32)


@pytest.fixture(scope="module")
def stored(tmp_path_factory, values):
    path = tmp_path_factory.mktemp("engine") / "s.zarr"
    stack = xr.DataArray(values, dims=("band", "y", "x"), coords={"band": ["a", "b"]}).chunk({"y": 16, "x": 20})
    write_tiles(stack, path, progress="none")  # tiles 16 x 20, the last ones 13 x 7
    return path


def _whole(values, halo):
    size = 2 * halo + 1
    return (ndimage.uniform_filter(values[0].astype(np.float64), size, mode="reflect") * size**2)[np.newaxis]


@pytest.mark.parametrize("halo", [0, 1, 3, 9, 40])  # 9 and 40 reach past the next tile; 40 past the scene
@pytest.mark.parametrize("path", ["store", "overlap"])
def test_map_tiles_equals_the_whole_image(values, stored, halo, path):
    stack = open_stack(stored)
    if path == "overlap":
        stack = stack.chunk({"y": (5, 30, 26), "x": (20, 7, 20)})  # uneven, one tile thinner than most halos
    plan = plan_tiles(stack, halo=halo)
    assert (plan.reader is not None) == (path == "store")
    out = map_tiles(stack, BoxSum(halo), halo=halo, n_out=1)
    assert out.chunks[1:] == stack.chunks[1:]  # results come in the asked tiles
    np.testing.assert_allclose(out.compute(), _whole(values, halo), rtol=1e-6)


def test_map_tiles_on_numpy_and_with_extras(values):
    stack = xr.DataArray(values, dims=("band", "y", "x"))
    extra = np.arange(61 * 47, dtype=np.float32).reshape(61, 47)
    out = map_tiles(stack, BoxSum(2), halo=2, n_out=1, tile_size=25, extras=[extra])
    assert out.chunks[1:] == ((25, 25, 11), (25, 22))
    np.testing.assert_allclose(out.compute(), _whole(values, 2) + extra, rtol=1e-6)


def test_bands_are_read_by_name_and_index(values, stored):
    stack = open_stack(stored)
    first = map_tiles(stack, BoxSum(1), halo=1, n_out=1, bands=["b"])
    np.testing.assert_allclose(first.compute(), _whole(values[1:], 1), rtol=1e-6)
    np.testing.assert_allclose(map_tiles(stack, BoxSum(1), halo=1, n_out=1, bands=[1]).compute(),
                               first.compute())


def test_tile_tasks_see_their_window_tile_and_extras(values, stored):
    seen = []

    def record(window, tile, extra):
        seen.append(tile)
        top, bottom, left, right = tile.halo
        rows = slice(tile.rows.start - top, tile.rows.stop + bottom)
        cols = slice(tile.cols.start - left, tile.cols.stop + right)
        np.testing.assert_array_equal(window, values[:, rows, cols])
        np.testing.assert_array_equal(extra, values[0, tile.rows, tile.cols] * 2)
        return tile.index

    for stack in (open_stack(stored), open_stack(stored).chunk({"y": 30, "x": 24})):
        seen.clear()
        tasks = tile_tasks(stack, record, halo=4, extras=[values[0] * 2])
        results = dask.compute(*[task for _, task in tasks])
        assert list(results) == [tile.index for tile, _ in tasks]
        covered = np.zeros(values.shape[1:], int)
        for tile in seen:
            covered[tile.rows, tile.cols] += 1
            assert isinstance(tile, Tile) and all(0 <= h <= 4 for h in tile.halo)
        assert (covered == 1).all()  # the tiles partition the scene


def test_a_lazy_window_reads_only_the_chunks_it_is_sliced_from(values, stored):
    from rastercore.engine import LazyWindow
    from rastercore.store._windows import CACHE

    plan = plan_tiles(open_stack(stored), halo=4)
    tile = plan.tile(1, 1)
    window = LazyWindow(plan.geometry, tile)
    top, bottom, left, right = tile.halo
    rows = slice(tile.rows.start - top, tile.rows.stop + bottom)
    cols = slice(tile.cols.start - left, tile.cols.stop + right)
    np.testing.assert_array_equal(np.asarray(window), values[:, rows, cols])
    assert window.shape == values[:, rows, cols].shape
    CACHE.clear()
    misses = CACHE.misses
    part = window[:, top + 2:top + 9, left + 1:left + 6]  # inside the tile's own chunk
    np.testing.assert_array_equal(part, values[:, rows, cols][:, top + 2:top + 9, left + 1:left + 6])
    assert CACHE.misses - misses == 1
    np.testing.assert_array_equal(window[:, :3], values[:, rows, cols][:, :3])  # the halo above: the chunks there
    assert CACHE.misses - misses > 1
    with pytest.raises(TypeError, match="sliced as"):
        window[0, 1:2, 1:2]


def test_tile_args_pick_the_tiles_and_travel_with_their_own_task(values, stored):
    def pick(window, tile, extra, rows, cols):
        return window[:, rows - tile.window_origin[0], cols - tile.window_origin[1]], extra[rows - tile.rows.start, 0]

    for stack in (open_stack(stored), open_stack(stored).chunk({"y": 30, "x": 24})):
        every = tile_tasks(stack, pick, halo=2, extras=[values[0] * 2], tile_args={})
        assert every == []
        tiles = [tile for tile, _ in tile_tasks(stack, lambda w, t: None)]
        wanted = {tiles[1].index: (np.array([tiles[1].rows.start]), np.array([tiles[1].cols.stop - 1])),
                  tiles[-1].index: (np.array([tiles[-1].rows.stop - 1] * 2), np.array([tiles[-1].cols.start] * 2))}
        tasks = tile_tasks(stack, pick, halo=2, extras=[values[0] * 2], tile_args=wanted)
        assert [tile.index for tile, _ in tasks] == [tiles[1].index, tiles[-1].index]
        for (tile, task), (window, extra) in zip(tasks, dask.compute(*[task for _, task in tasks])):
            rows, cols = wanted[tile.index]
            np.testing.assert_array_equal(window, values[:, rows, cols])
            np.testing.assert_array_equal(extra, values[0, rows, tile.cols.start] * 2)


# --- every stage on a stored stack with uneven tiles ------------------------------------


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    ds = synthetic_scene((200, 230), seed=0, chunks=64)
    sar = np.log(ds["sar"])
    path = tmp_path_factory.mktemp("scene") / "sar.zarr"
    write_tiles(sar.chunk({"y": 48, "x": 48}), path, progress="none")  # last tiles 8 x 38
    stored = open_stack(path)
    assert plan_tiles(stored, halo=3).reader is not None  # the store path is taken
    return sar, stored, ds["target"]


def _whole_image_X(sar, spec=SPEC):
    feats = compute_features(sar.chunk({"y": -1, "x": -1}), spec).values
    return feats.reshape(feats.shape[0], -1).T


def test_stored_features_equal_the_whole_image(scene):
    sar, stored, _ = scene
    np.testing.assert_array_equal(compute_features(stored, SPEC).values,
                                  compute_features(sar.chunk({"y": -1, "x": -1}), SPEC).values)


def test_stored_prediction_equals_the_model_on_the_whole_image(scene):
    sar, stored, target = scene
    table = draw_sample(sar, target, SPEC, n=300, thresholds=SYNTHETIC_THRESHOLD, seed=0)
    X, y = table.subset(TRAIN)
    svc = SVC(probability=True, random_state=0).fit(X, y)
    mosaic = predict_lazy(svc, stored, SPEC)
    whole = _whole_image_X(sar)
    np.testing.assert_array_equal(mosaic.sel(band="class").values.ravel(), svc.predict(whole))
    np.testing.assert_allclose(mosaic.sel(band="p[1]").values.ravel(), svc.predict_proba(whole)[:, 1], atol=2e-5)


def test_stored_sample_equals_the_in_memory_sample(scene):
    sar, stored, target = scene
    kwargs = dict(n=400, thresholds=SYNTHETIC_THRESHOLD, seed=3, split=SpatialSplit(block_size=50))
    from_store = draw_sample(stored, target, SPEC, **kwargs)
    in_memory = draw_sample(sar, target, SPEC, **kwargs)
    for column in ("row", "col", "y", "split"):
        np.testing.assert_array_equal(getattr(from_store, column), getattr(in_memory, column))
    whole = _whole_image_X(sar).reshape(200, 230, -1)
    np.testing.assert_array_equal(from_store.X, whole[from_store.row, from_store.col])


def test_stored_cluster_map_equals_the_model_on_the_whole_image(scene):
    sar, stored, _ = scene
    model = fit_unsupervised(stored, SPEC, "kmeans", n_clusters=3, seed=0, progress="none", stream=True)
    mosaic = predict_lazy(model, stored, SPEC)
    np.testing.assert_array_equal(mosaic.values[0].ravel(), model.predict(_whole_image_X(sar)))


def _virtual_stack(path, side: int, tile: int) -> xr.DataArray:
    """A complete two-band store whose tiles were never written (zarr reads zeros): metadata only."""
    import dask.array as da

    from rastercore.store import partial_path, store_codecs
    from rastercore.store._publish import _create_store, _finalise

    virtual = xr.DataArray(da.zeros((2, side, side), dtype="float32", chunks=(2, tile, tile)),
                           dims=("band", "y", "x"), coords={"band": ["a", "b"]})
    _create_store(virtual, partial_path(path), (tile, tile), "virtual", store_codecs("none"))
    _finalise(partial_path(path), path)
    return open_stack(path)


def test_planning_a_tile_map_holds_nothing_per_tile(tmp_path):
    """The lazy map of 4096 tiles costs the driver no more than that of 16: nothing is built per tile
    when the graph is made (dask's block_info would be about 1 kB per tile), only as tasks run."""
    import tracemalloc

    def planned_bytes(stack):
        tracemalloc.start()
        try:
            out = map_tiles(stack, lambda window, tile: window[:, :tile.shape[0], :tile.shape[1]], n_out=2)
            return tracemalloc.get_traced_memory()[1], out
        finally:
            tracemalloc.stop()

    small, _ = planned_bytes(_virtual_stack(tmp_path / "small.zarr", 64, 16))
    stack = _virtual_stack(tmp_path / "large.zarr", 1024, 16)
    large, out = planned_bytes(stack)
    assert out.numblocks == (1, 64, 64)
    assert large - small < 4096 * 100, (small, large)  # under 100 bytes per extra tile
    np.testing.assert_array_equal(out.blocks[0, 63, 62].compute(), stack[:, 1008:, 992:1008].values)


def _pixel_ids(scale, *, location):
    (r0, r1), (c0, c1) = location
    return np.add.outer(np.arange(r0, r1) * scale, np.arange(c0, c1))


def test_located_blocks_know_their_place_and_cost_nothing_per_tile_to_plan():
    """Every block of an uneven grid gets its own rows and columns (equal to the whole image), and planning
    4096 blocks holds no more than planning 16 (dask's block_info would be about 1 kB per block)."""
    import tracemalloc

    uneven = map_located(_pixel_ids, 1000, chunks=((5, 7, 3), (4, 4, 9)), dtype=np.int64)
    np.testing.assert_array_equal(uneven.compute(), np.add.outer(np.arange(15) * 1000, np.arange(17)))

    def planned_bytes(n):
        tracemalloc.start()
        try:
            map_located(_pixel_ids, 1000, chunks=((4,) * n, (4,) * n), dtype=np.int64)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    assert planned_bytes(64) - planned_bytes(4) < 4096 * 100
