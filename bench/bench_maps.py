"""Clean-up of class maps: time and peak memory of the tiled sieve, beside rasterio.features.sieve.

Sieve section (``--sieve``, the default): a synthetic class map (6 classes
in smooth regions, 2 % of pixels flipped to another class as a
classifier's speckle, so there are many small regions to merge, some in
chains; 0.1 % nodata; float32 zarr in 1024-px tiles) at two sizes, each job
in a fresh process:

* ``rastercore clean MAP -o OUT --sieve 16 --connectivity 8`` on the
  threaded scheduler (peak RSS of that one process);
* what users do today: read the whole map into memory (uint8 codes and a
  validity mask, 2 bytes per pixel) and call ``rasterio.features.sieve``
  with the same size, connectivity and mask, at every size up to
  ``--peer-max`` (the largest it can hold in memory; GDAL also copies the
  array into a MEM dataset and builds its polygon tables); where both run,
  their outputs are compared pixel for pixel.

Goal: rastercore's peak RSS bounded by the tile size (nearly the same at
both sizes), the same pixels as rasterio.

    python bench/bench_maps.py [--sieve] [--sizes 8192,32768] [--peer-max 32768] [--min-size 16]

32768 x 32768 is 1.07 gigapixels (4 GiB of float32 before compression).
Results go to ``bench/results/maps.json``, one key per section (other
sections already there are kept).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import CLASS_MAP, RESULTS, machine, run_cli, run_measured, save  # noqa: E402

PEER = """
import sys, time, numpy as np, rasterio.features
from rastercore import open_stack
stack = open_stack(sys.argv[1])
size, connectivity, tile = int(sys.argv[3]), int(sys.argv[4]), 4096
height, width = stack.shape[1:]
codes = np.empty((height, width), np.uint8)   # read strip by strip: the map is never held as float32
valid = np.empty((height, width), bool)
for r in range(0, height, tile):
    strip = stack[0, r:r + tile].values
    valid[r:r + tile] = np.isfinite(strip)
    codes[r:r + tile] = np.where(valid[r:r + tile], strip, 0)
t = time.perf_counter()
sieved = rasterio.features.sieve(codes, size, connectivity=connectivity, mask=valid)
result["sieve_seconds"] = time.perf_counter() - t
if sys.argv[2] != "-":
    ours = open_stack(sys.argv[2])
    same = True
    for r in range(0, height, tile):
        strip = ours[0, r:r + tile].values
        ok = valid[r:r + tile]
        same &= bool(np.array_equal(strip[ok], sieved[r:r + tile][ok]) and np.isnan(strip[~ok]).all())
    result["same_pixels_as_rastercore"] = same
"""


def _sieve_section(args, tmp: str) -> dict:
    section: dict = {"min_size": args.min_size, "connectivity": args.connectivity, "tile_size": args.tile_size,
                     "sizes": {}}
    for side in (int(s) for s in args.sizes.split(",")):
        mosaic, out = str(Path(tmp, f"map{side}.zarr")), str(Path(tmp, f"clean{side}.zarr"))
        run_measured(CLASS_MAP, mosaic, str(side), str(args.tile_size), "20")
        label = "rastercore clean --sieve (CLI, threads)"
        runs = {label: run_cli("clean", mosaic, "-o", out, "--sieve", str(args.min_size), "--connectivity",
                               str(args.connectivity), "--scheduler", "threads", "--progress", "none",
                               "--overwrite")}
        print(side, label, runs[label], flush=True)
        if side <= args.peer_max:
            peer = "rasterio.features.sieve, whole map in memory"
            runs[peer] = run_measured(PEER, mosaic, out, str(args.min_size), str(args.connectivity))
            print(side, peer, runs[peer], flush=True)
        section["sizes"][f"{side}x{side}"] = runs
    sizes = list(section["sizes"].values())
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        section["rss_ratio_large_to_small"] = {
            k: round(large[k]["peak_rss_mib"] / small[k]["peak_rss_mib"], 2) for k in small if k in large}
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sieve", action="store_true", help="run the sieve section (the default)")
    parser.add_argument("--sizes", default="8192,32768", help="sides of the small and the large class map")
    parser.add_argument("--peer-max", type=int, default=32768, help="largest side given to rasterio.features.sieve")
    parser.add_argument("--min-size", type=int, default=16, help="the sieve's smallest region kept, in pixels")
    parser.add_argument("--connectivity", type=int, default=8, choices=(4, 8))
    parser.add_argument("--tile-size", type=int, default=1024, help="tiles of the class map")
    args = parser.parse_args()
    path = RESULTS / "maps.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results.pop("machine", None)
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        results["sieve"] = {"machine": machine(), **_sieve_section(args, tmp)}
    save("maps", results)


if __name__ == "__main__":
    main()
