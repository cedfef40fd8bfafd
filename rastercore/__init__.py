"""rastercore: out-of-core, tiled raster processing and pixel-wise machine learning."""

from rastercore import accessor as _accessor  # noqa: F401  (registers the .rc accessor on DataArrays)
from rastercore.io import open_source, write_cog
from rastercore.stack import describe, ingest, open_stack

__version__ = "0.1.0"
__all__ = ["ingest", "open_stack", "describe", "open_source", "write_cog", "__version__"]
