"""Quicklooks and figures, drawn from downsampled views (never the full scene)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import xarray as xr

from rastercore._deprecated import renamed_keywords
from rastercore.errors import StoreExistsError

__all__ = ["quicklook", "overview", "class_overview", "comparison_figure", "confusion_figure", "probability_figure"]


@renamed_keywords({"data": "stack"})
def overview(stack: xr.DataArray, *, max_size: int = 1024) -> xr.DataArray:
    """Block-average ``stack`` so its longer side is at most ``max_size`` pixels, and load it.

    Averaging runs tile by tile through dask; only the small result is in memory.
    NaN pixels are left out of the averages.
    """
    factor = max(1, math.ceil(max(stack.sizes["y"], stack.sizes["x"]) / max_size))
    if factor > 1:
        stack = stack.coarsen(y=factor, x=factor, boundary="trim").mean()
    return stack.compute()


@renamed_keywords({"data": "stack"})
def quicklook(
    stack: xr.DataArray,
    path: str | os.PathLike,
    *,
    max_size: int = 1024,
    db: bool | None = None,
    overwrite: bool = False,
) -> Path:
    """Save a PNG quicklook of a stack or a single-layer result.

    A mosaic with a ``class`` or ``cluster`` layer is drawn as that map, one
    colour per code, downsampled by taking pixels (never averaging codes);
    NaN is transparent.  Otherwise one band is drawn in grey; two bands (e.g. HH, HV) as the SAR false colour
    (R = first, G = second, B = first / second); three or more as RGB from
    the first three.  Each channel is stretched between its 2nd and 98th
    percentiles.

    Parameters
    ----------
    stack : xarray.DataArray
        A stack or mosaic ``(band, y, x)``, or one layer ``(y, x)``, lazy or not.
    path : path-like
        Output ``.png``.
    max_size : int, default 1024
        Longer side of the image in pixels.
    db : bool, optional
        Draw intensities in decibels; default True for two-band (SAR) stacks.
    overwrite : bool, default False
        Replace an existing file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.exists() and not overwrite:
        raise StoreExistsError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it.")
    layer = _categorical_layer(stack)
    if layer is not None:
        return _class_quicklook(layer, path, max_size=max_size)
    nodata = stack.rio.nodata if "spatial_ref" in stack.coords else None
    stack = stack.astype(np.float32)
    if nodata is not None and not np.isnan(nodata):
        stack = stack.where(stack != nodata)
    small = overview(stack, max_size=max_size)
    bands = small.values[np.newaxis] if small.ndim == 2 else small.values
    if db is None:
        db = bands.shape[0] == 2
    if bands.shape[0] == 2:
        bands = np.stack([bands[0], bands[1], bands[0] / np.where(bands[1] > 0, bands[1], np.nan)])
    if db:
        with np.errstate(divide="ignore", invalid="ignore"):
            bands = 10 * np.log10(np.where(bands > 0, bands, np.nan))
    image = np.stack([_stretch(b) for b in bands[:3]], axis=-1)
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
    return path


def _categorical_layer(data: xr.DataArray) -> xr.DataArray | None:
    """The ``class`` (or ``cluster``) layer of a prediction mosaic, else None."""
    from rastercore.predict import categorical_layer

    if "band" not in data.dims:
        return None
    names = [str(b) for b in data["band"].values]
    name = categorical_layer(names)
    return None if name is None else data.isel(band=names.index(name))


def _class_quicklook(layer: xr.DataArray, path: Path, *, max_size: int) -> Path:
    plt = _figure()
    codes = class_overview(layer, max_size=max_size)
    n = int(np.nanmax(codes)) + 1 if np.isfinite(codes).any() else 1
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, np.ma.masked_invalid(codes), cmap=_class_cmap(n), vmin=-0.5, vmax=n - 0.5)
    return path


def _stretch(band: np.ndarray) -> np.ndarray:
    """Map the 2nd..98th percentile to 0..1; NaN becomes 0."""
    finite = band[np.isfinite(band)]
    if finite.size == 0:
        return np.zeros(band.shape, np.float32)
    low, high = np.percentile(finite, [2, 98])
    scaled = (band - low) / (high - low if high > low else 1.0)
    return np.nan_to_num(np.clip(scaled, 0, 1), nan=0.0).astype(np.float32)


def class_overview(classes: xr.DataArray, *, max_size: int = 1024) -> np.ndarray:
    """Nearest-neighbour (strided) downsampling of a class map: never averages class codes."""
    factor = max(1, math.ceil(max(classes.sizes["y"], classes.sizes["x"]) / max_size))
    return np.asarray(classes[::factor, ::factor].values, dtype=np.float32)


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _class_cmap(n: int):
    plt = _figure()
    from matplotlib.colors import ListedColormap

    return ListedColormap(plt.get_cmap("tab10" if n <= 10 else "tab20").colors[:n])


def comparison_figure(prediction: xr.DataArray, target: xr.DataArray, path: str | os.PathLike, *,
                      class_names=None, max_size: int = 800, overwrite: bool = False) -> Path:
    """Prediction beside the target, with an error map (wrong pixels red, correct grey, no data white)."""
    path = _check_new(path, overwrite)
    plt = _figure()
    pred = class_overview(prediction, max_size=max_size)
    truth = class_overview(target, max_size=max_size)
    truth = np.where(truth < 0, np.nan, truth)
    n = int(np.nanmax([np.nanmax(pred) if np.isfinite(pred).any() else 0,
                       np.nanmax(truth) if np.isfinite(truth).any() else 0])) + 1
    names = list(class_names or [str(i) for i in range(n)])
    cmap = _class_cmap(max(n, len(names)))
    error = np.full(pred.shape + (3,), 1.0)
    both = np.isfinite(pred) & np.isfinite(truth)
    error[both & (pred == truth)] = (0.75, 0.75, 0.75)
    error[both & (pred != truth)] = (0.85, 0.1, 0.1)
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.5), constrained_layout=True)
    for ax, image, title in ((axes[0], pred, "prediction"), (axes[1], truth, "target")):
        ax.imshow(image, cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5, interpolation="nearest")
        ax.set_title(title)
    wrong = (both & (pred != truth)).sum() / max(both.sum(), 1)
    axes[2].imshow(error, interpolation="nearest")
    axes[2].set_title(f"errors ({wrong:.1%} of the overview)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i)) for i in range(len(names))]
    fig.legend(handles, names, loc="outside lower center", ncol=min(len(names), 6))
    for ax in axes:
        ax.set_axis_off()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def confusion_figure(metrics: dict, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """The confusion matrix of :func:`rastercore.evaluate.evaluate_classes`, row-normalised, with counts."""
    path = _check_new(path, overwrite)
    plt = _figure()
    matrix = np.asarray(metrics["confusion_matrix"], dtype=float)
    names = metrics["classes"][: len(matrix)]
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 3, 1.2 * len(names) + 2), constrained_layout=True)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{share[i, j]:.1%}\n{int(matrix[i, j])}", ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black", fontsize=9)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {metrics['overall_accuracy']:.3f}, kappa {metrics['kappa']:.3f}")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def probability_figure(mosaic: xr.DataArray, path: str | os.PathLike, *, max_size: int = 600,
                       overwrite: bool = False) -> Path:
    """One panel per ``p[...]`` layer of a prediction mosaic (block-averaged overview)."""
    path = _check_new(path, overwrite)
    layers = [str(b) for b in mosaic["band"].values if str(b).startswith("p[")]
    if not layers:
        raise ValueError("the mosaic has no probability layers (p[...]); predict with a model that has predict_proba")
    plt = _figure()
    small = overview(mosaic.sel(band=layers), max_size=max_size).values
    fig, axes = plt.subplots(1, len(layers), figsize=(5 * len(layers), 5), constrained_layout=True, squeeze=False)
    for ax, layer, image in zip(axes[0], layers, small):
        shown = ax.imshow(image, cmap="viridis", vmin=0, vmax=1)
        ax.set_title(layer)
        ax.set_axis_off()
    fig.colorbar(shown, ax=axes[0].tolist(), fraction=0.02)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _check_new(path, overwrite: bool) -> Path:
    path = Path(path)
    if path.exists() and not overwrite:
        raise StoreExistsError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
