"""Deprecated: the tiled writer moved to :mod:`rastercore.store`, tile sizes and bounded work to :mod:`rastercore.scheduler`."""

from rastercore._deprecated import moved

__getattr__ = moved("rastercore.tiles", {
    **dict.fromkeys(["write_tiles", "partial_path", "store_codecs", "open_tile_array", "store_stamp", "CODECS",
                     "DEFAULT_CODEC", "COMPLETE_ATTR", "DATA_VAR"], "rastercore.store"),
    **dict.fromkeys(["choose_tile_size", "compute_bounded"], "rastercore.scheduler"),
})
