import gc
import subprocess
import sys
import time
import tracemalloc
import warnings

import numpy as np
import pytest
import rioxarray
import xarray as xr
from affine import Affine

import rastercore.store._publish
from rastercore import describe, ingest, open_stack
from rastercore.errors import (
    BandNameError,
    IncompleteStoreError,
    MisalignedInputsError,
    NotGeoreferencedWarning,
    SourceReadError,
    StoreExistsError,
)
from rastercore.store import partial_path
from tests.conftest import TRANSFORM, UTM, assert_same_georef, write_tif


def test_ingest_two_bands_round_trips_values_and_georef(tmp_path, hh_hv):
    (hh, hv), expected = hh_hv
    stack = ingest([hh, hv], tmp_path / "s.zarr", bands=["HH", "HV"], tile_size=64, progress="none")
    assert stack.dims == ("band", "y", "x") and list(stack.band.values) == ["HH", "HV"]
    assert stack.chunks == ((2,), (64,) * 4 + (44,), (64,) * 3 + (8,))
    np.testing.assert_array_equal(stack.values, expected)
    assert_same_georef(stack, UTM, TRANSFORM)
    # Plain xarray + rioxarray, without rastercore, see the same grid and pixel centres.
    plain = xr.open_zarr(tmp_path / "s.zarr")["data"]
    assert_same_georef(plain, UTM, TRANSFORM)
    assert plain.x.values[0] == TRANSFORM.c + 5.0 and plain.y.values[0] == TRANSFORM.f - 5.0
    np.testing.assert_array_equal(plain.values, expected)


def test_default_band_names_and_multiband(tmp_path, rng):
    ms = rng.integers(0, 3000, (3, 40, 30), dtype=np.uint16)
    pan = rng.integers(0, 3000, (40, 30), dtype=np.uint16)
    stack = ingest([write_tif(tmp_path / "ms.tif", ms, nodata=0), write_tif(tmp_path / "pan.tif", pan)],
                   tmp_path / "s.zarr", tile_size=256, progress="none")
    assert list(stack.band.values) == ["ms_1", "ms_2", "ms_3", "pan"]
    assert stack.dtype == np.uint16 and stack.rio.nodata == 0
    np.testing.assert_array_equal(stack.values, np.concatenate([ms, pan[None]]))


def test_no_nodata_stays_none(tmp_path, rng):
    path = write_tif(tmp_path / "a.tif", rng.integers(0, 9, (20, 20), dtype=np.uint8))
    assert ingest(path, tmp_path / "s.zarr", progress="none").rio.nodata is None


def test_band_name_errors(tmp_path, hh_hv):
    (hh, hv), _ = hh_hv
    with pytest.raises(BandNameError, match="1 band names given.*hold 2 bands"):
        ingest([hh, hv], tmp_path / "s.zarr", bands=["HH"])
    with pytest.raises(BandNameError, match="HH repeats"):
        ingest([hh, hv], tmp_path / "s.zarr", bands=["HH", "HH"])


def test_inputs_in_different_crss_name_the_files_and_their_crss(tmp_path, hh_hv):
    (hh, _), expected = hh_hv
    odd = write_tif(tmp_path / "odd.tif", np.zeros(expected.shape[1:], np.float32), crs="EPSG:32634")
    with pytest.raises(MisalignedInputsError, match=r"different CRSs: .*HH\.tif \(EPSG:32633\), .*odd\.tif "
                                                    r"\(EPSG:32634\); choose the stack's grid"):
        ingest([hh, odd], tmp_path / "s.zarr")
    assert not (tmp_path / "s.zarr").exists() and not partial_path(tmp_path / "s.zarr").exists()


@pytest.mark.parametrize("kwargs", [{"shape": (301, 200)}, {"transform": TRANSFORM @ Affine.translation(1, 0)}])
def test_inputs_on_other_grids_of_one_crs_are_resampled_with_a_notice(tmp_path, hh_hv, kwargs):
    from rastercore.stack import RegridNotice

    (hh, _), expected = hh_hv
    shape = kwargs.pop("shape", expected.shape[1:])
    odd = write_tif(tmp_path / "odd.tif", np.ones(shape, np.float32), **kwargs)
    with pytest.warns(RegridNotice, match="different grids"):
        stack = ingest([hh, odd], tmp_path / "s.zarr", bands=["HH", "odd"], progress="none")
    t = stack.rio.transform()
    col0, row0 = ~TRANSFORM * (t.c, t.f)  # the grid is on HH's own pixel lattice, over the intersection
    assert (t.a, t.e) == (TRANSFORM.a, TRANSFORM.e) and float(col0).is_integer() and float(row0).is_integer()
    rows, cols = slice(int(row0), int(row0) + stack.sizes["y"]), slice(int(col0), int(col0) + stack.sizes["x"])
    np.testing.assert_array_equal(stack.sel(band="HH").values, expected[0, rows, cols])


def test_ungeoreferenced_input_gets_pixel_grid_and_notice(tmp_path, rng):
    data = rng.integers(0, 255, (50, 40), dtype=np.uint8)
    path = write_tif(tmp_path / "scan.png", data, crs=None, driver="PNG")
    with pytest.warns(NotGeoreferencedWarning, match="scan.png"):
        stack = ingest(path, tmp_path / "s.zarr", tile_size=256, progress="none")
    assert stack.rio.crs is None and stack.rio.transform() == Affine.identity()
    np.testing.assert_array_equal(stack.x.values[:2], [0.5, 1.5])
    np.testing.assert_array_equal(stack.values[0], data)


def test_jpeg_is_read_in_strips_but_stored_in_tiles(tmp_path, rng):
    data = rng.integers(0, 255, (300, 530), dtype=np.uint8)
    path = write_tif(tmp_path / "ql.jpg", data, crs=None, driver="JPEG")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        from rastercore.io import open_source
        from rastercore.stack import lazy_stack

        lazy = lazy_stack([open_source(path)], tile_size=256)
        stack = ingest(path, tmp_path / "s.zarr", tile_size=256, progress="none")
    assert lazy.chunks[2] == (530,)  # one full-width strip per 256 rows
    assert stack.chunks[1:] == ((256, 44), (256, 256, 18))
    import rasterio

    with rasterio.open(path) as src:
        np.testing.assert_array_equal(stack.values, src.read())


def test_existing_output_refused_then_overwritten(tmp_path, hh_hv):
    (hh, hv), expected = hh_hv
    ingest([hh], tmp_path / "s.zarr", progress="none")
    with pytest.raises(StoreExistsError, match=r"s\.zarr already exists.*overwrite"):
        ingest([hh, hv], tmp_path / "s.zarr", progress="none")
    stack = ingest([hh, hv], tmp_path / "s.zarr", overwrite=True, progress="none")
    np.testing.assert_array_equal(stack.values, expected)


def test_failed_ingest_leaves_nothing_that_opens(tmp_path, rng):
    data = rng.random((512, 512)).astype(np.float32)
    path = write_tif(tmp_path / "cut.tif", data, tiled=True, blockxsize=128, blockysize=128)
    with open(path, "r+b") as f:
        f.truncate(f.seek(0, 2) // 2)
    with pytest.raises(SourceReadError, match=r"cut\.tif"):
        ingest(path, tmp_path / "s.zarr", tile_size=256, progress="none")
    assert not (tmp_path / "s.zarr").exists() and partial_path(tmp_path / "s.zarr").exists()
    with pytest.raises(IncompleteStoreError, match="--resume"):
        open_stack(tmp_path / "s.zarr")
    with pytest.raises(FileNotFoundError):
        xr.open_zarr(tmp_path / "s.zarr")


KILLED_INGEST = """
import sys, time
import rastercore.store._publish as tiles
original = tiles._store_block
def slow_store_block(*args):
    time.sleep(0.15)
    return original(*args)
tiles._store_block = slow_store_block
import dask
dask.config.set(scheduler="synchronous")
from rastercore import ingest
ingest(sys.argv[1:3], sys.argv[3], bands=["HH", "HV"], tile_size=64, progress="none")
"""


def test_resume_after_kill_9_writes_only_missing_tiles(tmp_path, hh_hv, monkeypatch):
    (hh, hv), expected = hh_hv
    out = tmp_path / "s.zarr"
    ledger = partial_path(out) / rastercore.store.LEDGER_DIR
    proc = subprocess.Popen([sys.executable, "-c", KILLED_INGEST, hh, hv, str(out)])
    deadline = time.monotonic() + 60
    while len(list(ledger.glob("*.done"))) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, "ingest ended before it could be killed"
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    done = len(list(ledger.glob("*.done")))
    assert 3 <= done < 20 and not out.exists()
    with pytest.raises(IncompleteStoreError):
        open_stack(out)

    written = []
    original = rastercore.store._publish._store_block
    monkeypatch.setattr(rastercore.store._publish, "_store_block", lambda *a: written.append(a[2]) or original(*a))
    stack = ingest([hh, hv], out, bands=["HH", "HV"], tile_size=64, resume=True, progress="none")
    assert len(written) == 20 - done  # 5 x 4 tiles in all
    np.testing.assert_array_equal(stack.values, expected)
    assert not partial_path(out).exists()


def test_resume_refuses_a_partial_store_of_another_job(tmp_path, hh_hv, monkeypatch):
    (hh, hv), _ = hh_hv
    out = tmp_path / "s.zarr"
    monkeypatch.setattr(rastercore.store._publish, "_finalise", lambda *a: None)  # stop before completion
    with pytest.raises(IncompleteStoreError, match="--resume to finish it, or with --overwrite to start over"):
        ingest([hh, hv], out, tile_size=64, progress="none")
    monkeypatch.undo()
    with pytest.raises(IncompleteStoreError, match="different job.*--overwrite"):
        ingest([hh, hv], out, tile_size=128, resume=True, progress="none")
    with pytest.raises(IncompleteStoreError, match=r"another job .* left .*s\.zarr\.partial; pass --overwrite"):
        ingest([hh, hv], out, tile_size=128, progress="none")  # an interrupted run is never discarded unasked
    with pytest.raises(IncompleteStoreError, match=r"left .*s\.zarr\.partial with 20 of 20 tiles; pass --resume"):
        ingest([hh, hv], out, tile_size=64, progress="none")
    ingest([hh, hv], out, tile_size=128, overwrite=True, progress="none")  # --overwrite starts over
    assert open_stack(out).chunks[1][0] == 128


def _peak_traced_bytes(tmp_path, size, name):
    rng = np.random.default_rng(1)
    paths = [write_tif(tmp_path / f"{name}_{b}.tif", rng.random((size, size), dtype=np.float32),
                       tiled=True, blockxsize=256, blockysize=256) for b in ("HH", "HV")]
    ingest(paths[0], tmp_path / f"{name}_warm.zarr", tile_size=256, progress="none")  # imports, numba, caches
    peaks = []
    for attempt in range(2):  # the lower of two runs: one-off allocations elsewhere do not count
        gc.collect()
        tracemalloc.start()
        try:
            ingest(paths, tmp_path / f"{name}_{attempt}.zarr", bands=["HH", "HV"], tile_size=256, progress="none")
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    return min(peaks)


def test_peak_allocation_does_not_grow_with_scene_size(tmp_path):
    """Proxy of the RSS bound (bench/bench_ingest.py measures RSS): 8x the pixels, no more pixels in flight.

    What grows with the scene is task-graph metadata, a few kB per tile (the
    writer keeps the materialised graph); a tile's pixels are 512 KiB here
    (2 bands x 256 x 256 x 4 bytes), so a peak growing by a tile's pixels per
    extra tile would fail by far.
    """
    small = _peak_traced_bytes(tmp_path, 1024, "small")  # 4 x 4 tiles
    large = _peak_traced_bytes(tmp_path, 2896, "large")  # 12 x 12 tiles, 8.0x the pixels
    per_extra_tile = (large - small) / (12 * 12 - 4 * 4)
    assert per_extra_tile < 16 * 1024, (small, large, per_extra_tile)
    assert large < 0.1 * (2896 * 2896 * 2 * 4)  # a small fraction of the scene itself


def test_describe_stack_and_file(tmp_path, hh_hv):
    (hh, hv), _ = hh_hv
    ingest([hh, hv], tmp_path / "s.zarr", bands=["HH", "HV"], tile_size=128, progress="none")
    d = describe(tmp_path / "s.zarr")
    assert d["shape"] == [2, 300, 200] and d["bands"] == ["HH", "HV"] and d["tile"] == [128, 128]
    assert d["crs"] == "EPSG:32633" and d["bounds"] == [500000.0, 3997000.0, 502000.0, 4000000.0]
    f = describe(hh)
    assert f["kind"] == "raster file" and f["shape"] == [1, 300, 200] and f["tile"] is None


def test_real_worldview3_chip_from_dgsamples(tmp_path):
    import dgsamples
    import rasterio

    from rastercore.io import open_source

    ms = dgsamples.wv3_longmont_1k.ms.replace(".TIL", ".TIF")
    stack = ingest(ms, tmp_path / "wv3.zarr", tile_size=256, progress="none")
    with rasterio.open(ms) as src:
        np.testing.assert_array_equal(stack.values, src.read())
        assert stack.rio.crs == src.crs and stack.rio.transform() == src.transform
    assert stack.shape == (8, 835, 835) and stack.dtype == np.uint16
    # GDAL's DigitalGlobe .TIL tile index is an input like any other.
    til = open_source(dgsamples.wv2_longmont_1k.ms)
    assert til.shape == (8, 501, 500) and til.grid.crs.to_epsg() == 32613
