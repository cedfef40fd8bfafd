"""Plain pages for the short-lived arrays of tile computations.

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
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

__all__ = ["plain_pages"]

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
