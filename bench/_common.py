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
