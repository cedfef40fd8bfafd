"""Ingest: peak memory must not grow with scene size; throughput beside the peers.

For a scene of N pixels and one of 8N (two float32 bands, HH and HV, as
tiled GeoTIFFs), each job runs in a fresh process and reports wall time and
peak RSS:

* ``rastercore``: ``rastercore.ingest`` (threaded dask, default batching);
* ``rioxarray``: ``rioxarray.open_rasterio(chunks=...)`` + ``xarray.to_zarr``,
  what an xarray user would write;
* ``whole image``: read each band whole with rasterio and save it with zarr,
  the flatten-into-NumPy baseline.

Then a single-channel 8098 x 11816 JPEG (the size of the SAR quicklooks the
project started from) is ingested, beside a whole-image rasterio read.

    python bench/bench_ingest.py                 # 16 Mpx and 134 Mpx
    python bench/bench_ingest.py --side 1024     # quick check
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import run_measured, save  # noqa: E402

MAKE_SCENE = """
import dask, sys
from rastercore.datasets import write_synthetic_scene
dask.config.set(scheduler="threads")
write_synthetic_scene(sys.argv[1], (int(sys.argv[2]), int(sys.argv[2])), seed=0, tile_size=1024, progress="none")
"""

RASTERCORE = """
import dask, sys
from rastercore import ingest
dask.config.set(scheduler="threads")
d = sys.argv[1]
ingest([d + "/HH.tif", d + "/HV.tif"], d + "/rc.zarr", bands=["HH", "HV"], tile_size=int(sys.argv[2]), progress="none")
"""

RIOXARRAY = """
import dask, sys, xarray as xr, rioxarray
dask.config.set(scheduler="threads")
d, tile = sys.argv[1], int(sys.argv[2])
bands = [rioxarray.open_rasterio(d + f"/{b}.tif", chunks={"y": tile, "x": tile}) for b in ("HH", "HV")]
xr.concat(bands, "band").to_dataset(name="data").to_zarr(d + "/rx.zarr", mode="w", zarr_format=3, consolidated=False)
"""

WHOLE_IMAGE = """
import sys, numpy as np, rasterio, zarr
d, tile = sys.argv[1], int(sys.argv[2])
data = np.stack([rasterio.open(d + f"/{b}.tif").read(1) for b in ("HH", "HV")])
z = zarr.create_array(store=d + "/np.zarr", shape=data.shape, chunks=(2, tile, tile), dtype=data.dtype, overwrite=True)
z[:] = data
"""

MAKE_JPEG = """
import sys, numpy as np, rasterio
from rastercore.datasets import synthetic_scene
h, w = 8098, 11816
hh = synthetic_scene((h, w), seed=0, chunks=2048)["sar"].sel(band="HH").values
db = np.clip((10 * np.log10(hh) + 25) * 8, 0, 255).astype(np.uint8)
with rasterio.open(sys.argv[1], "w", driver="JPEG", width=w, height=h, count=1, dtype="uint8", quality=90) as dst:
    dst.write(db, 1)
"""

JPEG_RASTERCORE = """
import dask, sys, warnings
from rastercore import ingest
warnings.simplefilter("ignore")
dask.config.set(scheduler="threads")
ingest(sys.argv[1], sys.argv[1] + ".zarr", bands=["HH"], tile_size=1024, progress="none")
"""

JPEG_WHOLE = """
import sys, rasterio, warnings
warnings.simplefilter("ignore")
data = rasterio.open(sys.argv[1]).read()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=4096, help="side of the small scene (the large one has 8x the pixels)")
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--skip-jpeg", action="store_true")
    args = parser.parse_args()
    sizes = {"1x": args.side, "8x": int(round(args.side * math.sqrt(8)))}
    results: dict = {"tile": args.tile, "scenes": {}}
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        for label, side in sizes.items():
            scene = Path(tmp, label)
            run_measured(MAKE_SCENE, str(scene), str(side))
            runs = {name: run_measured(code, str(scene), str(args.tile))
                    for name, code in [("rastercore", RASTERCORE), ("rioxarray", RIOXARRAY), ("whole image", WHOLE_IMAGE)]}
            for run in runs.values():
                run["mpx_per_s"] = round(side * side / 1e6 / run["seconds"], 1)
            results["scenes"][label] = {"side": side, "megapixels": round(side * side / 1e6, 1), "runs": runs}
        results["peak_rss_ratio_8x_over_1x"] = {
            name: round(results["scenes"]["8x"]["runs"][name]["peak_rss_mib"] / results["scenes"]["1x"]["runs"][name]["peak_rss_mib"], 2)
            for name in ("rastercore", "rioxarray", "whole image")
        }
        if not args.skip_jpeg:
            jpeg = str(Path(tmp, "quicklook.jpg"))
            run_measured(MAKE_JPEG, jpeg)
            results["jpeg_8098x11816"] = {"rastercore ingest": run_measured(JPEG_RASTERCORE, jpeg),
                                          "rasterio whole read": run_measured(JPEG_WHOLE, jpeg)}
    save("ingest", results)


if __name__ == "__main__":
    main()
