"""Reuse of output (and input window) blocks between tiles.

A worker thread computes one tile after another, each into a fresh output
array of the same shape (e.g. 72 features x 1024 x 1024 float32, 300 MB).
Fresh memory costs page faults and, with transparent huge pages, kernel
compaction: on the 2-core benchmark machine that was more system time than
the features themselves.  :func:`output_array` instead hands a thread back
one of its previous outputs once nothing else references it (CPython's
reference count is the test: dask, zarr and callers all hold references
while they use an array), so memory stays warm.

The tile-plus-halo windows read from a store are reused the same way
(pool ``"window"``).  Each thread keeps at most :data:`PER_THREAD` arrays
per pool; :func:`release_buffers` drops them all
(:func:`rastercore.features.write_features` does so when it finishes).
"""

from __future__ import annotations

import sys
import threading

import numpy as np

__all__ = ["output_array", "release_buffers", "PER_THREAD"]

PER_THREAD = 2
_local = threading.local()
_lock = threading.Lock()
_pools: list[dict] = []
_generation = 0
_IDLE_REFS = 3  # the pool's list, the loop variable, getrefcount's argument


def output_array(shape: tuple[int, ...], dtype=np.float32, *, pool: str = "output") -> np.ndarray:
    """An uninitialised array of ``shape``: a reused one of this thread's, or a new one.

    ``pool`` names a separate set of kept arrays (e.g. ``"window"`` for the
    tile-plus-halo inputs), so inputs and outputs do not evict each other.
    """
    shape, dtype = tuple(int(n) for n in shape), np.dtype(dtype)
    pools = getattr(_local, "pools", None)
    if pools is None or getattr(_local, "generation", None) != _generation:
        pools = _local.pools = {}
        _local.generation = _generation
        with _lock:
            _pools.append(pools)
    kept = pools.setdefault(pool, [])
    for arr in list(kept):
        if arr.shape == shape and arr.dtype == dtype and sys.getrefcount(arr) <= _IDLE_REFS + 1:
            return arr  # (+1: the list() copy above)
    arr = np.empty(shape, dtype)
    kept.append(arr)
    if len(kept) > PER_THREAD:
        kept.pop(0)
    return arr


def release_buffers() -> None:
    """Forget every kept array (they are freed once nothing else uses them)."""
    global _generation
    with _lock:
        for pools in _pools:
            pools.clear()
        _pools.clear()
        _generation += 1
