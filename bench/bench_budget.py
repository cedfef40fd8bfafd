"""The support-vector budget: prediction speed against the answers it changes, side by side in one run.

The seed-size synthetic scene (8098 x 11816 by default) is synthesised,
ingested and sampled as in ``bench_families.py`` (10,000 rows of the demo's
features).  Then, each command in a fresh process as a user runs it: the
``svm`` family trained with its defaults (the spatial search over C and
gamma), and again with ``--params '{"max_support_vectors": N}'`` for
budgets of a half, a quarter and an eighth of the full model's support
vectors (``budget_tolerance`` 0.05, so that the smallest budgets are
measured, not refused), each predicted as a class map (``--layers class``)
and evaluated against the whole target.  Per model: support vectors, the
training report's held-out agreement, prediction time and Mpx/s, scene
accuracy, and the fraction of the scene's pixels whose class differs from
the full model's map.

    python bench/bench_budget.py [--shape 8098x11816] [--work DIR] [--skip-prepare] [--scheduler threads]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import run_measured, save  # noqa: E402
from bench_families import prepared_scene, scene_parser, train_predict_evaluate  # noqa: E402

DIFFERENT = """
import sys, dask
from rastercore.store import open_stack
dask.config.set(scheduler="threads")
a, b = (open_stack(p).sel(band="class") for p in sys.argv[1:3])
result["changed_fraction"] = float((a != b).mean().compute())
"""


def _model(work: Path, name: str, params: dict, scheduler: str, pixels: int) -> dict:
    done = train_predict_evaluate(work, name, scheduler, train_args=("--family", "svm", "--params", json.dumps(params)),
                                  predict_args=("--layers", "class"))
    meta, predict = done["meta"], done["predict"]
    return {
        "support_vectors": meta["support_vectors"],
        "budget_report": meta.get("support_vector_budget"),
        "validation_accuracy": meta["validation"]["accuracy"],
        "scene_accuracy": round(done["scores"]["classification"]["overall_accuracy"], 4),
        "fit_s": meta["fit_seconds"],
        "predict_s": round(predict["seconds"], 1), "predict_mpx_s": round(pixels / predict["seconds"] / 1e6, 2),
        "predict_peak_rss_mib": round(predict["peak_rss_mib"]),
    }


def main() -> None:
    args = scene_parser(__doc__).parse_args()
    height, width = (int(v) for v in args.shape.split("x"))
    results: dict = {}
    with prepared_scene(args, results) as work:
        models = results["models"] = {"full": _model(work, "full", {}, args.scheduler, height * width)}
        print("full", models["full"], flush=True)
        n_full = models["full"]["support_vectors"]
        for share in (2, 4, 8):
            name = f"max_support_vectors={n_full // share}"
            params = {"max_support_vectors": n_full // share, "budget_tolerance": 0.05}
            models[name] = _model(work, f"budget-{share}", params, args.scheduler, height * width)
            models[name]["map_changed_fraction"] = run_measured(
                DIFFERENT, str(work / "prediction-full.zarr"), str(work / f"prediction-budget-{share}.zarr"),
            )["changed_fraction"]
            print(name, models[name], flush=True)
    save("budget", results)


if __name__ == "__main__":
    main()
