"""Read tile-plus-halo windows of a stored stack, decompressing each zarr chunk once.

With ``map_overlap`` every tile pulls thin halo strips out of its eight
neighbours, and zarr must decompress a whole neighbour chunk for each strip.
The tiled writer keeps only a few tiles in flight to bound memory (a
sliding window, :func:`rastercore.scheduler.compute_bounded`), so a
neighbour is decompressed again for each tile that needs a strip of it:
up to nine decompressions per chunk, which dominates cheap filters.

For a stack that :func:`open_stack` returned unchanged, the tile engine
(:func:`rastercore.engine.map_tiles`) instead gives each output tile one
task that reads its window through :class:`StoreWindows` and
:class:`ChunkCache`, a byte-bounded, thread-safe LRU of decompressed chunks
per process.  Tiles are processed in row-major order, so a budget of a few
rows of chunks makes every chunk decompress once.  The windows are the
ones ``map_overlap`` would give, so the numbers are identical.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from rastercore._memory import output_array

from ._layout import open_tile_array, read_checked, store_stamp

__all__ = ["ChunkCache", "CACHE", "StoreWindows"]


class ChunkCache:
    """Byte-bounded LRU of decompressed chunks, shared by the threads of a process.

    Keys are tuples whose first two items name a group (a store); besides
    the global ``budget``, each group may be held to its own budget -- what
    its reader needs -- so a small scene does not keep every chunk.  A chunk
    being read by one thread is waited for, not read again, by the others.
    """

    def __init__(self, budget: int):
        self.budget = int(budget)
        self._items: OrderedDict = OrderedDict()
        self._bytes = 0
        self._group_bytes: dict = {}
        self._lock = threading.Lock()
        self._pending: dict = {}
        self.hits = 0
        self.misses = 0

    def get(self, key, read, group_budget: int | None = None):
        """The cached value of ``key``, else ``read()`` (kept if it fits)."""
        while True:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    self.hits += 1
                    return self._items[key]
                event = self._pending.get(key)
                if event is None:
                    event = self._pending[key] = threading.Event()
                    self.misses += 1
                    break
            event.wait()
        try:
            value = read()
            with self._lock:
                self._insert(key, value, group_budget)
            return value
        finally:
            with self._lock:
                self._pending.pop(key, None)
            event.set()

    def _insert(self, key, value, group_budget) -> None:
        group, size = key[:2], value.nbytes
        limit = self.budget if group_budget is None else min(self.budget, int(group_budget))
        if size > limit:
            return
        self._items[key] = value
        self._bytes += size
        self._group_bytes[group] = self._group_bytes.get(group, 0) + size
        if self._group_bytes[group] > limit:
            for old in [k for k in self._items if k[:2] == group]:
                if self._group_bytes[group] <= limit:
                    break
                self._evict(old)
        while self._bytes > self.budget:
            self._evict(next(iter(self._items)))

    def _evict(self, key) -> None:
        size = self._items.pop(key).nbytes
        self._bytes -= size
        self._group_bytes[key[:2]] -= size

    def drop(self, prefix) -> None:
        """Forget every entry whose key starts with ``prefix`` (a tuple)."""
        with self._lock:
            for key in [k for k in self._items if k[:len(prefix)] == prefix]:
                self._evict(key)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._items.clear()
            self._group_bytes.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return self._bytes


CACHE = ChunkCache(int(os.environ.get("RASTERCORE_CHUNK_CACHE_MB", "512")) * 2**20)
"""The process-wide cache (``RASTERCORE_CHUNK_CACHE_MB``, default 512 MiB)."""


class StoreWindows:
    """Windows of the ``data`` array of a rastercore store, read through :data:`CACHE`.

    Picklable (chunks are read through the per-process :func:`open_tile_array`).  The key of
    a chunk includes the store's modification stamp, so a rewritten store is
    never served from stale entries.

    Parameters
    ----------
    path : path-like
        The store.
    name : str, optional
        Dask name of the array this reader stands for (see
        :func:`rastercore.store.store_reader`).
    """

    def __init__(self, path, *, name: str | None = None):
        self.path = str(Path(path).resolve())
        self.name = name
        array = open_tile_array(self.path)
        self.shape = tuple(array.shape)
        self.chunks = tuple(array.chunks)
        self.dtype = np.dtype(array.dtype)
        self.stamp = store_stamp(self.path)

    @property
    def key(self) -> tuple:
        return (self.path, self.stamp)

    def _chunk(self, ci: int, cj: int) -> np.ndarray:
        cy, cx = self.chunks[-2:]
        rows = slice(ci * cy, min((ci + 1) * cy, self.shape[-2]))
        cols = slice(cj * cx, min((cj + 1) * cx, self.shape[-1]))
        return CACHE.get(self.key + (ci, cj), lambda: read_checked(self.path, self.stamp, (Ellipsis, rows, cols)),
                         group_budget=self.working_set)

    @property
    def working_set(self) -> int:
        """Bytes of three rows of chunks plus a few: what row-major tile order revisits."""
        cy, cx = self.chunks[-2:]
        n_cols = -(-self.shape[-1] // cx)
        chunk = int(np.prod(self.chunks[:-2] or (1,))) * cy * cx * self.dtype.itemsize
        return (3 * n_cols + 4) * chunk

    def read(self, bands: list[int], rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        """Pixels ``[bands, r0:r1, c0:c1]`` in the stored dtype."""
        (r0, r1), (c0, c1) = rows, cols
        cy, cx = self.chunks[-2:]
        out = output_array((len(bands), r1 - r0, c1 - c0), self.dtype, pool="window")
        whole = list(bands) == list(range(self.shape[0]))
        for ci in range(r0 // cy, (r1 - 1) // cy + 1):
            for cj in range(c0 // cx, (c1 - 1) // cx + 1):
                chunk = self._chunk(ci, cj)
                y0, y1 = max(r0, ci * cy), min(r1, (ci + 1) * cy)
                x0, x1 = max(c0, cj * cx), min(c1, (cj + 1) * cx)
                part = chunk[..., y0 - ci * cy:y1 - ci * cy, x0 - cj * cx:x1 - cj * cx]
                out[:, y0 - r0:y1 - r0, x0 - c0:x1 - c0] = part if whole else part[bands]
        return out
