"""Every model family on the seed-size synthetic scene, side by side in one run, as a user runs them.

The scene (8098 x 11816 by default) is synthesised, ingested and sampled
once (10,000 rows of the demo's features: box mean 9, Gaussian 3, CoV 9 on
HH and HV; threshold 0.6); then, for every family, one ``rastercore``
command per stage in a fresh process (:func:`_common.run_cli`): ``train``
(with its defaults: the scene's priors where they apply), ``predict`` (its
default layers: the class and the class probabilities, features computed in
the same tile task as the model: *fused*) and
``evaluate`` against the whole target.  Per family: validation accuracy
(the training report's, as trained and after prior correction), overall
accuracy on every pixel of the scene, training time, prediction Mpx/s and
peak RSS.  The scheduler is ``threads`` (``--scheduler`` to change it).

Beside them, one core each, on the same 200,704 rows of the scene's
features: the trained SVM's compiled predict (FastRBF) against
scikit-learn's ``SVC.predict`` and, when ``scikit-learn-intelex`` is
installed (``pip install scikit-learn-intelex``; not a rastercore
dependency), its ``SVC.predict`` fitted on the same rows with the same
parameters; the trained forest's compiled ``predict_proba`` against
scikit-learn's; and LightGBM's own ``predict_proba`` of the trained
LightGBM model against the compiled one.

    python bench/bench_families.py [--shape 8098x11816] [--work DIR] [--families svm,forest]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import run_cli, run_measured, save  # noqa: E402

SPEC = [{"name": "box_mean", "size": 9}, {"name": "gaussian", "sigma": 3.0}, {"name": "cv", "size": 9}]
FAMILIES = ("svm", "logistic", "sgd", "forest", "extra-trees", "hgb", "lightgbm", "xgboost")

PEERS = """
import sys, time, numpy as np
from threadpoolctl import threadpool_limits
from rastercore.models import compiled_trees, load_model
from rastercore.sampling import read_table
from rastercore.store import open_stack
import json
work, spec = sys.argv[1], json.loads(sys.argv[2])
stack = open_stack(f"{work}/stack.zarr")
y0, x0 = stack.sizes["y"] // 2 - 224, stack.sizes["x"] // 2 - 224
window = stack.rc.features(spec)[:, y0:y0 + 448, x0:x0 + 448].values  # the scene's middle 448 x 448 pixels
X = np.ascontiguousarray(window.reshape(window.shape[0], -1).T, dtype=np.float32)
table = read_table(f"{work}/sample.h5")
X_train, y_train = table.subset(0)

def inner(path):
    model = load_model(path)
    return getattr(model, "model", model)  # the estimator under the prior correction

def best(f, repeat=3):
    times = []
    for _ in range(repeat):
        t = time.perf_counter(); f(); times.append(time.perf_counter() - t)
    return round(min(times), 3)

with threadpool_limits(1):
    try:
        svm = inner(f"{work}/model-svm.skops")
    except FileNotFoundError:
        svm = None
    if svm is not None:
        fast, svc = svm.fast_predictor(), svm.svc_
        assert np.array_equal(fast.predict(X[:20000]), svc.predict(X[:20000]))
        row = {"support_vectors": int(svc.support_vectors_.shape[0]),
               "fastrbf_s": best(lambda: fast.predict(X)), "sklearn_s": best(lambda: svc.predict(X))}
        try:
            from sklearnex.svm import SVC as IntelSVC
            Xs, ys = X_train[svm.sample_indices_], y_train[svm.sample_indices_]
            intel = IntelSVC(**svc.get_params()).fit(Xs, ys)
            row["intelex_s"] = best(lambda: intel.predict(X))
            row["intelex_same_labels"] = float(np.mean(intel.predict(X) == svc.predict(X)))
        except ImportError:
            row["intelex_s"] = "not installed"
        result["svm"] = row
    for family in ("forest", "lightgbm"):
        try:
            model = inner(f"{work}/model-{family}.skops")
        except FileNotFoundError:
            continue
        fast = compiled_trees(model)
        assert np.array_equal(fast.predict_proba(X[:20000]), model.predict_proba(X[:20000]))
        if family == "forest":
            model.n_jobs = 1
        result[family] = {"nodes": fast.n_nodes, "compiled_s": best(lambda: fast.predict_with_proba(X)),
                          "library_s": best(lambda: model.predict_proba(X))}
"""


def _prepare(work: Path, shape: str, scheduler: str, n: int) -> dict:
    common = ["--scheduler", scheduler, "--progress", "none"]
    steps = {
        "synth": ["synth", str(work / "scene"), "--size", shape, "--overwrite", *common],
        "ingest": ["ingest", str(work / "scene" / "HH.tif"), str(work / "scene" / "HV.tif"), "-o",
                   str(work / "stack.zarr"), "--bands", "HH,HV", "--overwrite", *common],
        "sample": ["sample", str(work / "stack.zarr"), "--spec", str(work / "spec.json"), "--target",
                   str(work / "scene" / "target.tif"), "--threshold", "0.6", "-n", str(n), "-o",
                   str(work / "sample.h5"), "--overwrite", *common],
    }
    runs = {}
    for stage, argv in steps.items():
        runs[stage] = run_cli(*argv)
        print(stage, runs[stage], flush=True)
    return runs


def train_predict_evaluate(work: Path, name: str, scheduler: str, *, train_args=(), predict_args=()) -> dict:
    """``rastercore train``, ``predict`` and ``evaluate`` on the prepared scene, each in a fresh process.

    Returns the three runs (time, peak RSS), the model's metadata and the
    evaluation's scores; files are named after ``name``.
    """
    common = ["--scheduler", scheduler, "--progress", "none"]
    model, mosaic, metrics = work / f"model-{name}.skops", work / f"prediction-{name}.zarr", work / f"metrics-{name}.json"
    runs = {
        "train": run_cli("train", str(work / "sample.h5"), *train_args, "-o", str(model), "--overwrite", *common),
        "predict": run_cli("predict", str(model), str(work / "stack.zarr"), "-o", str(mosaic), *predict_args,
                           "--overwrite", *common),
        "evaluate": run_cli("evaluate", str(mosaic), str(work / "scene" / "target.tif"), "--model", str(model), "-o",
                            str(metrics), "--overwrite", *common),
    }
    from rastercore.models import read_manifest

    return {**runs, "meta": read_manifest(model)["metadata"], "scores": json.loads(metrics.read_text())}


def _family(work: Path, family: str, scheduler: str, pixels: int) -> dict:
    done = train_predict_evaluate(work, family, scheduler, train_args=("--family", family))
    train, predict, evaluate, meta, scores = (done[k] for k in ("train", "predict", "evaluate", "meta", "scores"))
    corrected = ((meta.get("priors") or {}).get("validation") or {}).get("corrected")
    return {
        "validation_accuracy": meta["validation"]["accuracy"],
        "validation_accuracy_prior_corrected": corrected["accuracy"] if corrected else None,
        "scene_accuracy": round(scores["classification"]["overall_accuracy"], 4),
        "fit_s": meta["fit_seconds"], "train_command_s": round(train["seconds"], 1),
        "train_peak_rss_mib": round(train["peak_rss_mib"]),
        "predict_s": round(predict["seconds"], 1), "predict_mpx_s": round(pixels / predict["seconds"] / 1e6, 2),
        "predict_peak_rss_mib": round(predict["peak_rss_mib"]),
        "evaluate_s": round(evaluate["seconds"], 1),
    }


def scene_parser(doc: str) -> argparse.ArgumentParser:
    """The options of a benchmark on the prepared scene: --shape, --scheduler, -n, --work, --skip-prepare."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="8098x11816")
    parser.add_argument("--scheduler", default="threads")
    parser.add_argument("-n", type=int, default=10_000, help="sample rows")
    parser.add_argument("--work", type=Path, help="keep the files here (default: a temporary directory)")
    parser.add_argument("--skip-prepare", action="store_true", help="reuse the scene, stack and sample in --work")
    return parser


@contextlib.contextmanager
def prepared_scene(args, results: dict) -> Iterator[Path]:
    """The work directory holding the scene, its stack and its sample (made unless ``--skip-prepare``)."""
    results.update({"shape": args.shape, "scheduler": args.scheduler, "spec": SPEC, "n": args.n})
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        (work / "spec.json").write_text(json.dumps(SPEC))
        if not args.skip_prepare:
            results["prepare"] = _prepare(work, args.shape, args.scheduler, args.n)
        yield work


def main() -> None:
    parser = scene_parser(__doc__)
    parser.add_argument("--families", default=",".join(FAMILIES))
    args = parser.parse_args()
    height, width = (int(v) for v in args.shape.split("x"))
    results: dict = {}
    with prepared_scene(args, results) as work:
        results["families"] = {}
        for family in args.families.split(","):
            results["families"][family] = _family(work, family, args.scheduler, height * width)
            print(family, results["families"][family], flush=True)
        results["one core, 200,704 rows"] = run_measured(PEERS, str(work), json.dumps(SPEC))
        print(results["one core, 200,704 rows"], flush=True)
    save("families", results)


if __name__ == "__main__":
    main()
