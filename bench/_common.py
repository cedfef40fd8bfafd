"""Shared helpers of the benchmarks: run a measured job in a fresh process, machine facts."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

CLI = """
import resource, sys
from rastercore.cli import main
status = main(sys.argv[1:])
assert status == 0, status
result["children_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
"""
"""A job running the ``rastercore`` command line with its arguments, as a user does (for :func:`run_cli`)."""


def run_measured(code: str, *args: str) -> dict:
    """Run ``code`` in a new Python process; return its wall time, peak RSS and printed JSON.

    The child prints one JSON object on its last stdout line (or nothing);
    peak RSS is the child's own ``ru_maxrss``, so the parent's memory never
    counts.
    """
    wrapper = (
        "import json, resource, sys, time\n"
        "t0 = time.perf_counter()\n"
        "result = {}\n"
        f"exec(compile({code!r}, 'job', 'exec'))\n"
        "result['seconds'] = time.perf_counter() - t0\n"
        "result['peak_rss_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(json.dumps(result))\n"
    )
    load_before = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, "-c", wrapper, *args], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"benchmark job failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load_average_before"] = round(load_before, 2)  # > ~0.5 means something else was running
    return result


CLASS_MAP = """
import sys, dask, numpy as np, xarray as xr, dask.array as da
from rasterio.crs import CRS
from affine import Affine
from rastercore.grid import Grid, attach_grid
from rastercore.store import write_tiles
dask.config.set(scheduler="threads")
out, side, tile, speckle = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def classes(block, block_info=None):
    (_, _), (r0, r1), (c0, c1) = block_info[0]["array-location"]
    y, x = np.mgrid[r0:r1, c0:c1]
    field = np.sin(x / 97.0) + np.cos(y / 131.0) + 0.5 * np.sin((x + 2 * y) / 41.0)
    codes = np.floor((field + 2.5) * 1.2).clip(0, 5).astype(np.float32)
    noise = (x.astype(np.uint64) * 73856093 ^ y.astype(np.uint64) * 19349663) % 1000
    codes = np.where(noise < speckle, (noise + codes) % 6, codes)
    codes[noise == 999] = np.nan
    return codes[np.newaxis]

data = da.zeros((1, side, side), dtype=np.float32, chunks=(1, tile, tile)).map_blocks(classes, dtype=np.float32)
grid = Grid(side, side, Affine(10, 0, 500000, 0, -10, 4000000), CRS.from_epsg(32633))
mosaic = attach_grid(xr.DataArray(data, dims=("band", "y", "x"), coords={"band": ["class"]}), grid)
mosaic = mosaic.rio.write_nodata(np.nan, encoded=False)
mosaic.attrs["class_names"] = ["water", "wetland", "grass", "crop", "forest", "urban"]
write_tiles(mosaic, out, progress="none")
"""
"""A job writing a synthetic class mosaic: ``out side tile speckle`` (6 classes in smooth regions of a few
hundred pixels, ``speckle`` per mille of pixels flipped to another class, 0.1 % nodata; float32 zarr)."""


def run_cli(*argv: str) -> dict:
    """Run ``rastercore argv...`` in a new process: :func:`run_measured`, with the peak RSS the larger of the
    process's own and its children's (the default scheduler's local cluster workers)."""
    result = run_measured(CLI, *argv)
    result["peak_rss_mib"] = max(result["peak_rss_mib"], result.pop("children_peak_rss_mib"))
    return result


def machine() -> dict:
    """Facts about this machine and the library versions that matter."""
    import dask
    import numpy
    import psutil
    import rasterio
    import zarr

    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "dask": dask.__version__,
        "zarr": zarr.__version__,
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
        "date": time.strftime("%Y-%m-%d"),
    }


def save(name: str, payload: dict) -> Path:
    """Write ``payload`` plus machine facts to ``bench/results/<name>.json`` and print it."""
    RESULTS.mkdir(exist_ok=True)
    payload = {"machine": machine(), **payload}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    print(json.dumps(payload, indent=2))
    return path
