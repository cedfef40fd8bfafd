"""Shared fixtures: small real files written with rasterio / h5py / numpy, and common checks."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

UTM = "EPSG:32633"
TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 4_000_000.0)


def write_tif(path, data, *, crs=UTM, transform=TRANSFORM, nodata=None, driver="GTiff", **profile):
    """Write ``data`` ``(y, x)`` or ``(band, y, x)`` with rasterio and return the path as str."""
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[np.newaxis]
    kwargs = dict(driver=driver, width=data.shape[2], height=data.shape[1], count=data.shape[0],
                  dtype=data.dtype.name, nodata=nodata, **profile)
    if crs is not None:
        kwargs.update(crs=crs, transform=transform)
    with rasterio.open(path, "w", **kwargs) as dst:
        dst.write(data)
    return str(path)


def read_tif(path):
    """All bands of a raster file, ``(band, y, x)``."""
    with rasterio.open(path) as src:
        return src.read()


def assert_same_georef(stack, crs, transform):
    """The stack's rioxarray CRS and transform equal the expected ones."""
    assert stack.rio.crs == rasterio.crs.CRS.from_user_input(crs)
    assert stack.rio.transform().almost_equals(transform)


def pytest_collection_modifyitems(config, items):
    """The ``slow`` modules first.

    The suite runs on two processes, a file at a time, in this order (pytest-xdist's ``--dist loadfile
    --no-loadscope-reorder``): a long file started last would leave the other process idle at the end.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def hh_hv(tmp_path, rng):
    """Two co-registered single-band float32 GeoTIFFs (300 x 200 px) and their arrays."""
    hh = rng.gamma(1.0, 0.2, (300, 200)).astype(np.float32)
    hv = rng.gamma(1.0, 0.05, (300, 200)).astype(np.float32)
    return (write_tif(tmp_path / "HH.tif", hh), write_tif(tmp_path / "HV.tif", hv)), np.stack([hh, hv])


@pytest.fixture(autouse=True)
def _synchronous_dask():
    """Tests run dask synchronously unless they start a cluster themselves."""
    import dask

    with dask.config.set(scheduler="synchronous"):
        yield


def run_cli(*args, check: bool = True, timeout: float = 600):
    """``rastercore ARGS`` in a new process, as a user runs it; asserts exit status 0 when ``check``."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "rastercore.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def wait_for_tiles(out, n: int, proc, timeout: float = 120) -> None:
    """Wait until the writer ``proc`` has recorded ``n`` finished tiles of ``out`` in its ledger."""
    import time

    from rastercore.store import LEDGER_DIR, partial_path

    ledger = partial_path(out) / LEDGER_DIR
    deadline = time.monotonic() + timeout
    while not (ledger.is_dir() and len(list(ledger.glob("*.done"))) >= n):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no tiles were written"
        time.sleep(0.02)


# -- a small SAR scene and its sample, shared by the training, search and boosting tests ------------------

SAR_SPEC = [{"name": "box_mean", "size": 9}, {"name": "ratio", "a": "HV", "b": "HH"}]


@pytest.fixture(scope="session")
def sar_scene():
    """The log of a 320 x 320 synthetic SAR pair (128-px tiles) and its continuous target."""
    from rastercore.datasets import synthetic_scene

    ds = synthetic_scene((320, 320), seed=1, chunks=128)
    return np.log(ds["sar"]), ds["target"]


@pytest.fixture(scope="session")
def sar_table(sar_scene):
    """300 rows per class of :data:`SAR_SPEC` features, two classes at the synthetic threshold, 64-px blocks."""
    from rastercore.datasets import SYNTHETIC_THRESHOLD
    from rastercore.sampling import SpatialSplit, draw_sample

    sar, target = sar_scene
    return draw_sample(sar, target, SAR_SPEC, n=300, thresholds=SYNTHETIC_THRESHOLD,
                       split=SpatialSplit(block_size=64), seed=0)
