"""Features: rastercore beside scikit-image, scipy.ndimage and dask-image, measured.

Every job runs in a fresh process (``_common.run_measured``); its peak RSS is
the child's own ``ru_maxrss``.  On a virtual machine the first use of a
page of memory since boot is slow (the host backs it then: ~2 s per GiB
here), which would charge whichever job first touches it; so the script
first touches most of the free memory once.  Before each job the machine must be quiet
(1-minute load average <= ``--max-load``, default 1.0); after it, the CPU
time other processes used meanwhile is checked, and the job is run again if
they took more than 10 % of the machine.  Throughput is pixels of the scene
(not pixels x bands) per second of the timed section, which excludes
interpreter start-up and imports (every job imports dask, distributed,
xarray and zarr before it; dask imports ``distributed`` lazily on some
paths, which would otherwise charge 0.3 s to whichever job hits it first),
and, for rastercore, the first call of the Numba kernels (measured
separately under (c)).

(a) ``multiscale``: the ``multiscale_basic`` preset (sigma 0.5..16, 72
    features of an RGB-like 3-band float32 image) beside
    ``skimage.feature.multiscale_basic_features`` with the same parameters.
    scikit-image holds every feature twice (a list, then ``np.stack``):
    about 650 MiB per Mpx, so 5400 x 2700 would need 9.5 GiB; the
    comparison uses 4320 x 2160 (9.3 Mpx, ~6 GiB for scikit-image), and
    rastercore also runs the full 5400 x 2700 zarr to zarr.  rastercore runs
    in memory (NumPy in, one preallocated NumPy array out via
    ``dask.array.store``, like scikit-image's one array; and as one
    ``features_for_block`` call on the whole image, one thread) and zarr to
    zarr through :func:`rastercore.features.write_features` (what
    ``rastercore features`` runs).
(b) ``box`` (5 x 5 uniform) and ``gaussian`` (sigma 2) on an 8192 x 8192
    float32 scene (stored by rastercore: Blosc LZ4, 1024-px tiles): zarr to
    zarr (rastercore ``write_features``, ``dask_image.ndfilters`` on the same
    dask array + ``to_zarr``, and plain zarr-to-zarr copies: ``dask.array``
    and rastercore's own tile writer).  rastercore writes LZ4 by default and
    ``to_zarr`` zarr's default zstd, so the dask copy and dask-image also run
    writing LZ4 (``*_lz4``): the codec's share of the difference is visible,
    and in memory (scipy.ndimage, one thread; rastercore
    ``compute_features`` with 2 threads and ``features_for_block`` on the
    whole array, one thread).
(c) First call of the Numba kernels: cold (empty cache: compilation) and
    warm (loaded from the on-disk cache).

Writes ``bench/results/features.json`` and prints a table::

    python bench/bench_features.py            # ~20 min on 2 cores, mostly waiting for a quiet machine
    python bench/bench_features.py --quick    # small sizes, no waiting: a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, machine, run_measured  # noqa: E402

TILE = 1024
MULTISCALE = {"name": "multiscale_basic", "sigma_min": 0.5, "sigma_max": 16}
FILTERS = {"box": {"name": "box_mean", "size": 5}, "gaussian": {"name": "gaussian", "sigma": 2.0}}

# -- inputs ---------------------------------------------------------------

MAKE_INPUTS = r"""
import sys, dask, dask.array as da, numpy as np, xarray as xr
from rastercore.store import write_tiles
dask.config.set(scheduler="threads")
path, kind, h, w, tile = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])

def rgb(block_info=None):
    (_, _), (r0, r1), (c0, c1) = block_info[None]["array-location"]
    yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float64)
    rng = np.random.default_rng([r0, c0])
    base = [0.5 + 0.3 * np.sin(yy / 211.0 + k) * np.cos(xx / 173.0 - k) + 0.1 * np.sin((xx + 2 * yy) / (17.0 + 5 * k))
            for k in range(3)]
    noise = rng.normal(0.0, 0.05, (3, r1 - r0, c1 - c0))
    return np.clip(np.stack(base) + noise, 0.0, 1.0).astype(np.float32)

def sar(block_info=None):
    (_, _), (r0, r1), (c0, c1) = block_info[None]["array-location"]
    yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float32)
    rng = np.random.default_rng([r0, c0])
    field = 1.0 + 0.5 * np.sin(yy / 97.0) * np.cos(xx / 131.0) + 0.25 * np.sin((xx + yy) / 23.0)
    return (field * rng.exponential(1.0, field.shape))[None].astype(np.float32)

bands = ["R", "G", "B"] if kind == "rgb" else ["HH"]
chunks = ((len(bands),), da.core.normalize_chunks(tile, (h,))[0], da.core.normalize_chunks(tile, (w,))[0])
data = da.map_blocks(rgb if kind == "rgb" else sar, chunks=chunks, dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))
stack = xr.DataArray(data, dims=("band", "y", "x"), name="data",
                     coords={"band": np.array(bands, dtype=object), "y": np.arange(h) + 0.5, "x": np.arange(w) + 0.5})
write_tiles(stack, path, overwrite=True, progress="none")
"""

PRETOUCH = r"""
import sys, numpy as np
held = [np.ones(2**24) for _ in range(int(float(sys.argv[1]) * 8))]   # 8 arrays of 128 MiB per GiB, all touched
"""

# -- jobs (the child's code; `result` is returned as JSON) ----------------

PRELUDE = r"""
import os, sys, time, resource, warnings, json
import numpy as np, dask
import dask.array, distributed, xarray, zarr   # imports are not throughput: no job pays them in its timed section
warnings.simplefilter("ignore")
dask.config.set(scheduler="threads", num_workers=2)
def _rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
def _cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
def _sys():
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime
def _warm():
    from rastercore.features import features_for_block
    t = time.perf_counter()
    features_for_block(np.random.default_rng(0).random((1, 96, 96), np.float32),
                       [{"name": "multiscale_basic", "sigma_max": 2}, {"name": "box_mean", "size": 5},
                        {"name": "gaussian", "sigma": 2.0}], ["A"])
    return time.perf_counter() - t
def _timed(fn):
    cpu0, sys0, t0 = _cpu(), _sys(), time.perf_counter()
    out = fn()
    result.update(job_s=time.perf_counter() - t0, job_cpu_s=_cpu() - cpu0, job_sys_s=_sys() - sys0,
                  job_peak_rss_mib=_rss())
    return out
"""

JOBS = {
    # (a) multiscale
    "skimage_multiscale": r"""
from rastercore import open_stack
from skimage.feature import multiscale_basic_features
img = np.ascontiguousarray(np.moveaxis(open_stack(sys.argv[1]).values, 0, -1))
result["rss_before_mib"] = _rss()
feats = _timed(lambda: multiscale_basic_features(img, channel_axis=-1, sigma_min=0.5, sigma_max=16))
result["n_features"] = feats.shape[-1]
if len(sys.argv) > 2 and os.path.exists(sys.argv[2]):   # rastercore's store of the same image, tile by tile
    import zarr
    ours = zarr.open_array(sys.argv[2], path="data", mode="r")
    cy, cx = ours.chunks[-2:]
    diff = 0.0
    for y in range(0, ours.shape[1], cy):
        for x in range(0, ours.shape[2], cx):
            tile = ours[:, y:y + cy, x:x + cx]
            theirs = np.moveaxis(feats[y:y + cy, x:x + cx], -1, 0)
            diff = max(diff, float(np.nanmax(np.abs(tile - theirs))))
    result["max_abs_diff_vs_rastercore"] = diff
    result["max_abs_value"] = float(np.max(np.abs(feats)))
""",
    "rastercore_multiscale_memory": r"""
import xarray as xr, dask.array as da
from rastercore import open_stack
from rastercore.features import compute_features
stack = open_stack(sys.argv[1])
values = stack.values
result["warm_s"] = _warm()
mem = xr.DataArray(da.from_array(values, chunks=(3, 1024, 1024)), dims=stack.dims, coords=stack.coords)
result["rss_before_mib"] = _rss()
def job():
    lazy = compute_features(mem, [SPEC])
    out = np.empty(lazy.shape, np.float32)   # one NumPy result, like scikit-image's
    da.store(lazy.data, out, lock=False)
    return out
feats = _timed(job)
result["n_features"] = feats.shape[0]
""",
    "rastercore_multiscale_block": r"""
from rastercore import open_stack
from rastercore.features import features_for_block
stack = open_stack(sys.argv[1])
values = stack.values
result["warm_s"] = _warm()
result["rss_before_mib"] = _rss()
feats = _timed(lambda: features_for_block(values, [SPEC], list(stack["band"].values)))
result["n_features"] = feats.shape[0]
""",
    "rastercore_multiscale_zarr": r"""
from rastercore import open_stack
from rastercore.features import write_features
result["warm_s"] = _warm()
result["rss_before_mib"] = _rss()
_timed(lambda: write_features(open_stack(sys.argv[1]), [SPEC], sys.argv[2], overwrite=True, progress="none"))
""",
    # (b) single filters, zarr to zarr
    "copy_dask": r"""
import dask.array as da
from rastercore.store import store_codecs
kw = {} if CODEC is None else {"compressors": store_codecs(CODEC)}   # None: zarr's default (zstd)
result["rss_before_mib"] = _rss()
_timed(lambda: da.from_zarr(sys.argv[1], component="data").to_zarr(sys.argv[2], component="data", overwrite=True, **kw))
""",
    "copy_rastercore": r"""
from rastercore import open_stack
from rastercore.store import write_tiles
result["rss_before_mib"] = _rss()
_timed(lambda: write_tiles(open_stack(sys.argv[1]), sys.argv[2], overwrite=True, progress="none"))
""",
    "rastercore_zarr": r"""
from rastercore import open_stack
from rastercore.features import write_features
result["warm_s"] = _warm()
result["rss_before_mib"] = _rss()
_timed(lambda: write_features(open_stack(sys.argv[1]), [SPEC], sys.argv[2], overwrite=True, progress="none"))
""",
    "daskimage_zarr": r"""
import dask.array as da
from dask_image import ndfilters
from rastercore.store import store_codecs
spec = SPEC
kw = {} if CODEC is None else {"compressors": store_codecs(CODEC)}   # None: zarr's default (zstd)
def job():
    arr = da.from_zarr(sys.argv[1], component="data")[0]
    out = (ndfilters.uniform_filter(arr, spec["size"]) if spec["name"] == "box_mean"
           else ndfilters.gaussian_filter(arr, spec["sigma"]))
    out.to_zarr(sys.argv[2], component="data", overwrite=True, **kw)
result["rss_before_mib"] = _rss()
_timed(job)
""",
    # (b) single filters, in memory
    "scipy_memory": r"""
import scipy.ndimage as ndi, zarr
img = np.asarray(zarr.open_array(sys.argv[1], path="data", mode="r")[0])
spec = SPEC
result["rss_before_mib"] = _rss()
ref = _timed(lambda: ndi.uniform_filter(img, spec["size"]) if spec["name"] == "box_mean"
             else ndi.gaussian_filter(img, spec["sigma"]))
for name, path in (("rastercore", sys.argv[2]), ("daskimage", sys.argv[3])):
    if os.path.exists(path):
        other = zarr.open_array(path, path="data", mode="r")
        other = np.asarray(other[0] if other.ndim == 3 else other[:])
        result[f"max_abs_diff_{name}_zarr_vs_scipy"] = float(np.max(np.abs(other - ref)))
result["max_abs_value"] = float(np.max(np.abs(ref)))
""",
    "rastercore_memory": r"""
import xarray as xr, dask.array as da, zarr
from rastercore.features import compute_features
img = np.asarray(zarr.open_array(sys.argv[1], path="data", mode="r")[:])
result["warm_s"] = _warm()
stack = xr.DataArray(da.from_array(img, chunks=(1, 1024, 1024)), dims=("band", "y", "x"), coords={"band": ["HH"]})
result["rss_before_mib"] = _rss()
def job():
    lazy = compute_features(stack, [SPEC])
    out = np.empty(lazy.shape, np.float32)
    da.store(lazy.data, out, lock=False)
    return out
out = _timed(job)
""",
    "rastercore_block": r"""
import zarr
from rastercore.features import features_for_block
img = np.asarray(zarr.open_array(sys.argv[1], path="data", mode="r")[:])
result["warm_s"] = _warm()
result["rss_before_mib"] = _rss()
out = _timed(lambda: features_for_block(img, [SPEC], ["HH"]))
""",
    # (c) first call of the kernels
    "compile": r"""
from rastercore.features import features_for_block
spec = [{"name": "multiscale_basic", "sigma_max": 2}, {"name": "gaussian", "sigma": 1},
        {"name": "hessian_eig", "sigma": 1}, {"name": "structure_eig", "sigma": 1},
        {"name": "box_std", "size": 3}, {"name": "box_max", "size": 3}, {"name": "cv", "size": 3},
        {"name": "window", "r": 1}, {"name": "glcm", "vmin": 0, "vmax": 1, "size": 3},
        {"name": "ratio", "a": "a", "b": "b"}]
block = np.random.default_rng(0).random((2, 64, 64), np.float32)
t = time.perf_counter(); features_for_block(block, spec, ["a", "b"]); result["first_call_s"] = time.perf_counter() - t
t = time.perf_counter(); features_for_block(block, spec, ["a", "b"]); result["second_call_s"] = time.perf_counter() - t
""",
}


def job(name: str, spec: dict | None = None, codec: str | None = None) -> str:
    code = PRELUDE + JOBS[name]
    code = code.replace("SPEC", repr(spec)) if spec is not None else code
    code = code.replace("CODEC", repr(codec))
    return code + "\nresult['cpu_s'] = _cpu()\n"


# -- measuring ------------------------------------------------------------

def _busy_cpu() -> float:
    import psutil

    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def wait_until_quiet(max_load: float, timeout: float) -> dict:
    """Wait until the 1-minute load average is at most ``max_load``."""
    start = time.monotonic()
    while os.getloadavg()[0] > max_load and time.monotonic() - start < timeout:
        time.sleep(5)
    return {"load_before": round(os.getloadavg()[0], 2), "waited_s": round(time.monotonic() - start, 1),
            "quiet": os.getloadavg()[0] <= max_load}


def measure(label: str, code: str, *args: str, opts, cold_numba: bool = False) -> dict:
    """Run a job when the machine is quiet; again if other processes took > 10 % of the CPUs meanwhile.

    ``cold_numba``: every attempt gets a new, empty Numba cache directory.
    """
    ncpu = os.cpu_count() or 1
    for attempt in range(1, opts.attempts + 1):
        state = wait_until_quiet(opts.max_load, opts.max_wait) if opts.max_load else {}
        cache = tempfile.mkdtemp(prefix="numba-cache-") if cold_numba else None
        saved = os.environ.get("NUMBA_CACHE_DIR")
        if cache:
            os.environ["NUMBA_CACHE_DIR"] = cache
        busy0, t0 = _busy_cpu(), time.monotonic()
        try:
            res = run_measured(code, *args)
        finally:
            if cache:
                os.environ.pop("NUMBA_CACHE_DIR") if saved is None else os.environ.__setitem__("NUMBA_CACHE_DIR", saved)
                shutil.rmtree(cache, ignore_errors=True)
        wall = time.monotonic() - t0
        others = max(0.0, _busy_cpu() - busy0 - res.get("cpu_s", 0.0))
        res.update(state, attempt=attempt, others_cpu_share=round(others / (wall * ncpu), 3))
        if res["others_cpu_share"] <= 0.10 or not opts.max_load:
            break
        print(f"  {label}: other processes took {res['others_cpu_share']:.0%} of the CPUs; again", flush=True)
    line = f"{label:42s} {res.get('job_s', res.get('first_call_s', float('nan'))):8.2f} s"
    if "job_peak_rss_mib" in res:
        line += f"  peak {res['job_peak_rss_mib']:7.0f} MiB"
    print(line, flush=True)
    return res


def mpx_s(res: dict, mpx: float) -> float:
    return round(mpx / res["job_s"], 3) if res.get("job_s") else float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes and no waiting (smoke test)")
    p.add_argument("--multiscale-size", default="2160x4320", help="HxW compared with scikit-image")
    p.add_argument("--full-size", default="2700x5400", help="HxW of the rastercore-only multiscale run")
    p.add_argument("--filter-size", type=int, default=8192, help="side of the single-filter scene")
    p.add_argument("--max-load", type=float, default=1.0, help="wait for this 1-minute load average (0: never)")
    p.add_argument("--max-wait", type=float, default=900.0, help="seconds to wait for a quiet machine")
    p.add_argument("--attempts", type=int, default=3, help="runs per job if other processes interfere")
    p.add_argument("--pretouch-gib", type=float, default=None,
                   help="touch this much memory once before measuring (default: half of what is available, "
                        "at most 12; 0: skip)")
    p.add_argument("--work", default=None, help="scratch directory (default: a temporary one)")
    p.add_argument("--out", type=Path, default=RESULTS / "features.json")
    opts = p.parse_args(argv)
    if opts.quick:
        opts.multiscale_size, opts.full_size, opts.filter_size, opts.max_load = "512x1024", "768x1536", 2048, 0.0
    work = Path(tempfile.mkdtemp(prefix="bench-features-", dir=opts.work))
    try:
        results = run_all(opts, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(results, indent=2))
    print_summary(results)
    print(f"wrote {opts.out}")
    return 0


def _hw(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def run_all(opts, work: Path) -> dict:
    import numba
    import scipy
    import skimage
    from importlib.metadata import version

    (mh, mw), (fh, fw), n = _hw(opts.multiscale_size), _hw(opts.full_size), opts.filter_size
    rgb, rgb_full, scene = work / "rgb.zarr", work / "rgb_full.zarr", work / "scene.zarr"
    import psutil

    pretouch = opts.pretouch_gib
    if pretouch is None:
        pretouch = 0.0 if opts.quick else min(12.0, 0.5 * psutil.virtual_memory().available / 2**30)
    if pretouch:
        print(f"touching {pretouch:.1f} GiB of memory once (first use of a page is slow in a VM) ...", flush=True)
        try:
            run_measured(PRETOUCH, str(pretouch))
        except RuntimeError:
            print("  could not (out of memory?); measuring without", flush=True)
            pretouch = 0.0
    print("writing inputs ...", flush=True)
    run_measured(MAKE_INPUTS, str(rgb), "rgb", str(mh), str(mw), str(TILE))
    run_measured(MAKE_INPUTS, str(rgb_full), "rgb", str(fh), str(fw), str(TILE))
    run_measured(MAKE_INPUTS, str(scene), "sar", str(n), str(n), str(TILE))

    facts = machine()
    facts.update(numba=numba.__version__, scipy=scipy.__version__, skimage=skimage.__version__,
                 dask_image=version("dask-image"), cpu=_cpu_name())
    out = {"machine": facts,
           "params": {"tile": TILE, "multiscale": MULTISCALE, "multiscale_size": [mh, mw],
                      "full_size": [fh, fw], "filter_size": [n, n], "filters": FILTERS,
                      "threads": 2, "max_load": opts.max_load, "pretouch_gib": round(pretouch, 1)},
           "multiscale": {}, "filters": {}, "compile": {}}

    # (c) first call, cold and warm cache
    out["compile"]["cold"] = measure("numba first call, empty cache", job("compile"), opts=opts, cold_numba=True)
    out["compile"]["warm"] = measure("numba first call, warm cache", job("compile"), opts=opts)

    # (a) multiscale
    mpx, full_mpx = mh * mw / 1e6, fh * fw / 1e6
    ms = out["multiscale"]
    ms["rastercore_zarr"] = measure(f"multiscale rastercore zarr->zarr {mh}x{mw}",
                                    job("rastercore_multiscale_zarr", MULTISCALE), str(rgb),
                                    str(work / "ms.zarr"), opts=opts)
    ms["rastercore_memory"] = measure(f"multiscale rastercore in memory {mh}x{mw}",
                                      job("rastercore_multiscale_memory", MULTISCALE), str(rgb), opts=opts)
    ms["rastercore_block"] = measure(f"multiscale rastercore in memory, 1 call {mh}x{mw}",
                                     job("rastercore_multiscale_block", MULTISCALE), str(rgb), opts=opts)
    ms["skimage"] = measure(f"multiscale skimage in memory {mh}x{mw}", job("skimage_multiscale"), str(rgb),
                            str(work / "ms.zarr"), opts=opts)
    ms["rastercore_zarr_full"] = measure(f"multiscale rastercore zarr->zarr {fh}x{fw}",
                                         job("rastercore_multiscale_zarr", MULTISCALE), str(rgb_full),
                                         str(work / "ms_full.zarr"), opts=opts)
    shutil.rmtree(work / "ms_full.zarr", ignore_errors=True)
    for key, res in ms.items():
        res["mpx_per_s"] = mpx_s(res, full_mpx if key.endswith("full") else mpx)

    # (b) single filters
    fmpx = n * n / 1e6
    flt = out["filters"]
    flt["copy_dask"] = measure("copy zarr->zarr, dask.array", job("copy_dask"), str(scene),
                               str(work / "copy1.zarr"), opts=opts)
    flt["copy_dask_lz4"] = measure("copy zarr->zarr, dask.array, lz4", job("copy_dask", codec="lz4"), str(scene),
                                   str(work / "copy3.zarr"), opts=opts)
    flt["copy_rastercore"] = measure("copy zarr->zarr, rastercore write_tiles", job("copy_rastercore"),
                                     str(scene), str(work / "copy2.zarr"), opts=opts)
    for kind, spec in FILTERS.items():
        ours, theirs = work / f"{kind}_rc.zarr", work / f"{kind}_di.zarr"
        flt[f"{kind}_rastercore_zarr"] = measure(f"{kind} rastercore zarr->zarr", job("rastercore_zarr", spec),
                                                 str(scene), str(ours), opts=opts)
        flt[f"{kind}_daskimage_zarr"] = measure(f"{kind} dask-image zarr->zarr", job("daskimage_zarr", spec),
                                                str(scene), str(theirs), opts=opts)
        flt[f"{kind}_daskimage_zarr_lz4"] = measure(f"{kind} dask-image zarr->zarr, lz4",
                                                    job("daskimage_zarr", spec, codec="lz4"), str(scene),
                                                    str(work / f"{kind}_di_lz4.zarr"), opts=opts)
        flt[f"{kind}_scipy_memory"] = measure(f"{kind} scipy.ndimage in memory", job("scipy_memory", spec),
                                              str(scene), str(ours), str(theirs), opts=opts)
        flt[f"{kind}_rastercore_memory"] = measure(f"{kind} rastercore in memory (2 threads)",
                                                   job("rastercore_memory", spec), str(scene), opts=opts)
        flt[f"{kind}_rastercore_block"] = measure(f"{kind} rastercore in memory (1 thread)",
                                                  job("rastercore_block", spec), str(scene), opts=opts)
        shutil.rmtree(ours, ignore_errors=True)
        shutil.rmtree(theirs, ignore_errors=True)
        shutil.rmtree(work / f"{kind}_di_lz4.zarr", ignore_errors=True)
    for res in flt.values():
        res["mpx_per_s"] = mpx_s(res, fmpx)
    out["goals"] = goals(out)
    return out


def goals(out: dict) -> dict:
    ms, flt = out["multiscale"], out["filters"]
    g = {"multiscale: rastercore >= 5x skimage (in memory, same image)":
         _ratio(ms["skimage"], ms["rastercore_memory"], 5.0),
         "multiscale: rastercore one call, 1 thread >= 5x skimage (in memory)":
         _ratio(ms["skimage"], ms["rastercore_block"], 5.0),
         "multiscale: rastercore zarr->zarr >= 5x skimage in memory":
         _ratio(ms["skimage"], ms["rastercore_zarr"], 5.0)}
    for kind in FILTERS:
        g[f"{kind}: rastercore >= 2x dask-image (zarr->zarr)"] = _ratio(
            flt[f"{kind}_daskimage_zarr"], flt[f"{kind}_rastercore_zarr"], 2.0)
        g[f"{kind}: rastercore >= 2x dask-image writing lz4 like rastercore (zarr->zarr)"] = _ratio(
            flt[f"{kind}_daskimage_zarr_lz4"], flt[f"{kind}_rastercore_zarr"], 2.0)
        g[f"{kind}: rastercore within 1.5x of the dask.array copy (zarr->zarr)"] = _ratio(
            flt["copy_dask"], flt[f"{kind}_rastercore_zarr"], 1 / 1.5)
        g[f"{kind}: rastercore within 1.5x of the dask.array copy writing lz4 (zarr->zarr)"] = _ratio(
            flt["copy_dask_lz4"], flt[f"{kind}_rastercore_zarr"], 1 / 1.5)
    return g


def _ratio(slow: dict, fast: dict, target: float) -> dict:
    """Speed-up of ``fast`` over ``slow`` (time ratio) against ``target``."""
    if not (slow.get("job_s") and fast.get("job_s")):
        return {"speedup": None, "target": target, "met": False}
    speedup = slow["job_s"] / fast["job_s"]
    return {"speedup": round(speedup, 2), "target": round(target, 3), "met": speedup >= target}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def print_summary(results: dict) -> None:
    print()
    for group in ("multiscale", "filters"):
        print(f"{group:42s} {'time s':>8} {'Mpx/s':>8} {'peak MiB':>9} {'cpu s':>7} {'sys s':>7}")
        for name, r in results[group].items():
            print(f"  {name:40s} {r['job_s']:8.2f} {r['mpx_per_s']:8.2f} {r['job_peak_rss_mib']:9.0f}"
                  f" {r['job_cpu_s']:7.2f} {r.get('job_sys_s', float('nan')):7.2f}")
    for name, r in results["compile"].items():
        print(f"numba first call ({name} cache): {r['first_call_s']:.2f} s")
    for name, g in results["goals"].items():
        print(f"{'MET   ' if g['met'] else 'MISSED'} {name}: {g['speedup']}x (target {g['target']})")


if __name__ == "__main__":
    sys.exit(main())
