"""The scalar lockstep walk rastercore used for tree ensembles until 2026-12-02, kept as a peer for
bench_tree_kernels.py: every row still inside a tree one step per level, the rows at a leaf dropped every
``ROUND`` levels (:mod:`rastercore.models._avx512` is the same walk 16 rows a step)."""

import numba
import numpy as np
from rastercore.models._avx512 import ROUND


@numba.njit(cache=True, nogil=True, boundscheck=False)
def lockstep_sums(X, thresholds, features, lefts, leaves, roots, depths, value_offsets, tree_output, leaf_values,
                  init, block):
    """The sums of :meth:`rastercore.models.CompiledTrees.sums`, from its arrays (a leaf is its own left child)."""
    n_rows, n_features, n_out = X.shape[0], X.shape[1], init.shape[0]
    flat = X.reshape(-1)
    sums = np.empty((n_rows, n_out), init.dtype)
    for i in range(n_rows):
        sums[i] = init
    at = np.empty(block, np.uint32)
    inside = np.empty(block, np.uint32)
    row_start = np.empty(block, np.uint64)
    for start in range(0, n_rows, block):
        m = min(block, n_rows - start)
        for r in range(m):
            row_start[r] = np.uint64(start + r) * np.uint64(n_features)
        for t in range(roots.shape[0]):
            for r in range(m):
                at[r] = roots[t]
                inside[r] = r
            n, levels = np.uint64(m), depths[t]
            while n > 0 and levels > 0:
                steps = min(ROUND, levels)
                levels -= steps
                for _ in range(steps):
                    for i in range(n):
                        r = inside[i]
                        node = at[r]
                        at[r] = lefts[node] + np.uint32(flat[row_start[r] + features[node]] > thresholds[node])
                if levels > 0:
                    kept = np.uint64(0)
                    for i in range(n):
                        r = inside[i]
                        inside[kept] = r
                        kept += np.uint64(leaves[at[r]] < 0)
                    n = kept
            _add_leaves(sums, start, m, at, leaves, value_offsets[t], tree_output[t], leaf_values)
    return sums


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _add_leaves(sums, start, m, at, leaves, offset, out, leaf_values):
    for r in range(m):
        row = offset + leaves[at[r]]
        if out >= 0:
            sums[start + r, out] += leaf_values[row, 0]
        else:
            for k in range(leaf_values.shape[1]):
                sums[start + r, k] += leaf_values[row, k]
