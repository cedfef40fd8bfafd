"""Tiled prediction into georeferenced mosaics.

For each tile, one task reads the tile plus the halo its features need,
computes the features, applies the model to the interior pixels and returns
the output layers: the feature stack is never materialised.  Tiles whose
inputs are all nodata are not computed.  The mosaic is written with
:func:`rastercore.store.write_tiles` (atomic, resumable after ``kill -9``)
and can be exported as Cloud-Optimized GeoTIFFs.

Output layers (the ``band`` coordinate of the mosaic):

* classifiers: ``class`` (index into the model's classes, see
  ``attrs["class_names"]``; their colours are ``attrs["class_colors"]``) and,
  when the model gives probabilities, ``p[<class>]`` per class and, when
  asked (``layers=``), the uncertainty layers ``maxprob``, ``margin`` and
  ``entropy``;
* regressors: ``value`` and, when asked, ``spread`` (forests);
* hurdle models: ``class`` (1 where ``value >= threshold``) and ``value``;
* multi-label models: ``label[<name>]`` (0/1) per label;
* clusterers (e.g. k-means, :mod:`rastercore.unsupervised`): ``cluster``;
* projections without ``predict`` (e.g. PCA): ``component[<i>]`` per output.

NaN marks nodata in every layer.  Which layers a model writes, and its
compiled fast path (:class:`rastercore.models.FastRBF` for RBF SVMs,
:class:`rastercore.models.FastKernelLinear` for kernel-map models), are
decided once per model by :func:`rastercore.models.tile_predictor`; the
per-tile function (:class:`PredictTile`) runs on the tile engine
(:func:`rastercore.engine.map_tiles`), which reads each tile plus halo
straight from the store when the stack is an unchanged
:func:`rastercore.open_stack` result.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from dask.base import tokenize
from sklearn.base import is_clusterer

from rastercore.contract import match_model_inputs
from rastercore.engine import Tile, map_tiles
from rastercore.errors import FeatureSpecError, ModelFileError
from rastercore.features import FeatureSpec, features_for_block
from rastercore.models import TilePredictor, tile_predictor
from rastercore.progress import ProgressMode
from rastercore.stack import nodata_of, valid_mask
from rastercore.store import DEFAULT_CODEC, check_output, open_stack, write_tiles

__all__ = ["predict", "predict_lazy", "prediction_layers", "cog_layers", "categorical_layer", "class_layer_of",
           "class_raster",
           "class_nodata", "write_class_cog", "resolve_model", "LoadedModel", "PredictTile"]


def prediction_layers(model, *, class_names=None, probabilities: bool = True, layers=None) -> list[str]:
    """Names of the layers :func:`predict` writes for ``model`` (see :func:`rastercore.models.tile_predictor`)."""
    return tile_predictor(model, class_names=class_names, probabilities=probabilities, fast=False,
                          layers=layers).layers


class PredictTile:
    """The per-tile function of prediction: features of the tile plus halo, then the model, in one task.

    Picklable and light to tokenise (``token`` stands for the model).
    Tiles whose inputs are all nodata are not computed.
    """

    def __init__(self, predictor: TilePredictor, spec: FeatureSpec, bands: list[str], nodata, token: str):
        self.predictor, self.spec, self.bands, self.nodata, self.token = predictor, spec, bands, nodata, token

    def __dask_tokenize__(self):
        return self.token

    def __call__(self, window: np.ndarray, tile: Tile) -> np.ndarray:
        height, width = tile.shape
        layers = self.predictor.layers
        out = np.full((len(layers), height, width), np.nan, np.float32)
        if not valid_mask(tile.interior(window), self.nodata).any():
            return out  # an all-nodata tile: nothing to compute
        feats = features_for_block(window, self.spec, self.bands, nodata=self.nodata, crop=tile.halo,
                                   origin=tile.window_origin)
        X = feats.reshape(feats.shape[0], -1).T  # a view: pixels by features, feature-major in memory
        valid = np.isfinite(feats).all(axis=0).ravel()
        flat = out.reshape(len(layers), -1)
        if valid.all():  # the common case: no copy of the features, no scatter of the outputs
            flat[:] = self.predictor(X).T
        elif valid.any():
            flat[:, valid] = self.predictor(X[valid]).T
        return out


def predict_lazy(
    model,
    stack: xr.DataArray,
    spec=None,
    *,
    class_names=None,
    probabilities: bool = True,
    fast: bool = True,
    model_id: str | None = None,
    band_map=None,
    layers=None,
    class_colors=None,
) -> xr.DataArray:
    """The prediction mosaic of ``model`` on ``stack`` as a lazy DataArray.

    The stack is checked against what the model expects first
    (:func:`rastercore.contract.match_model_inputs`): its bands by name (in
    the model's training order, through ``band_map`` if they are named
    otherwise), the number of features, and, for a model file, the value
    ranges of the training pixels.

    Parameters
    ----------
    model : fitted estimator, path to a model file, or LoadedModel
        An estimator takes the features of ``spec`` as columns, in
        ``spec.feature_names`` order; a model file brings its spec, bands
        and class names (:func:`resolve_model`).
    stack : xarray.DataArray
        ``(band, y, x)`` with the bands the model was trained on.
    spec : FeatureSpec, dict or list, optional
        The feature spec the model was trained with (with its normaliser);
        required with an estimator.
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
    band_map : mapping or str, optional
        Stack band name -> model band name (``{"VV": "HH", "VH": "HV"}`` or
        ``"VV=HH,VH=HV"``), for a stack that names the bands otherwise.
    layers : sequence of str or str, optional
        The layers to write (``["class", "maxprob", "entropy"]`` or
        ``"class,proba,margin"``): for a classifier ``class``, ``proba``
        (``p[<class>]`` per class), ``maxprob``, ``margin``, ``entropy``
        (:func:`rastercore.models.uncertainty`); for a regressor ``value``
        and ``spread`` (standard deviation across a forest's trees).
        Default: ``class`` and ``proba`` (``value``).
    class_colors : mapping, str or sequence, optional
        Colours of the classes (``{"water": "#1f78b4"}``, ``"water=#1f78b4"``
        or one per class; :func:`rastercore.palette.class_colors`), over the
        model file's and the default palette; kept in ``attrs["class_colors"]``.

    Returns
    -------
    xarray.DataArray
        float32 ``(band, y, x)`` with one band per output layer.

    Raises
    ------
    BandNameError
        The stack lacks a band the model needs.
    ModelFileError
        The spec does not give the features the estimator was fitted on.
    """
    loaded = resolve_model(model, spec, class_names, model_id=model_id)
    model, spec, class_names = loaded.model, FeatureSpec.coerce(loaded.spec), loaded.class_names
    if class_names is None and is_clusterer(model):  # name the codes, so a cluster map is coded like a class map
        final = model.steps[-1][1] if hasattr(model, "steps") else model  # a pipeline's clusterer
        n = getattr(final, "n_clusters", getattr(final, "n_components", None))
        class_names = None if n is None else [str(c) for c in range(int(n))]
    inputs = match_model_inputs(model, spec, stack, bands=loaded.bands, feature_names=loaded.feature_names,
                                band_ranges=loaded.band_ranges, band_map=band_map, what=loaded.name)
    predictor = tile_predictor(model, class_names=class_names, probabilities=probabilities, fast=fast, layers=layers)
    layers = predictor.layers
    fill = nodata_of(stack)
    token = tokenize(loaded.model_id or _model_token(model), spec.to_dict(), inputs, layers, fast, fill)
    out = map_tiles(stack, PredictTile(predictor, spec, inputs.bands, fill, token), halo=spec.halo,
                    bands=inputs.stack_bands, n_out=len(layers), name="predict")
    coords = {k: v.variable for k, v in stack.coords.items() if "band" not in v.dims}
    coords["band"] = ("band", np.array(layers, dtype=object))
    result = xr.DataArray(out, dims=("band", "y", "x"), coords=coords, name="prediction")
    result = result.rio.write_nodata(np.nan, encoded=False)
    if class_names is not None:
        from rastercore.palette import class_colors as palette_colors
        from rastercore.palette import parse_colors

        names = [str(n) for n in class_names]
        model_colors = palette_colors(names, loaded.class_colors)  # the model file's, else the default palette
        own = dict(zip(names, palette_colors(names, class_colors))) if class_colors is not None else {}
        if isinstance(class_colors, (str, dict)):  # colours by name: only the named classes change
            own = {n: c for n, c in own.items() if n in parse_colors(class_colors, names)}
        result.attrs["class_names"] = names
        result.attrs["class_colors"] = [list(own.get(n, c)) for n, c in zip(names, model_colors)]
    from rastercore.models import PriorCorrected

    if isinstance(model, PriorCorrected):  # the priors its probabilities and classes are corrected to
        result.attrs["priors"] = model.report(class_names)
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
    codec: str = DEFAULT_CODEC,
    band_map=None,
    layers=None,
    class_colors=None,
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
        Also write a Cloud-Optimized GeoTIFF: for classifiers and clusterers
        the styled class map (uint8 codes, nodata 255, colour table,
        category names, mode overviews; :func:`class_raster`), every layer
        (float32, named bands) otherwise; see :func:`cog_layers`.
    overwrite, resume : bool, default False
        As in :func:`rastercore.store.write_tiles`: replace an existing
        mosaic; finish an interrupted run: only missing tiles are computed,
        and when the mosaic is already complete (a run stopped while writing
        the COG) nothing is predicted again and only a missing COG is written.
    progress : {"auto", "bar", "json", "none"}
        Progress reporting (bar with ETA).
    codec : {"lz4", "zstd", "none"}, default "lz4"
        Compression of the mosaic's tiles (:data:`rastercore.store.CODECS`).
    band_map : mapping or str, optional
        Stack band name -> model band name, as in :func:`predict_lazy`.
    layers, class_colors : optional
        The layers to write and the class colours, as in :func:`predict_lazy`.

    Returns
    -------
    xarray.DataArray
        The mosaic, opened lazily from ``path``.

    Raises
    ------
    StoreExistsError
        An output exists and neither ``overwrite`` nor ``resume`` was asked,
        or ``resume`` finds a complete mosaic of other layers or another grid.
    """
    from rastercore.errors import StoreExistsError
    from rastercore.grid import grid_of

    finished = resume and not overwrite and Path(path).exists()  # an earlier run completed the mosaic
    cog_done = cog is None or (finished and Path(cog).exists())
    check_output(None if finished else path, None if cog_done else cog, overwrite=overwrite)
    mosaic = predict_lazy(resolve_model(model, spec, class_names), stack, class_names=class_names,
                          probabilities=probabilities, band_map=band_map, layers=layers, class_colors=class_colors)
    if not finished:
        tile = mosaic.chunks[1][0], mosaic.chunks[2][0]
        write_tiles(mosaic, path, tile_chunks=tile, overwrite=overwrite, resume=resume, progress=progress,
                    stage="predict", codec=codec)
    result = open_stack(path)
    if finished and (list(result["band"].values) != list(mosaic["band"].values)
                     or not grid_of(result).aligned_with(grid_of(mosaic))):
        raise StoreExistsError(f"{path} already holds a complete mosaic of other layers or another grid "
                               f"({', '.join(map(str, result['band'].values))}; {grid_of(result).describe()}) "
                               "than this prediction; pass --overwrite to replace it.")
    if not cog_done:
        layers = cog_layers(result)
        if "class_names" in layers.attrs and layers.sizes["band"] == 1:
            write_class_cog(layers, cog, overwrite=overwrite, progress=progress)
        else:
            from rastercore.io import write_cog

            write_cog(layers, cog, overwrite=overwrite, resampling="nearest", progress=progress)
    return result


def categorical_layer(layers) -> str | None:
    """The layer of codes among a mosaic's ``layers``: ``class``, else ``cluster``, else None."""
    return next((name for name in ("class", "cluster") if name in layers), None)


def class_layer_of(mosaic: xr.DataArray, where: str = "the mosaic", layer: str | None = None) -> str:
    """The name of the mosaic's layer of class codes: ``layer`` when given (checked), else ``class``, else ``cluster``.

    Raises
    ------
    ParameterError
        ``layer`` is not a layer of the mosaic, or it has no class or
        cluster layer (named ``where`` in the message).
    """
    from rastercore.errors import ParameterError

    layers = [str(b) for b in mosaic[mosaic.dims[0]].values]
    if layer is not None:
        if layer not in layers:
            raise ParameterError(f"layer (--layer) {layer!r} is not a layer of {where}; its layers are "
                                 f"{', '.join(layers)}.")
        return layer
    name = categorical_layer(layers)
    if name is None:
        raise ParameterError(f"{where} has no class layer ('class' or 'cluster'; its layers: {', '.join(layers)}); "
                             "give a mosaic from `rastercore predict` with a classifier or `rastercore cluster`.")
    return name


def class_nodata(n_classes: int) -> tuple[np.dtype, int]:
    """The pixel type and nodata code of a class raster of ``n_classes``: uint8 and 255, else uint16 and 65535."""
    return (np.dtype(np.uint8), 255) if n_classes <= 255 else (np.dtype(np.uint16), 65535)


def class_raster(mosaic: xr.DataArray, layer: str | None = None) -> xr.DataArray:
    """The class (or cluster) layer of a mosaic as integer codes, the way a GIS opens a class map.

    One band of uint8 codes with nodata 255 (uint16 and 65535 beyond 255
    classes), carrying ``class_names`` and ``class_colors`` (one RGB per
    class: the mosaic's, else :func:`rastercore.palette.class_colors`) in
    its attrs, for :func:`rastercore.io.write_cog`'s colour table and
    category names.

    Raises
    ------
    ParameterError
        The mosaic has no class or cluster layer.
    """
    from rastercore.palette import class_colors

    layer = class_layer_of(mosaic, layer=layer)
    classes = mosaic.sel(band=[layer])
    names = mosaic.attrs.get("class_names") or _codes_present(classes)
    dtype, nodata = class_nodata(len(names))
    coded = xr.where(classes.notnull(), classes, nodata).astype(dtype)
    attrs = {k: v for k, v in classes.attrs.items() if k != "_FillValue"}
    attrs.update(class_names=[str(n) for n in names],
                 class_colors=[list(c) for c in class_colors(names, mosaic.attrs.get("class_colors"))])
    return coded.assign_attrs(attrs).rio.write_nodata(nodata, encoded=False)


def _codes_present(classes: xr.DataArray) -> list[str]:
    """Names ``"0"`` ... up to the largest code of a class layer that carries no class names."""
    top = classes.max().compute().item()
    return [str(c) for c in range(0 if np.isnan(top) else int(top) + 1)]


def cog_layers(mosaic: xr.DataArray) -> xr.DataArray:
    """What the COG of a mosaic holds: the class (or cluster) map (:func:`class_raster`), else every layer.

    A class map is what a GIS user opens; the probability and uncertainty
    layers stay in the zarr mosaic (``rastercore export --layers`` writes
    them as a float COG).
    """
    layers = [str(b) for b in mosaic["band"].values]
    if categorical_layer(layers) is None or "value" in layers:
        return mosaic
    return class_raster(mosaic)


def write_class_cog(classes: xr.DataArray, path, **options) -> Path:
    """Write a :func:`class_raster` as a styled COG: colour table, category names, mode overviews."""
    from rastercore.io import write_cog

    options.setdefault("resampling", "mode")
    return write_cog(classes, path, class_names=classes.attrs["class_names"],
                     class_colors=classes.attrs["class_colors"], **options)


@dataclass(frozen=True)
class LoadedModel:
    """A model with what prediction needs to know about it (from its file, when it has one).

    Attributes
    ----------
    model : fitted estimator
    spec : FeatureSpec, dict or list
    class_names : list of str or None
    model_id : str or None
        The file's hash (stable across processes), else None.
    bands, feature_names, band_ranges
        The training bands in order, the feature names and the training
        pixels' value ranges, when the file records them.
    name : str
        How messages name the model.
    """

    model: object
    spec: object
    class_names: list | None = None
    model_id: str | None = None
    bands: list | None = None
    feature_names: list | None = None
    band_ranges: dict | None = None
    name: str = "the model"
    class_colors: list | None = None


def resolve_model(model, spec=None, class_names=None, *, model_id: str | None = None) -> LoadedModel:
    """A :class:`LoadedModel` from a fitted estimator, a model file, or a LoadedModel (returned as is).

    A model file (:func:`rastercore.models.save_model`) is read once and
    brings its feature spec, class names, training bands, feature names and
    value ranges; its id is the file's hash, so a resumed prediction
    recognises its own partial output.  An in-memory model needs ``spec``.

    Raises
    ------
    ModelFileError
        The file records no feature spec and none is given.
    FeatureSpecError
        An in-memory model without ``spec``.
    """
    if isinstance(model, LoadedModel):
        return model
    if not isinstance(model, (str, Path)):
        if spec is None:
            raise FeatureSpecError("predict needs the feature spec the model was trained with (spec=...).")
        return LoadedModel(model, spec, class_names, model_id)
    from rastercore.models import load_model

    path = Path(model)
    estimator, manifest = load_model(path, return_manifest=True)
    meta = manifest.get("metadata", {})
    if spec is None and "feature_spec" not in meta:
        raise ModelFileError(f"{path} records no feature spec (not saved by rastercore train?); pass spec= explicitly.")
    return LoadedModel(estimator, meta["feature_spec"] if spec is None else spec,
                       class_names or meta.get("class_names"), manifest["file_sha256"],
                       bands=meta.get("bands") if spec is None else None,
                       feature_names=meta.get("feature_names") if spec is None else None,
                       band_ranges=meta.get("band_ranges"), name=f"model {path}",
                       class_colors=meta.get("class_colors"))
