"""Deterministic synthetic scenes of any size, generated tile by tile.

The built-in demo data and the workhorse of tests and benchmarks.  Every
pixel is a pure function of ``(seed, row, col)``: a tile is generated
without its neighbours, so a gigapixel scene never exists in memory and any
tiling gives the same pixels.

The scene
---------
``target`` is a smooth fractal field in [0, 1] (value noise, four octaves
from 256 px down to 32 px).  Pixels with ``target >= threshold`` are
class 1 and form connected regions; below it the value varies smoothly,
for regression.

``HH`` and ``HV`` are SAR-like intensities.  Their mean backscatter rises
with ``target`` (HV more steeply, with a step inside class-1 regions), is
modulated by an independent clutter texture, and is multiplied by
single-look speckle (exponential, or gamma with ``looks``).  One pixel's
value says little about the target: speckle has a standard deviation
equal to its mean.  The mean over a neighbourhood does: averaging ``n``
pixels divides the speckle variance by ``n``.
"""

from __future__ import annotations

import os
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
from affine import Affine
from dask.base import tokenize
from numba import njit
from rasterio.crs import CRS

from rastercore._deprecated import renamed_keywords
from rastercore._random import uniform as _uniform
from rastercore.engine import map_located
from rastercore.errors import StoreExistsError
from rastercore.grid import Grid, attach_grid

__all__ = ["synthetic_scene", "write_synthetic_scene", "SYNTHETIC_CRS", "SYNTHETIC_THRESHOLD"]

SYNTHETIC_CRS = CRS.from_epsg(32633)
SYNTHETIC_THRESHOLD = 0.6
PIXEL_SIZE = 10.0
TARGET_CELL, CLUTTER_CELL, OCTAVES = 256, 48, 4


@njit(cache=True, nogil=True)
def _value_noise(out, row0, col0, seed, stream, cell, octaves):
    """Add fractal value noise in [0, 1] to ``out`` (a tile at ``row0, col0``)."""
    height, width = out.shape
    total = 0.0
    amp = 1.0
    for _ in range(octaves):
        total += amp
        amp *= 0.5
    amp = 1.0 / total
    for octave in range(octaves):
        size = cell >> octave
        # Lattice cell of the first and last pixel centre: the same for any tiling.
        r0 = int(np.floor((row0 + 0.5) / size - 0.5))
        c0 = int(np.floor((col0 + 0.5) / size - 0.5))
        nr = int(np.floor((row0 + height - 0.5) / size - 0.5)) - r0 + 2
        nc = int(np.floor((col0 + width - 0.5) / size - 0.5)) - c0 + 2
        lattice = np.empty((nr, nc))
        for i in range(nr):
            for j in range(nc):
                lattice[i, j] = _uniform(seed, stream * 16 + octave, r0 + i, c0 + j)
        for y in range(height):
            fy = (row0 + y + 0.5) / size - 0.5
            iy = int(np.floor(fy))
            ty = fy - iy
            ty = ty * ty * (3.0 - 2.0 * ty)
            li = iy - r0
            for x in range(width):
                fx = (col0 + x + 0.5) / size - 0.5
                ix = int(np.floor(fx))
                tx = fx - ix
                tx = tx * tx * (3.0 - 2.0 * tx)
                lj = ix - c0
                top = lattice[li, lj] * (1.0 - tx) + lattice[li, lj + 1] * tx
                bottom = lattice[li + 1, lj] * (1.0 - tx) + lattice[li + 1, lj + 1] * tx
                out[y, x] += amp * (top * (1.0 - ty) + bottom * ty)
        amp *= 0.5


@njit(cache=True, nogil=True)
def _scene_tile(row0, col0, height, width, seed, threshold, looks):
    """HH, HV and target of one tile, shape ``(3, height, width)`` float32."""
    field = np.zeros((height, width))
    _value_noise(field, row0, col0, seed, 1, TARGET_CELL, OCTAVES)
    clutter = np.zeros((height, width))
    _value_noise(clutter, row0, col0, seed, 2, CLUTTER_CELL, 2)
    out = np.empty((3, height, width), dtype=np.float32)
    for y in range(height):
        for x in range(width):
            # Stretch the noise (mean 0.5, sd ~0.1) over [0, 1].
            t = min(max((field[y, x] - 0.5) * 2.6 + 0.5, 0.0), 1.0)
            texture = 0.7 + 0.6 * clutter[y, x]
            hh = (0.06 + 0.20 * t) * texture
            hv = (0.015 + 0.10 * t * t + (0.05 if t >= threshold else 0.0)) * texture
            row, col = row0 + y, col0 + x
            out[0, y, x] = hh * _speckle(seed, 3, row, col, looks)
            out[1, y, x] = hv * _speckle(seed, 4, row, col, looks)
            out[2, y, x] = t
    return out


@njit(cache=True, nogil=True)
def _speckle(seed, stream, row, col, looks):
    """Gamma(looks, 1/looks) speckle: the mean of ``looks`` unit exponentials."""
    total = 0.0
    for k in range(looks):
        total -= np.log(_uniform(seed, stream * 64 + k, row, col))
    return total / looks


def _scene_block(seed, threshold, looks, *, location):
    (_, _), (r0, r1), (c0, c1) = location
    return _scene_tile(r0, c0, r1 - r0, c1 - c0, seed, threshold, looks)


def synthetic_grid(shape: tuple[int, int]) -> Grid:
    """The grid of a synthetic scene: UTM 33N, 10 m pixels."""
    transform = Affine(PIXEL_SIZE, 0, 400_000.0, 0, -PIXEL_SIZE, 5_000_000.0)
    return Grid(int(shape[0]), int(shape[1]), transform, SYNTHETIC_CRS)


def synthetic_scene(
    shape: tuple[int, int] = (1024, 1024),
    *,
    seed: int = 0,
    chunks: int = 1024,
    threshold: float = SYNTHETIC_THRESHOLD,
    looks: int = 1,
) -> xr.Dataset:
    """A lazy SAR-like scene and its target, any size, generated tile by tile.

    Parameters
    ----------
    shape : (int, int), default (1024, 1024)
        ``(height, width)`` in pixels.
    seed : int, default 0
        Fixes every pixel; the same seed gives the same scene for any ``chunks``.
    chunks : int, default 1024
        Side of the dask blocks.
    threshold : float, default 0.6
        ``target >= threshold`` is class 1 (also shapes HV's step).
    looks : int, default 1
        Number of looks of the speckle (1 = single-look, the hardest).

    Returns
    -------
    xarray.Dataset
        ``sar`` (band: HH, HV; y; x) float32 intensities and ``target``
        (y, x) float32 in [0, 1], georeferenced (EPSG:32633, 10 m pixels).
    """
    if looks < 1:
        raise ValueError(f"looks must be at least 1, not {looks}")
    height, width = int(shape[0]), int(shape[1])
    blocks = map_located(
        _scene_block, int(seed), float(threshold), int(looks),
        chunks=((3,), da.core.normalize_chunks(chunks, (height,))[0], da.core.normalize_chunks(chunks, (width,))[0]),
        dtype=np.float32, name="synthetic-" + tokenize(height, width, seed, chunks, threshold, looks),
    )
    grid = synthetic_grid((height, width))
    sar = xr.DataArray(blocks[:2], dims=("band", "y", "x"), coords={"band": np.array(["HH", "HV"], dtype=object)})
    target = xr.DataArray(blocks[2], dims=("y", "x"))
    ds = xr.Dataset({"sar": attach_grid(sar, grid), "target": attach_grid(target, grid)})
    ds.attrs.update(seed=int(seed), threshold=float(threshold), looks=int(looks))
    return ds


@renamed_keywords({"tile": "tile_size"})
def write_synthetic_scene(
    directory: str | os.PathLike,
    shape: tuple[int, int] = (1024, 1024),
    *,
    seed: int = 0,
    tile_size: int = 1024,
    threshold: float = SYNTHETIC_THRESHOLD,
    looks: int = 1,
    overwrite: bool = False,
    progress="auto",
) -> dict[str, Path]:
    """Write a synthetic scene as tiled GeoTIFFs ``HH.tif``, ``HV.tif`` and ``target.tif``.

    Parameters
    ----------
    directory : path-like
        Created if missing.
    shape, seed, threshold, looks
        As in :func:`synthetic_scene`.
    tile_size : int, default 1024
        Generation block size (memory per block: ``3 * tile_size**2 * 4`` bytes).
    overwrite : bool, default False
        Replace existing files.
    progress : {"auto", "bar", "json", "none"}
        Progress reporting.

    Returns
    -------
    dict
        ``{"HH": path, "HV": path, "target": path}``.
    """
    from rastercore.io.cog import write_geotiff

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / f"{name}.tif" for name in ("HH", "HV", "target")}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise StoreExistsError(f"{', '.join(existing)} already exist; pass overwrite=True (--overwrite) to replace them.")
    scene = synthetic_scene(shape, seed=seed, chunks=tile_size, threshold=threshold, looks=looks)
    for name in ("HH", "HV"):
        write_geotiff(scene["sar"].sel(band=[name]), paths[name], overwrite=overwrite, cog=False, progress=progress)
    write_geotiff(scene["target"], paths["target"], overwrite=overwrite, cog=False, progress=progress)
    return paths
