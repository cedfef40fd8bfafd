"""Readers and writers: input sources by window, Cloud-Optimized GeoTIFF export."""

from rastercore.io.cog import write_cog, write_geotiff
from rastercore.io.sources import Source, open_source

__all__ = ["Source", "open_source", "write_cog", "write_geotiff"]
