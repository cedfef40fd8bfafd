"""rastercore's tree kernels side by side, and beside scikit-learn, one core, on bench_trees.py's rows.

The same models and rows as ``bench_trees.py`` (50-tree random forest and
extra trees, 100-iteration histogram gradient boosting; 72 features, 2
and 4 classes).  Timed in one process, interleaved, best of three rounds
of three: scikit-learn's ``predict_proba``; and the sums of
:class:`rastercore.models.CompiledTrees` by each kernel: ``partition``
(rows partitioned at every node), ``walk`` (16 rows a step in lockstep
with AVX-512; only where the processor has it), and the scalar lockstep
walk rastercore used until 2026-12-02 (``_lockstep.lockstep_sums``).
Every kernel's sums are checked equal first.  Kernels alone: the
probabilities are made from the sums the same way after any of them.
Which kernel rastercore picks for the model is ``default``.

    python bench/bench_tree_kernels.py [--rows 200000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import run_measured, save  # noqa: E402
from bench_trees import ROWS_AND_MODELS  # noqa: E402

JOB = ROWS_AND_MODELS + """
sys.path.insert(0, sys.argv[3])
from _lockstep import lockstep_sums
from rastercore.models._avx512 import has_avx512, pack_nodes
result["avx512"] = has_avx512()
def with_kernel(model, name):
    fast = compiled_trees(model)
    fast.kernel, fast.walk_nodes = name, pack_nodes(fast.features, fast.lefts, fast.roots)  # packed for any size
    return lambda: fast.sums(X_new)
with threadpool_limits(1):
    for name, model in models.items():
        model.fit(X, y)
        fast = compiled_trees(model)
        lockstep_args = (X_new, fast.thresholds, fast.features, fast.lefts, fast.leaves, fast.roots, fast.depths,
                         fast.value_offsets, fast.tree_output, fast.leaf_values, fast.init,
                         min(4096, 512 * max(1, fast.n_nodes // (256 * fast.n_trees))))  # its block size then
        runs = {"scikit-learn": lambda: model.predict_proba(X_new), "partition": with_kernel(model, "partition"),
                "scalar lockstep": lambda: lockstep_sums(*lockstep_args)}
        if result["avx512"]:
            runs["walk"] = with_kernel(model, "walk")
        reference = fast.sums(X_new)
        for run in list(runs)[1:]:
            assert np.array_equal(runs[run](), reference), run
        times = {kernel: [] for kernel in runs}
        for _ in range(3):
            for kernel, run in runs.items():
                for _ in range(3):
                    t = time.perf_counter(); run(); times[kernel].append(time.perf_counter() - t)
        best = {kernel: min(t) for kernel, t in times.items()}
        result[name] = {kernel + "_s": round(s, 3) for kernel, s in best.items()} | {"default": fast.kernel}
        result[name].update({kernel + "_speedup": round(best["scikit-learn"] / s, 2) for kernel, s in best.items()
                             if kernel != "scikit-learn"})
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    results = {}
    for n_classes in (2, 4):
        results[f"{n_classes} classes, 72 features, {args.rows} rows, one core"] = run_measured(
            JOB, str(args.rows), str(n_classes), str(Path(__file__).parent))
        print(results, flush=True)
    save("tree_kernels", results)


if __name__ == "__main__":
    main()
