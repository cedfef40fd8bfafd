"""Out-of-core evaluation of a prediction mosaic against a target.

One pass over the tiles accumulates a confusion matrix (classes) or sums of
errors (regression); every metric is derived from those totals, so memory
does not depend on scene size.  The tests check each metric against
scikit-learn on whole (small) images.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr

from rastercore._deprecated import renamed_keywords
from rastercore.errors import ParameterError, TargetError
from rastercore.targets import IGNORE, burn_polygons

__all__ = ["evaluate_classes", "evaluate_values", "evaluate_mosaic", "write_metrics", "region_mask", "class_areas",
           "reference_counts", "clustering_scores"]


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


def clustering_scores(contingency) -> dict:
    """Adjusted Rand index and normalised mutual information of a cluster map against reference classes.

    Both come from the contingency table alone (rows: reference classes,
    columns: clusters), which :func:`evaluate_classes` accumulates tile by
    tile as its confusion matrix, so they cost no pass of their own.  They
    equal scikit-learn's ``adjusted_rand_score`` and
    ``normalized_mutual_info_score`` (arithmetic mean of the entropies) of
    the pixels counted, and do not depend on which code each cluster has.

    Parameters
    ----------
    contingency : array-like of int, (n_classes, n_clusters)
        Pixels of each reference class in each cluster; empty rows and
        columns are ignored.

    Returns
    -------
    dict
        ``task`` ("clustering"), ``pixels``, ``classes`` and ``clusters``
        (how many have pixels), ``adjusted_rand_index`` and
        ``normalized_mutual_info`` (NaN over zero pixels).
    """
    table = np.asarray(contingency, dtype=np.int64)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    pixels = int(table.sum())
    scores = {"adjusted_rand_index": float("nan"), "normalized_mutual_info": float("nan")}
    if pixels:
        scores = {"adjusted_rand_index": _adjusted_rand(table), "normalized_mutual_info": _normalized_mi(table)}
    return {"task": "clustering", "pixels": pixels, "classes": table.shape[0], "clusters": table.shape[1], **scores}


def _adjusted_rand(table: np.ndarray) -> float:
    """ARI from the pair counts of a contingency table, in exact integers (n² overflows int64 past 3e9 pixels)."""
    n = int(table.sum())
    same_both = sum(int(v) ** 2 for v in table.ravel())
    same_class = sum(int(v) ** 2 for v in table.sum(axis=1))
    same_cluster = sum(int(v) ** 2 for v in table.sum(axis=0))
    tp, fp, fn = same_both - n, same_cluster - same_both, same_class - same_both
    tn = n * n - fp - fn - same_both
    if fp == 0 and fn == 0:
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


def _normalized_mi(table: np.ndarray) -> float:
    """NMI with the arithmetic mean of the two entropies as normaliser (scikit-learn's default)."""
    n_classes, n_clusters = table.shape
    if n_classes == n_clusters == 1:
        return 1.0
    if n_classes == 1 or n_clusters == 1:
        return 0.0
    p = table / table.sum()
    rows, cols = p.sum(axis=1), p.sum(axis=0)
    nonzero = p > 0
    outer = np.outer(rows, cols)
    mi = max(float(np.sum(p[nonzero] * (np.log(p[nonzero]) - np.log(outer[nonzero])))), 0.0)
    if mi == 0:
        return 0.0
    return mi / ((_entropy(rows) + _entropy(cols)) / 2)


def _entropy(shares: np.ndarray) -> float:
    shares = shares[shares > 0]
    return float(-np.sum(shares * np.log(shares)))


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
    """A short Markdown report of :func:`evaluate_classes` / :func:`evaluate_values` / :func:`clustering_scores`."""
    if metrics["task"] == "clustering":
        return (f"Adjusted Rand index **{metrics['adjusted_rand_index']:.4f}**, normalised mutual information "
                f"{metrics['normalized_mutual_info']:.4f}: {metrics['clusters']} clusters against "
                f"{metrics['classes']} reference classes over {metrics['pixels']} pixels. Cluster codes are "
                "arbitrary: these scores do not depend on them, while the accuracy below pairs cluster i with "
                "class i only by number.\n")
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
    if metrics.get("areas"):
        lines += ["", *_areas_markdown(metrics["areas"])]
    return "\n".join(lines) + "\n"


def _areas_markdown(areas: dict) -> list[str]:
    """Mapped areas and the area estimates of :func:`class_areas`, as Markdown lines."""
    unit, mapped = areas["unit"], areas["mapped"]
    total = f"{_number(mapped['hectares'])} ha in " if mapped["hectares"] is not None else ""
    lines = [f"Mapped area of the {mapped['region']} region: {total}{mapped['pixels']} pixels "
             f"(pixel area: {areas['pixel_area']}).", "", f"| class | pixels | mapped ({unit}) |", "|---|---|---|"]
    key = "hectares" if unit == "ha" else "pixels"
    lines += [f"| {name} | {m['pixels']} | {_number(m[key])} |" for name, m in mapped["per_class"].items()]
    for title, key in (("target pixels", "target_sample"), ("reference file", "reference_sample")):
        if areas.get(key):
            lines += ["", *_estimate_markdown(title, areas[key], unit)]
    return lines


def _estimate_markdown(title: str, e: dict, unit: str) -> list[str]:
    lines = [f"Error-adjusted areas from the {title} (stratified estimator of Olofsson et al. 2014; ± is the 95 % "
             f"confidence interval, 1.96 SE): {e['sample']}; overall accuracy {_number(e['overall_accuracy'], 4)} ± "
             f"{_number(e['overall_accuracy_ci95'], 4)}.", "",
             f"| class | reference units | mapped ({unit}) | estimated ({unit}) | user's accuracy "
             "| producer's accuracy |",
             "|---|---|---|---|---|---|"]
    if e["unsampled_strata"]:
        lines[0] += (f" Classes {', '.join(e['unsampled_strata'])} have mapped area but no reference unit, so no "
                     "unbiased estimate exists (n/a); add reference units in them.")
    for name, c in e["per_class"].items():
        lines.append(f"| {name} | {c['sample_size']} | {_number(c['mapped_area'])} | {_number(c['area'])} ± "
                     f"{_number(c['area_ci95'])} | {_number(c['users_accuracy'], 4)} ± "
                     f"{_number(c['users_accuracy_ci95'], 4)} | {_number(c['producers_accuracy'], 4)} ± "
                     f"{_number(c['producers_accuracy_ci95'], 4)} |")
    return lines


def _number(value, decimals: int = 2) -> str:
    """``value`` with thousands separators, or n/a when it is missing or NaN."""
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:,.{decimals}f}"


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
    reference: str | os.PathLike | None = None,
    reference_field: str = "class",
) -> dict:
    """Evaluate a prediction mosaic against a target; write metrics (JSON, Markdown) and figures.

    A class map also gets its class areas and error-adjusted area estimates
    (``classification["areas"]``, see :func:`class_areas`).  A cluster map
    (a ``cluster`` layer, or a model file recording an unsupervised model)
    also gets ``clustering``: the adjusted Rand index and normalised mutual
    information against the target classes (:func:`clustering_scores`).

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
        Write the comparison, confusion-matrix and probability figures, of
        the evaluated region only (pixels outside it are left blank).
    overwrite : bool, default False
        Replace existing outputs.
    reference : path, optional
        Reference points or polygons labelled by the user (any vector file
        pyogrio reads; ``pip install 'rastercore[vector]'``): their error
        matrix against the map, with the map areas of the whole map, gives
        a second set of area estimates (``areas["reference_sample"]``).
    reference_field : str, default "class"
        The field of ``reference`` holding each feature's reference class,
        as a class name or code.

    Returns
    -------
    dict
        ``{"classification": ..., "clustering": ..., "regression": ...}`` (those that apply) and ``region``.

    Raises
    ------
    ParameterError
        ``prediction`` has no ``class``, ``value`` or ``cluster`` layer (a
        stack, not a prediction mosaic); or ``reference`` cannot be read,
        lacks ``reference_field``, or names a class the map does not have.
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
    names = meta.get("class_names") or mosaic.attrs.get("class_names")
    sample = _reference_file(reference, reference_field, mosaic, codes, names)
    result: dict = {"region": region}
    if codes is not None:
        result["priors"] = _priors_used(meta, mosaic)
    continuous = target_on_grid(target, mosaic, kind="continuous") if (thresholds or "value" in layers) else None
    if codes is not None:
        classes = (threshold_classes(continuous, thresholds) if thresholds else target_on_grid(target, mosaic))
        result["classification"] = evaluate_classes(mosaic.sel(band=codes), classes, class_names=names, mask=mask)
        if codes == "cluster" or meta.get("unsupervised"):
            result["clustering"] = clustering_scores(result["classification"]["confusion_matrix"])
    if "value" in layers:
        result["regression"] = _value_metrics(mosaic.sel(band="value"), continuous, mask)
    _check_scored(result, prediction, target)
    if codes is not None:
        counted = None if sample is None else _count_reference(sample, mosaic.sel(band=codes))
        result["classification"]["areas"] = class_areas(mosaic.sel(band=codes), result["classification"],
                                                        mask=mask, region=region, reference=counted)
    output = Path(output)
    _write_report(result, output, overwrite)
    if figures and "classification" in result:
        _write_figures(mosaic, codes, classes, result["classification"], mask, output, overwrite, region=region)
    return result


def _write_figures(mosaic: xr.DataArray, codes: str, classes: xr.DataArray, metrics: dict, mask, output: Path,
                   overwrite: bool, region: str = "all") -> None:
    """The comparison, confusion and probability figures of the evaluated region (blank outside it, named in
    the titles), in the map's class colours."""
    from rastercore.viz import comparison_figure, confusion_figure, probability_figure

    if mask is not None:
        keep = xr.DataArray(da.asarray(mask), dims=("y", "x"))
        mosaic, classes = mosaic.where(keep), classes.where(keep)
    stem, name = output.with_suffix(""), region
    comparison_figure(mosaic.sel(band=codes), classes, f"{stem}_comparison.png", class_names=metrics["classes"],
                      class_colors=mosaic.attrs.get("class_colors"), region=name, overwrite=overwrite)
    confusion_figure(metrics, f"{stem}_confusion.png", region=name, overwrite=overwrite)
    if any(str(layer).startswith("p[") for layer in mosaic["band"].values):
        probability_figure(mosaic, f"{stem}_probabilities.png", region=name, overwrite=overwrite)


def class_areas(classes: xr.DataArray, metrics: dict, *, mask=None, region: str = "all",
                reference: dict | None = None) -> dict:
    """Mapped class areas of the evaluated region, and error-adjusted area estimates with 95 % CIs.

    Parameters
    ----------
    classes : xarray.DataArray
        The map's ``(y, x)`` class layer with its grid, e.g. ``mosaic.sel(band="class")``.
    metrics : dict
        :func:`evaluate_classes` of that map over the region: its confusion
        matrix, transposed, is the sample error matrix of the target pixels.
    mask : dask or numpy bool array, optional
        The evaluated region (:func:`region_mask`); None for the whole map.
    region : str, default "all"
        Name of the region, for the report.
    reference : dict, optional
        :func:`reference_counts` of reference points or polygons; estimated
        with the mapped areas of the whole map.

    Returns
    -------
    dict
        ``unit`` ("ha", or "pixels" for a map without a CRS), ``pixel_area``
        (how pixel areas were computed), ``mapped`` (the region's
        :func:`rastercore.maps.map_areas`), ``target_sample``
        (:func:`rastercore.maps.area_estimates` with the target pixels as
        the sample) and, given ``reference``, ``reference_sample``.
    """
    from rastercore.grid import grid_of
    from rastercore.maps import map_areas

    mapped = map_areas(classes, metrics["classes"], mask=mask)
    report = {"unit": "ha" if mapped["hectares"] is not None else "pixels",
              "pixel_area": _pixel_area_note(grid_of(classes)), "mapped": {"region": region, **mapped}}
    target = np.asarray(metrics["confusion_matrix"], dtype=np.int64).T
    report["target_sample"] = {
        "sample": f"the {int(target.sum())} pixels of the {region} region that have a target value (a census if "
                  "the target covers the region)",
        "reference_units": int(target.sum()), **_estimates(target, mapped)}
    if reference is not None:
        whole = mapped if mask is None else map_areas(classes, metrics["classes"])
        report["reference_sample"] = {
            "sample": reference["source"], "reference_units": int(np.sum(reference["counts"])),
            "dropped": reference["dropped"], "mapped_area_of": "the whole map",
            **_estimates(np.asarray(reference["counts"]), whole)}
    return report


def _estimates(counts: np.ndarray, mapped: dict) -> dict:
    """:func:`rastercore.maps.area_estimates` of ``counts`` against the areas of ``mapped``, padded to one class set."""
    from rastercore.maps import area_estimates

    names = list(mapped["classes"])
    key = "hectares" if mapped["hectares"] is not None else "pixels"
    areas = [mapped["per_class"][name][key] for name in names]
    size = max(len(names), len(counts))
    n = np.zeros((size, size), np.int64)
    n[: len(counts), : len(counts)] = counts
    names += [str(i) for i in range(len(names), size)]
    return area_estimates(n, areas + [0.0] * (size - len(areas)), names)


def _pixel_area_note(grid) -> str:
    from rastercore.grid import Grid
    from rastercore.maps import pixel_areas

    if grid.crs is None:
        return "unknown: the map has no CRS, so areas are in pixels"
    if grid.crs.is_geographic:
        return "geodesic, per row, on the CRS's ellipsoid"
    return f"{pixel_areas(Grid(1, 1, grid.transform, grid.crs))[0]:.6g} m² per pixel, projected CRS"


def reference_counts(vector: str | os.PathLike, classes: xr.DataArray, *, field: str = "class",
                     class_names=None) -> dict:
    """Sample error matrix of reference points or polygons labelled by the user against a class map.

    Each point counts once, with the map class of the pixel it falls in;
    each polygon counts every pixel whose centre it covers (its pixels are
    not independent samples, so its confidence intervals are optimistic).
    Points are read from the map where they fall and polygons are burnt
    tile by tile, so memory does not depend on the size of the map.

    Parameters
    ----------
    vector : path
        Points and/or polygons, any vector file pyogrio reads
        (``pip install 'rastercore[vector]'``), reprojected to the map's CRS.
    classes : xarray.DataArray
        The map's ``(y, x)`` class layer with its grid.
    field : str, default "class"
        The field holding each feature's reference class: a class name of
        the map, or a class code.
    class_names : list of str, optional
        Names of the map's classes 0, 1, ...

    Returns
    -------
    dict
        ``counts`` (rows: map class, columns: reference class), ``source``
        (one line saying what was counted) and ``dropped`` (points outside
        the map or on its nodata).

    Raises
    ------
    ParameterError
        The file is missing or unreadable, lacks ``field``, holds other
        geometries than points and polygons, or a label is no class of the map.
    """
    return _count_reference(_read_reference(vector, field, classes, class_names), classes)


@dataclass
class _Reference:
    source: str
    rows: np.ndarray
    cols: np.ndarray
    point_codes: np.ndarray
    polygons: list
    polygon_codes: np.ndarray
    outside: int


def _reference_file(path, field: str, mosaic: xr.DataArray, codes: str | None, names) -> _Reference | None:
    """The reference file of ``evaluate_mosaic``, read and checked; None without one."""
    if path is None:
        return None
    if codes is None:
        raise ParameterError(f"the reference file {path} (--reference) labels classes, but the prediction has no "
                             "class layer; give --reference with a class map.")
    return _read_reference(path, field, mosaic.sel(band=codes), names)


def _read_reference(path, field: str, classes: xr.DataArray, names) -> _Reference:
    """Read and check a reference file (cheap: no pixel is read), before any tile is computed."""
    import shapely

    from rastercore.grid import grid_of

    grid = grid_of(classes)
    geometries, labels, crs = _read_reference_file(Path(path), field)
    codes = _reference_codes(labels, names, path, field)
    geometries = _to_grid_crs(geometries, crs, grid)
    kinds = shapely.get_type_id(geometries)
    other = ~np.isin(kinds, (0, 3, 4, 6))
    if other.any():
        odd = geometries[other][0]
        kind = "feature without geometry" if odd is None else odd.geom_type
        raise ParameterError(f"the reference file {path} (--reference) holds a {kind}; give points or polygons.")
    points = np.isin(kinds, (0, 4))
    xy, which = shapely.get_coordinates(geometries[points], return_index=True)
    cols, rows = ~grid.transform @ (xy[:, 0], xy[:, 1])
    rows, cols = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
    inside = (rows >= 0) & (rows < grid.height) & (cols >= 0) & (cols < grid.width)
    polygons = list(geometries[~points])
    source = (f"{int(points.sum())} points and {len(polygons)} polygons of {path} (field '{field}'); each polygon "
              "counts every pixel whose centre it covers")
    return _Reference(source, rows[inside], cols[inside], codes[points][which][inside], polygons, codes[~points],
                      int((~inside).sum()))


def _read_reference_file(path: Path, field: str):
    if not path.exists():
        raise ParameterError(f"the reference file {path} (--reference) does not exist; check the path.")
    try:
        import pyogrio
        import shapely
    except ImportError as err:
        raise ParameterError(f"reading the reference file {path} (--reference) needs pyogrio and shapely: "
                             "pip install 'rastercore[vector]'.") from err
    try:
        meta, _, wkb, values = pyogrio.raw.read(path)
    except Exception as err:  # pyogrio raises its own DataSourceError family
        raise ParameterError(f"the reference file {path} (--reference) could not be read as a vector file: "
                             f"{err}") from err
    fields = [str(f) for f in meta["fields"]]
    if field not in fields:
        raise ParameterError(f"the reference file {path} has no field '{field}' (its fields: {', '.join(fields)}); "
                             "name the field holding the reference class with --reference-field.")
    if len(wkb) == 0:
        raise ParameterError(f"the reference file {path} (--reference) holds no features; label some points.")
    return shapely.from_wkb(wkb), list(values[fields.index(field)]), meta.get("crs")


def _reference_codes(labels: list, names, path, field: str) -> np.ndarray:
    """Class codes of reference labels: a class name of the map, else a whole-number code."""
    lookup = {str(name): code for code, name in enumerate(names or [])}
    found: dict = {}
    for label in labels:
        key = label.item() if hasattr(label, "item") else label
        if key not in found:
            found[key] = _reference_code(key, lookup, path, field)
    return np.array([found[label.item() if hasattr(label, "item") else label] for label in labels], dtype=np.int64)


def _reference_code(label, lookup: dict, path, field: str) -> int:
    if label is None or (isinstance(label, float) and not np.isfinite(label)):
        raise ParameterError(f"a feature of the reference file {path} has no value in field '{field}'; label every "
                             "reference feature or remove it.")
    if str(label) in lookup:
        return lookup[str(label)]
    try:
        code = float(label)
    except (TypeError, ValueError):
        code = -1.0
    if code >= 0 and code == int(code):
        return int(code)
    known = ", ".join(lookup) or "codes 0, 1, ..."
    raise ParameterError(f"'{label}' in field '{field}' of the reference file {path} is not a class of the map "
                         f"(its classes: {known}); label with the map's class names or codes.")


def _to_grid_crs(geometries: np.ndarray, crs, grid) -> np.ndarray:
    """``geometries`` in the grid's CRS (a file without a CRS is taken to be in it already)."""
    if grid.crs is None or not crs:
        return geometries
    import pyproj
    import shapely

    source, target = pyproj.CRS.from_user_input(crs), pyproj.CRS.from_user_input(grid.crs.to_wkt())
    if source == target:
        return geometries
    transformer = pyproj.Transformer.from_crs(source, target, always_xy=True)
    return shapely.transform(geometries, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))


def _count_reference(sample: _Reference, classes: xr.DataArray) -> dict:
    """The sample error matrix (rows: map class, columns: reference class) of a read reference file."""
    layer = da.asarray(classes.data)
    values = np.asarray(layer.vindex[sample.rows, sample.cols].compute()) if sample.rows.size else np.zeros(0)
    mapped = np.where(np.isfinite(values), values, -1).astype(np.int64) if values.dtype.kind == "f" else values
    valid = mapped >= 0
    parts = [_pair_counts(mapped[valid], sample.point_codes[valid])]
    if sample.polygons:
        parts.append(np.asarray(evaluate_classes(classes, _burnt(sample, classes))["confusion_matrix"]).T)
    size = max(p.shape[0] for p in parts)
    counts = np.zeros((size, size), np.int64)
    for p in parts:
        counts[: p.shape[0], : p.shape[1]] += p
    return {"counts": counts.tolist(), "source": sample.source,
            "dropped": {"outside the map": sample.outside, "on nodata": int((~valid).sum())}}


def _pair_counts(mapped: np.ndarray, reference: np.ndarray) -> np.ndarray:
    size = int(max(mapped.max(initial=-1), reference.max(initial=-1)) + 1)
    return np.bincount(mapped * size + reference, minlength=size * size).reshape(size, size)


def _burnt(sample: _Reference, classes: xr.DataArray) -> xr.DataArray:
    """Lazy ``(y, x)`` reference codes of the polygons (IGNORE elsewhere), burnt tile by tile."""
    import shapely

    from rastercore.grid import grid_of

    layer = da.asarray(classes.data)
    boxes = shapely.bounds(np.array(sample.polygons, dtype=object))
    data = burn_polygons(sample.polygons, sample.polygon_codes, boxes, grid_of(classes), layer.chunks)
    return xr.DataArray(data, dims=("y", "x"))


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


def _priors_used(meta: dict, mosaic: xr.DataArray) -> dict:
    """Which class priors the model predicted for: from the model file's metadata, else the mosaic's attrs."""
    record, source = meta.get("priors"), "model file"
    if not record:
        record, source = mosaic.attrs.get("priors"), "mosaic"
    if not record:
        return {"used": None, "source": None}
    out = {"used": record.get("used"), "source": source, "target": record.get("target")}
    if "corrected" in record:
        out["corrected"] = bool(record["corrected"])
    return out


def _priors_line(priors: dict) -> str:
    if not priors.get("used"):
        return ("Class priors: not recorded (pass the model file, --model, to state them; a model trained before "
                "prior correction predicts for its training sample's class mix).")
    target = ", ".join(f"{k} {v:.3f}" for k, v in (priors.get("target") or {}).items())
    corrected = priors.get("corrected", priors["used"] != "balanced")
    what = (f"probabilities and classes corrected to the {priors['used']} priors ({target})" if corrected
            else "the model as trained, no prior correction")
    return f"Class priors: **{priors['used']}** -- {what} (from the {priors['source']})."


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
    if result.get("priors"):
        parts += [_priors_line(result["priors"]), ""]
    for task in ("clustering", "classification", "regression"):
        if task in result:
            parts += [f"## {task.capitalize()}", "", metrics_markdown(result[task])]
    markdown.write_text("\n".join(parts))
