"""Tile storage: codecs and codec pipelines, measured on the same scene.

Backs the choices in ``rastercore.store`` (LZ4 by default, tile I/O through
the zarrs codec pipeline).  Every job runs in a fresh process
(``_common.run_measured``) on an 8192 x 8192 float32 SAR-like scene in
1024-px tiles (speckle: little to compress), and on its Gaussian-smoothed
version (like most feature layers):

(a) ``codecs``: write the scene into a new store with each codec (2 threads,
    zarr-python's pipeline, ``dask.array.to_zarr``), read it back, and the
    size on disk.
(b) ``pipelines``: ``rastercore features`` (box 5 x 5, zarr to zarr, 2
    threads) with rastercore's tile arrays opened through the zarrs
    pipeline (as shipped) and through zarr-python's own; each three times,
    alternating, the median kept.

Writes ``bench/results/store.json``::

    python bench/bench_store.py           # ~2 min on 2 cores
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, machine, run_measured  # noqa: E402

SIZE, TILE = 8192, 1024

MAKE_SCENE = r"""
import sys, numpy as np, dask, dask.array as da, scipy.ndimage as ndi, xarray as xr
from rastercore.store import write_tiles
dask.config.set(scheduler="threads", num_workers=2)
path, smooth, n, tile = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), int(sys.argv[4])
def speckle(block_info=None):
    (r0, r1), (c0, c1) = block_info[None]["array-location"]
    yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float32)
    field = 1.0 + 0.5 * np.sin(yy / 97.0) * np.cos(xx / 131.0)
    return (field * np.random.default_rng([r0, c0]).exponential(1.0, field.shape)).astype(np.float32)
scene = da.map_blocks(speckle, chunks=da.core.normalize_chunks(tile, (n, n)), dtype=np.float32,
                      meta=np.empty((0, 0), np.float32))
if smooth:
    scene = scene.map_overlap(lambda b: ndi.gaussian_filter(b, 4.0), depth=16, boundary="reflect")
stack = xr.DataArray(scene[None], dims=("band", "y", "x"), coords={"band": np.array(["HH"], dtype=object)})
write_tiles(stack, path, codec="none", overwrite=True, progress="none")
"""

CODEC_JOB = r"""
import os, sys, time, numpy as np, dask, dask.array as da, zarr, subprocess
dask.config.set(scheduler="threads", num_workers=2)
from rastercore.store import store_codecs
src, dst, codec = sys.argv[1], sys.argv[2], sys.argv[3]
scene = da.from_zarr(src, component="data")
scene.compute()   # read once, so that the timed write does not include the source
kw = {} if codec == "zarr-default" else {"compressors": store_codecs(codec)}
t = time.perf_counter(); scene.to_zarr(dst, component="data", overwrite=True, **kw)
result["write_s"] = time.perf_counter() - t
t = time.perf_counter(); da.from_zarr(dst, component="data").sum().compute()
result["read_s"] = time.perf_counter() - t
result["bytes"] = sum(f.stat().st_size for f in __import__("pathlib").Path(dst).rglob("*") if f.is_file())
"""

PIPELINE_JOB = r"""
import sys, time, numpy as np, dask, zarr, distributed, xarray
dask.config.set(scheduler="threads", num_workers=2)
import rastercore.store._layout as layout, rastercore.store._publish as publish, rastercore.store._windows as windows
from rastercore import open_stack
from rastercore.features import features_for_block, write_features
if sys.argv[3] == "zarr-python":   # the same arrays, opened without the zarrs pipeline
    def plain(store, mode="r"):
        return zarr.open_array(store=str(store), path="data", mode=mode)
    layout.open_tile_array = publish.open_tile_array = windows.open_tile_array = plain
features_for_block(np.ones((1, 64, 64), np.float32), [{"name": "box_mean", "size": 5}], ["a"])
stack = open_stack(sys.argv[1])
t = time.perf_counter()
write_features(stack, [{"name": "box_mean", "size": 5}], sys.argv[2], overwrite=True, progress="none")
result["job_s"] = time.perf_counter() - t
"""

def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-store-"))
    try:
        out = {"machine": machine(), "params": {"size": SIZE, "tile": TILE}, "codecs": {}, "pipelines": {}}
        for kind, smooth in (("speckle", "0"), ("smooth", "1")):
            src = work / f"{kind}.zarr"
            run_measured(MAKE_SCENE, str(src), smooth, str(SIZE), str(TILE))
            for codec in ("zarr-default", "lz4", "zstd", "none"):
                res = run_measured(CODEC_JOB, str(src), str(work / "out.zarr"), codec)
                res["ratio"] = round(res["bytes"] / (SIZE * SIZE * 4), 3)
                out["codecs"][f"{kind}/{codec}"] = res
                print(f"{kind:8s} {codec:13s} write {res['write_s']:.2f} s  read {res['read_s']:.2f} s  "
                      f"size {res['ratio']:.2f} of raw", flush=True)
                shutil.rmtree(work / "out.zarr", ignore_errors=True)
        stack = work / "speckle.zarr"
        times: dict[str, list[float]] = {"zarrs": [], "zarr-python": []}
        for _ in range(3):
            for name in times:
                res = run_measured(PIPELINE_JOB, str(stack), str(work / "f.zarr"), name)
                times[name].append(res["job_s"])
        for name, values in times.items():
            out["pipelines"][name] = {"runs_s": [round(v, 3) for v in values], "median_s": statistics.median(values)}
            print(f"rastercore features (box 5x5) with {name:12s} pipeline: median {statistics.median(values):.2f} s "
                  f"of {[round(v, 2) for v in values]}", flush=True)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "store.json").write_text(json.dumps(out, indent=2))
        print(f"wrote {RESULTS / 'store.json'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
