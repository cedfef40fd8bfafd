import os
import subprocess
import sys

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import rastercore.store._publish
from rastercore.errors import (
    CodecError,
    IncompleteStoreError,
    OutputLockedError,
    OutputNotWritableError,
    StoreChangedError,
    StoreExistsError,
)
from rastercore.features import compute_features
from rastercore.store import check_output, lock_path, open_stack, open_tile_array, output_lock, write_tiles, writing


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


def test_a_rewritten_store_is_reopened_not_served_from_the_cache(tmp_path):
    first = xr.DataArray(da.zeros((1, 64, 64), chunks=32, dtype=np.float32), dims=("band", "y", "x"))
    write_tiles(first, tmp_path / "o.zarr", progress="none")
    assert open_tile_array(tmp_path / "o.zarr").shape == (1, 64, 64)
    second = xr.DataArray(da.ones((2, 96, 80), chunks=32, dtype=np.float32), dims=("band", "y", "x"))
    write_tiles(second, tmp_path / "o.zarr", overwrite=True, progress="none")
    reopened = open_tile_array(tmp_path / "o.zarr")
    assert reopened.shape == (2, 96, 80) and reopened[:].min() == 1


def _stack(value, shape=(2, 64, 64), chunks=32):
    data = da.full(shape, np.float32(value), chunks=(shape[0], chunks, chunks))
    return xr.DataArray(data, dims=("band", "y", "x"), coords={"band": ["a", "b"]})


HOLD_LOCK = """
import sys, time
from rastercore.store import output_lock
with output_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_writer_refuses_while_the_first_holds_the_lock_and_takes_over_a_dead_ones(tmp_path):
    out = tmp_path / "o.zarr"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputLockedError, match=rf"o\.zarr is being written by process {holder.pid} on "):
            write_tiles(_stack(1.0), out, progress="none")
        assert not out.exists() and not (tmp_path / "o.zarr.partial").exists()  # the refusal wrote nothing
    finally:
        holder.kill()
        holder.wait()
    assert lock_path(out).exists()  # SIGKILL left it behind: stale now
    with pytest.warns(UserWarning, match=rf"left by process {holder.pid}, which is gone; taking it over"):
        write_tiles(_stack(1.0), out, progress="none")
    assert not lock_path(out).exists()
    np.testing.assert_array_equal(open_stack(out).values, 1.0)


def test_the_same_process_cannot_write_one_output_twice_at_once(tmp_path):
    with output_lock(tmp_path / "t.h5"):
        with pytest.raises(OutputLockedError, match=f"process {os.getpid()}"):
            with writing(tmp_path / "t.h5"):
                pass
    with writing(tmp_path / "t.h5") as partial:
        partial.write_text("done")
    assert (tmp_path / "t.h5").read_text() == "done" and not lock_path(tmp_path / "t.h5").exists()


def test_a_failed_file_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    out = tmp_path / "t.txt"
    out.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with writing(out, overwrite=True) as partial:
            partial.write_text("half")
            raise RuntimeError("boom")
    assert out.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]


@pytest.mark.parametrize("read", ["dask", "store windows"])
def test_a_store_replaced_while_read_is_never_read_half_old_half_new(tmp_path, read):
    out = tmp_path / "s.zarr"
    write_tiles(_stack(1.0), out, progress="none")
    old = open_stack(out)
    lazy = old * 1 if read == "dask" else compute_features(old, [{"name": "box_mean", "size": 3}])
    write_tiles(_stack(2.0), out, overwrite=True, progress="none")  # ingest --overwrite while a job reads
    with pytest.raises(StoreChangedError, match="s.zarr was replaced or removed while it was being read"):
        lazy.compute()
    np.testing.assert_array_equal(open_stack(out).values, 2.0)  # the new store is whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]  # the old one is gone, nothing left aside


def test_outputs_are_checked_before_any_work(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputNotWritableError, match="afile is not a directory"):
        check_output(tmp_path / "afile" / "o.zarr")
    check_output(tmp_path / "new" / "dir" / "o.zarr")  # a missing directory is created
    assert (tmp_path / "new" / "dir").is_dir()
    (tmp_path / "o.zarr").mkdir()
    with pytest.raises(StoreExistsError, match="o.zarr already exists"):
        check_output(tmp_path / "x.tif", tmp_path / "o.zarr")
    check_output(tmp_path / "o.zarr", overwrite=True)


def test_tiles_planned_band_by_band_are_all_written_once(tmp_path, monkeypatch):
    """With bands of one tile row (BAND_TILES below a row's tiles) and of two, every tile of an uneven grid is
    written, equal to the array, and each band's graph is materialised once, in order."""
    values = np.arange(5 * 70 * 45, dtype=np.float32).reshape(5, 70, 45)  # 5 x 3 tiles of 16
    culled = []
    original = rastercore.store._publish._tile_tasks

    def spying(array, partial, ledger):
        graph = array.__dask_graph__()
        cull = graph.cull
        object.__setattr__(graph, "cull", lambda keys: culled.append(sorted({k[-2] for k in keys})) or cull(keys))
        monkeypatch.setattr(array, "__dask_graph__", lambda: graph)
        return original(array, partial, ledger)

    monkeypatch.setattr(rastercore.store._publish, "_tile_tasks", spying)
    for band_tiles, bands in ((1, [[0], [1], [2], [3], [4]]), (6, [[0, 1], [2, 3], [4]])):
        data = xr.DataArray(da.from_array(values + band_tiles, chunks=(5, 16, 16)), dims=("band", "y", "x"))
        culled.clear()
        monkeypatch.setattr(rastercore.store._publish, "BAND_TILES", band_tiles)
        write_tiles(data, tmp_path / f"o{band_tiles}.zarr", progress="none")
        np.testing.assert_array_equal(open_stack(tmp_path / f"o{band_tiles}.zarr").values, values + band_tiles)
        assert culled == bands
