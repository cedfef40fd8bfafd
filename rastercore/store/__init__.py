"""The storage layer: zarr stores and single-file outputs, opened, written and published safely.

* layout and opening (``_layout``): :func:`open_stack`, :func:`open_tile_array`,
  :func:`store_stamp`, the codecs (:data:`CODECS`, :data:`DEFAULT_CODEC`);
* reading tile-plus-halo windows straight from a store (``_windows``):
  :class:`StoreWindows` through a per-process cache of decompressed chunks,
  found on an unchanged :func:`open_stack` result by :func:`store_reader`;
* publishing (``_publish``): the one output check (:func:`check_output`:
  exists, writable), build-then-rename for files (:func:`writing`) and
  stores (:func:`write_tiles`, with its resume ledger), an atomic swap when
  a store is replaced;
* one writer per output (``_lock``): :func:`output_lock`.

Nothing here knows about features, models or stages; everything above
stores its outputs through it.
"""

from ._layout import (
    CODECS,
    COMPLETE_ATTR,
    DATA_VAR,
    DEFAULT_CODEC,
    open_stack,
    open_tile_array,
    partial_path,
    store_codecs,
    store_reader,
    store_stamp,
)
from ._lock import lock_path, output_lock
from ._publish import LEDGER_DIR, block_regions, check_output, publish, write_tiles, writing
from ._windows import CACHE, ChunkCache, StoreWindows

__all__ = [
    "CODECS",
    "COMPLETE_ATTR",
    "DATA_VAR",
    "DEFAULT_CODEC",
    "LEDGER_DIR",
    "CACHE",
    "ChunkCache",
    "StoreWindows",
    "block_regions",
    "check_output",
    "lock_path",
    "output_lock",
    "open_stack",
    "open_tile_array",
    "partial_path",
    "publish",
    "store_codecs",
    "store_reader",
    "store_stamp",
    "write_tiles",
    "writing",
]
