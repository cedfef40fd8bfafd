"""Multi-resolution ingest and remote reads: time and peak memory beside what users do today.

1. **Ingest onto one grid**: a synthetic 12-band scene with Sentinel-2's
   layout (4 bands at 10 m, 6 at 20 m, 2 at 60 m, tiled float32 GeoTIFFs) at
   two sizes 8x apart, onto the 10 m grid, each job in a fresh process:

   * ``rastercore.ingest`` of the 12 files (window-by-window warping) on
     threads, and ``rastercore ingest`` on the command line's default
     scheduler (a local cluster; peak RSS of the process or its workers);
   * rioxarray: ``open_rasterio(chunks)`` + ``reproject_match`` to the 10 m
     band + ``concat`` + ``to_zarr``;
   * "warp first": ``rasterio.warp.reproject`` of each whole band onto the
     10 m grid into one GeoTIFF (what ``gdalwarp`` does; the GDAL command
     line is not installed here), then ``rastercore.ingest`` of it.

   Goal: rastercore's peak RSS at 8x the pixels within 1.5x.
2. **Remote reads**: one 256-px tile after another of a 4096 x 4096 COG
   served by an HTTP server on 127.0.0.1 (range requests, bytes counted),
   beside the same reads from the local file: tiles per second, bytes per tile.

    python bench/bench_regrid.py [--sizes 1536,4344]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import run_cli, run_measured, save  # noqa: E402

MAKE = """
import sys, numpy as np, rasterio
from affine import Affine
out, side = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
layout = [("B02", 10), ("B03", 10), ("B04", 10), ("B08", 10), ("B05", 20), ("B06", 20), ("B07", 20),
          ("B8A", 20), ("B11", 20), ("B12", 20), ("B01", 60), ("B09", 60)]
for name, pixel in layout:
    n = side * 10 // pixel
    rows, cols = np.mgrid[0:n, 0:n]
    with rasterio.open(f"{out}/{name}.tif", "w", driver="GTiff", width=n, height=n, count=1, dtype="float32",
                       crs="EPSG:32633", transform=Affine(pixel, 0, 500000, 0, -pixel, 4000000), tiled=True,
                       blockxsize=256, blockysize=256) as dst:
        for r in range(0, n, 1024):
            block = (np.sin(rows[r:r + 1024] / 50.0) * np.cos(cols[r:r + 1024] / 70.0) + 1).astype(np.float32)
            dst.write(block[np.newaxis], window=((r, r + block.shape[0]), (0, n)))
"""

NAMES = ["B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B12", "B01", "B09"]

RASTERCORE = """
import sys, dask
dask.config.set(scheduler="threads")
from rastercore import ingest
names = sys.argv[3].split(",")
ingest([f"{sys.argv[1]}/{n}.tif" for n in names], sys.argv[2], bands=names, tile_size=1024, progress="none")
"""

RIOXARRAY = """
import sys, dask, xarray as xr, rioxarray
from rasterio.enums import Resampling
dask.config.set(scheduler="threads")
names = sys.argv[3].split(",")
ref = rioxarray.open_rasterio(f"{sys.argv[1]}/{names[0]}.tif", chunks=1024)
bands = [ref]
for n in names[1:]:
    band = rioxarray.open_rasterio(f"{sys.argv[1]}/{n}.tif", chunks=1024)
    bands.append(band.rio.reproject_match(ref, resampling=Resampling.bilinear))
stack = xr.concat(bands, dim="band").assign_coords(band=names).chunk({"band": -1, "y": 1024, "x": 1024})
stack.to_dataset(name="data").to_zarr(sys.argv[2], mode="w")
"""

WARP_FIRST = """
import sys, dask, numpy as np, rasterio
from rasterio.warp import reproject
from rasterio.enums import Resampling
dask.config.set(scheduler="threads")
from rastercore import ingest
names = sys.argv[3].split(",")
with rasterio.open(f"{sys.argv[1]}/{names[0]}.tif") as ref:
    profile = dict(ref.profile, count=len(names))
    shape, transform, crs = ref.shape, ref.transform, ref.crs
warped = sys.argv[2] + ".tif"
with rasterio.open(warped, "w", **profile) as dst:
    for i, n in enumerate(names, start=1):
        with rasterio.open(f"{sys.argv[1]}/{n}.tif") as src:
            out = np.empty(shape, np.float32)
            reproject(src.read(1), out, src_transform=src.transform, src_crs=src.crs, dst_transform=transform,
                      dst_crs=crs, resampling=Resampling.bilinear)
        dst.write(out, i)
ingest([warped], sys.argv[2], bands=names, tile_size=1024, progress="none")
"""

REMOTE = """
import sys, time, threading, http.server, numpy as np, rasterio
sys.path.insert(0, sys.argv[3])
from tests.io.test_remote import RangeHandler
from rastercore.io.sources import open_source
from pathlib import Path
root = Path(sys.argv[1])
values = np.random.default_rng(0).random((4096, 4096), dtype=np.float32)
with rasterio.open(root / "cog.tif", "w", driver="GTiff", width=4096, height=4096, count=1, dtype="float32",
                   crs="EPSG:32633", transform=rasterio.Affine(10, 0, 500000, 0, -10, 4000000), tiled=True,
                   blockxsize=256, blockysize=256, compress="DEFLATE") as dst:
    dst.write(values, 1)
httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
httpd.root, httpd.sent, httpd.requests, httpd.drop_after, httpd.lock = root, 0, 0, None, threading.Lock()
threading.Thread(target=httpd.serve_forever, daemon=True).start()
windows = [(slice(r, r + 256), slice(c, c + 256)) for r in range(0, 4096, 1024) for c in range(0, 4096, 1024)]
for where, spec in (("local", str(root / "cog.tif")), ("remote", f"http://127.0.0.1:{httpd.server_address[1]}/cog.tif")):
    source = open_source(spec)
    before = httpd.sent
    t = time.perf_counter()
    for w in windows:
        source.read(w)
    seconds = time.perf_counter() - t
    result[where] = {"tiles": len(windows), "tiles_per_s": round(len(windows) / seconds, 1),
                     "bytes_per_tile": (httpd.sent - before) // len(windows) if where == "remote" else None}
result["file_bytes"] = (root / "cog.tif").stat().st_size
result["tile_bytes_raw"] = 256 * 256 * 4
httpd.shutdown()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1536,4344", help="sides of the 10 m grid of the small and large scene")
    args = parser.parse_args()
    results: dict = {"ingest": {}}
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        for side in (int(s) for s in args.sizes.split(",")):
            scene = Path(tmp, f"s{side}")
            scene.mkdir()
            run_measured(MAKE, str(scene), str(side))
            runs = {}
            for label, code in (("rastercore (threads)", RASTERCORE), ("rioxarray reproject_match", RIOXARRAY),
                                ("warp whole bands first, then ingest", WARP_FIRST)):
                runs[label] = run_measured(code, str(scene), str(Path(tmp, f"{label[:5]}{side}.zarr")), ",".join(NAMES))
                print(side, label, runs[label], flush=True)
            label = "rastercore ingest (CLI, default scheduler)"
            runs[label] = run_cli("ingest", *(str(scene / f"{n}.tif") for n in NAMES), "-o",
                                  str(Path(tmp, f"cli{side}.zarr")), "--bands", ",".join(NAMES), "--tile-size", "1024",
                                  "--progress", "none")
            print(side, label, runs[label], flush=True)
            results["ingest"][f"{side}x{side} (10 m grid), 12 bands"] = runs
        small, large = results["ingest"].values()
        results["ingest_rss_ratio"] = {k: round(large[k]["peak_rss_mib"] / small[k]["peak_rss_mib"], 2) for k in small}
        remote = Path(tmp, "remote")
        remote.mkdir()
        results["remote"] = run_measured(REMOTE, str(remote), "", str(root))
        print(results["remote"], flush=True)
    save("regrid", results)


if __name__ == "__main__":
    main()
