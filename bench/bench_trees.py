"""Compiled tree ensembles against the libraries' own predict, one core each, on 72 features.

A random forest (50 trees), extra trees (50) and histogram gradient
boosting (100 iterations) are fitted on 20,000 rows of 72 correlated
features (binary and 4-class targets); then the same 200,000 rows are
predicted by the library (``predict_proba``, one thread:
``threadpool_limits(1)``, ``n_jobs=1``) and by
:class:`rastercore.models.CompiledTrees` (one thread: the kernel is serial;
prediction runs one tile per dask thread).  LightGBM's own predict is
measured beside them when ``lightgbm`` is installed.  Outputs are checked
equal before anything is timed.  Goal: 5x the forest and 3x the boosting.

With ``--tl2cgen``, the random forest is also compiled to C by treelite
and tl2cgen (``pip install treelite tl2cgen``; not rastercore
dependencies; gcc, ``-O3 -march=native``, thresholds quantized) and
predicted by its one-thread predictor, the data matrix made inside the
timing as the other inputs are; compiling takes a minute or more
(``tl2cgen_compile_s``, on two cores; the larger extra-trees and boosted
models took so long that they are left out).

    python bench/bench_trees.py [--rows 200000] [--tl2cgen]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import run_measured, save  # noqa: E402

ROWS_AND_MODELS = """
import sys, time, numpy as np
from threadpoolctl import threadpool_limits
from sklearn.ensemble import RandomForestClassifier, ExtraTreesClassifier, HistGradientBoostingClassifier
from rastercore.models import compiled_trees
rows, n_classes = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
mix = rng.normal(size=(8, 72))
def draw(n):
    base = rng.normal(size=(n, 8))
    X = (base @ mix + 0.3 * rng.normal(size=(n, 72))).astype(np.float32)
    score = base[:, 0] + 0.5 * base[:, 1] * base[:, 2]
    return X, np.digitize(score, np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1]))
X, y = draw(20_000)
X_new, _ = draw(rows)
models = {"random forest (50 trees)": RandomForestClassifier(n_estimators=50, n_jobs=1, random_state=0),
          "extra trees (50 trees)": ExtraTreesClassifier(n_estimators=50, n_jobs=1, random_state=0),
          "hist gradient boosting (100 iterations)": HistGradientBoostingClassifier(max_iter=100, random_state=0)}
"""
"""The rows and (unfitted) models of a job: ``argv`` rows, classes; 72 correlated features (also bench_tree_kernels)."""

JOB = ROWS_AND_MODELS + """
peers = sys.argv[3:]
def best(f, repeat=3):
    times = []
    for _ in range(repeat):
        t = time.perf_counter(); f(); times.append(time.perf_counter() - t)
    return min(times)
def tl2cgen_seconds(model):  # a forest's probabilities: (rows, 1, classes) from tl2cgen
    import tempfile, treelite, tl2cgen
    imported = treelite.sklearn.import_model(model)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        tl2cgen.export_lib(imported, toolchain="gcc", libpath=f"{tmp}/model.so", nthread=2,
                           params={"quantize": 1, "parallel_comp": 50}, options=["-O3", "-march=native"])
        compiling = time.perf_counter() - started
        predictor = tl2cgen.Predictor(f"{tmp}/model.so", nthread=1)
        some = X_new[:5000]
        out = predictor.predict(tl2cgen.DMatrix(some)).reshape(len(some), -1)
        ref = model.predict_proba(some)
        return {"tl2cgen_s": round(best(lambda: predictor.predict(tl2cgen.DMatrix(X_new))), 3),
                "tl2cgen_max_abs_diff": float(np.abs(out - ref).max()), "tl2cgen_compile_s": round(compiling)}
with threadpool_limits(1):
    for name, model in models.items():
        model.fit(X, y)
        fast = compiled_trees(model)
        assert np.array_equal(fast.predict_with_proba(X_new[:5000])[1], model.predict_proba(X_new[:5000]))
        fast.sums(X_new[:100])  # compiled before timing
        library = best(lambda: model.predict_proba(X_new))
        compiled = best(lambda: fast.predict_with_proba(X_new))
        result[name] = {"library_s": round(library, 3), "compiled_s": round(compiled, 3),
                        "speedup": round(library / compiled, 2), "nodes": fast.n_nodes}
        if "tl2cgen" in peers and isinstance(model, RandomForestClassifier):
            result[name].update(tl2cgen_seconds(model))
    try:
        import lightgbm
        booster = lightgbm.LGBMClassifier(n_estimators=100, num_threads=1, verbose=-1).fit(X, y)
        result["lightgbm predict_proba (100 iterations, its own)"] = {"s": round(best(lambda: booster.predict_proba(X_new)), 3)}
    except ImportError:
        result["lightgbm"] = "not installed"
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--tl2cgen", action="store_true", help="also time the random forest compiled to C by tl2cgen")
    args = parser.parse_args()
    peers = ["tl2cgen"] if args.tl2cgen else []
    results = {}
    for n_classes in (2, 4):
        results[f"{n_classes} classes, 72 features, {args.rows} rows, one core"] = run_measured(
            JOB, str(args.rows), str(n_classes), *peers)
        print(results, flush=True)
    save("trees", results)


if __name__ == "__main__":
    main()
