"""The driver's cost of planning a prediction at 1, 10 and 100 gigapixels, without computing a pixel.

A *virtual* stack is a complete rastercore store of two bands whose tiles
were never written (zarr reads them as zeros): its metadata and coordinates
only, so a 100-Gpx scene costs a few MB of disk.  On it, in a fresh process
per size, the prediction of a small model with the demo's features (box
mean 9, Gaussian 3, CoV 9) is planned exactly as ``rastercore predict``
plans it -- :func:`rastercore.predict.predict_lazy`, then
:func:`rastercore.store.write_tiles`' per-tile tasks, every one of them
made (and dropped, as the bounded window does) but none computed.  Reported
per size: tiles, time to build the lazy mosaic, time to make every tile's
task, and the driver's memory: peak RSS above what it was before planning.

    python bench/bench_plan.py [--sizes 1,10,100] [--tile 2048] [--label after]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, run_measured, save  # noqa: E402

SPEC = [{"name": "box_mean", "size": 9}, {"name": "gaussian", "sigma": 3.0}, {"name": "cv", "size": 9}]

JOB = """
import json, resource, sys, time
from pathlib import Path
import dask.array as da, numpy as np, psutil, rioxarray, xarray as xr
from sklearn.linear_model import LogisticRegression
from rastercore.predict import predict_lazy
from rastercore.store import open_stack, partial_path, store_codecs
from rastercore.store._publish import LEDGER_DIR, _create_store, _finalise, _tile_tasks, block_regions
gpx, tile, work, spec = float(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), json.loads(sys.argv[4])
side = int(round((gpx * 1e9) ** 0.5))
virtual = xr.DataArray(da.zeros((2, side, side), dtype="float32", chunks=(2, tile, tile)), dims=("band", "y", "x"),
                       coords={"band": ["HH", "HV"], "y": 5e6 - 10 * (np.arange(side) + 0.5),
                               "x": 4e5 + 10 * (np.arange(side) + 0.5)}).rio.write_crs("EPSG:32633")
path = work / f"virtual-{side}.zarr"
_create_store(virtual, partial_path(path), (tile, tile), "virtual", store_codecs("lz4"))
_finalise(partial_path(path), path)
del virtual
rng = np.random.default_rng(0)
model = LogisticRegression().fit(rng.normal(size=(100, 6)), rng.integers(0, 2, 100))
stack = open_stack(path)
before = psutil.Process().memory_info().rss
t0 = time.perf_counter()
mosaic = predict_lazy(model, stack, spec, class_names=["a", "b"])
data = mosaic.chunk({"band": -1}).data  # as write_tiles takes it
t1 = time.perf_counter()
out = partial_path(work / "out.zarr")
make = _tile_tasks(data, out, out / LEDGER_DIR)
n = 0
for item in block_regions(mosaic):
    task = make(item)
    n += 1
t2 = time.perf_counter()
result.update({"pixels": side * side, "tiles": n, "mosaic_s": round(t1 - t0, 2), "tasks_s": round(t2 - t1, 2),
               "plan_peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before / 2**20),
               "kib_per_tile": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before) / n / 1024, 2)})
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,10,100", help="gigapixels")
    parser.add_argument("--tile", type=int, default=2048)
    parser.add_argument("--label", default="after", help="name of this run in the results")
    args = parser.parse_args()
    runs = {}
    for size in args.sizes.split(","):
        with tempfile.TemporaryDirectory(dir=Path.cwd()) as work:
            runs[f"{size} Gpx"] = run_measured(JOB, size, str(args.tile), work, json.dumps(SPEC))
        print(args.label, size, runs[f"{size} Gpx"], flush=True)
    previous = RESULTS / "plan.json"
    results = json.loads(previous.read_text()) if previous.exists() else {}
    results.pop("machine", None)
    results[args.label] = {"tile": args.tile, "spec": SPEC, "runs": runs}
    save("plan", results)


if __name__ == "__main__":
    main()
