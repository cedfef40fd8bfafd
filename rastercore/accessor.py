"""The ``.rc`` accessor: rastercore from any ``(band, y, x)`` DataArray.

Importing :mod:`rastercore` registers it, so a rioxarray raster or any
xarray stack reaches the feature engine, models and writers without going
through a rastercore store first::

    import rioxarray, rastercore
    scene = rioxarray.open_rasterio("scene.tif", chunks=1024).assign_coords(band=["HH", "HV"])
    feats = scene.rc.features([{"name": "gaussian", "sigma": 2}])      # lazy (feature, y, x)
    classes = scene.rc.predict("model.skops")                          # lazy (band, y, x) layers
    clusters, model = scene.rc.cluster(6, return_model=True)           # lazy k-means map, fitted model
    scene.rc.to_cog("scene_cog.tif")

Every result is lazy (dask) and keeps the input's coordinates and CRS, so it
goes on into ``.rio`` / xarray code; writers work tile by tile.  Band names
are the ``band`` coordinate as strings (rioxarray's default 1, 2, ... become
"1", "2"; assign names as above to use named-band features).
"""

from __future__ import annotations

import os

import xarray as xr

from rastercore._deprecated import renamed_keywords
from rastercore.store import DEFAULT_CODEC

__all__ = ["RasterCoreAccessor"]


@xr.register_dataarray_accessor("rc")
class RasterCoreAccessor:
    """rastercore operations on a ``(band, y, x)`` DataArray (``da.rc.<method>``)."""

    def __init__(self, obj: xr.DataArray):
        self._obj = obj

    @property
    def band_names(self) -> list[str]:
        """The band names (the ``band`` coordinate as str)."""
        from rastercore.stack import band_names

        return band_names(self._obj)

    def features(self, spec) -> xr.DataArray:
        """Lazy ``(feature, y, x)`` features (:func:`rastercore.features.compute_features`)."""
        from rastercore.features import compute_features

        return compute_features(self._obj, spec)

    def stats(self, *, bins: int = 1024):
        """Per-band min, max, mean, std and percentiles, out of core (:func:`rastercore.preprocess.compute_band_stats`)."""
        from rastercore.preprocess import compute_band_stats

        return compute_band_stats(self._obj, bins=bins)

    def predict(self, model, *, spec=None, class_names=None, probabilities: bool = True) -> xr.DataArray:
        """Lazy prediction layers of a model file or fitted estimator (:func:`rastercore.predict.predict_lazy`).

        A model file brings its feature spec and class names; an in-memory
        estimator needs ``spec``.
        """
        from rastercore.predict import predict_lazy

        return predict_lazy(model, self._obj, spec, class_names=class_names, probabilities=probabilities)

    @renamed_keywords({"sample_size": "n"}, ".rc.cluster()")
    def cluster(self, n_clusters: int = 8, *, spec=None, n: int = 100_000, stream: bool = False, seed: int = 0,
                standardize: bool = True, return_model: bool = False):
        """Lazy k-means cluster map (fitted now, applied tile by tile; see :mod:`rastercore.unsupervised`).

        Parameters
        ----------
        n_clusters : int, default 8
        spec : FeatureSpec, list of dict or dict, optional
            Features to cluster; default each band smoothed at two scales
            (:data:`rastercore.unsupervised.DEFAULT_SPEC`).
        n : int, default 100000
            Pixels to fit on (an exact uniform random sample of the valid
            pixels); ``sample_size``, its old name, still works for one release.
        stream : bool, default False
            Fit on every valid pixel instead, tile by tile (``MiniBatchKMeans``).
        seed : int, default 0
        standardize : bool, default True
            Standardise the features inside the model (a ``Pipeline``).
        return_model : bool, default False
            Also return the fitted model.

        Returns
        -------
        xarray.DataArray, or (xarray.DataArray, estimator) with ``return_model``
            The ``cluster`` layer ``(band, y, x)``.
        """
        return self._unsupervised("kmeans", {"n_clusters": n_clusters}, spec, n, stream, seed, standardize,
                                  return_model)

    @renamed_keywords({"sample_size": "n"}, ".rc.pca()")
    def pca(self, n_components: int = 3, *, spec=None, n: int = 100_000, stream: bool = False, seed: int = 0,
            standardize: bool = True, return_model: bool = False):
        """Lazy principal-component layers ``component[i]`` (fitted now, applied tile by tile).

        The keywords are those of :meth:`cluster` (``IncrementalPCA`` when streaming).
        """
        return self._unsupervised("pca", {"n_components": n_components}, spec, n, stream, seed, standardize,
                                  return_model)

    def _unsupervised(self, method, size, spec, n, stream, seed, standardize, return_model):
        from rastercore.predict import predict_lazy
        from rastercore.unsupervised import DEFAULT_SPEC, fit_unsupervised

        spec = DEFAULT_SPEC if spec is None else spec
        model = fit_unsupervised(self._obj, spec, method, **size, n=n, stream=stream, seed=seed,
                                 standardize=standardize, progress="none")
        result = predict_lazy(model, self._obj, spec)
        return (result, model) if return_model else result

    def to_store(self, path: str | os.PathLike, *, tile_size: int | None = None, overwrite: bool = False,
                 resume: bool = False, codec: str = DEFAULT_CODEC, progress: str = "auto") -> xr.DataArray:
        """Write as a rastercore store, tile by tile, and return it opened lazily (atomic, resumable)."""
        from rastercore.store import open_stack, write_tiles

        data = self._obj
        if tile_size is not None:
            data = data.chunk({"y": tile_size, "x": tile_size})
        write_tiles(data, path, overwrite=overwrite, resume=resume, progress=progress, codec=codec)
        return open_stack(path)

    def to_cog(self, path: str | os.PathLike, **kwargs) -> os.PathLike:
        """Write a Cloud-Optimized GeoTIFF tile by tile (:func:`rastercore.write_cog`; same keywords)."""
        from rastercore.io import write_cog

        return write_cog(self._obj, path, **kwargs)
