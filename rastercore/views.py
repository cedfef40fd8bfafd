"""Views of a sample: where sampled pixels fall in a 2-D t-SNE or UMAP embedding of their features.

t-SNE and UMAP place the rows they are fitted on so that neighbours in
feature space stay neighbours on the page; they do not give a function that
maps every pixel of a scene the way k-means or PCA do
(:mod:`rastercore.unsupervised`).  So they are views of an exact uniform
random sample of the valid pixels (:func:`rastercore.unsupervised.sample_pixels`,
the same pixels for any tiling), standardised, embedded with openTSNE or
umap-learn (``pip install 'rastercore[embed]'``), and drawn as a scatter
coloured by the pixels' reference class (``target``) or cluster
(``clusters``, a map from ``rastercore cluster``).  The figure shows whether
the features separate the classes and which clusters mix them; the
coordinates table (CSV) keeps every sampled pixel's position, embedding and
colour code.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr

from rastercore.errors import ParameterError, TargetError
from rastercore.unsupervised import UNSUPERVISED_METHODS, VIEW_METHODS, sample_pixels

__all__ = ["EmbeddingView", "embedding_view", "check_view", "write_view", "VIEW_DEFAULT_N", "EMBEDDING_METHODS"]

EMBEDDING_METHODS = VIEW_METHODS
"""The embeddings a view can draw: ``tsne`` (openTSNE) and ``umap`` (umap-learn)."""

VIEW_DEFAULT_N = 5_000
"""Pixels embedded by default: enough to see the structure, seconds to embed."""

_PACKAGES = {"tsne": "openTSNE", "umap": "umap"}
_DISTRIBUTIONS = {"tsne": "openTSNE", "umap": "umap-learn"}
_LABELS = {"tsne": "t-SNE", "umap": "UMAP"}
_MIN_ROWS = 10


@dataclass
class EmbeddingView:
    """A 2-D embedding of sampled pixels and what colours them.

    Attributes
    ----------
    method : str
        ``"tsne"`` or ``"umap"``.
    coordinates : numpy.ndarray
        ``(n, 2)`` embedding of the sampled pixels.
    row, col : numpy.ndarray
        Pixel positions of the sampled pixels (scene order).
    map_x, map_y : numpy.ndarray
        Their centres in the stack's coordinates (CRS units).
    codes : numpy.ndarray or None
        Class or cluster code of each pixel (-1: none), when coloured.
    color_by : {"class", "cluster"} or None
    names, colors : list or None
        Names and RGB colours of codes 0, 1, ... (the map's or target's own, else defaults).
    features : list of str
        Feature names (the embedded columns, standardised).
    seed : int
    """

    method: str
    coordinates: np.ndarray
    row: np.ndarray
    col: np.ndarray
    map_x: np.ndarray
    map_y: np.ndarray
    codes: np.ndarray | None
    color_by: str | None
    names: list[str] | None
    colors: list | None
    features: list[str]
    seed: int


def embedding_view(
    stack: xr.DataArray,
    spec=None,
    *,
    method: str = "tsne",
    n: int = VIEW_DEFAULT_N,
    target=None,
    thresholds=None,
    clusters=None,
    seed: int = 0,
    perplexity: float = 30.0,
    n_neighbors: int = 15,
) -> EmbeddingView:
    """Embed the standardised features of an exact pixel sample in 2-D (t-SNE or UMAP), coloured by class or cluster.

    Parameters
    ----------
    stack : xarray.DataArray
        ``(band, y, x)`` stack.
    spec : FeatureSpec, list of dict or dict, optional
        Features; default :data:`rastercore.unsupervised.DEFAULT_SPEC`.
    method : {"tsne", "umap"}
        openTSNE's ``TSNE`` or umap-learn's ``UMAP``.
    n : int, default 5000
        Pixels to embed: an exact uniform random sample of the valid pixels.
    target : path or xarray.DataArray, optional
        Class raster (any grid; resampled onto the stack's) whose classes
        colour the points.
    thresholds : float or list of float, optional
        Classes from a continuous ``target`` (``target >= threshold``...).
    clusters : path or xarray.DataArray, optional
        A cluster (or class) map on the stack's grid, e.g. from
        ``rastercore cluster``; its codes colour the points.
    seed : int, default 0
        Fixes the sample and the embedding (the same seed gives the same view).
    perplexity : float, default 30
        t-SNE's effective number of neighbours.
    n_neighbors : int, default 15
        UMAP's neighbourhood size.

    Returns
    -------
    EmbeddingView

    Raises
    ------
    ParameterError
        An unknown method (or a map method: ``reduce``/``cluster``), the
        embedding package is missing, both ``target`` and ``clusters``, or
        too few pixels.
    TargetError
        ``clusters`` is not on the stack's grid.
    """
    package = check_view(method, n, target, clusters)
    sample = sample_pixels(stack, spec, n=n, seed=seed)
    if len(sample["X"]) < _MIN_ROWS:
        raise ParameterError(f"only {len(sample['X'])} valid pixels to embed; a view needs at least {_MIN_ROWS}. "
                             "Check the nodata value.")
    coordinates = _embed(package, method, _standardized(sample["X"]), seed, perplexity, n_neighbors)
    codes, color_by, names, colors = _colors(stack, sample, target, thresholds, clusters)
    from rastercore.features import FeatureSpec
    from rastercore.stack import band_names
    from rastercore.unsupervised import DEFAULT_SPEC

    features = FeatureSpec.coerce(DEFAULT_SPEC if spec is None else spec).feature_names(band_names(stack))
    return EmbeddingView(method, coordinates, sample["row"], sample["col"], stack["x"].values[sample["col"]],
                         stack["y"].values[sample["row"]], codes, color_by, names, colors, features, seed)


def check_view(method: str, n, target=None, clusters=None):
    """The embedding package (module) for ``method``, after checking the arguments of :func:`embedding_view`.

    Raises
    ------
    ParameterError
        One line: an unknown or map method, ``n`` too small, both
        ``target`` and ``clusters``, or the package is not installed
        (``pip install 'rastercore[embed]'``).
    """
    if method in UNSUPERVISED_METHODS:
        raise ParameterError(f"{method} maps every pixel; run `rastercore "
                             f"{'cluster' if method == 'kmeans' else 'reduce --method ' + method}` for it. A view "
                             f"embeds a sample with one of: {', '.join(EMBEDDING_METHODS)}.")
    if method not in EMBEDDING_METHODS:
        raise ParameterError(f"unknown view method {method!r}; choose one of: "
                             + "; ".join(f"{k} ({v})" for k, v in EMBEDDING_METHODS.items()))
    if not isinstance(n, (int, np.integer)) or n < _MIN_ROWS:
        raise ParameterError(f"n (-n) must be an integer of at least {_MIN_ROWS}, not {n!r}.")
    if target is not None and clusters is not None:
        raise ParameterError("colour the view by target (--target) or by clusters (--clusters), not both.")
    try:
        return importlib.import_module(_PACKAGES[method])
    except ImportError:
        raise ParameterError(f"the {_LABELS[method]} view needs the optional package {_DISTRIBUTIONS[method]}: "
                             "pip install 'rastercore[embed]'") from None


def _standardized(X: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per feature (constant features stay 0): distances weigh every feature alike."""
    X = np.asarray(X, dtype=np.float64)
    scale = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(scale > 0, scale, 1.0)


def _embed(package, method: str, X: np.ndarray, seed: int, perplexity: float, n_neighbors: int) -> np.ndarray:
    if method == "tsne":
        tsne = package.TSNE(n_components=2, perplexity=min(perplexity, (len(X) - 1) / 3), random_state=seed,
                            n_jobs=1, verbose=False)
        return np.asarray(tsne.fit(X), dtype=np.float64)
    umap = package.UMAP(n_components=2, n_neighbors=min(n_neighbors, len(X) - 1), random_state=seed,
                        n_jobs=1)  # seeded UMAP runs serially anyway
    return np.asarray(umap.fit_transform(X), dtype=np.float64)


def _colors(stack: xr.DataArray, sample: dict, target, thresholds, clusters):
    """``(codes, color_by, names, colors)`` of the sampled pixels: their target class, their cluster, or nothing."""
    if target is None and clusters is None:
        return None, None, None, None
    if clusters is not None:
        layer, color_by = _cluster_layer(stack, clusters)
    else:
        layer, color_by = _target_classes(stack, target, thresholds), "class"
    values = np.asarray(da.asarray(layer.data).vindex[sample["row"], sample["col"]].compute())
    codes = np.where(np.isfinite(values) & (values >= 0), values, -1).astype(np.int64)
    return codes, color_by, layer.attrs.get("class_names"), layer.attrs.get("class_colors")


def _target_classes(stack: xr.DataArray, target, thresholds) -> xr.DataArray:
    from rastercore.targets import target_on_grid, threshold_classes

    if thresholds is None:
        return target_on_grid(target, stack)
    return threshold_classes(target_on_grid(target, stack, kind="continuous"), thresholds)


def _cluster_layer(stack: xr.DataArray, clusters) -> tuple[xr.DataArray, str]:
    """The code layer (``cluster``, else ``class``) of a map on the stack's grid, and what it holds."""
    from rastercore.predict import class_layer_of
    from rastercore.stack import open_stack

    mosaic = clusters if isinstance(clusters, xr.DataArray) else open_stack(clusters)
    where = "the clusters array" if isinstance(clusters, xr.DataArray) else str(clusters)
    if "band" in mosaic.dims:
        name = class_layer_of(mosaic, where)
        layer = mosaic.sel(band=name).assign_attrs(mosaic.attrs)
    else:
        name, layer = "cluster", mosaic
    if layer.shape != stack.shape[1:]:
        raise TargetError(f"{where} is {layer.shape[0]} x {layer.shape[1]} pixels but the stack is "
                          f"{stack.shape[1]} x {stack.shape[2]}: give the cluster map of this stack (clusters).")
    return layer, "cluster" if name == "cluster" else "class"


def write_view(view: EmbeddingView, path: str | os.PathLike, *, coordinates: str | os.PathLike | None = None,
               overwrite: bool = False) -> tuple[Path, Path]:
    """Write the view's scatter figure (``.png``) and its coordinates table (CSV).

    Parameters
    ----------
    view : EmbeddingView
    path : path-like
        The figure.
    coordinates : path-like, optional
        The table; default ``path`` with ``.csv``.  Columns: ``row``,
        ``col``, ``map_x``, ``map_y``, ``<method>_1``, ``<method>_2`` and,
        when coloured, ``class`` / ``cluster`` (code, -1 for none) and its
        name.
    overwrite : bool, default False

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The figure and the table.
    """
    from rastercore.store import check_output
    from rastercore.viz import embedding_figure

    path = Path(path)
    table = path.with_suffix(".csv") if coordinates is None else Path(coordinates)
    check_output(path, table, overwrite=overwrite)
    label = _LABELS[view.method]
    detail = f"{len(view.coordinates):,} sampled pixels, {len(view.features)} standardised features, seed {view.seed}"
    embedding_figure(view.coordinates, path, codes=view.codes, class_names=view.names, class_colors=view.colors,
                     method=label, color_by=view.color_by, subtitle=detail, overwrite=overwrite)
    _write_table(view, table)
    return path, table


def _write_table(view: EmbeddingView, path: Path) -> None:
    import csv

    header = ["row", "col", "map_x", "map_y", f"{view.method}_1", f"{view.method}_2"]
    columns = [view.row, view.col, view.map_x, view.map_y, view.coordinates[:, 0], view.coordinates[:, 1]]
    if view.codes is not None:
        names = list(view.names or [])
        header += [view.color_by, f"{view.color_by}_name"]
        columns += [view.codes, [names[c] if 0 <= c < len(names) else ("" if c < 0 else str(c)) for c in view.codes]]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(zip(*[np.asarray(c).tolist() for c in columns]))
