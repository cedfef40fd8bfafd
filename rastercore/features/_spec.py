"""Declarative feature specs: :class:`Feature` and :class:`FeatureSpec`.

A spec is an ordered list of features, optionally with a normalisation of
the input bands.  Its plain form is a list of dicts (YAML/JSON friendly),
e.g.::

    [{"name": "gaussian", "sigma": 2, "bands": ["HH"]},
     {"name": "ratio", "a": "HH", "b": "HV"}]

or, with normalisation, a mapping::

    {"version": 1,
     "normalize": "zscore",            # asked for, statistics not yet fitted
     "features": [...]}

Once fitted (:meth:`FeatureSpec.fit_normalizer`), ``normalize`` holds
:meth:`rastercore.preprocess.Normalizer.to_dict` -- method and global
statistics -- so the spec stored with a model applies the very same
transform at prediction.

Output order: spec order, then the feature's bands (in the order given, or
stack order when ``bands`` is omitted), then the feature's own outputs.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Mapping, Sequence

import yaml

from ..errors import FeatureSpecError
from ..preprocess import NORMALIZE_METHODS, Normalizer
from . import _catalogue, _onnx, _preset  # noqa: F401  (register the feature kinds)
from ._registry import get_kind

__all__ = ["Feature", "FeatureSpec", "SPEC_VERSION", "files_relative_to"]

SPEC_VERSION = 1


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class Feature:
    """One entry of a feature spec.

    Parameters
    ----------
    name : str
        Feature kind, e.g. ``"gaussian"``; see :func:`available_features`.
    bands : sequence of str, optional
        Bands to compute it on (per-band kinds only).  Default: every band.
    **params
        Parameters of the kind, e.g. ``sigma=2``.

    Raises
    ------
    FeatureSpecError
        Unknown name, unknown or missing parameter, or a bad value.
    """

    def __init__(self, name: str, *, bands: Sequence[str] | None = None, **params: Any):
        self.kind = get_kind(name)
        self.name = name
        if self.kind.takes_band_list and bands is not None:
            params["bands"], bands = bands, None
        self.params = self.kind.validate(dict(params))
        self.bands = self._check_bands(bands)

    def _check_bands(self, bands):
        if bands is None:
            return None
        if not self.kind.per_band:
            raise FeatureSpecError(
                f"feature {self.name!r} takes band names as parameters "
                f"({', '.join(self.kind.param_names())}), not 'bands'")
        if isinstance(bands, str):
            bands = [bands]
        bands = tuple(bands)
        if not bands or not all(isinstance(b, str) and b for b in bands):
            raise FeatureSpecError(f"feature {self.name!r}: 'bands' must be a non-empty list of band names")
        if len(set(bands)) != len(bands):
            raise FeatureSpecError(f"feature {self.name!r}: 'bands' lists a band twice: {list(bands)}")
        return bands

    @property
    def depth(self) -> int:
        """Halo in pixels this feature needs around a tile."""
        return int(self.kind.depth(self.params))

    def input_bands(self, band_names: Sequence[str]) -> list[str]:
        """Bands this feature reads, checked against ``band_names``."""
        if self.kind.per_band:
            wanted = list(self.bands) if self.bands is not None else list(band_names)
        elif self.kind.takes_band_list:
            wanted = list(self.params["bands"] or band_names)
        else:
            wanted = [p.name for p in self.kind.params if p.kind == "band"]
            wanted = [self.params[k] for k in wanted]
        missing = [b for b in wanted if b not in band_names]
        if missing:
            hint = ""
            named = [p.name for p in self.kind.params if p.kind == "band" and self.params[p.name] in missing]
            if named:
                example = ", ".join(f"{k}: <band>" for k in named)
                hint = (f"; name the stack's bands by their common names (--bands) or say which band is which: "
                        f"{{name: {self.name}, {example}}}")
            raise FeatureSpecError(
                f"feature {self.name!r} uses band(s) {missing} that the stack does not have; "
                f"available bands: {list(band_names)}{hint}")
        if self.kind.check_bands is not None:
            self.kind.check_bands(self.params, wanted)
        return wanted

    def _param_text(self) -> str:
        shown = [f"{p.name}={_fmt(self.params[p.name])}" for p in self.kind.params if p.in_name]
        return f"({','.join(shown)})" if shown else ""

    def output_names(self, band_names: Sequence[str]) -> list[str]:
        """Readable names of this feature's outputs, e.g. ``gaussian(sigma=2)[HH]``."""
        labels = self.kind.labels(self.params)
        head = self.name + self._param_text()
        if not self.kind.per_band:
            self.input_bands(band_names)
            return [head + (f"/{lab}" if lab else "") for lab in labels]
        return [f"{head}[{band}]" + (f"/{lab}" if lab else "")
                for band in self.input_bands(band_names) for lab in labels]

    def to_dict(self) -> dict:
        """Plain-dict form, accepted by :meth:`from_dict`."""
        out = {"name": self.name, **self.params}
        if self.bands is not None:
            out["bands"] = list(self.bands)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Feature":
        """Build from ``{"name": ..., <params>, "bands": [...]}``."""
        if isinstance(data, Feature):
            return data
        if not isinstance(data, Mapping) or "name" not in data:
            raise FeatureSpecError(
                f"each feature must be a mapping with a 'name' key, got {data!r}")
        params = dict(data)
        name = params.pop("name")
        bands = params.pop("bands", None)
        return cls(name, bands=bands, **params)

    def __eq__(self, other) -> bool:
        return isinstance(other, Feature) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "name")
        return f"Feature({self.name!r}{', ' if args else ''}{args})"


class _SpecLoader(yaml.SafeLoader):
    """YAML loader that also reads ``1e-6`` (no dot) as a float, as YAML 1.2 and JSON do."""


_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


_NORMALIZE_OPTIONS = ("method", "low", "high", "eps")


def _normalize_options(value: Any) -> dict:
    """Check a normalisation request (method name or options mapping, no statistics)."""
    if isinstance(value, str):
        value = {"method": value}
    if not isinstance(value, Mapping) or "method" not in value:
        raise FeatureSpecError(
            f"'normalize' must be a method name ({', '.join(NORMALIZE_METHODS)}) or a mapping with "
            f"'method' (and optionally low, high, eps, stats), got {value!r}")
    unknown = sorted(set(value) - set(_NORMALIZE_OPTIONS))
    if unknown:
        raise FeatureSpecError(f"'normalize' has no option(s) {', '.join(map(repr, unknown))}; "
                               f"valid: {', '.join(_NORMALIZE_OPTIONS)}, stats")
    defaults = {"low": 2.0, "high": 98.0, "eps": 1e-6}
    options = {**defaults, **value}
    for key in ("low", "high", "eps"):
        v = options[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise FeatureSpecError(f"'normalize' option {key!r} must be a number, got {v!r}")
        options[key] = float(v)
    # validate method and percentiles the way Normalizer does
    Normalizer.check_options(options["method"], low=options["low"], high=options["high"])
    return {k: options[k] for k in _NORMALIZE_OPTIONS}


def _coerce_normalizer(value: Any) -> tuple[Normalizer | None, dict | None]:
    """``(fitted normaliser or None, options or None)`` from what a user may pass."""
    if value is None:
        return None, None
    if isinstance(value, Normalizer):
        return value, value.options()
    if isinstance(value, Mapping) and "stats" in value:
        options = _normalize_options({k: v for k, v in value.items() if k != "stats"})
        try:
            normalizer = Normalizer.from_dict({**options, "stats": value["stats"]})
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, FeatureSpecError):
                raise
            raise FeatureSpecError(f"'normalize' holds unreadable statistics ({err!r}); "
                                   "refit them (FeatureSpec.fit_normalizer or rastercore features "
                                   "--normalize)") from None
        return normalizer, options
    return None, _normalize_options(value)


class FeatureSpec:
    """An ordered, validated list of :class:`Feature` entries, with optional normalisation.

    Parameters
    ----------
    features : iterable of Feature or dict
        The entries; dicts use the plain form (see module docs).
    normalize : Normalizer, str or dict, optional
        Normalisation of the input bands, applied before every feature (in
        :func:`compute_features` and :func:`features_for_block` alike).  A
        fitted :class:`rastercore.preprocess.Normalizer` (or its
        ``to_dict()``), or only a request -- a method name (``"zscore"``,
        ``"minmax"``, ``"percentile"``, ``"zca"``) or ``{"method": ...,
        "low": ..., "high": ..., "eps": ...}`` -- to be fitted on a stack
        with :meth:`fit_normalizer` before features are computed.

    Notes
    -----
    With normalisation, features see normalised band values (so e.g.
    ``glcm``'s ``vmin``/``vmax`` are in normalised units).
    """

    def __init__(self, features: Iterable[Feature | Mapping[str, Any]], *, normalize: Any = None):
        if isinstance(features, (str, bytes, Mapping)):
            raise FeatureSpecError("a feature spec is a list of features, e.g. "
                                   "[{'name': 'gaussian', 'sigma': 2}]")
        self.features = tuple(Feature.from_dict(f) for f in features)
        if not self.features:
            raise FeatureSpecError("the feature spec is empty; give at least one feature")
        self.normalizer, self.normalize_options = _coerce_normalizer(normalize)

    @classmethod
    def coerce(cls, spec: Any) -> "FeatureSpec":
        """Accept a FeatureSpec, a list of features/dicts, a ``to_dict`` mapping or one feature."""
        if isinstance(spec, FeatureSpec):
            return spec
        if isinstance(spec, Feature) or (isinstance(spec, Mapping) and "name" in spec):
            return cls([spec])
        if isinstance(spec, Mapping):
            return cls.from_dict(spec)
        return cls(spec)

    @property
    def halo(self) -> int:
        """Largest halo (pixels) any feature needs: the tile overlap depth."""
        return max(f.depth for f in self.features)

    @property
    def is_fitted(self) -> bool:
        """False when normalisation is asked for but its statistics are not fitted yet."""
        return self.normalize_options is None or self.normalizer is not None

    def feature_bands(self, band_names: Sequence[str]) -> list[str]:
        """Bands the features themselves use, in stack order."""
        used = {b for f in self.features for b in f.input_bands(band_names)}
        return [b for b in band_names if b in used]

    def input_bands(self, band_names: Sequence[str]) -> list[str]:
        """Bands the spec reads, in stack order.

        The bands the features use, plus -- for ZCA whitening, which mixes
        bands -- every band of the normaliser's statistics.
        """
        used = self.feature_bands(band_names)
        norm = self.normalizer
        if norm is None:
            return used
        stats_bands = list(norm.band_names)
        uncovered = [b for b in used if b not in stats_bands]
        absent = [b for b in stats_bands if b not in band_names] if norm.method == "zca" else []
        if uncovered or absent:
            problem = (f"the normalisation has no statistics for band(s) {uncovered}" if uncovered
                       else f"ZCA whitening mixes band(s) {stats_bands} but the stack lacks {absent}")
            raise FeatureSpecError(
                f"{problem}; the statistics cover {stats_bands}, the stack has {list(band_names)}. "
                "Refit them on this band set (FeatureSpec.fit_normalizer).")
        if norm.method == "zca":
            used = set(used) | set(stats_bands)
        return [b for b in band_names if b in used]

    def feature_names(self, band_names: Sequence[str]) -> list[str]:
        """Names of all outputs, in output order; raises on duplicates."""
        names = [n for f in self.features for n in f.output_names(list(band_names))]
        seen, dups = set(), []
        for n in names:
            (dups.append(n) if n in seen else seen.add(n))
        if dups:
            raise FeatureSpecError(f"the spec produces duplicate features {dups}; remove repeated entries")
        return names

    def with_normalizer(self, normalize: Any) -> "FeatureSpec":
        """A copy of this spec with ``normalize`` (a Normalizer, its dict, a request, or None)."""
        return FeatureSpec(self.features, normalize=normalize)

    def fit_normalizer(self, stack, method: str | None = None, *, low: float | None = None,
                       high: float | None = None, eps: float | None = None,
                       bins: int = 1024) -> "FeatureSpec":
        """A copy of this spec with normalisation statistics fitted on ``stack``.

        The statistics (:func:`rastercore.preprocess.compute_band_stats`,
        two out-of-core passes) cover exactly the bands the features use.

        Parameters
        ----------
        stack : xarray.DataArray
            ``(band, y, x)`` stack (the training scene).
        method : {"zscore", "minmax", "percentile", "zca"}, optional
            Default: the method this spec asks for, else ``"zscore"``.
        low, high : float, optional
            Percentiles of ``percentile`` (default: as asked, else 2 and 98).
        eps : float, optional
            ZCA regulariser (default: as asked, else 1e-6).
        bins : int, default 1024
            Histogram bins (percentile resolution).

        Returns
        -------
        FeatureSpec
        """
        from ..preprocess import compute_band_stats
        from ..stack import band_names as names_of

        asked = dict(self.normalize_options or {})
        given = {"method": method, "low": low, "high": high, "eps": eps}
        options = _normalize_options({"method": "zscore", **asked,
                                      **{k: v for k, v in given.items() if v is not None}})
        bands = self.feature_bands(names_of(stack))
        stats = compute_band_stats(stack.sel(band=bands), bins=bins)
        normalizer = Normalizer(stats, options["method"], low=options["low"], high=options["high"],
                                eps=options["eps"])
        normalizer.warn_constant_bands()
        return self.with_normalizer(normalizer)

    def to_list(self) -> list[dict]:
        """Plain list-of-dicts form of the features (without normalisation)."""
        return [f.to_dict() for f in self.features]

    def to_dict(self) -> dict:
        """``{"version": 1, "features": [...]}`` (plus ``"normalize"``), accepted by :meth:`from_dict`.

        JSON-serialisable; a fitted normaliser is stored with its statistics.
        """
        out = {"version": SPEC_VERSION, "features": self.to_list()}
        if self.normalizer is not None:
            out["normalize"] = self.normalizer.to_dict()
        elif self.normalize_options is not None:
            out["normalize"] = dict(self.normalize_options)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> "FeatureSpec":
        """Inverse of :meth:`to_dict`; a bare list of feature dicts is accepted too."""
        normalize = None
        if isinstance(data, Mapping):
            version = data.get("version", SPEC_VERSION)
            if version != SPEC_VERSION:
                raise FeatureSpecError(f"feature spec version {version!r} is not supported "
                                       f"(this rastercore reads version {SPEC_VERSION})")
            if "features" not in data:
                raise FeatureSpecError("a feature spec mapping needs a 'features' list")
            unknown = sorted(set(data) - {"version", "features", "normalize"})
            if unknown:
                raise FeatureSpecError(f"a feature spec has no key(s) {', '.join(map(repr, unknown))}; "
                                       "valid keys: version, features, normalize")
            normalize = data.get("normalize")
            data = data["features"]
        return cls(data, normalize=normalize)

    @classmethod
    def from_file(cls, path) -> "FeatureSpec":
        """Read a spec from a YAML or JSON file (a list of features or a :meth:`to_dict` mapping).

        Raises
        ------
        SourceNotFoundError
            The file does not exist.
        FeatureSpecError
            The file is not YAML/JSON or not a valid spec.
        """
        from pathlib import Path

        from ..errors import SourceNotFoundError

        path = Path(path)
        if not path.is_file():
            raise SourceNotFoundError(f"feature spec {path} does not exist; give a YAML or JSON file "
                                      "(see `rastercore features --list` for feature names).")
        try:
            text = path.read_text()
            try:
                data = json.loads(text)
            except ValueError:
                data = yaml.load(text, Loader=_SpecLoader)
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
            problem = getattr(err, "problem", None) or "not valid YAML"
            raise FeatureSpecError(f"feature spec {path} is not valid YAML{at}: {problem}") from None
        except UnicodeDecodeError:
            raise FeatureSpecError(f"feature spec {path} is not a text (YAML/JSON) file") from None
        if data is None:
            raise FeatureSpecError(f"feature spec {path} is empty; list at least one feature")
        try:
            return cls.coerce(files_relative_to(data, path.parent))
        except FeatureSpecError as err:
            raise FeatureSpecError(f"feature spec {path}: {err}") from None

    def __iter__(self):
        return iter(self.features)

    def __len__(self) -> int:
        return len(self.features)

    def __eq__(self, other) -> bool:
        return (isinstance(other, FeatureSpec) and self.features == other.features
                and self.to_dict().get("normalize") == other.to_dict().get("normalize"))

    def __repr__(self) -> str:
        norm = ""
        if self.normalize_options is not None:
            state = "fitted" if self.normalizer is not None else "not fitted"
            norm = f", normalize={self.normalize_options['method']!r} ({state})"
        return f"FeatureSpec({list(self.features)!r}{norm})"


def files_relative_to(data: Any, base) -> Any:
    """A copy of raw spec ``data`` whose relative file paths (an ``onnx`` feature's ``path``) are inside ``base``.

    A spec file's relative paths are relative to the file's directory (an
    inline spec's, to the working directory, as Python opens them).  Anything
    that is not a list of feature mappings is returned as it is, for
    :meth:`FeatureSpec.coerce` to refuse.
    """
    import copy
    from pathlib import Path

    from ..io.sources import is_remote

    data = copy.deepcopy(data)
    features = data.get("features") if isinstance(data, Mapping) else data
    for feature in features if isinstance(features, list) else ():
        path = feature.get("path") if isinstance(feature, dict) else None
        if isinstance(path, str) and path and not Path(path).is_absolute() and not is_remote(path):
            feature["path"] = str((Path(base) / path).absolute())
    return data
