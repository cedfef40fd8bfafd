"""Polygons of a class map: time and peak memory of ``rastercore polygonize`` beside rasterio.features.shapes.

A synthetic class map (6 classes in smooth regions of a few hundred
pixels, 0.5 % of pixels flipped to another class as a classifier's
speckle, 0.1 % nodata; float32 zarr in 1024-px tiles) at two sizes, each job
in a fresh process:

* ``rastercore.maps.polygonize`` on threads, and ``rastercore polygonize``
  on the command line's default scheduler (a local cluster; peak RSS of the
  process or its workers), both to a GeoPackage;
* what users do today: read the whole map, ``rasterio.features.shapes``,
  write the features with pyogrio, at every size up to ``--peer-max``
  (the largest it can hold in memory).

Goal: rastercore's peak RSS bounded by the tile size (nearly the same at
both sizes), the same number of features as the peer.

    python bench/bench_polygonize.py [--sizes 4096,32768] [--peer-max 16384]

32768 x 32768 is 1.07 gigapixels (4 GiB of float32 before compression).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import CLASS_MAP, run_cli, run_measured, save  # noqa: E402

RASTERCORE = """
import sys, dask
dask.config.set(scheduler="threads")
from rastercore.maps import polygonize
result["features"] = polygonize(sys.argv[1], sys.argv[2], progress="none").features
"""

PEER = """
import sys, numpy as np, rasterio.features, shapely, pyogrio.raw
from rastercore import open_stack
stack = open_stack(sys.argv[1])
codes = stack.sel(band="class").values
valid = np.isfinite(codes)
geoms, values = [], []
for geom, value in rasterio.features.shapes(np.where(valid, codes, 0).astype(np.int32), mask=valid,
                                            transform=stack.rio.transform()):
    geoms.append(shapely.geometry.shape(geom))
    values.append(value)
pyogrio.raw.write(sys.argv[2], shapely.to_wkb(np.array(geoms, dtype=object)), [np.array(values, np.int32)], ["class"],
                  driver="GPKG", geometry_type="Polygon", crs=stack.rio.crs.to_wkt())
result["features"] = len(geoms)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="4096,32768", help="sides of the small and the large class map")
    parser.add_argument("--peer-max", type=int, default=16384, help="largest side given to rasterio.features.shapes")
    args = parser.parse_args()
    results: dict = {"polygonize": {}}
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        for side in (int(s) for s in args.sizes.split(",")):
            mosaic = str(Path(tmp, f"map{side}.zarr"))
            run_measured(CLASS_MAP, mosaic, str(side), "1024", "5")
            runs = {"rastercore (threads)": run_measured(RASTERCORE, mosaic, str(Path(tmp, f"rc{side}.gpkg")))}
            print(side, "rastercore (threads)", runs["rastercore (threads)"], flush=True)
            label = "rastercore polygonize (CLI, default scheduler)"
            runs[label] = run_cli("polygonize", mosaic, "-o", str(Path(tmp, f"cli{side}.gpkg")), "--progress", "none")
            print(side, label, runs[label], flush=True)
            if side <= args.peer_max:
                label = "rasterio.features.shapes, whole map in memory"
                runs[label] = run_measured(PEER, mosaic, str(Path(tmp, f"peer{side}.gpkg")))
                runs[label]["same_features_as_rastercore"] = (
                    runs[label]["features"] == runs["rastercore (threads)"]["features"])
                print(side, label, runs[label], flush=True)
            results["polygonize"][f"{side}x{side}"] = runs
        small, large = results["polygonize"].values()
        results["rss_ratio_large_to_small"] = {
            k: round(large[k]["peak_rss_mib"] / small[k]["peak_rss_mib"], 2) for k in small if k in large}
    save("polygonize", results)


if __name__ == "__main__":
    main()
