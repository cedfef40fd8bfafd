"""Multi-scale features against this machine's roofs: bytes written per second and arithmetic per second.

The job is ``bench_features.py``'s in-memory one: the ``multiscale_basic``
preset (sigma 0.5..16, 72 features) of a 3-band float32 4320 x 2160 image
(9.3 Mpx), tile by tile on 2 threads into one preallocated NumPy result.
Its two roofs, measured here in the same process with numba kernels on 2
threads:

- **memory**: writing the result's bytes (72 x 4 B per pixel, 2.7 GB) at the
  machine's write bandwidth into memory already touched, and at the rate of
  a first write into fresh memory (each page is faulted in by the kernel;
  on a virtual machine that is what a new result costs);
- **arithmetic**: the multiply-adds of the separable Gaussians (the bulk of
  the work; Sobel and Hessian terms counted at 45 flops per sigma) at the
  measured float64 fused multiply-add peak.

The result is written twice: into fresh memory, as a user's call does, and
into memory already touched, so the page faults' share shows.

``--versus-skimage N`` then times the same job beside
``skimage.feature.multiscale_basic_features`` (same image, same sigmas) in
N alternating rounds of fresh processes (imports and the kernels' first call
excluded): rastercore's in-memory call ``load_features`` (its result
allocated by rastercore, without the huge-page hint), the same features
stored into an array the caller allocated with NumPy's defaults, and
scikit-image.  On a virtual machine the first process to use memory the host
has not backed yet pays for it (``bench_features.py`` touches most free
memory first for that reason); here each job's time is reported as it came.

    python bench/bench_roofline.py --versus-skimage 3     # about four minutes on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit, prange, set_num_threads

sys.path.insert(0, str(Path(__file__).parent))
from _common import run_measured, save  # noqa: E402

SHAPE = (3, 2160, 4320)
SPEC = {"name": "multiscale_basic", "sigma_min": 0.5, "sigma_max": 16}
THREADS = 2


@njit(parallel=True, cache=True)
def _fill(out, value):
    flat = out.reshape(-1)
    n = flat.size
    step = (n + THREADS - 1) // THREADS
    for t in prange(THREADS):
        for i in range(t * step, min(n, (t + 1) * step)):
            flat[i] = value


@njit(parallel=True, fastmath=True, cache=True)
def _fma(n_iter):
    total = 0.0
    for t in prange(THREADS):
        a = np.full(64, 1.0 + t)  # 64 independent chains: enough to fill the FMA pipelines
        for _ in range(n_iter):
            for j in range(64):
                a[j] = a[j] * 0.9999999 + 1e-7
        total += a.sum()
    return total


def write_rates(nbytes: int) -> dict:
    """GB/s writing ``nbytes`` of float32 into fresh memory (first touch), then into the same memory again."""
    out = np.empty(nbytes // 4, np.float32)
    t = time.perf_counter()
    _fill(out, np.float32(1.0))
    fresh = time.perf_counter() - t
    best = min(_timed(_fill, out, np.float32(2.0)) for _ in range(3))
    return {"bytes": nbytes, "fresh_s": fresh, "fresh_gb_s": nbytes / fresh / 1e9,
            "touched_s": best, "touched_gb_s": nbytes / best / 1e9}


def fma_peak() -> dict:
    """Measured float64 multiply-add rate, 2 threads."""
    n_iter = 100_000_000
    best = min(_timed(_fma, n_iter) for _ in range(3))
    flops = THREADS * n_iter * 64 * 2
    return {"flops": flops, "seconds": best, "gflop_s": flops / best / 1e9}


def _timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def multiscale_flops(n_pixels: int, n_bands: int) -> float:
    """Arithmetic of the preset: per sigma and band, two symmetric separable passes (r + 1 multiplies and
    2 r adds each, r the Gaussian radius) plus about 45 flops of Sobel and Hessian terms."""
    from rastercore.features._filters import gaussian_radius

    sigmas = 0.5 * 2.0 ** np.arange(6)  # 0.5 .. 16, as scikit-image's defaults give for these bounds
    per_pixel = sum(2 * (3 * gaussian_radius(s) + 1) + 45 for s in sigmas)
    return float(per_pixel * n_pixels * n_bands)


def multiscale(fresh: bool) -> dict:
    """Seconds of the in-memory job, writing into fresh or already-touched memory."""
    import dask
    import dask.array as da
    import xarray as xr

    from rastercore.features import compute_features

    image = np.random.default_rng(0).random(SHAPE, dtype=np.float32)
    stack = xr.DataArray(da.from_array(image, chunks=(3, 1024, 1024)), dims=("band", "y", "x"),
                         coords={"band": ["r", "g", "b"]})
    lazy = compute_features(stack, [SPEC])
    out = np.empty(lazy.shape, np.float32)
    if not fresh:
        _fill(out, np.float32(0.0))
    with dask.config.set(scheduler="threads", num_workers=THREADS):
        t = time.perf_counter()
        da.store(lazy.data, out, lock=False)
        seconds = time.perf_counter() - t
    return {"seconds": seconds, "bytes_written": out.nbytes, "n_features": out.shape[0]}


VERSUS = r"""
import warnings
import numpy as np
warnings.simplefilter("ignore")
import dask, dask.array as da, xarray as xr, distributed, zarr   # imports are not throughput
shape, who = (3, 2160, 4320), sys.argv[1]
image = np.random.default_rng(0).random(shape, dtype=np.float32)
if who in ("rastercore", "rastercore-store"):
    from rastercore.features import compute_features, features_for_block, load_features
    features_for_block(image[:, :96, :96], [{"name": "multiscale_basic", "sigma_max": 2}], ["r", "g", "b"])
    stack = xr.DataArray(da.from_array(image, chunks=(3, 1024, 1024)), dims=("band", "y", "x"),
                         coords={"band": ["r", "g", "b"]})
    spec = [{"name": "multiscale_basic", "sigma_min": 0.5, "sigma_max": 16}]
    with dask.config.set(scheduler="threads", num_workers=2):
        t = time.perf_counter()
        if who == "rastercore":  # the in-memory call: one result, allocated by rastercore
            load_features(stack, spec)
        else:  # into the caller's own NumPy array (NumPy's default allocation)
            lazy = compute_features(stack, spec)
            out = np.empty(lazy.shape, np.float32)
            da.store(lazy.data, out, lock=False)
        result["job_s"] = time.perf_counter() - t
else:
    from skimage.feature import multiscale_basic_features
    img = np.ascontiguousarray(np.moveaxis(image, 0, -1))
    t = time.perf_counter()
    multiscale_basic_features(img, channel_axis=-1, sigma_min=0.5, sigma_max=16)
    result["job_s"] = time.perf_counter() - t
"""


def versus_skimage(rounds: int) -> list[dict]:
    """``rounds`` rounds of the in-memory job (``load_features``, and into the caller's array) and
    scikit-image's, alternating, each in a fresh process."""
    runs = []
    for _ in range(rounds):
        rc = run_measured(VERSUS, "rastercore")["job_s"]
        store = run_measured(VERSUS, "rastercore-store")["job_s"]
        sk = run_measured(VERSUS, "skimage")["job_s"]
        runs.append({"rastercore_s": rc, "rastercore_into_callers_array_s": store, "skimage_s": sk,
                     "ratio": sk / rc, "ratio_into_callers_array": sk / store})
        print(f"rastercore load_features {rc:.2f} s, into the caller's array {store:.2f} s, scikit-image {sk:.2f} s: "
              f"{sk / rc:.1f}x, {sk / store:.1f}x", flush=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versus-skimage", type=int, default=0, metavar="N", help="alternating rounds to run")
    args = parser.parse_args()
    set_num_threads(THREADS)
    multiscale(fresh=True)  # compile and warm the kernels, the pools and the allocator
    n_pixels = SHAPE[1] * SHAPE[2]
    rates = write_rates(72 * 4 * n_pixels)
    peak = fma_peak()
    jobs = {"fresh": multiscale(fresh=True), "touched": multiscale(fresh=False)}
    flops = multiscale_flops(n_pixels, SHAPE[0])
    results = {"shape": SHAPE, "spec": SPEC, "threads": THREADS, "write": rates, "fma": peak,
               "multiscale": jobs, "multiscale_flops": flops}
    nbytes = rates["bytes"]
    for name, job in jobs.items():
        s = job["seconds"]
        job["gb_s"] = nbytes / s / 1e9
        job["gflop_s"] = flops / s / 1e9
        job["share_of_write_roof"] = (nbytes / rates["touched_gb_s"] / 1e9) / s
        job["share_of_first_touch_roof"] = (nbytes / rates["fresh_gb_s"] / 1e9) / s
        job["share_of_fma_roof"] = (flops / peak["gflop_s"] / 1e9) / s
        print(f"{name:8s} {s:6.2f} s  {job['gb_s']:5.2f} GB/s written "
              f"({100 * job['share_of_write_roof']:.0f} % of the {rates['touched_gb_s']:.1f} GB/s write roof, "
              f"{100 * job['share_of_first_touch_roof']:.0f} % of the {rates['fresh_gb_s']:.1f} GB/s first-touch "
              f"roof)  {job['gflop_s']:5.1f} Gflop/s ({100 * job['share_of_fma_roof']:.0f} % of the "
              f"{peak['gflop_s']:.0f} Gflop/s FMA roof)")
    if args.versus_skimage:
        results["versus_skimage"] = versus_skimage(args.versus_skimage)
    save("roofline", results)


if __name__ == "__main__":
    main()
