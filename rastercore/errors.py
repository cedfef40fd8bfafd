"""Errors raised by rastercore.

Every error derives from :class:`RasterCoreError` and also from the builtin
exception a caller would naturally catch (``ValueError``,
``FileNotFoundError``, ...).  Messages name the file, band or field at fault
and say what to do next; the CLI prints them as one line, without traceback.
"""

from __future__ import annotations

__all__ = [
    "RasterCoreError",
    "portable",
    "run_portably",
    "SourceNotFoundError",
    "UnsupportedSourceError",
    "SourceReadError",
    "MisalignedInputsError",
    "BandNameError",
    "StoreExistsError",
    "CodecError",
    "IncompleteStoreError",
    "NotAStackError",
    "FeatureSpecError",
    "SchedulerUnreachableError",
    "PipelineError",
    "TargetError",
    "SamplingError",
    "NotGeoreferencedWarning",
    "RasterCoreDeprecationWarning",
]


class RasterCoreError(Exception):
    """Base class of every error rastercore raises on purpose."""


def portable(error: RasterCoreError) -> RasterCoreError:
    """A copy of ``error`` that travels from a dask worker to the client intact.

    Its class and message, with the text of the error that caused it folded
    into the message, and no chained exceptions: ``distributed`` pickles the
    whole chain, and a library's error in it (rasterio's, for one) may not
    unpickle on the client, which then gets a bare ``Exception`` instead.
    """
    message = str(error)
    cause = error.__cause__ or error.__context__
    if cause is not None and str(cause) and str(cause) not in message:
        message = f"{message} ({type(cause).__name__}: {cause})"
    return type(error)(message)


def run_portably(func, *args, **kwargs):
    """``func(*args, **kwargs)``, raising any :class:`RasterCoreError` as its :func:`portable` copy (task bodies)."""
    try:
        return func(*args, **kwargs)
    except RasterCoreError as err:
        if err.__cause__ is None and err.__context__ is None:
            raise
        failure = portable(err)
    raise failure  # outside the except block, so nothing is chained to it


class SourceNotFoundError(RasterCoreError, FileNotFoundError):
    """An input file, or a dataset inside it, does not exist."""


class UnsupportedSourceError(RasterCoreError, ValueError):
    """An input exists but is not a raster rastercore can read."""


class SourceReadError(RasterCoreError, OSError):
    """Reading pixels from an input failed (truncated or corrupt file)."""


class MisalignedInputsError(RasterCoreError, ValueError):
    """Inputs meant to form one stack differ in shape, transform or CRS."""


class BandNameError(RasterCoreError, ValueError):
    """Band names are missing, duplicated, or do not match the band count."""


class StoreExistsError(RasterCoreError, FileExistsError):
    """An output already exists and overwriting was not asked for."""


class CodecError(RasterCoreError, ValueError):
    """An unknown compression codec for stored tiles."""


class IncompleteStoreError(RasterCoreError, ValueError):
    """A store was left by an interrupted run and must not be used as is."""


class NotAStackError(RasterCoreError, ValueError):
    """A path is not a rastercore stack (or any raster rastercore opens)."""


class FeatureSpecError(RasterCoreError, ValueError):
    """A feature spec names an unknown feature or has bad parameters."""


class TargetError(RasterCoreError, ValueError):
    """A target (raster, thresholds, polygons) cannot be used as given."""


class SamplingError(RasterCoreError, ValueError):
    """A sample cannot be drawn as asked (too few pixels of a class, one class only...)."""


class PipelineError(RasterCoreError, ValueError):
    """A pipeline file is missing, not YAML, or has a wrong field."""


class SchedulerUnreachableError(RasterCoreError, ConnectionError):
    """The dask scheduler address given does not answer."""


class NotGeoreferencedWarning(UserWarning):
    """An input has no CRS or transform; a plain pixel grid is used."""


class RasterCoreDeprecationWarning(FutureWarning):
    """An old spelling of an option, keyword or field that still works for one release."""


# --- models (training and persistence) -------------------------------------

__all__ += [
    "TrainingDataError",
    "ModelFileError",
    "UntrustedModelTypeError",
    "ModelFormatVersionError",
    "ModelMetadataError",
    "ModelVersionWarning",
]


class TrainingDataError(RasterCoreError, ValueError):
    """Training data a model cannot learn from (e.g. only one class in the sample)."""


class ModelFileError(RasterCoreError, ValueError):
    """A model file is corrupt, truncated, or not a rastercore model file at all."""


class UntrustedModelTypeError(ModelFileError, TypeError):
    """A model file holds a type outside rastercore's allow-list; it is not loaded."""


class ModelFormatVersionError(ModelFileError):
    """A model file was written by a newer rastercore model format than this one reads."""


class ModelMetadataError(RasterCoreError, TypeError):
    """Metadata given to ``save_model`` cannot be stored as JSON."""


class ModelVersionWarning(UserWarning):
    """A model file was saved under other versions of Python or its libraries."""


# --- outputs, arguments and the cluster ------------------------------------

__all__ += ["ParameterError", "OutputLockedError", "StoreChangedError", "OutputNotWritableError",
            "ClusterLostError", "WorkerError"]


class ParameterError(RasterCoreError, ValueError):
    """An argument or option value is out of range or of the wrong kind (named in the message)."""


class OutputLockedError(RasterCoreError, FileExistsError):
    """Another process is writing the same output (its lock file names the host and process)."""


class StoreChangedError(RasterCoreError, OSError):
    """A store was replaced or removed while it was being read; nothing mixed old and new tiles."""


class OutputNotWritableError(RasterCoreError, PermissionError):
    """An output cannot be written: its directory is missing, read-only, or the disk is full."""


class ClusterLostError(RasterCoreError, ConnectionError):
    """The dask scheduler or its workers went away during the work."""


class WorkerError(RasterCoreError, RuntimeError):
    """An error raised inside a task that could not travel back as itself (its text is kept)."""
