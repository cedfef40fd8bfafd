"""Prediction and the whole pipeline: time, throughput and peak memory, beside the peers.

Three measurements, each job in a fresh process (peak RSS is that process's
``ru_maxrss``; dask runs its threaded scheduler inside it):

1. ``--end-to-end``: the demo pipeline (synthesise, ingest, sample, train an
   RBF SVM with search, predict class + probabilities to zarr and COG,
   evaluate) on a synthetic two-band 8098 x 11816 scene; each stage's time.
   Goal: under 2 minutes and under 2 GiB.
2. ``--throughput``: prediction Mpx/s of ``rastercore.predict`` (features +
   model fused per tile, FastRBF) against scikit-learn's ``SVC.predict`` on
   the same features, and against ``skimage.future.predict_segmenter`` with
   the same random forest on the same multi-scale features.
3. ``--kernel``: FastRBF against ``SVC.predict`` on the same rows, one core
   each (goal: at least 10x).
4. ``--memory``: predict-only peak RSS on a 100-Mpx and a ~1-Gpx synthetic
   scene (generated tile by tile, never on disk). Goal: ratio under 1.5.

    python bench/bench_predict.py --end-to-end --throughput --kernel --memory
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, run_measured, save  # noqa: E402

END_TO_END = """
import sys, dask
dask.config.set(scheduler="threads")
from rastercore.demo import run_demo
h, w = (int(v) for v in sys.argv[2].split("x"))
out = run_demo(sys.argv[1], shape=(h, w), progress="none")
result["stages_s"] = out["seconds"]
"""

THROUGHPUT = """
import sys, time, dask, numpy as np
dask.config.set(scheduler="threads")
from rastercore.models import load_model, read_manifest
from rastercore.stack import open_stack
from rastercore.predict import predict_lazy
from rastercore.features import compute_features
model_path, stack_path = sys.argv[1], sys.argv[2]
model = load_model(model_path); spec = read_manifest(model_path)["metadata"]["feature_spec"]
crop = open_stack(stack_path)[:, :2048, :2048]
px = crop.sizes["y"] * crop.sizes["x"] / 1e6
t = time.perf_counter(); predict_lazy(model, crop, spec, probabilities=False).compute(); rc = time.perf_counter() - t
feats = compute_features(crop, spec).values
X = feats.reshape(feats.shape[0], -1).T[:200_000]
t = time.perf_counter(); model.svc_.predict(X); sk = time.perf_counter() - t
result["rastercore_predict_mpx_s"] = round(px / rc, 3)
result["sklearn_svc_predict_mpx_s"] = round(0.2 / sk, 3)
result["sklearn_note"] = "SVC.predict on precomputed features (feature time not counted), 0.2 Mpx"
result["support_vectors"] = int(model.svc_.support_vectors_.shape[0])

# Same random forest, same multi-scale features: skimage vs rastercore.
from skimage.feature import multiscale_basic_features
from skimage.future import fit_segmenter, predict_segmenter
from sklearn.ensemble import RandomForestClassifier
from rastercore.datasets import synthetic_scene
scene = synthetic_scene((1024, 1024), seed=4)
image = np.log(scene["sar"].sel(band="HH").values)
labels = np.where(np.random.default_rng(0).random(image.shape) < 0.01, 1 + (scene["target"].values >= 0.6), 0)
feats = multiscale_basic_features(image, sigma_min=1, sigma_max=8)
clf = fit_segmenter(labels, feats, RandomForestClassifier(n_estimators=50, n_jobs=-1, random_state=0))
t = time.perf_counter(); ref = predict_segmenter(multiscale_basic_features(image, sigma_min=1, sigma_max=8), clf); sk_seg = time.perf_counter() - t
import xarray as xr
stack = xr.DataArray(image[None].astype(np.float32), dims=("band", "y", "x"), coords={"band": ["HH"]}).chunk({"y": 512, "x": 512})
mspec = [{"name": "multiscale_basic", "sigma_min": 1, "sigma_max": 8}]
t = time.perf_counter(); ours = predict_lazy(clf, stack, mspec, probabilities=False).sel(band="class").values; rc_seg = time.perf_counter() - t
result["skimage_predict_segmenter_mpx_s"] = round(1.048576 / sk_seg, 3)
result["rastercore_same_forest_mpx_s"] = round(1.048576 / rc_seg, 3)
result["agreement_with_skimage"] = float((clf.classes_[ours.astype(int)] == ref).mean())
"""

KERNEL = """
import time, numpy as np
from sklearn.svm import SVC
from rastercore.models import FastRBF
rng = np.random.default_rng(0)
X = rng.normal(size=(4000, 6)); y = (np.sin(X[:, 0]) + X[:, 1] * X[:, 2] > 0).astype(int)
svc = SVC(C=10).fit(X, y)
X_test = rng.normal(size=(200_000, 6)).astype(np.float32)
fast = FastRBF(svc); fast.predict(X_test[:10])
t = time.perf_counter(); ours = fast.predict(X_test); t_fast = time.perf_counter() - t
t = time.perf_counter(); ref = svc.predict(X_test); t_sk = time.perf_counter() - t
result.update(support_vectors=int(len(svc.support_)), rows=len(X_test), fastrbf_s=round(t_fast, 3), svc_predict_s=round(t_sk, 3),
              speedup_per_core=round(t_sk / t_fast, 1), labels_identical=bool((ours == ref).all()),
              note="both single-threaded: numba kernel vs libsvm, same rows")
from threadpoolctl import threadpool_limits
from rastercore.models import KernelSGD
sgd = KernelSGD(random_state=0).fit(X, y)
fast_sgd = sgd.fast_predictor(); fast_sgd.predict(X_test[:10])
with threadpool_limits(1):
    t = time.perf_counter(); ref = sgd.predict(X_test); t_sk = time.perf_counter() - t
t = time.perf_counter(); ours = fast_sgd.predict(X_test); t_fast = time.perf_counter() - t
result["kernel_sgd"] = dict(components=int(sgd.kernel_map_[-1].components_.shape[0]), sklearn_s=round(t_sk, 3),
                            fast_s=round(t_fast, 3), speedup_per_core=round(t_sk / t_fast, 1),
                            labels_identical=bool((ours == ref).all()))
"""

MEMORY = """
import sys, dask, numpy as np
dask.config.set(scheduler="threads")
from sklearn.svm import SVC
from rastercore.datasets import synthetic_scene
from rastercore.predict import predict
side = int(sys.argv[2])
small = synthetic_scene((512, 512), seed=1)
spec = [{"name": "box_mean", "size": 9}, {"name": "gaussian", "sigma": 3.0}]
from rastercore.features import compute_features
X = compute_features(small["sar"], spec).values.reshape(4, -1).T[::50]
y = (small["target"].values.ravel()[::50] >= 0.6).astype(int)
model = SVC().fit(X, y)
scene = synthetic_scene((side, side), seed=2, chunks=2048)
predict(model, scene["sar"], sys.argv[1] + "/mosaic.zarr", spec=spec, probabilities=False, progress="none")
result["megapixels"] = side * side / 1e6
result["support_vectors"] = int(len(model.support_))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--end-to-end", action="store_true")
    parser.add_argument("--throughput", action="store_true")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--kernel", action="store_true", help="FastRBF vs SVC.predict, one core")
    parser.add_argument("--shape", default="8098x11816", help="end-to-end scene")
    parser.add_argument("--sides", default="10240,32768", help="memory: sides of the small and large scene")
    args = parser.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        demo = Path(tmp, "demo")
        if args.end_to_end or args.throughput:
            run = run_measured(END_TO_END, str(demo), args.shape)
            stages = run.pop("stages_s")
            run["stages_s"] = stages
            run["without_synthesis_s"] = round(sum(v for k, v in stages.items() if "synth" not in k), 2)
            results["end_to_end"] = {"shape": args.shape, "scheduler": "threads (one process)", **run}
            print(results["end_to_end"], flush=True)
        if args.throughput:
            results["throughput"] = run_measured(THROUGHPUT, str(demo / "model.skops"), str(demo / "stack.zarr"))
            print(results["throughput"], flush=True)
        if args.kernel:
            results["kernel"] = run_measured(KERNEL)
            print(results["kernel"], flush=True)
        if args.memory:
            runs = {}
            for side in (int(s) for s in args.sides.split(",")):
                out = Path(tmp, f"m{side}")
                out.mkdir()
                runs[f"{side}x{side}"] = run_measured(MEMORY, str(out), str(side))
                print(side, runs[f"{side}x{side}"], flush=True)
            small, large = runs.values()
            results["memory"] = {"runs": runs, "peak_rss_ratio": round(large["peak_rss_mib"] / small["peak_rss_mib"], 2),
                                 "pixel_ratio": round(large["megapixels"] / small["megapixels"], 1)}
    previous = RESULTS / "predict.json"
    if previous.exists():  # keep figures of parts not run this time
        import json

        results = {**{k: v for k, v in json.loads(previous.read_text()).items() if k != "machine"}, **results}
    save("predict", results)


if __name__ == "__main__":
    main()
