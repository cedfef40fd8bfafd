"""A synthetic scene end to end from the command line, stage by stage: time and peak RSS as a user runs it.

Each stage is one ``rastercore`` command in a fresh process
(:func:`_common.run_cli`; peak RSS is the larger of the process and its
workers): ``synth`` (reported apart: it only makes the input), ``ingest``
of HH and HV, ``sample`` (10,000 rows of the demo's features: box mean 9,
Gaussian 3, CoV 9; threshold 0.6), ``train`` (RBF SVM), ``predict`` (class
only) and ``evaluate``, on each scheduler asked for (``threads`` and the
default local cluster).  ``--work DIR`` keeps the files, so that a later run
(e.g. of other code, ``PYTHONPATH=<checkout>``) can time some stages on the
same inputs with ``--stages``; ``--train-params`` passes ``--params`` to
``train`` (e.g. a support-vector budget).

    python bench/bench_scale.py --shape 32768x32768 --work /tmp/gp --label after
    python bench/bench_scale.py --shape 8098x11816 --schedulers threads,local
    python bench/bench_scale.py --work /tmp/gp --stages train,predict --train-params '{"max_support_vectors": 46}'
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, run_cli, save  # noqa: E402

SPEC = [{"name": "box_mean", "size": 9}, {"name": "gaussian", "sigma": 3.0}, {"name": "cv", "size": 9}]
STAGES = ("synth", "ingest", "sample", "train", "predict", "evaluate")


def _commands(work: Path, shape: str, scheduler: str, n: int, params: str = "{}") -> dict[str, list[str]]:
    s = scheduler
    common = ["--scheduler", s, "--progress", "none"]
    return {
        "synth": ["synth", str(work / "scene"), "--size", shape, "--overwrite", *common],
        "ingest": ["ingest", str(work / "scene" / "HH.tif"), str(work / "scene" / "HV.tif"), "-o",
                   str(work / f"stack-{s}.zarr"), "--bands", "HH,HV", "--overwrite", *common],
        "sample": ["sample", str(work / f"stack-{s}.zarr"), "--spec", str(work / "spec.json"), "--target",
                   str(work / "scene" / "target.tif"), "--threshold", "0.6", "-n", str(n), "-o",
                   str(work / f"sample-{s}.h5"), "--overwrite", *common],
        "train": ["train", str(work / f"sample-{s}.h5"), "--family", "svm", "--params", params, "-o",
                  str(work / f"model-{s}.skops"), "--overwrite", "--progress", "none"],
        "predict": ["predict", str(work / f"model-{s}.skops"), str(work / f"stack-{s}.zarr"), "-o",
                    str(work / f"prediction-{s}.zarr"), "--overwrite", *common],
        "evaluate": ["evaluate", str(work / f"prediction-{s}.zarr"), str(work / "scene" / "target.tif"), "--model",
                     str(work / f"model-{s}.skops"), "-o", str(work / f"metrics-{s}.json"), "--overwrite",
                     *common],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="32768x32768")
    parser.add_argument("--schedulers", default="threads,local")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("-n", type=int, default=10_000, help="sample rows")
    parser.add_argument("--work", type=Path, help="keep the files here (default: a temporary directory)")
    parser.add_argument("--label", default="after", help="name of this run in the results")
    parser.add_argument("--train-params", default="{}", help="train's --params, e.g. '{\"max_support_vectors\": 46}'")
    args = parser.parse_args()
    stages = [s for s in STAGES if s in args.stages.split(",")]
    runs: dict = {}
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        (work / "spec.json").write_text(json.dumps(SPEC))
        if "synth" in stages:
            runs["synth"] = run_cli(*_commands(work, args.shape, "threads", args.n)["synth"])
            print(args.label, "synth", runs["synth"], flush=True)
        for scheduler in args.schedulers.split(","):
            for stage, argv in _commands(work, args.shape, scheduler, args.n, args.train_params).items():
                if stage != "synth" and stage in stages:
                    runs[f"{stage} ({scheduler})"] = run_cli(*argv)
                    print(args.label, stage, scheduler, runs[f"{stage} ({scheduler})"], flush=True)
    previous = RESULTS / "scale.json"
    results = json.loads(previous.read_text()) if previous.exists() else {}
    results.pop("machine", None)
    results.setdefault(args.shape, {})[args.label] = {"spec": SPEC, "n": args.n, "train_params": json.loads(
        args.train_params), "runs": runs}
    save("scale", results)


if __name__ == "__main__":
    main()
