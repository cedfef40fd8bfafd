"""Saving and loading models: a skops file plus a JSON manifest, never a pickle.

The file is a skops archive (a zip holding ``schema.json`` and arrays,
written by :func:`skops.io.dumps`) with one more member,
``rastercore_manifest.json``: the rastercore model format version, the
caller's metadata (feature spec, normalisation statistics, band and class
names, training extent...) and the versions of Python, numpy,
scikit-learn, skops and rastercore it was saved under.  Loading never runs
code from the file: skops rebuilds objects from the schema, and only types
on rastercore's explicit allow-list (its own estimators, the scikit-learn
internals they hold, and LightGBM's and XGBoost's estimators and boosters,
on top of the types skops trusts by default) are accepted; anything else is
refused by name before a single object is built.  ``skops.io.load(path, trusted=...)`` also reads the file,
without rastercore.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import sys
import uuid
import warnings
import zipfile
import zlib
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from rastercore.errors import (
    ModelFileError,
    ModelFormatVersionError,
    ModelMetadataError,
    ModelVersionWarning,
    SourceNotFoundError,
    StoreExistsError,
    UntrustedModelTypeError,
)
from rastercore.store import check_output

__all__ = ["save_model", "load_model", "read_manifest", "trusted_types", "MODEL_FORMAT_VERSION",
           "MANIFEST_NAME"]

#: Version of the file layout; bumped when a change would mislead an older reader.
MODEL_FORMAT_VERSION = 1
#: Name of the manifest inside the archive.
MANIFEST_NAME = "rastercore_manifest.json"
_FORMAT_NAME = "rastercore-model"

#: Types in a model file that rastercore trusts beyond skops's defaults (which cover
#: numpy arrays, builtins and every public scikit-learn estimator): rastercore's own
#: estimators, the scikit-learn internals they (or wrapped estimators) hold, and the
#: cross-validation splitters a ``cv`` parameter may hold.
_TRUSTED_SKLEARN_INTERNALS = (
    "sklearn.model_selection._split.KFold",
    "sklearn.model_selection._split.StratifiedKFold",
    "sklearn.model_selection._split.GroupKFold",
    "sklearn.model_selection._split.StratifiedGroupKFold",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
)
#: LightGBM's and XGBoost's scikit-learn estimators (the ``lightgbm`` and ``xgboost``
#: families) and their boosters: skops rebuilds a booster from its own model text
#: (LightGBM) or serialised bytes (XGBoost), and runs no code from the file.
_TRUSTED_BOOSTING = (
    "collections.OrderedDict",  # the default factory of LightGBM's best_score (a defaultdict)
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "lightgbm.sklearn.LGBMRegressor",
    "xgboost.core.Booster",
    "xgboost.sklearn.XGBClassifier",
    "xgboost.sklearn.XGBRegressor",
)


def trusted_types() -> list[str]:
    """The types :func:`load_model` accepts beyond skops's defaults, by fully qualified name."""
    from . import (CascadeSVC, HurdleModel, KernelSGD, KernelSGDRegressor, PriorCorrected, SampledSVC,
                   ShardedForestClassifier, ShardedForestRegressor, ThresholdedMultiLabel)

    own = [CascadeSVC, HurdleModel, KernelSGD, KernelSGDRegressor, PriorCorrected, SampledSVC,
           ShardedForestClassifier, ShardedForestRegressor, ThresholdedMultiLabel]
    return sorted({f"{cls.__module__}.{cls.__qualname__}" for cls in own}
                  | set(_TRUSTED_SKLEARN_INTERNALS) | set(_TRUSTED_BOOSTING))


def _skops_io():
    """:mod:`skops.io`, imported without scikit-learn's estimator crawl importing every installed array library.

    skops lists the estimators it trusts by default when it is imported,
    from :func:`sklearn.utils.all_estimators`, whose package walk imports
    every package under ``sklearn`` before it skips the test and vendored
    ones -- ``sklearn.externals.array_api_compat.torch`` among them, and so
    torch.  That took 4-6 s of every command that reads or writes a model.
    The same list is made by :func:`_public_estimators`, which skips those
    packages before importing them; the crawl is restored once skops holds
    its list.
    """
    if "skops.io" not in sys.modules:
        import sklearn.utils

        crawl = sklearn.utils.all_estimators
        sklearn.utils.all_estimators = _public_estimators
        try:
            import skops.io  # noqa: F401
        finally:
            sklearn.utils.all_estimators = crawl
    return sys.modules["skops.io"]


def _public_estimators(type_filter=None):
    """:func:`sklearn.utils.all_estimators` (``type_filter=None`` only), without importing the packages it skips."""
    import importlib
    import inspect
    import pkgutil

    import sklearn
    from sklearn.base import BaseEstimator
    from sklearn.utils import discovery

    skipped = getattr(discovery, "_MODULE_TO_IGNORE", None)
    if type_filter is not None or skipped is None:  # not the call skops makes, or another scikit-learn: the crawl
        return discovery.all_estimators(type_filter)
    found = set()
    packages = [sklearn]
    while packages:
        package = packages.pop()
        for info in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
            if "._" in info.name or any(part in skipped for part in info.name.split(".")):
                continue  # all_estimators skips these modules and everything under them
            with warnings.catch_warnings():  # as all_estimators: deprecated modules warn when imported
                warnings.simplefilter("ignore", FutureWarning)
                module = importlib.import_module(info.name)
            found.update((name, cls) for name, cls in inspect.getmembers(module, inspect.isclass)
                         if not name.startswith("_"))
            if info.ispkg:
                packages.append(module)
    return sorted({(name, cls) for name, cls in found if issubclass(cls, BaseEstimator) and name != "BaseEstimator"
                   and not getattr(cls, "__abstractmethods__", None)}, key=lambda pair: pair[0])


def _library_versions() -> dict[str, str]:
    import sklearn
    import skops

    import rastercore

    return {"python": platform.python_version(), "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "skops": skops.__version__,
            "rastercore": rastercore.__version__}


def _jsonable(value, where: str):
    """``value`` as plain JSON types (numpy scalars and arrays converted), else a clear error."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # strict JSON, as rastercore's other JSON files: NaN and +/-inf become null
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist(), where)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ModelMetadataError(
                    f"metadata field {where or '(top level)'} has the key {key!r} "
                    f"({type(key).__name__}); JSON keys must be strings -- convert it with str()."
                )
            out[key] = _jsonable(item, f"{where}.{key}" if where else key)
        return out
    if isinstance(value, (list, tuple)):
        return [_jsonable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise ModelMetadataError(
        f"metadata field {where or '(top level)'!r} holds a {type(value).__module__}."
        f"{type(value).__qualname__}, which JSON cannot store -- convert it to numbers, strings, "
        f"lists or dicts (e.g. a Normalizer's to_dict())."
    )


def save_model(model, path, *, metadata: dict | None = None, overwrite: bool = False) -> Path:
    """Save a (fitted) estimator and its metadata to one file that loads without running code.

    Parameters
    ----------
    model : estimator
        Any estimator of :mod:`rastercore.models` or scikit-learn (and
        compositions of them).
    path : str or path-like
        The file to write (``.skops`` is a good suffix); parent folders are created.
    metadata : dict, optional
        JSON-able facts to keep with the model: feature spec, normalisation
        statistics, band names, class names, training extent...  numpy
        scalars and arrays are converted to plain numbers and lists, tuples
        to lists, paths to strings, and NaN / infinity to ``null`` (the
        manifest is strict JSON).
    overwrite : bool, default False
        Replace an existing file; otherwise an existing ``path`` is refused.

    Returns
    -------
    pathlib.Path
        The written file.

    Notes
    -----
    The file is written as ``<path>.<random>.partial`` beside ``path`` and
    renamed when complete, so an interrupted save never leaves a file that
    looks whole.
    """
    sio = _skops_io()

    path = Path(path)
    if path.is_dir():
        raise StoreExistsError(f"{path} is a folder; give a file name for the model, e.g. {path / 'model.skops'}.")
    check_output(path, overwrite=overwrite)
    manifest = {
        "format": _FORMAT_NAME,
        "format_version": MODEL_FORMAT_VERSION,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model_type": f"{type(model).__module__}.{type(model).__qualname__}",
        "metadata": _jsonable(dict(metadata or {}), ""),
        "versions": _library_versions(),
    }
    payload = sio.dumps(model, compression=zipfile.ZIP_DEFLATED)
    refused = sorted(set(sio.get_untrusted_types(data=payload)) - set(trusted_types()))
    if refused:
        warnings.warn(
            f"the model saved to {path} holds types outside rastercore's allow-list: {refused}; "
            f"load_model will refuse them unless they are passed as trusted=[...].",
            UserWarning, stacklevel=2,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    # not tempfile.mkstemp: its files are private (0600); this one gets the usual permissions
    tmp = str(path.parent / f"{path.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        with open(tmp, "xb") as fh:
            fh.write(payload)
        with zipfile.ZipFile(tmp, "a", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST_NAME, json.dumps(manifest, indent=2, allow_nan=False))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        _publish(tmp, path, overwrite=overwrite)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _publish(tmp: str, path: Path, *, overwrite: bool) -> None:
    """Rename the finished temporary file to ``path`` (refusing to replace one unless ``overwrite``)."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic, and fails if path appeared meanwhile
    except FileExistsError:
        raise StoreExistsError(
            f"{path} already exists; pass overwrite=True to replace it or choose another name."
        ) from None
    except OSError:  # no hard links on this file system
        if path.exists():
            raise StoreExistsError(f"{path} already exists; pass overwrite=True to replace it.") from None
        os.replace(tmp, path)


def _what_is(head: bytes) -> str:
    if head[:1] == b"\x80" or head[:2] in (b"(d", b"(l", b"cc"):
        return "a Python pickle, which rastercore never loads because unpickling can run code"
    if head[:2] == b"PK":
        return "a damaged zip archive (corrupt or truncated)"
    if head[:6] == b"\x93NUMPY":
        return "a NumPy .npy file"
    if not head:
        return "an empty file"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "binary data of an unknown kind"


def _head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(16)


def _open_archive(path: Path, *, whole: bool) -> tuple[bytes | None, dict]:
    """The checked manifest, and with ``whole`` the file's bytes; a clear error for anything else.

    The model is later rebuilt from exactly the bytes checked here.  Without
    ``whole`` only the zip directory and the manifest are read.
    """
    if not path.exists():
        raise SourceNotFoundError(f"model file {path} does not exist; check the path.")
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, not a model file; give the file written by save_model.")
    data = path.read_bytes() if whole else None
    resave = "rastercore loads only files written by rastercore.models.save_model"
    try:
        with zipfile.ZipFile(io.BytesIO(data) if whole else path) as archive:
            if MANIFEST_NAME not in archive.namelist():
                raise ModelFileError(
                    f"{path} is a zip archive without a rastercore manifest ({MANIFEST_NAME}), e.g. "
                    f"a plain skops file; {resave} -- load the estimator and save it with save_model."
                )
            manifest = json.loads(archive.read(MANIFEST_NAME))
    except (zipfile.BadZipFile, zlib.error, EOFError, UnicodeDecodeError, json.JSONDecodeError) as err:
        what = _what_is(_head(path)) if isinstance(err, zipfile.BadZipFile) and "CRC" not in str(err) \
            else "a damaged rastercore model file (corrupt or truncated)"
        raise ModelFileError(f"{path} is not a readable model file: it is {what} ({err}); {resave}.") from err
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT_NAME:
        raise ModelFileError(f"{path} has no valid rastercore manifest; {resave}.")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"{path}: the manifest's format_version is {version!r}, not an integer; {resave}.")
    if version > MODEL_FORMAT_VERSION:
        saved_by = manifest.get("versions", {}).get("rastercore", "?")
        raise ModelFormatVersionError(
            f"{path} was written in rastercore model format {version} (by rastercore {saved_by}), "
            f"newer than format {MODEL_FORMAT_VERSION}, the newest this rastercore reads; upgrade "
            f"rastercore to load it."
        )
    return data, manifest


def read_manifest(path) -> dict:
    """The manifest of a model file (format, metadata, library versions) without loading the model.

    Besides what :func:`save_model` stored, ``file_sha256`` is the hash of
    the file's bytes: a stable identity of the model file.  Raises the same
    errors as :func:`load_model` for missing, foreign, corrupt or too-new
    files.
    """
    import hashlib

    path = Path(path)
    manifest = _open_archive(path, whole=False)[1]
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {**manifest, "file_sha256": digest.hexdigest()}


def _warn_versions(path: Path, saved: dict) -> None:
    here = _library_versions()
    diffs = [f"{name} {saved[name]} (file) vs {here[name]} (here)"
             for name in here if name in saved and str(saved[name]) != here[name]]
    if diffs:
        warnings.warn(
            f"model file {path} was saved under other library versions: {'; '.join(diffs)}. "
            f"Predictions may differ slightly; re-save or re-train under the current versions "
            f"if in doubt.",
            ModelVersionWarning, stacklevel=3,
        )


def load_model(path, *, trusted=(), return_manifest: bool = False):
    """Load a model written by :func:`save_model`, without running code from the file.

    Parameters
    ----------
    path : str or path-like
        The model file.
    trusted : sequence of str, optional
        More fully qualified type names to accept, beyond
        :func:`trusted_types` -- only types you have reviewed (e.g. your own
        estimator class).
    return_manifest : bool, default False
        Also return the manifest (with the metadata given to ``save_model``),
        as :func:`read_manifest` gives it: ``file_sha256`` is the hash of the
        bytes the model was loaded from (the file is read once).

    Returns
    -------
    model, or (model, manifest)

    Raises
    ------
    SourceNotFoundError
        ``path`` does not exist.
    ModelFileError
        ``path`` is not a rastercore model file (a pickle, a text file, a plain
        skops file), or it is corrupt or truncated.
    UntrustedModelTypeError
        The file holds a type outside the allow-list; nothing is built.
    ModelFormatVersionError
        The file was written by a newer rastercore model format.

    Warns
    -----
    ModelVersionWarning
        The file was saved under other versions of Python, numpy,
        scikit-learn, skops or rastercore; each differing version is named.
    """
    sio = _skops_io()

    path = Path(path)
    data, manifest = _open_archive(path, whole=True)
    try:
        found = sio.get_untrusted_types(data=data)
    except Exception as err:  # skops validates the schema here: any failure means a damaged file
        raise ModelFileError(
            f"{path} is a damaged rastercore model file: its skops schema cannot be read ({err}); "
            f"save the model again."
        ) from err
    allowed = set(trusted_types()) | set(trusted)
    refused = sorted(set(found) - allowed)
    if refused:
        raise UntrustedModelTypeError(
            f"{path} holds types outside rastercore's allow-list: {', '.join(refused)}; it was not "
            f"loaded. Only if you know where the file comes from and have reviewed these types, "
            f"pass load_model(..., trusted=[...]) naming them."
        )
    _warn_versions(path, manifest.get("versions", {}))
    try:
        model = sio.loads(data, trusted=list(found))
    except Exception as err:
        raise ModelFileError(
            f"{path} could not be rebuilt from its skops schema ({type(err).__name__}: {err}); the "
            f"file is damaged or was written by an incompatible library version -- save the "
            f"model again."
        ) from err
    if not return_manifest:
        return model
    import hashlib

    return model, {**manifest, "file_sha256": hashlib.sha256(data).hexdigest()}
