"""Out-of-core evaluation of a prediction mosaic against a target.

One pass over the tiles accumulates a confusion matrix (classes) or sums of
errors (regression); every metric is derived from those totals, so memory
does not depend on scene size.  The tests check each metric against
scikit-learn on whole (small) images.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr

from rastercore._deprecated import renamed_keywords
from rastercore.errors import ParameterError, TargetError
from rastercore.targets import IGNORE

__all__ = ["evaluate_classes", "evaluate_values", "evaluate_mosaic", "write_metrics", "region_mask"]


@renamed_keywords({"like": "stack"})
def region_mask(stack: xr.DataArray, *, split=None, which: int | None = None, seed: int = 0, halo: int = 0,
                bounds: tuple[float, float, float, float] | None = None) -> da.Array:
    """Lazy boolean ``(y, x)``: the pixels to evaluate.

    Parameters
    ----------
    stack : xarray.DataArray
        Stack or mosaic giving the grid and tiles.
    split : rastercore.sampling.SpatialSplit, optional
        With ``which`` (TRAIN or VALIDATION): only that split's pixels (gaps excluded).
    seed, halo : int
        Seed and feature halo the split was drawn with.
    bounds : (left, bottom, right, top), optional
        Only pixels whose centre lies inside, in the grid's CRS.
    """
    chunks = stack.chunks[-2:]
    mask = da.ones((stack.sizes["y"], stack.sizes["x"]), dtype=bool, chunks=chunks)
    if split is not None and which is not None:
        mask &= split.labels(stack, seed=seed, halo=halo).rechunk(chunks) == which
    if bounds is not None:
        left, bottom, right, top = bounds
        xs = da.from_array(stack.x.values, chunks=chunks[1])
        ys = da.from_array(stack.y.values, chunks=chunks[0])
        mask &= ((ys >= bottom) & (ys <= top))[:, None] & ((xs >= left) & (xs <= right))[None, :]
    return mask


def _aligned(prediction: xr.DataArray, target: xr.DataArray, mask) -> tuple[da.Array, da.Array, da.Array]:
    if prediction.shape != target.shape:
        raise TargetError(f"the prediction is {prediction.shape} but the target is {target.shape}; "
                          "put the target on the prediction's grid with rastercore.targets.target_on_grid.")
    chunks = prediction.chunks or ((prediction.sizes["y"],), (prediction.sizes["x"],))
    pred = da.asarray(prediction.data).rechunk(chunks)
    truth = da.asarray(target.data).rechunk(chunks)
    if mask is None:
        mask = da.ones(pred.shape, dtype=bool, chunks=chunks)
    return pred, truth, da.asarray(mask).rechunk(chunks)


def evaluate_classes(prediction: xr.DataArray, target: xr.DataArray, *, class_names=None, mask=None) -> dict:
    """Classification metrics of a class map against a class target, out of core.

    Parameters
    ----------
    prediction : xarray.DataArray
        ``(y, x)`` class indices (NaN or negative for nodata), e.g.
        ``mosaic.sel(band="class")``.
    target : xarray.DataArray
        ``(y, x)`` int classes on the same grid, ``IGNORE`` (-1) unlabelled.
    class_names : list of str, optional
        Names of classes 0, 1, ...
    mask : dask or numpy bool array, optional
        Only these pixels (see :func:`region_mask`).

    Returns
    -------
    dict
        ``confusion_matrix`` (rows: truth, columns: prediction), ``pixels``,
        ``overall_accuracy``, ``kappa``, ``mean_iou`` and per class
        ``precision``, ``recall``, ``f1``, ``iou``, ``support``.
    """
    pred, truth, mask = _aligned(prediction, target, mask)
    parts = [dask.delayed(_confusion_block)(p, t, m) for p, t, m in
             zip(pred.to_delayed().ravel(), truth.to_delayed().ravel(), mask.to_delayed().ravel())]
    blocks = dask.compute(*parts)
    size = max([b.shape[0] for b in blocks] + [len(class_names or [])])
    matrix = np.zeros((size, size), np.int64)
    for b in blocks:
        matrix[: b.shape[0], : b.shape[1]] += b
    return classification_metrics(matrix, class_names)


def _confusion_block(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    pred = np.where(np.isfinite(pred), pred, -1).astype(np.int64) if pred.dtype.kind == "f" else pred.astype(np.int64)
    valid = mask & (truth != IGNORE) & (truth >= 0) & (pred >= 0)
    p, t = pred[valid], truth[valid].astype(np.int64)
    size = int(max(p.max(initial=-1), t.max(initial=-1)) + 1)
    return np.bincount(t * size + p, minlength=size * size).reshape(size, size)


def classification_metrics(matrix: np.ndarray, class_names=None) -> dict:
    """Every classification metric rastercore reports, from a confusion matrix."""
    matrix = np.asarray(matrix, dtype=np.int64)
    total = int(matrix.sum())
    diag = np.diag(matrix).astype(float)
    truth_sums, pred_sums = matrix.sum(axis=1).astype(float), matrix.sum(axis=0).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred_sums > 0, diag / pred_sums, 0.0)
        recall = np.where(truth_sums > 0, diag / truth_sums, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        union = truth_sums + pred_sums - diag
        iou = np.where(union > 0, diag / union, 0.0)
    accuracy = diag.sum() / total if total else float("nan")
    expected = (truth_sums * pred_sums).sum() / total**2 if total else float("nan")
    kappa = (accuracy - expected) / (1 - expected) if total and expected < 1 else float("nan")
    names = list(class_names) if class_names else [str(i) for i in range(len(matrix))]
    names += [str(i) for i in range(len(names), len(matrix))]
    present = truth_sums > 0
    return {
        "task": "classification",
        "pixels": total,
        "classes": names,
        "confusion_matrix": matrix.tolist(),
        "overall_accuracy": float(accuracy),
        "kappa": float(kappa),
        "mean_iou": float(iou[present].mean()) if present.any() else float("nan"),
        "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                             "iou": float(iou[i]), "support": int(truth_sums[i])} for i, name in enumerate(names)},
    }


def evaluate_values(prediction: xr.DataArray, target: xr.DataArray, *, mask=None) -> dict:
    """Regression metrics (RMSE, MAE, R², bias) of a value map against a continuous target, out of core.

    Raises
    ------
    TargetError
        No pixel has both a prediction and a target value.
    """
    metrics = _value_metrics(prediction, target, mask)
    if metrics["pixels"] == 0:
        raise TargetError("no pixel has both a prediction and a target value in the evaluated region.")
    return metrics


def _value_metrics(prediction: xr.DataArray, target: xr.DataArray, mask) -> dict:
    """:func:`evaluate_values` without the refusal: over zero pixels every metric is NaN."""
    pred, truth, mask = _aligned(prediction, target, mask)
    parts = [dask.delayed(_error_sums)(p, t, m) for p, t, m in
             zip(pred.to_delayed().ravel(), truth.to_delayed().ravel(), mask.to_delayed().ravel())]
    n, err, abs_err, sq_err, y, y2 = np.sum(dask.compute(*parts), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ss_tot = y2 - y * y / n
        return {"task": "regression", "pixels": int(n), "rmse": float(np.sqrt(sq_err / n)),
                "mae": float(abs_err / n), "bias": float(err / n),
                "r2": float(1 - sq_err / ss_tot) if ss_tot > 0 else float("nan")}


def _error_sums(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    valid = mask & np.isfinite(pred) & np.isfinite(truth)
    p, t = pred[valid].astype(np.float64), truth[valid].astype(np.float64)
    e = p - t
    return np.array([e.size, e.sum(), np.abs(e).sum(), (e * e).sum(), t.sum(), (t * t).sum()])


def write_metrics(metrics: dict, path: str | os.PathLike, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``metrics`` as JSON and a short Markdown table beside it (``.md``)."""
    from rastercore.errors import StoreExistsError

    path = Path(path)
    markdown = path.with_suffix(".md")
    for p in (path, markdown):
        if p.exists() and not overwrite:
            raise StoreExistsError(f"{p} already exists; pass overwrite=True (--overwrite) to replace it.")
    path.write_text(_json(metrics))
    markdown.write_text(metrics_markdown(metrics))
    return path, markdown


def _json(value) -> str:
    """Strict JSON: NaN (e.g. accuracy over zero pixels) is written as null."""
    def clean(v):
        if isinstance(v, float) and not np.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), indent=2, allow_nan=False)


def metrics_markdown(metrics: dict) -> str:
    """A short Markdown report of :func:`evaluate_classes` / :func:`evaluate_values` output."""
    if metrics["task"] == "regression":
        return ("| pixels | RMSE | MAE | bias | R² |\n|---|---|---|---|---|\n"
                f"| {metrics['pixels']} | {metrics['rmse']:.4g} | {metrics['mae']:.4g} | {metrics['bias']:.4g} | "
                f"{metrics['r2']:.4f} |\n")
    lines = [f"Overall accuracy **{metrics['overall_accuracy']:.4f}**, Cohen's kappa {metrics['kappa']:.4f}, "
             f"mean IoU {metrics['mean_iou']:.4f} over {metrics['pixels']} pixels.", "",
             "| class | precision | recall | F1 | IoU | support |", "|---|---|---|---|---|---|"]
    for name, m in metrics["per_class"].items():
        lines.append(f"| {name} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['iou']:.4f} | "
                     f"{m['support']} |")
    return "\n".join(lines) + "\n"


def evaluate_mosaic(
    prediction: str | os.PathLike,
    target,
    output: str | os.PathLike,
    *,
    model: str | os.PathLike | None = None,
    region: str = "all",
    thresholds=None,
    figures: bool = True,
    overwrite: bool = False,
) -> dict:
    """Evaluate a prediction mosaic against a target; write metrics (JSON, Markdown) and figures.

    Parameters
    ----------
    prediction : path
        A mosaic written by :func:`rastercore.predict.predict` (a ``cluster``
        map is scored as class codes).
    target : path or xarray.DataArray
        Class raster, or continuous raster (resampled onto the mosaic's grid if needed).
    output : path
        ``metrics.json``; ``metrics.md`` and ``metrics_*.png`` go beside it.
    model : path, optional
        The model file: gives the thresholds that turned a continuous target
        into classes and, for ``region="validation"``, the spatial split.
    region : {"all", "validation", "train"}, default "all"
        Pixels to score; the splits are those the model was trained with.
    thresholds : float or list, optional
        Classes from a continuous target (default: from the model file).
    figures : bool, default True
        Write the comparison, confusion-matrix and probability figures.
    overwrite : bool, default False
        Replace existing outputs.

    Returns
    -------
    dict
        ``{"classification": ..., "regression": ...}`` (those that apply) and ``region``.

    Raises
    ------
    ParameterError
        ``prediction`` has no ``class``, ``value`` or ``cluster`` layer (a
        stack, not a prediction mosaic).
    TargetError
        The target does not overlap the mosaic; no pixel of the region has
        both a prediction and a target value; or, when the tiles are
        computed, a class map is scored against a continuous target without
        thresholds (its values are not class codes).
    """
    from rastercore.stack import open_stack
    from rastercore.targets import target_on_grid, threshold_classes

    mosaic = open_stack(prediction)
    layers = [str(b) for b in mosaic["band"].values]
    codes = _scored_layer(prediction, layers)
    _check_overlap(prediction, mosaic, target)
    meta = _model_metadata(model)
    thresholds = thresholds if thresholds is not None else meta.get("thresholds")
    mask = _region(mosaic, region, meta)
    result: dict = {"region": region}
    continuous = target_on_grid(target, mosaic, kind="continuous") if (thresholds or "value" in layers) else None
    if codes is not None:
        classes = (threshold_classes(continuous, thresholds) if thresholds else target_on_grid(target, mosaic))
        names = meta.get("class_names") or mosaic.attrs.get("class_names")
        result["classification"] = evaluate_classes(mosaic.sel(band=codes), classes, class_names=names, mask=mask)
    if "value" in layers:
        result["regression"] = _value_metrics(mosaic.sel(band="value"), continuous, mask)
    _check_scored(result, prediction, target)
    output = Path(output)
    _write_report(result, output, overwrite)
    if figures and "classification" in result:
        from rastercore.viz import comparison_figure, confusion_figure, probability_figure

        stem = output.with_suffix("")
        comparison_figure(mosaic.sel(band=codes), classes, f"{stem}_comparison.png",
                          class_names=result["classification"]["classes"], overwrite=overwrite)
        confusion_figure(result["classification"], f"{stem}_confusion.png", overwrite=overwrite)
        if any(layer.startswith("p[") for layer in layers):
            probability_figure(mosaic, f"{stem}_probabilities.png", overwrite=overwrite)
    return result


def _scored_layer(prediction, layers: list[str]) -> str | None:
    """The layer of codes (``class``, else ``cluster``) of a mosaic, or None; refuse a raster with nothing to score."""
    from rastercore.predict import categorical_layer

    codes = categorical_layer(layers)
    if codes is None and "value" not in layers:
        raise ParameterError(f"{prediction} has no class, value or cluster layer (its layers: {', '.join(layers)}): "
                             "it is not a prediction mosaic; evaluate the output of `rastercore predict` "
                             "(or `rastercore cluster`).")
    return codes


def _check_overlap(prediction, mosaic: xr.DataArray, target) -> None:
    """Refuse a target file whose footprint misses the mosaic's: there would be nothing to score."""
    if isinstance(target, xr.DataArray):
        return
    from rasterio.warp import transform_bounds

    from rastercore.grid import grid_of
    from rastercore.io import open_source

    ours, theirs = grid_of(mosaic), open_source(target).grid
    if not (ours.is_georeferenced and theirs.is_georeferenced) or (ours.crs is None) != (theirs.crs is None):
        return
    bounds = theirs.bounds if theirs.crs == ours.crs else transform_bounds(theirs.crs, ours.crs, *theirs.bounds)
    left, bottom, right, top = ours.bounds
    if bounds[0] < right and left < bounds[2] and bounds[1] < top and bottom < bounds[3]:
        return
    raise TargetError(f"the target {target} ({_footprint(theirs)}) does not overlap the prediction {prediction} "
                      f"({_footprint(ours)}): there is nothing to score; give a target of the mosaic's area.")


def _footprint(grid) -> str:
    crs = grid.crs.to_string() if grid.crs else "no CRS"
    return f"bounds {', '.join(f'{v:.10g}' for v in grid.bounds)} in {crs}"


def _check_scored(result: dict, prediction, target) -> None:
    """Refuse metrics over zero pixels: the region, or the overlap of prediction and target, is empty."""
    if all(result[task]["pixels"] for task in ("classification", "regression") if task in result):
        return
    region = result["region"]
    name = "the target array" if isinstance(target, xr.DataArray) else target
    where, hint = "", ""
    if region != "all":
        where = f" of the {region} region"
        hint = (f", and that the model's split has {region} blocks (none with --validation 0; maybe none on a "
                "scene of few blocks: sample with a smaller --block-size)")
    raise TargetError(f"no pixel{where} has both a prediction in {prediction} and a target value in {name}: there is "
                      f"nothing to score. Check the target's nodata value{hint}.")


def _model_metadata(model) -> dict:
    if model is None:
        return {}
    from rastercore.models import read_manifest

    return read_manifest(model).get("metadata", {})


def _region(mosaic: xr.DataArray, region: str, meta: dict):
    if region == "all":
        return None
    from rastercore.sampling import TRAIN, VALIDATION, SpatialSplit

    training = meta.get("training") or {}
    if not training.get("block_size") or training.get("validation_fraction") is None:
        raise TargetError(f"region={region!r} needs the model file the mosaic was predicted with "
                          "(it records the spatial split); pass model=... (--model).")
    split = SpatialSplit(block_size=training["block_size"], validation_fraction=training["validation_fraction"],
                         gap=training.get("gap"))
    which = VALIDATION if region == "validation" else TRAIN
    return region_mask(mosaic, split=split, which=which, seed=training.get("seed", 0), halo=training.get("gap", 0))


def _write_report(result: dict, output: Path, overwrite: bool) -> None:
    from rastercore.errors import StoreExistsError

    markdown = output.with_suffix(".md")
    for p in (output, markdown):
        if p.exists() and not overwrite:
            raise StoreExistsError(f"{p} already exists; pass overwrite=True (--overwrite) to replace it.")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(_json(result))
    parts = [f"# Evaluation ({result['region']} pixels)", ""]
    for task in ("classification", "regression"):
        if task in result:
            parts += [f"## {task.capitalize()}", "", metrics_markdown(result[task])]
    markdown.write_text("\n".join(parts))
