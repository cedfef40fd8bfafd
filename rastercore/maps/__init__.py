"""Class maps made usable: seamless clean-up, polygons and area estimates (styled rasters: rastercore.io.cog).

Every function here works tile by tile on the tile engine
(:mod:`rastercore.engine`), and each result equals the whole-image
computation whatever the tile size.
"""

from rastercore.maps._areas import Z95, area_estimates, map_areas, pixel_areas
from rastercore.maps._cleanup import check_clean_options, clean, majority_filter, sieve
from rastercore.maps._labels import Regions, label_regions
from rastercore.maps._polygons import Polygons, polygon_format, polygonize

__all__: list[str] = ["Z95", "area_estimates", "map_areas", "pixel_areas", "Polygons", "polygon_format", "polygonize",
                       "clean", "majority_filter", "sieve", "check_clean_options", "label_regions", "Regions"]
