"""Tiled prediction into georeferenced mosaics.

For each tile, one task reads the tile plus the halo its features need,
computes the features, applies the model to the interior pixels and returns
the output layers: the feature stack is never materialised.  Tiles whose
inputs are all nodata are not computed.  The mosaic is written with
:func:`rastercore.tiles.write_tiles` (atomic, resumable after ``kill -9``)
and can be exported as Cloud-Optimized GeoTIFFs.

Output layers (the ``band`` coordinate of the mosaic):

* classifiers: ``class`` (index into the model's classes, see
  ``attrs["class_names"]``) and, when the model gives probabilities,
  ``p[<class>]`` per class;
* regressors: ``value``;
* hurdle models: ``class`` (1 where ``value >= threshold``) and ``value``;
* multi-label models: ``label[<name>]`` (0/1) per label;
* clusterers (e.g. k-means, :mod:`rastercore.unsupervised`): ``cluster``;
* projections without ``predict`` (e.g. PCA): ``component[<i>]`` per output.

NaN marks nodata in every layer.  RBF support vector classifiers are
evaluated with :class:`rastercore.models.FastRBF` automatically.
"""

from __future__ import annotations

import os
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize
from sklearn.base import is_classifier, is_clusterer

from rastercore.errors import FeatureSpecError, ModelFileError
from rastercore.features import FeatureSpec, features_for_block
from rastercore.progress import ProgressMode

__all__ = ["predict", "predict_lazy", "prediction_layers", "cog_layers", "categorical_layer"]


def prediction_layers(model, *, class_names=None, probabilities: bool = True) -> list[str]:
    """Names of the layers :func:`predict` writes for ``model``."""
    if hasattr(model, "predict_class") and hasattr(model, "predict_value"):
        return ["class", "value"]
    if hasattr(model, "thresholds_"):
        names = class_names or [str(i) for i in range(len(model.thresholds_))]
        return [f"label[{n}]" for n in names]
    if is_clusterer(model):
        return ["cluster"]
    if not hasattr(model, "predict") and hasattr(model, "transform"):
        return [f"component[{i}]" for i in range(len(model.get_feature_names_out()))]
    if is_classifier(model):
        names = class_names or [str(c) for c in model.classes_]
        layers = ["class"]
        if probabilities and _has_proba(model):
            layers += [f"p[{n}]" for n in names]
        return layers
    return ["value"]


def _has_proba(model) -> bool:
    try:
        return hasattr(model, "predict_proba")
    except AttributeError:  # available_if raising for SVC(probability=False)
        return False


class _TileModel:
    """Features + model on one (tile + halo) block; picklable, light to tokenise."""

    def __init__(self, model, spec: FeatureSpec, bands: list[str], layers: list[str], halo: int, fast: bool,
                 token: str):
        self.model, self.spec, self.bands, self.layers, self.halo = model, spec, bands, layers, halo
        self.token = token
        from rastercore.models._fast_rbf import fast_classifier

        self.fast = fast_classifier(model) if fast else None

    def __dask_tokenize__(self):
        return self.token

    def __call__(self, block: np.ndarray, block_info=None) -> np.ndarray:
        (i, j) = block_info[0]["chunk-location"][1:]
        height, width = block_info[None]["chunk-shape"][1:]
        top, left = (self.halo if i > 0 else 0), (self.halo if j > 0 else 0)
        out = np.full((len(self.layers), height, width), np.nan, np.float32)
        interior = block[:, top:top + height, left:left + width]
        if not np.isfinite(interior).any():
            return out  # an all-nodata tile: nothing to compute
        feats = features_for_block(block, self.spec, self.bands)[:, top:top + height, left:left + width]
        X = feats.reshape(feats.shape[0], -1).T
        valid = np.isfinite(X).all(axis=1)
        if valid.any():
            flat = out.reshape(len(self.layers), -1)
            flat[:, valid] = self._apply(X[valid]).T
        return out

    def _apply(self, X: np.ndarray) -> np.ndarray:
        """``(n, n_layers)`` float32 outputs for valid rows."""
        model = self.model
        if self.layers == ["class", "value"]:
            return np.column_stack([model.predict_class(X), model.predict_value(X)]).astype(np.float32)
        if self.layers[0].startswith("label["):
            return np.asarray(model.predict(X), dtype=np.float32)
        if self.layers[0].startswith("component["):
            return np.asarray(model.transform(X), dtype=np.float32)
        if self.layers[0] == "class":
            with_proba = len(self.layers) > 1
            if self.fast is not None and (not with_proba or self.fast.has_proba):
                labels, proba = self.fast.predict_with_proba(X) if with_proba else (self.fast.predict(X), None)
            else:
                labels = model.predict(X)
                proba = model.predict_proba(X) if with_proba else None
            columns = [np.searchsorted(model.classes_, labels)]
            if with_proba:
                columns += list(np.asarray(proba).T)
            return np.column_stack(columns).astype(np.float32)
        return np.asarray(model.predict(X), dtype=np.float32).reshape(-1, 1)


def predict_lazy(
    model,
    stack: xr.DataArray,
    spec,
    *,
    class_names=None,
    probabilities: bool = True,
    fast: bool = True,
    model_id: str | None = None,
) -> xr.DataArray:
    """The prediction mosaic of ``model`` on ``stack`` as a lazy DataArray.

    Parameters
    ----------
    model : fitted estimator
        Takes the features of ``spec`` as columns, in ``spec.feature_names`` order.
    stack : xarray.DataArray
        ``(band, y, x)`` with the bands the spec uses.
    spec : FeatureSpec, dict or list
        The feature spec the model was trained with (with its normaliser).
    class_names : list of str, optional
        Names of the model's classes, for layer names.
    probabilities : bool, default True
        Add per-class probability layers when the model has ``predict_proba``.
    fast : bool, default True
        Evaluate RBF SVCs with the numba kernel.
    model_id : str, optional
        A stable identity of the model (e.g. its file's hash), so that a
        resumed run recognises its own partial output; default a hash of
        the pickled model (stable within one process only).

    Returns
    -------
    xarray.DataArray
        float32 ``(band, y, x)`` with one band per output layer.
    """
    from rastercore.stack import as_float, band_names

    spec = FeatureSpec.coerce(spec)
    if class_names is None and is_clusterer(model):  # name the codes, so a cluster map is coded like a class map
        n = getattr(model, "n_clusters", getattr(model, "n_components", None))
        class_names = None if n is None else [str(c) for c in range(int(n))]
    names = band_names(stack)
    used = spec.input_bands(names)  # names the missing bands if the stack lacks any
    data = as_float(stack)[[names.index(b) for b in used]].rechunk({0: -1})
    halo = spec.halo
    chunks = data.chunks[1:]
    grown = [da.overlap.ensure_minimum_chunksize(max(halo, 1), c) for c in chunks]
    data = data.rechunk((data.chunks[0], *grown))
    padded = da.overlap.overlap(data, depth={0: 0, 1: halo, 2: halo}, boundary="none") if halo else data
    layers = prediction_layers(model, class_names=class_names, probabilities=probabilities)
    token = tokenize(model_id or _model_token(model), spec.to_dict(), used, layers, data.name, fast)
    tile = _TileModel(model, spec, list(used), layers, halo, fast, token)
    out = da.map_blocks(tile, padded, chunks=((len(layers),), *grown), dtype=np.float32,
                        meta=np.empty((0, 0, 0), np.float32), name="predict-" + token)
    out = out.rechunk((len(layers), *chunks))
    coords = {k: v.variable for k, v in stack.coords.items() if "band" not in v.dims}
    coords["band"] = ("band", np.array(layers, dtype=object))
    result = xr.DataArray(out, dims=("band", "y", "x"), coords=coords, name="prediction")
    result = result.rio.write_nodata(np.nan, encoded=False)
    if class_names is not None:
        result.attrs["class_names"] = list(class_names)
    return result


def _model_token(model) -> str:
    """A deterministic identity of a fitted model (its pickled bytes)."""
    import hashlib
    import pickle

    return hashlib.sha256(pickle.dumps(model, protocol=5)).hexdigest()


def predict(
    model,
    stack: xr.DataArray,
    path: str | os.PathLike,
    *,
    spec=None,
    class_names=None,
    probabilities: bool = True,
    cog: str | os.PathLike | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: ProgressMode = "auto",
    codec: str = "lz4",
) -> xr.DataArray:
    """Predict every pixel of ``stack`` into a zarr mosaic (and optionally a COG).

    Parameters
    ----------
    model : fitted estimator or path to a model file
        A model file (:func:`rastercore.models.save_model`) brings its own
        feature spec and class names.
    stack : xarray.DataArray
        The ``(band, y, x)`` stack to predict.
    path : path-like
        The ``.zarr`` mosaic to write.
    spec : FeatureSpec, dict or list, optional
        Required with an in-memory model; taken from the file otherwise.
    class_names : list of str, optional
        Names of the classes (default from the model file, else the labels).
    probabilities : bool, default True
        Write per-class probability layers when the model gives them.
    cog : path-like, optional
        Also write a Cloud-Optimized GeoTIFF: the class map as uint8 (nodata
        255) for classifiers, every layer (float32) otherwise; see :func:`cog_layers`.
    overwrite, resume : bool, default False
        As in :func:`rastercore.tiles.write_tiles`: replace an existing
        mosaic; finish an interrupted one (only missing tiles are computed).
    progress : {"auto", "bar", "json", "none"}
        Progress reporting (bar with ETA).
    codec : {"lz4", "zstd", "none"}, default "lz4"
        Compression of the mosaic's tiles (:data:`rastercore.tiles.CODECS`).

    Returns
    -------
    xarray.DataArray
        The mosaic, opened lazily from ``path``.
    """
    from rastercore.stack import open_stack
    from rastercore.tiles import write_tiles

    model, spec, class_names, model_id = _resolve_model(model, spec, class_names)
    mosaic = predict_lazy(model, stack, spec, class_names=class_names, probabilities=probabilities,
                          model_id=model_id)
    tile = mosaic.chunks[1][0], mosaic.chunks[2][0]
    write_tiles(mosaic, path, tile_chunks=tile, overwrite=overwrite, resume=resume, progress=progress,
                stage="predict", codec=codec)
    result = open_stack(path)
    if cog is not None:
        from rastercore.io import write_cog

        write_cog(cog_layers(result), cog, overwrite=overwrite, resampling="nearest", progress=progress)
    return result


def categorical_layer(layers) -> str | None:
    """The layer of codes among a mosaic's ``layers``: ``class``, else ``cluster``, else None."""
    return next((name for name in ("class", "cluster") if name in layers), None)


def cog_layers(mosaic: xr.DataArray) -> xr.DataArray:
    """What the COG of a mosaic holds: the class (or cluster) map as uint8 (nodata 255), else every layer.

    A class map is what a GIS user opens; the probability layers stay in the
    zarr mosaic (``rastercore export`` writes any layer set as a float COG).
    """
    layers = [str(b) for b in mosaic["band"].values]
    codes = categorical_layer(layers)
    if codes is None or "value" in layers or len(mosaic.attrs.get("class_names") or []) > 254:
        return mosaic
    classes = mosaic.sel(band=[codes])
    coded = xr.where(classes.notnull(), classes, 255).astype(np.uint8)
    coded = coded.assign_attrs({k: v for k, v in classes.attrs.items() if k != "_FillValue"})
    return coded.rio.write_nodata(255, encoded=False)


def _resolve_model(model, spec, class_names):
    """(model, spec, class names, stable model id) from a model or a model file."""
    model_id = None
    if isinstance(model, (str, Path)):
        import hashlib

        from rastercore.models import load_model

        path = Path(model)
        model_id = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None
        model, manifest = load_model(path, return_manifest=True)
        meta = manifest.get("metadata", {})
        if spec is None:
            if "feature_spec" not in meta:
                raise ModelFileError(f"{path} records no feature spec (not saved by rastercore train?); "
                                     "pass spec= explicitly.")
            spec = meta["feature_spec"]
        class_names = class_names or meta.get("class_names")
    if spec is None:
        raise FeatureSpecError("predict needs the feature spec the model was trained with (spec=...).")
    return model, spec, class_names, model_id
