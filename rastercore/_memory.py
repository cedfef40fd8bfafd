"""Memory of tile computations: plain pages, and arrays reused from tile to tile.

Plain pages
-----------
NumPy asks the kernel for transparent huge pages on every large allocation
(``madvise(MADV_HUGEPAGE)``).  Where THP defragmentation is ``madvise`` (a
common default), each fault in such an array may first compact memory to
find a free 2 MiB page.  A tile's features are many fresh arrays of a few to
a few hundred MiB, used once: on the 2-core benchmark machine the compaction
cost more than the features themselves (in-memory multi-scale features of a
9.3 Mpx image: 4.3-8.7 s with huge pages, 3.1-4.5 s without, over runs).

:func:`plain_pages` turns NumPy's hint off while rastercore computes a tile.
The switch is process-wide, so it is reference-counted across threads and
restored when the last computation ends; it only changes how memory is
backed, never a result.  ``NUMPY_MADVISE_HUGEPAGE=0`` turns the hint off
for a whole process.

Reused arrays
-------------
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
(the feature-store writer does so when it finishes).
"""

from __future__ import annotations

import contextlib
import sys
import threading

import numpy as np

__all__ = ["plain_pages", "output_array", "release_buffers", "PER_THREAD"]

_lock = threading.Lock()
_depth = 0
_saved: bool | None = None
try:
    from numpy._core.multiarray import _set_madvise_hugepage as _switch
except ImportError:  # NumPy < 2 or a NumPy without the switch
    _switch = None


@contextlib.contextmanager
def plain_pages():
    """Within the block, NumPy allocates without asking for huge pages."""
    global _depth, _saved
    if _switch is None:  # a NumPy without the switch: nothing to do
        yield
        return
    with _lock:
        if _depth == 0:
            _saved = _switch(False)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _switch(bool(_saved))

PER_THREAD = 2
_local = threading.local()
_pools_lock = threading.Lock()
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
        with _pools_lock:
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
    with _pools_lock:
        for pools in _pools:
            pools.clear()
        _pools.clear()
        _generation += 1
