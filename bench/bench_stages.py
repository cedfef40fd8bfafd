"""Sampling and prediction from a stored stack, as a CLI user runs them, on both schedulers.

The stages that read a stored stack tile by tile with a halo: ``rastercore
sample`` (features of the candidate pixels) and ``rastercore predict``
(features and model fused per tile).  Each command runs in a fresh process
through the CLI entry point, on the default scheduler (a local dask cluster)
and on ``--scheduler threads``; peak RSS is the larger of the process's own
and its children's (the local cluster's workers).

The scene (synthetic HH/HV with a continuous target) is written and
ingested once; the model is an RBF SVM with fixed C and gamma trained on a
sample of it, so every run predicts with the same support vectors.

    python bench/bench_stages.py [--shape 4096x6144] [--label after] [--repeat 2]

Results are merged into ``bench/results/stages.json`` under ``--label``, so
one run on the old code (``--label before``, from a checkout of it) and one
on the new code sit side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, run_cli, run_measured, save  # noqa: E402

SPEC = [{"name": "box_mean", "size": 9}, {"name": "gaussian", "sigma": 3.0}, {"name": "cv", "size": 9}]

PREPARE = """
import sys, json, dask
dask.config.set(scheduler="threads")
from rastercore.datasets import write_synthetic_scene
from rastercore.stack import ingest, open_stack
from rastercore.targets import target_on_grid
from rastercore.sampling import draw_sample
from rastercore.training import train_from_table
out = sys.argv[1]
h, w = (int(v) for v in sys.argv[2].split("x"))
spec = json.loads(sys.argv[3])
paths = write_synthetic_scene(out + "/scene", (h, w), seed=0, progress="none")
stack = ingest([paths["HH"], paths["HV"]], out + "/stack.zarr", bands=["HH", "HV"], tile_size=1024, progress="none")
target = target_on_grid(paths["target"], stack, kind="continuous")
table = draw_sample(stack, target, spec, n=2000, thresholds=0.6, seed=0)
train_from_table(table, "svm", params={"C": 10.0, "gamma": 0.5}, path=out + "/model.skops")
"""

def _commands(tmp: Path, scheduler: str, n: int) -> dict[str, list[str]]:
    common = ["--scheduler", scheduler]
    return {
        "sample": ["sample", str(tmp / "stack.zarr"), "--spec", str(tmp / "spec.json"), "--target",
                   str(tmp / "scene" / "target.tif"), "--threshold", "0.6", "-n", str(n), "-o",
                   str(tmp / f"sample-{scheduler}.h5"), "--overwrite", *common],
        "predict": ["predict", str(tmp / "model.skops"), str(tmp / "stack.zarr"), "-o",
                    str(tmp / f"prediction-{scheduler}.zarr"), "--overwrite", "--progress", "none", *common],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="4096x6144")
    parser.add_argument("--label", default="after", help="name of this run in the results (e.g. before, after)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per command; the fastest is kept")
    parser.add_argument("-n", type=int, default=5000, help="sample rows")
    args = parser.parse_args()
    runs: dict = {}
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        tmp = Path(tmp)
        (tmp / "spec.json").write_text(json.dumps(SPEC))
        prepared = run_measured(PREPARE, str(tmp), args.shape, json.dumps(SPEC))
        print("prepared", prepared, flush=True)
        for scheduler in ("threads", "local"):
            for stage, argv in _commands(tmp, scheduler, args.n).items():
                tries = [run_cli(*argv) for _ in range(args.repeat)]
                best = min(tries, key=lambda r: r["seconds"])
                best["all_seconds"] = [round(r["seconds"], 2) for r in tries]
                runs[f"{stage} ({scheduler})"] = best
                print(args.label, stage, scheduler, best, flush=True)
    previous = RESULTS / "stages.json"
    results = json.loads(previous.read_text()) if previous.exists() else {}
    results.pop("machine", None)
    results[args.label] = {"shape": args.shape, "tile": 1024, "spec": SPEC, "n": args.n, "runs": runs}
    save("stages", results)


if __name__ == "__main__":
    main()
