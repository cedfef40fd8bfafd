"""Benchmark rastercore features against scikit-image, scipy and dask-image.

Cases (each in its own subprocess so peak RSS is per case):

* ``multiscale``: the ``multiscale_basic`` preset vs
  ``skimage.feature.multiscale_basic_features`` on the same image;
* ``gaussian`` / ``box``: one filter, zarr-to-zarr, rastercore vs
  ``scipy.ndimage`` (whole array in memory) vs ``dask_image.ndfilters``
  (same dask array);
* first-call time of the Numba kernels, cold (empty cache) and warm.

Prints a table and writes JSON (with machine facts) to
``bench/results/features.json``.  Usage::

    python bench/bench_features.py --size 4096
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KB = 1024


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KB  # Linux: KiB


def _stack(path, chunk):
    import dask.array as da
    import xarray as xr

    arr = da.from_zarr(path).rechunk(chunk)[None]
    ny, nx = arr.shape[1:]
    return xr.DataArray(arr, dims=("band", "y", "x"),
                        coords={"band": ["b0"], "y": np.arange(ny), "x": np.arange(nx)})


def _warm():
    from rastercore.features import features_for_block

    spec = _all_kernels_spec()
    features_for_block(np.random.default_rng(0).random((2, 64, 64), np.float32), spec, ["a", "b"])


def _all_kernels_spec():
    return [{"name": "multiscale_basic", "sigma_max": 2}, {"name": "gaussian", "sigma": 1},
            {"name": "hessian_eig", "sigma": 1}, {"name": "structure_eig", "sigma": 1},
            {"name": "box_std", "size": 3}, {"name": "box_max", "size": 3}, {"name": "cv", "size": 3},
            {"name": "window", "r": 1}, {"name": "glcm", "vmin": 0, "vmax": 1, "size": 3},
            {"name": "ratio", "a": "a", "b": "b"}]


def run_case(case: str, args) -> dict:
    """Body of one child process; returns timings and peak RSS."""
    import dask
    import dask.array as da

    dask.config.set(scheduler="threads", num_workers=args.workers)
    src, out = os.path.join(args.work, "input.zarr"), os.path.join(args.work, f"{case}.zarr")
    start = time.perf_counter()
    if case.startswith("compile"):
        _warm()
        return {"seconds": time.perf_counter() - start, "peak_rss_mb": _peak_rss_mb()}
    tool, kind = case.split("_", 1)
    if tool == "rastercore":
        from rastercore.features import compute_features

        _warm()
        base = _peak_rss_mb()
        spec = {"multiscale": [{"name": "multiscale_basic", "sigma_max": args.sigma_max}],
                "gaussian": [{"name": "gaussian", "sigma": args.sigma}],
                "box": [{"name": "box_mean", "size": args.box}]}[kind]
        start = time.perf_counter()
        feats = compute_features(_stack(src, args.chunk), spec).data
        (feats if kind == "multiscale" else feats[0]).to_zarr(out, overwrite=True)
    elif tool == "skimage":
        from skimage.feature import multiscale_basic_features

        img = da.from_zarr(src).compute()
        base = _peak_rss_mb()
        start = time.perf_counter()
        res = multiscale_basic_features(img, sigma_max=args.sigma_max, workers=args.workers)
        compute = time.perf_counter() - start
        da.from_array(np.moveaxis(res, -1, 0), chunks=(-1, args.chunk, args.chunk)).to_zarr(
            out, overwrite=True)
        return _result(start, base, compute)
    elif tool == "scipy":
        import scipy.ndimage as ndi

        base = _peak_rss_mb()
        start = time.perf_counter()
        img = da.from_zarr(src).compute()
        res = ndi.gaussian_filter(img, args.sigma) if kind == "gaussian" else \
            ndi.uniform_filter(img, args.box)
        da.from_array(res, chunks=args.chunk).to_zarr(out, overwrite=True)
    elif tool == "daskimage":
        from dask_image import ndfilters

        base = _peak_rss_mb()
        start = time.perf_counter()
        arr = da.from_zarr(src).rechunk(args.chunk)
        res = ndfilters.gaussian_filter(arr, args.sigma) if kind == "gaussian" else \
            ndfilters.uniform_filter(arr, args.box)
        res.to_zarr(out, overwrite=True)
    else:
        raise ValueError(case)
    return _result(start, base)


def _result(start, base, compute=None):
    out = {"seconds": time.perf_counter() - start, "peak_rss_mb": _peak_rss_mb(),
           "rss_before_mb": base}
    if compute is not None:
        out["compute_seconds"] = compute
    return out


def spawn(case: str, args, env=None) -> dict:
    cmd = [sys.executable, __file__, "--child", case, "--work", args.work] + _common(args)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _common(args):
    return ["--size", str(args.size), "--chunk", str(args.chunk), "--sigma", str(args.sigma),
            "--box", str(args.box), "--sigma-max", str(args.sigma_max), "--workers", str(args.workers)]


def max_abs_diff(work, a, b) -> float:
    import dask.array as da

    x, y = da.from_zarr(os.path.join(work, f"{a}.zarr")), da.from_zarr(os.path.join(work, f"{b}.zarr"))
    if x.shape != y.shape:
        return float("nan")
    return float(abs(x.astype(np.float64) - y.rechunk(x.chunks)).max().compute())


def machine() -> dict:
    import dask
    import numba
    import scipy
    import skimage

    facts = {"python": platform.python_version(), "platform": platform.platform(),
             "cpu_count": os.cpu_count(), "numpy": np.__version__, "numba": numba.__version__,
             "scipy": scipy.__version__, "skimage": skimage.__version__, "dask": dask.__version__}
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("dask-image", "zarr", "xarray"):
        try:
            facts[dist] = version(dist)
        except PackageNotFoundError:
            pass
    try:
        import psutil

        facts["ram_gb"] = round(psutil.virtual_memory().total / 1e9, 1)
    except ImportError:
        pass
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                 if ln.startswith("model name")]
        facts["cpu"] = names[0] if names else platform.processor()
    return facts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=4096, help="image side in pixels")
    p.add_argument("--chunk", type=int, default=512, help="tile side in pixels")
    p.add_argument("--sigma", type=float, default=2.0, help="Gaussian sigma")
    p.add_argument("--box", type=int, default=7, help="box filter width (odd)")
    p.add_argument("--sigma-max", type=float, default=16.0, help="multiscale sigma_max")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="dask/skimage threads")
    p.add_argument("--out", type=Path, default=HERE / "results" / "features.json")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(run_case(args.child, args)))
        return 0
    with tempfile.TemporaryDirectory() as work, tempfile.TemporaryDirectory() as cache:
        args.work = work
        return report(args, cache)


def report(args, cache_dir) -> int:
    import dask.array as da

    img = np.random.default_rng(0).random((args.size, args.size), dtype=np.float32)
    da.from_array(img, chunks=args.chunk).to_zarr(os.path.join(args.work, "input.zarr"))
    del img
    results = {"params": {k: v for k, v in vars(args).items() if k not in ("child", "work", "out")},
               "machine": machine(), "compile": {}, "cases": {}, "max_abs_diff": {}}
    results["compile"]["cold"] = spawn("compile", args, {**os.environ, "NUMBA_CACHE_DIR": cache_dir})
    results["compile"]["warm"] = spawn("compile", args)
    mpx = args.size * args.size / 1e6
    for kind, tools in (("multiscale", ("rastercore", "skimage")),
                        ("gaussian", ("rastercore", "scipy", "daskimage")),
                        ("box", ("rastercore", "scipy", "daskimage"))):
        for tool in tools:
            res = spawn(f"{tool}_{kind}", args)
            if "seconds" in res:
                res["mpx_per_s"] = mpx / res["seconds"]
            results["cases"][f"{tool}_{kind}"] = res
        ref = tools[1]
        for tool in tools[:1] + tools[2:]:
            results["max_abs_diff"][f"{tool}_{kind} vs {ref}"] = max_abs_diff(
                args.work, f"{tool}_{kind}", f"{ref}_{kind}")
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {args.out}")
    return 0


def print_table(results):
    print(f"{'case':24} {'seconds':>9} {'Mpx/s':>8} {'peak RSS MB':>12}")
    for name, r in results["cases"].items():
        if "error" in r:
            print(f"{name:24} error: {r['error']}")
            continue
        print(f"{name:24} {r['seconds']:9.3f} {r['mpx_per_s']:8.2f} {r['peak_rss_mb']:12.0f}")
    for name, r in results["compile"].items():
        print(f"numba first call {name}: {r.get('seconds', float('nan')):.2f} s")
    for name, d in results["max_abs_diff"].items():
        print(f"max abs diff {name}: {d:.3g}")


if __name__ == "__main__":
    sys.exit(main())
