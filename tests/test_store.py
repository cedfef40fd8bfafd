import time

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

import rastercore.store._publish
from rastercore.errors import CodecError, IncompleteStoreError
from rastercore.scheduler import choose_tile_size, compute_bounded
from rastercore.store import open_tile_array, write_tiles


def test_tile_size_follows_the_memory_budget():
    small = choose_tile_size(2, np.float32, memory_budget=2**30, threads=2)
    large = choose_tile_size(2, np.float32, memory_budget=16 * 2**30, threads=2)
    many_bands = choose_tile_size(16, np.float32, memory_budget=16 * 2**30, threads=2)
    assert small % 256 == 0 and 256 <= small < large <= 2048
    assert many_bands < large
    # The chosen tile with its working set fits the per-thread share of the budget.
    assert 2 * 2 * small**2 * 2 * 4 * 64 <= 2**30
    assert choose_tile_size(1, np.uint8, memory_budget=10**6, threads=8) == 256  # floor
    assert choose_tile_size(1, np.uint8, memory_budget=10**13, threads=1) == 2048  # ceiling


def test_write_tiles_rejects_blocks_that_split_chunks(tmp_path):
    data = xr.DataArray(da.zeros((100, 100), chunks=50), dims=("y", "x"))
    with pytest.raises(ValueError, match="chunk bounds"):
        write_tiles(data, tmp_path / "o.zarr", tile_chunks=(64, 64), progress="none")


def test_write_tiles_strips_into_square_chunks(tmp_path):
    values = np.arange(100 * 90, dtype=np.int32).reshape(100, 90)
    data = xr.DataArray(da.from_array(values, chunks=(32, 90)), dims=("y", "x"))
    write_tiles(data, tmp_path / "o.zarr", tile_chunks=(32, 32), progress="none")
    out = xr.open_zarr(tmp_path / "o.zarr")["data"]
    assert out.chunks == ((32, 32, 32, 4), (32, 32, 26))
    np.testing.assert_array_equal(out.values, values)


def test_tile_size_uses_the_active_clusters_memory():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, memory_limit="1GiB",
                      dashboard_address=":0") as cluster, Client(cluster):
        on_cluster = choose_tile_size(2, np.float32)
    assert on_cluster == choose_tile_size(2, np.float32, memory_budget=2**30, threads=2)


@pytest.mark.parametrize("codec, compressor", [("lz4", "lz4"), ("zstd", "zstd"), ("none", None)])
def test_write_tiles_stores_with_the_asked_codec(tmp_path, codec, compressor):
    import zarr

    values = np.random.default_rng(0).random((2, 70, 90)).astype(np.float32)
    data = xr.DataArray(da.from_array(values, chunks=(2, 32, 32)), dims=("band", "y", "x"))
    write_tiles(data, tmp_path / "o.zarr", codec=codec, progress="none")
    codecs = zarr.open_array(store=str(tmp_path / "o.zarr"), path="data", mode="r").metadata.codecs
    blosc = [c for c in codecs if type(c).__name__ == "BloscCodec"]
    assert [c.cname.value for c in blosc] == ([compressor] if compressor else [])
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "o.zarr")["data"].values, values)


def test_unknown_codec_is_refused_before_anything_is_written(tmp_path):
    data = xr.DataArray(da.zeros((64, 64), chunks=32), dims=("y", "x"))
    with pytest.raises(CodecError, match="'gzip'.*lz4, zstd, none"):
        write_tiles(data, tmp_path / "o.zarr", codec="gzip", progress="none")
    assert not any(tmp_path.iterdir())


def test_resume_refuses_another_codec(tmp_path, monkeypatch):
    data = xr.DataArray(da.zeros((64, 64), chunks=32), dims=("y", "x"))
    monkeypatch.setattr(rastercore.store._publish, "_finalise", lambda *a: None)  # stop before completion
    write_tiles(data, tmp_path / "o.zarr", codec="lz4", progress="none")
    monkeypatch.undo()
    with pytest.raises(IncompleteStoreError, match="different job"):
        write_tiles(data, tmp_path / "o.zarr", codec="zstd", resume=True, progress="none")
    write_tiles(data, tmp_path / "o.zarr", codec="lz4", resume=True, progress="none")
    assert (tmp_path / "o.zarr").exists()


def test_tile_arrays_use_the_zarrs_pipeline_without_changing_zarrs_config(tmp_path):
    import zarr

    values = np.arange(64 * 64, dtype=np.float32).reshape(1, 64, 64)
    write_tiles(xr.DataArray(da.from_array(values, chunks=32), dims=("band", "y", "x")), tmp_path / "o.zarr",
                progress="none")
    before = zarr.config.get("codec_pipeline.path")
    array = open_tile_array(tmp_path / "o.zarr")
    assert type(array._async_array.codec_pipeline).__module__.startswith("zarrs")
    assert zarr.config.get("codec_pipeline.path") == before
    np.testing.assert_array_equal(array[:, 10:50, 5:40], values[:, 10:50, 5:40])


def _timed_square(i):
    """``i * i`` and when the task ran (in-process schedulers share the clock)."""
    began = time.monotonic()
    time.sleep(0.02)
    return i * i, began, time.monotonic()


def _peak_overlap(intervals) -> int:
    events = sorted([(t0, 1) for t0, _ in intervals] + [(t1, -1) for _, t1 in intervals])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


@pytest.mark.parametrize("scheduler", ["sync", "threads", "distributed"])
def test_compute_bounded_keeps_order_and_bounds_the_work_in_flight(scheduler):
    items = list(range(12))

    def run():
        return list(compute_bounded(items, dask.delayed(_timed_square, pure=False), per_thread=2))

    if scheduler == "distributed":
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster, \
                Client(cluster):
            results = run()
    else:
        with dask.config.set(scheduler=scheduler, num_workers=2):
            results = run()
    assert [(i, r[0]) for i, r in results] == [(i, i * i) for i in items]
    peak = _peak_overlap([r[1:] for _, r in results])
    assert peak == 1 if scheduler == "sync" else 2 <= peak <= 4


def test_compute_bounded_raises_the_tasks_error():
    def fail(i):
        if i == 3:
            raise KeyError(f"item {i}")
        return i

    with dask.config.set(scheduler="threads", num_workers=2), pytest.raises(KeyError, match="item 3"):
        list(compute_bounded(range(8), dask.delayed(fail, pure=False)))


def test_a_rewritten_store_is_reopened_not_served_from_the_cache(tmp_path):
    first = xr.DataArray(da.zeros((1, 64, 64), chunks=32, dtype=np.float32), dims=("band", "y", "x"))
    write_tiles(first, tmp_path / "o.zarr", progress="none")
    assert open_tile_array(tmp_path / "o.zarr").shape == (1, 64, 64)
    second = xr.DataArray(da.ones((2, 96, 80), chunks=32, dtype=np.float32), dims=("band", "y", "x"))
    write_tiles(second, tmp_path / "o.zarr", overwrite=True, progress="none")
    reopened = open_tile_array(tmp_path / "o.zarr")
    assert reopened.shape == (2, 96, 80) and reopened[:].min() == 1


def test_on_a_cluster_only_the_window_holds_results():
    """Results already handed out are released: the futures alive never exceed the window."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        alive = []
        for _, block in compute_bounded(range(12), dask.delayed(np.ones, pure=False), per_thread=1):
            alive.append(len(client.futures))
            assert block.shape == (_,)
    assert max(alive) <= 2 + 1, alive  # window of 2 (1 per thread) + the one being submitted
