"""The scene autoencoder: training time and memory, and how well k-means on its latent features finds the classes.

On a single-look synthetic SAR scene (log intensities, HH and HV) with a
two-class target, k-means with 2 clusters on three feature sets, each fitted
on 100 000 sampled pixels and mapped over the whole scene tile by tile,
scored against the classes with the adjusted Rand index and normalised
mutual information (scikit-learn):

* ``raw``: the two bands as they are;
* ``smoothed``: rastercore's unsupervised default (Gaussians of sigma 1 and
  3 of each band, :data:`rastercore.unsupervised.DEFAULT_SPEC`);
* ``latent``: the 8 latent features of an autoencoder trained here with the
  defaults (20 000 patches of 16 x 16, at most 30 epochs), run as an
  ``onnx`` feature.

Each job runs in a fresh process (time, peak RSS).

    python bench/bench_autoencoder.py [--side 2048]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import run_measured, save  # noqa: E402

SCENE = """
import sys, numpy as np
from rastercore.datasets import synthetic_scene
from rastercore.store import write_tiles
ds = synthetic_scene((int(sys.argv[2]),) * 2, seed=5, chunks=512)
write_tiles(np.log(ds["sar"]), sys.argv[1] + "/stack.zarr", progress="none")
write_tiles(ds["target"].expand_dims(band=["target"]), sys.argv[1] + "/target.zarr", progress="none")
"""

TRAIN = """
import sys, dask
dask.config.set(scheduler="threads")
from rastercore import open_stack
from rastercore.autoencoder import train_autoencoder
r = train_autoencoder(open_stack(sys.argv[1] + "/stack.zarr"), sys.argv[1] + "/encoder.onnx", progress="none")
result.update(best_epoch=r.best_epoch, epochs=len(r.validation_loss), validation_loss=min(r.validation_loss),
              baseline_loss=r.baseline_loss, patches=r.n_train + r.n_validation)
"""

CLUSTER = """
import sys, dask, numpy as np
dask.config.set(scheduler="threads")
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from rastercore import open_stack
from rastercore.datasets import SYNTHETIC_THRESHOLD
from rastercore.features import FeatureSpec
from rastercore.predict import predict_lazy
from rastercore.unsupervised import DEFAULT_SPEC, fit_unsupervised
work, which = sys.argv[1], sys.argv[2]
spec = {"raw": [{"name": "window", "r": 0}], "smoothed": DEFAULT_SPEC,
        "latent": FeatureSpec.from_file(work + "/encoder.yaml") if which == "latent" else None}[which]
stack = open_stack(work + "/stack.zarr")
model = fit_unsupervised(stack, spec, "kmeans", n_clusters=2, n=100_000, seed=0)
clusters = predict_lazy(model, stack, spec=spec).values[0].ravel()
classes = (open_stack(work + "/target.zarr").values[0].ravel() >= SYNTHETIC_THRESHOLD).astype(int)
result.update(ari=adjusted_rand_score(classes, clusters), nmi=normalized_mutual_info_score(classes, clusters))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=2048)
    args = parser.parse_args()
    results = {"side": args.side}
    with tempfile.TemporaryDirectory() as work:
        run_measured(SCENE, work, str(args.side))
        results["train"] = run_measured(TRAIN, work)
        print("train", results["train"], flush=True)
        for which in ("raw", "smoothed", "latent"):
            results[which] = run_measured(CLUSTER, work, which)
            print(which, results[which], flush=True)
    save("autoencoder", results)


if __name__ == "__main__":
    main()
