"""Readers for every input format, all with one shape: metadata + ``read(window)``.

A :class:`Source` never holds an open file: each :meth:`Source.read` opens,
reads one window and closes.  That keeps sources picklable (they travel to
dask workers inside task graphs) and thread-safe, and it means no read ever
touches more than the window asked for.

Input specs
-----------
``scene.tif`` (any GDAL raster: GeoTIFF/COG, JPEG, PNG, ...),
``cube.h5:/group/dataset`` (HDF5, 2-D or 3-D with a band axis),
``array.npy`` (memory-mapped), ``store.zarr`` or ``store.zarr:/path/to/array``.

Remote rasters
--------------
``https://host/scene.tif``, ``s3://bucket/key.tif``, ``gs://...``,
``az://...`` and GDAL's own ``/vsicurl/...``, ``/vsis3/...`` paths are read
through GDAL's virtual file systems, window by window with HTTP range
requests: a tile of a COG costs its own bytes, never a download of the
file (:data:`REMOTE_GDAL_OPTIONS`: retries with backoff, no directory
listing).  A missing file, a refused connection or a dropped transfer is
one error naming the URL.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from rastercore.errors import (
    NotGeoreferencedWarning,
    SourceNotFoundError,
    SourceReadError,
    UnsupportedSourceError,
)
from rastercore.grid import Grid

__all__ = ["Source", "open_source", "is_remote", "gdal_path", "REMOTE_GDAL_OPTIONS"]

Window = tuple[slice, slice]

# GDAL drivers that decode front to back: a window far down the image costs
# a decode of everything above it, so they are read in full-width strips.
SEQUENTIAL_DRIVERS = frozenset({"JPEG", "PNG", "GIF", "BMP"})
HDF5_SUFFIXES = (".h5", ".hdf5", ".he5", ".hdf", ".nc")

VSI_PREFIXES = {"http://": "/vsicurl/", "https://": "/vsicurl/", "s3://": "/vsis3/", "gs://": "/vsigs/",
                "az://": "/vsiaz/"}
"""URL schemes and the GDAL virtual file system that reads them."""

REMOTE_GDAL_OPTIONS = {
    "GDAL_HTTP_MAX_RETRY": "3",            # a dropped connection or a 5xx is retried...
    "GDAL_HTTP_RETRY_DELAY": "0.5",        # ...after 0.5 s, then longer (GDAL backs off)
    "GDAL_HTTP_TIMEOUT": "30",
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no listing of the URL's "directory" (a sidecar hunt)
    "CPL_VSIL_CURL_CHUNK_SIZE": "65536",   # read ahead in small steps: a window costs little more than its bytes
}
"""GDAL configuration for remote reads (set around every open and read of a remote source)."""


def is_remote(spec: str) -> bool:
    """Whether ``spec`` is a URL or a GDAL virtual file system path (read over the network)."""
    return spec.startswith(tuple(VSI_PREFIXES)) or spec.startswith("/vsi")


def gdal_path(spec: str) -> str:
    """The path GDAL opens for ``spec``: a URL becomes its ``/vsi...`` path; anything else is unchanged."""
    for scheme, prefix in VSI_PREFIXES.items():
        if spec.startswith(scheme):
            return prefix + (spec if prefix == "/vsicurl/" else spec[len(scheme):])
    return spec


def _gdal_env(spec: str):
    import rasterio

    return rasterio.Env(**REMOTE_GDAL_OPTIONS) if is_remote(spec) else rasterio.Env()


@dataclass(frozen=True)
class Source:
    """One input raster: its metadata and how to read a window of it.

    Attributes
    ----------
    path : str
        The spec the source was opened from (file, ``file.h5:/dataset``...).
    count : int
        Number of bands.
    dtype : numpy.dtype
        Pixel type.
    grid : Grid
        Shape, transform and CRS.
    nodata : scalar or None
        Nodata value declared by the file.
    band_names : tuple of str or None
        Band names the file declares (GeoTIFF descriptions), if any.
    sequential : bool
        True if windows are cheap only when read top to bottom in strips.
    """

    path: str
    count: int
    dtype: np.dtype
    grid: Grid
    nodata: float | int | None = None
    band_names: tuple[str, ...] | None = None
    sequential: bool = False
    options: dict = field(default_factory=dict, compare=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(bands, height, width)``."""
        return (self.count, self.grid.height, self.grid.width)

    def on_grid(self, grid: Grid, resampling: str = "nearest") -> "Source":
        """This raster read resampled onto ``grid``, window by window (GDAL's warped VRT); itself if aligned."""
        return self if self.grid.aligned_with(grid) else _warped(self, grid, resampling)

    def to_dask(self, chunks, *, prefix: str = "read"):
        """The raster as a lazy ``(band, y, x)`` dask array whose every block is one window read.

        The dask name changes when the file changes (size, modification
        time), so a resumed job recognises its inputs and a rewritten file
        is never served from an old graph.
        """
        import dask.array as da
        from dask.base import tokenize

        if is_remote(self.path):  # no cheap stat over the network: the URL and what was read of its header
            identity = (self.options.get("identity"),)
        else:
            stat = Path(self.options.get("file", self.path)).stat()
            identity = (stat.st_size, stat.st_mtime_ns)
        name = f"{prefix}-" + tokenize(self.path, *identity, self.options)
        return da.from_array(_WindowReader(self), chunks=chunks, name=name, asarray=True, fancy=False)

    def read(self, window: Window) -> np.ndarray:
        """Read all bands of ``window`` (row slice, column slice) as ``(band, y, x)``."""
        try:
            return _READERS[self.options["kind"]](self, window)
        except (OSError, RuntimeError, ValueError, KeyError) as err:
            rows, cols = window
            advice = ("the server may have dropped the connection (GDAL retried 3 times); check it and rerun with "
                      "--resume" if is_remote(self.path) else
                      "the file may be truncated or corrupt; re-create or re-download it")
            failure = SourceReadError(
                f"could not read rows {rows.start}-{rows.stop}, columns {cols.start}-{cols.stop} "
                f"of {self.path}: {_deepest(err)}. {advice[0].upper()}{advice[1:]}.")
        raise failure  # raised in a dask task: nothing chained, so it reaches the client as itself


def _deepest(error: BaseException) -> str:
    """The message of the innermost cause of ``error`` (rasterio's says "see previous exception")."""
    while error.__cause__ is not None:
        error = error.__cause__
    return str(error).rstrip(".")


class _WindowReader:
    """Array-like view of a :class:`Source` for ``dask.array.from_array``."""

    def __init__(self, source: Source):
        self.source = source
        self.shape = source.shape
        self.dtype = source.dtype
        self.ndim = 3

    def __getitem__(self, key):
        band, rows, cols = key
        return self.source.read((rows, cols))[band]


def open_source(spec: str | Path, *, band_axis: int = 0, match: Grid | None = None,
                resampling: str = "nearest") -> Source:
    """Open an input raster by its spec and read its metadata (no pixels).

    Parameters
    ----------
    spec : str or pathlib.Path
        A GDAL-readable file, ``file.h5:/group/dataset``, ``file.npy``,
        ``store.zarr`` (a rastercore stack) or ``store.zarr:/array``; or a
        remote raster: ``https://...``, ``s3://...``, ``gs://...``,
        ``az://...``, ``/vsicurl/...`` (read by window, see the module notes).
    band_axis : int, default 0
        For 3-D HDF5, ``.npy`` and zarr arrays: which axis holds the bands
        (0 for ``(band, y, x)``, -1 or 2 for ``(y, x, band)``).
    match : Grid, optional
        Read the raster resampled onto this grid (another resolution,
        extent or CRS), window by window through GDAL's warped VRT.  Only
        GDAL-readable, georeferenced inputs can be resampled.
    resampling : str, default "nearest"
        GDAL resampling used with ``match``: ``"nearest"`` for classes,
        ``"average"`` for continuous values, or any rasterio Resampling name.

    Returns
    -------
    Source

    Raises
    ------
    SourceNotFoundError
        The file or the dataset inside it does not exist.
    UnsupportedSourceError
        The file is not a raster rastercore can read.
    """
    spec = str(spec)
    if is_remote(spec):
        source = _open_gdal(spec)
        return source if match is None else source.on_grid(match, resampling)
    file_part, _, inner = _split_inner(spec)
    if not Path(file_part).exists():
        raise SourceNotFoundError(f"input {file_part} does not exist; check the path.")
    suffix = Path(file_part).suffix.lower()
    if suffix in HDF5_SUFFIXES:
        source = _open_hdf5(spec, file_part, inner, band_axis)
    elif suffix == ".npy":
        source = _open_npy(spec, band_axis)
    elif suffix == ".zarr" or Path(file_part, "zarr.json").exists():
        source = _open_zarr(spec, file_part, inner, band_axis)
    else:
        source = _open_gdal(spec)
    return source if match is None else source.on_grid(match, resampling)


def _split_inner(spec: str) -> tuple[str, str, str]:
    """Split ``file.h5:/group/ds`` into ``("file.h5", ":", "/group/ds")``.

    A Windows drive letter (``C:\\``) is not a separator.
    """
    head, sep, tail = spec.rpartition(":")
    if sep and tail.startswith("/") and len(head) > 1:
        return head, sep, tail
    return spec, "", ""


def _warn_no_georef(path: str) -> None:
    warnings.warn(
        f"{path} has no CRS or geotransform; using a plain pixel grid "
        "(x = column + 0.5, y = row + 0.5).",
        NotGeoreferencedWarning,
        stacklevel=3,
    )


# --- GDAL (GeoTIFF, COG, JPEG, PNG, ...) -----------------------------------------


def _open_gdal(spec: str) -> Source:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning as RioNotGeoreferenced

    with warnings.catch_warnings(), _gdal_env(spec):
        warnings.simplefilter("ignore", RioNotGeoreferenced)
        try:
            with rasterio.open(gdal_path(spec)) as ds:
                grid = Grid(ds.height, ds.width, ds.transform, ds.crs)
                names = tuple(ds.descriptions) if all(ds.descriptions) else None
                options = {"kind": "gdal"}
                if is_remote(spec):
                    options["identity"] = (ds.profile.get("blockxsize"), ds.count, ds.dtypes[0], ds.height,
                                           ds.width, tuple(ds.transform)[:6])
                source = Source(
                    path=spec,
                    count=ds.count,
                    dtype=np.dtype(ds.dtypes[0]),
                    grid=grid,
                    nodata=ds.nodata,
                    band_names=names,
                    sequential=ds.driver in SEQUENTIAL_DRIVERS,
                    options=options,
                )
        except rasterio.errors.RasterioIOError as err:
            failure = _open_error(spec, err)
        else:
            failure = None
    if failure is not None:
        raise failure
    if not grid.is_georeferenced:
        _warn_no_georef(spec)
    return source


def _open_error(spec: str, err: Exception) -> Exception:
    """One clear error for a raster GDAL could not open: missing remote file, unreachable host, or not a raster."""
    text = _deepest(err)
    if is_remote(spec):
        if "404" in text or "does not exist" in text.lower() or "No such file" in text:
            return SourceNotFoundError(f"{spec} does not exist on its server (HTTP 404); check the URL.")
        return SourceReadError(f"could not read {spec}: {text}. Check the URL, the network and, for s3://, gs:// "
                               "or az://, the credentials GDAL uses (AWS_*, GOOGLE_*, AZURE_* variables).")
    return UnsupportedSourceError(
        f"{spec} is not a raster GDAL can read ({text}); give a GeoTIFF, JPEG, PNG, "
        "HDF5 (file.h5:/dataset), .npy or zarr input.")


def _warped(source: Source, grid: Grid, resampling: str) -> Source:
    """The same raster, read resampled onto ``grid`` through a WarpedVRT."""
    from rasterio.enums import Resampling

    if source.options["kind"] != "gdal" or not source.grid.is_georeferenced or grid.crs is None:
        raise UnsupportedSourceError(
            f"{source.path} is not on the stack's grid ({source.grid.describe()} vs {grid.describe()}) "
            "and only georeferenced GDAL rasters (GeoTIFF, ...) can be resampled; "
            "resample it onto the stack's grid first."
        )
    if resampling not in Resampling.__members__:
        raise ValueError(f"unknown resampling {resampling!r}; use one of {', '.join(Resampling.__members__)}")
    # Interpolated integers are warped to float32: GDAL's integer kernels round a window differently from the
    # whole image (1 DN in 0.5 % of the pixels of a 6x upsampled Sentinel-2 band), float32 never does.
    dtype = source.dtype
    if resampling != "nearest" and not np.issubdtype(dtype, np.floating):
        dtype = np.dtype(np.float32)
    # Outside the source's extent the warp writes nodata; declare one if the file has none.
    nodata = source.nodata if source.nodata is not None and dtype == source.dtype else _fill_for(dtype)
    options = {"kind": "gdal_warped", "grid": grid, "resampling": resampling, "nodata": nodata,
               "dtype": dtype.name}
    return Source(path=source.path, count=source.count, dtype=dtype, grid=grid, nodata=nodata,
                  band_names=source.band_names, options=options)


def _read_gdal_warped(source: Source, window: Window) -> np.ndarray:
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT
    from rasterio.windows import Window as RioWindow

    grid: Grid = source.options["grid"]
    rows, cols = window
    with _gdal_env(source.path), rasterio.open(gdal_path(source.path)) as src, WarpedVRT(
        src, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
        resampling=Resampling[source.options["resampling"]],
        src_nodata=src.nodata, nodata=source.options["nodata"], dtype=source.options.get("dtype", src.dtypes[0]),
    ) as vrt:
        return vrt.read(window=RioWindow.from_slices(rows, cols))


def _fill_for(dtype) -> float | int:
    """Nodata for a warped read of a file that declares none: NaN, or the integer type's maximum."""
    dtype = np.dtype(dtype)
    return float("nan") if np.issubdtype(dtype, np.floating) else int(np.iinfo(dtype).max)


def _read_gdal(source: Source, window: Window) -> np.ndarray:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning as RioNotGeoreferenced
    from rasterio.windows import Window as RioWindow

    rows, cols = window
    with warnings.catch_warnings(), _gdal_env(source.path):
        warnings.simplefilter("ignore", RioNotGeoreferenced)
        with rasterio.open(gdal_path(source.path)) as ds:
            return ds.read(window=RioWindow.from_slices(rows, cols))


# --- HDF5 --------------------------------------------------------------------------


def _open_hdf5(spec: str, file_part: str, inner: str, band_axis: int) -> Source:
    import h5py

    try:
        f = h5py.File(file_part, "r")
    except OSError as err:
        raise UnsupportedSourceError(f"{file_part} could not be opened as HDF5: {err}") from err
    with f:
        if not inner:
            raise UnsupportedSourceError(
                f"{file_part} is HDF5: name the dataset as {file_part}:/path/to/dataset "
                f"(datasets found: {', '.join(_hdf5_datasets(f)) or 'none'})."
            )
        if inner not in f or not isinstance(f[inner], h5py.Dataset):
            raise SourceNotFoundError(
                f"{file_part} has no dataset {inner} (datasets found: {', '.join(_hdf5_datasets(f)) or 'none'})."
            )
        dset = f[inner]
        shape, dtype, attrs = dset.shape, dset.dtype, dict(dset.attrs)
    return _array_source(spec, shape, dtype, attrs, band_axis, {"kind": "hdf5", "file": file_part, "dataset": inner})


def _hdf5_datasets(f) -> list[str]:
    import h5py

    found: list[str] = []
    f.visititems(lambda name, obj: found.append("/" + name) if isinstance(obj, h5py.Dataset) else None)
    return found


def _read_hdf5(source: Source, window: Window) -> np.ndarray:
    import h5py

    with h5py.File(source.options["file"], "r") as f:
        dset = f[source.options["dataset"]]
        return _read_banded(dset, window, source.options["band_axis"])


# --- .npy and zarr arrays ------------------------------------------------------------


def _open_npy(spec: str, band_axis: int) -> Source:
    try:
        arr = np.load(spec, mmap_mode="r")
    except ValueError as err:
        raise UnsupportedSourceError(f"{spec} is not a readable .npy file: {err}") from err
    count, height, width, band_axis = _band_layout(spec, arr.shape, band_axis)
    _warn_no_georef(spec)
    return Source(
        path=spec,
        count=count,
        dtype=arr.dtype,
        grid=Grid(height, width),
        options={"kind": "npy", "band_axis": band_axis},
    )


def _read_npy(source: Source, window: Window) -> np.ndarray:
    arr = np.load(source.path, mmap_mode="r")
    return _read_banded(arr, window, source.options["band_axis"])


def _open_zarr(spec: str, file_part: str, inner: str, band_axis: int) -> Source:
    import zarr

    if not inner:
        from rastercore.grid import grid_of
        from rastercore.store import open_stack

        stack = open_stack(file_part)
        return Source(
            path=spec,
            count=stack.sizes["band"],
            dtype=stack.dtype,
            grid=grid_of(stack),
            nodata=stack.rio.nodata,
            band_names=tuple(str(b) for b in stack["band"].values),
            options={"kind": "zarr", "file": file_part, "array": "data", "band_axis": 0},
        )
    try:
        arr = zarr.open_array(store=file_part, path=inner.strip("/"), mode="r")
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise SourceNotFoundError(f"{file_part} has no zarr array {inner}: {err}") from err
    options = {"kind": "zarr", "file": file_part, "array": inner.strip("/")}
    return _array_source(spec, arr.shape, arr.dtype, dict(arr.attrs), band_axis, options)


def _read_zarr(source: Source, window: Window) -> np.ndarray:
    import zarr

    arr = zarr.open_array(store=source.options["file"], path=source.options["array"], mode="r")
    return _read_banded(arr, window, source.options["band_axis"])


# --- shared helpers ------------------------------------------------------------------


def _array_source(spec: str, shape, dtype, attrs: dict, band_axis: int, options: dict) -> Source:
    """A Source for an HDF5 dataset or zarr array: layout from its shape, georeferencing from its attributes."""
    count, height, width, band_axis = _band_layout(spec, shape, band_axis)
    grid = Grid(height, width, *_georef_from_attrs(attrs))
    if not grid.is_georeferenced:
        _warn_no_georef(spec)
    return Source(path=spec, count=count, dtype=np.dtype(dtype), grid=grid,
                  nodata=_scalar_attr(attrs, "nodata", "_FillValue"), options={**options, "band_axis": band_axis})


def _band_layout(spec: str, shape: tuple[int, ...], band_axis: int) -> tuple[int, int, int, int]:
    """Return ``(count, height, width, band_axis)`` of a 2-D or 3-D array."""
    if len(shape) == 2:
        return 1, shape[0], shape[1], 0
    if len(shape) == 3:
        axis = band_axis % 3
        if axis == 1:
            raise UnsupportedSourceError(f"{spec}: the band axis must be first or last, not the middle one.")
        rows, cols = [n for i, n in enumerate(shape) if i != axis]
        return shape[axis], rows, cols, axis
    raise UnsupportedSourceError(
        f"{spec} has {len(shape)} dimensions {shape}; give a 2-D (y, x) or 3-D (band, y, x) array."
    )


def _read_banded(arr, window: Window, band_axis: int) -> np.ndarray:
    rows, cols = window
    if arr.ndim == 2:
        return np.asarray(arr[rows, cols])[np.newaxis]
    if band_axis == 0:
        return np.asarray(arr[:, rows, cols])
    return np.moveaxis(np.asarray(arr[rows, cols, :]), -1, 0)


def _georef_from_attrs(attrs: dict) -> tuple[Affine, CRS | None]:
    """Read an optional GDAL-order ``transform``/``GeoTransform`` and ``crs`` attribute."""
    transform = Affine.identity()
    for key in ("transform", "GeoTransform", "geotransform"):
        if key in attrs:
            values = attrs[key]
            values = [float(v) for v in (values.split() if isinstance(values, str) else values)]
            transform = Affine.from_gdal(*values[:6])
            break
    crs = None
    for key in ("crs", "crs_wkt", "spatial_ref"):
        if key in attrs:
            value = attrs[key]
            crs = CRS.from_user_input(value.decode() if isinstance(value, bytes) else value)
            break
    return transform, crs


def _scalar_attr(attrs: dict, *keys: str):
    for key in keys:
        if key in attrs:
            value = np.asarray(attrs[key]).ravel()
            return value[0].item() if value.size else None
    return None


_READERS = {"gdal": _read_gdal, "gdal_warped": _read_gdal_warped, "hdf5": _read_hdf5, "npy": _read_npy,
            "zarr": _read_zarr}
