import dask.array as da
import numpy as np
import pytest
import xarray as xr

from rastercore.tiles import choose_tile_size, write_tiles


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
