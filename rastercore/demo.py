"""The demo job: the whole pipeline on built-in synthetic data.

Generate a SAR-like scene, ingest it into a stack, draw a quicklook, sample
neighbourhood features with a spatial split, train an RBF SVM with a search
over C and gamma, predict every pixel into a zarr mosaic and a COG, and
score the mosaic on the whole scene and on the held-out blocks.  It is the
pipeline of ``pipelines/demo.yaml`` (:func:`rastercore.pipeline.demo_pipeline`),
built in code so that ``rastercore demo`` works from an installed package.
"""

from __future__ import annotations

import os

from rastercore.pipeline import demo_pipeline, run_pipeline
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
    """Run the demo pipeline into ``out``; return where each output went and step timings.

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
        ``outputs`` (name -> path) and ``seconds`` (step -> wall time).
    """
    pipeline = demo_pipeline(shape, seed=seed, tile_size=tile_size, output_dir=str(out))
    return run_pipeline(pipeline, overwrite=overwrite, progress=progress)
