"""Training: time and validation accuracy of each model family, beside the flatten-and-fit baseline.

On a synthetic two-band scene of 8098 x 11816 pixels (the size of the
original experiment's scene), in one run:

* draw a balanced sample of neighbourhood features with a spatial split
  (validation rows come from blocks the training rows never touch);
* fit each family on the training rows and score it on the validation rows;
* the incremental family streams over *every* training pixel instead;
* the baseline is what the original experiment did, done correctly: scikit-learn
  ``SVC`` on the raw per-pixel values (HH, HV), the same sample size.

    python bench/bench_train.py                      # 8098 x 11816
    python bench/bench_train.py --shape 2048x2048    # quick check
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import dask
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import save  # noqa: E402

SPEC = [{"name": "box_mean", "size": 9}, {"name": "gaussian", "sigma": 3.0}, {"name": "cv", "size": 9}]
RAW = [{"name": "window", "r": 0}]  # the pixel's own values: what flatten-and-fit sees


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, round(time.perf_counter() - start, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="8098x11816")
    parser.add_argument("--n", type=int, default=5000, help="training rows of the SVM sample (and the baseline)")
    parser.add_argument("--n-large", type=int, default=50_000, help="training rows for cascade SVM and trees")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split("x"))

    from rastercore import ingest
    from rastercore.datasets import SYNTHETIC_THRESHOLD, write_synthetic_scene
    from rastercore.models import KernelSGD
    from rastercore.sampling import TRAIN, VALIDATION, SpatialSplit, draw_sample
    from rastercore.targets import target_on_grid
    from rastercore.training import train_from_table, train_incremental

    dask.config.set(scheduler="threads")
    results: dict = {"shape": list(shape), "features": SPEC, "families": {}}
    split = SpatialSplit(block_size=512)
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        scene, results["synthesise_s"] = timed(write_synthetic_scene, tmp, shape, progress="none")
        stack, results["ingest_s"] = timed(ingest, [scene["HH"], scene["HV"]], Path(tmp, "s.zarr"),
                                           bands=["HH", "HV"], progress="none")
        target = target_on_grid(scene["target"], stack, kind="continuous")
        common = dict(thresholds=SYNTHETIC_THRESHOLD, split=split, seed=0, n_validation=10_000)
        small, results["sample_s"] = timed(draw_sample, stack, target, SPEC, n=args.n, **common)
        large, results["sample_large_s"] = timed(draw_sample, stack, target, SPEC, n=args.n_large, **common)
        raw, _ = timed(draw_sample, stack, target, RAW, n=args.n, **common)
        runs = [("svm", small, {}), ("cascade-svm", large, {"n_shards": 8}), ("forest", large, {}),
                ("sharded-forest", large, {}), ("hgb", large, {}), ("sgd", large, {}), ("hurdle", large, {})]
        for family, table, params in runs:
            (_, meta), seconds = timed(train_from_table, table, family, params=params)
            results["families"][family] = {"train_rows": int((table.split == TRAIN).sum()), "fit_s": seconds,
                                           "validation": meta["validation"]}
            print(family, results["families"][family], flush=True)
        model, seconds = timed(train_incremental, KernelSGD(random_state=0), stack, target, SPEC,
                               thresholds=SYNTHETIC_THRESHOLD, split=split, epochs=1, progress="none")
        X_val, y_val = small.subset(VALIDATION)
        results["families"]["sgd, every pixel (1 epoch)"] = {
            "train_rows": int(model.n_pixels_seen_), "fit_s": seconds,
            "validation": {"accuracy": float(model.score(X_val, y_val)), "rows": int(len(y_val))}}
        from sklearn.svm import SVC

        X_raw, y_raw = raw.subset(TRAIN)
        baseline, seconds = timed(SVC().fit, X_raw, y_raw)
        X_raw_val, y_raw_val = raw.subset(VALIDATION)
        results["baseline: SVC on raw pixel values"] = {
            "train_rows": int(len(y_raw)), "fit_s": seconds,
            "validation": {"accuracy": float(baseline.score(X_raw_val, y_raw_val)), "rows": int(len(y_raw_val))}}
        results["validation_majority_share"] = float(np.bincount(y_val).max() / len(y_val))
    save("train", results)


if __name__ == "__main__":
    main()
