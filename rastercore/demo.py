"""The demo job: the whole pipeline on built-in synthetic data.

Today: generate a SAR-like scene, ingest it into a stack, draw a quicklook
and export a Cloud-Optimized GeoTIFF.  Later stages (features, training,
prediction, evaluation) join as they land.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from rastercore.errors import StoreExistsError
from rastercore.progress import ProgressMode

__all__ = ["run_demo"]


def run_demo(
    out: str | os.PathLike = "rastercore-demo",
    *,
    shape: tuple[int, int] = (2048, 3072),
    seed: int = 0,
    tile_size: int = 1024,
    overwrite: bool = False,
    progress: ProgressMode = "auto",
) -> dict[str, object]:
    """Run the demo pipeline into ``out``; return where each output went and stage timings.

    Parameters
    ----------
    out : path-like, default "rastercore-demo"
        Output directory.
    shape : (int, int), default (2048, 3072)
        Size of the synthetic scene.
    seed : int, default 0
        Seed of the scene.
    tile_size : int, default 1024
        Tile side of the stack.
    overwrite : bool, default False
        Replace the outputs of an earlier run.
    progress : {"auto", "bar", "json", "none"}
        Progress reporting.

    Returns
    -------
    dict
        ``outputs`` (name -> path) and ``seconds`` (stage -> wall time).
    """
    from rastercore.datasets import write_synthetic_scene
    from rastercore.io import write_cog
    from rastercore.stack import ingest
    from rastercore.viz import quicklook

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise StoreExistsError(f"{out} already holds outputs; pass --overwrite to replace them.")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    def timed(stage, fn, *args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds[stage] = round(time.perf_counter() - start, 3)
        return result

    scene = timed("synthesise", write_synthetic_scene, out / "scene", shape, seed=seed, tile=tile_size,
                  progress=progress)
    stack = timed("ingest", ingest, [scene["HH"], scene["HV"]], out / "stack.zarr", bands=["HH", "HV"],
                  tile_size=tile_size, progress=progress)
    target = timed("ingest target", ingest, scene["target"], out / "target.zarr", bands=["target"],
                   tile_size=tile_size, progress=progress)
    timed("quicklook", quicklook, stack, out / "quicklook.png")
    timed("quicklook target", quicklook, target.sel(band="target"), out / "target.png")
    timed("export cog", write_cog, stack, out / "stack.tif", progress=progress)
    outputs = {
        "scene": str(out / "scene"),
        "stack": str(out / "stack.zarr"),
        "target": str(out / "target.zarr"),
        "quicklook": str(out / "quicklook.png"),
        "target quicklook": str(out / "target.png"),
        "cog": str(out / "stack.tif"),
    }
    return {"outputs": outputs, "seconds": seconds}
