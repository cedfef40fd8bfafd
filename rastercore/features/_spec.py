"""Declarative feature specs: :class:`Feature` and :class:`FeatureSpec`.

A spec is an ordered list of features.  Its plain form is a list of dicts
(YAML/JSON friendly), e.g.::

    [{"name": "gaussian", "sigma": 2, "bands": ["HH"]},
     {"name": "ratio", "a": "HH", "b": "HV"}]

Output order: spec order, then the feature's bands (in the order given, or
stack order when ``bands`` is omitted), then the feature's own outputs.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from ..errors import FeatureSpecError
from . import _catalogue, _preset  # noqa: F401  (register the feature kinds)
from ._registry import get_kind

__all__ = ["Feature", "FeatureSpec", "SPEC_VERSION"]

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
        else:
            wanted = [p.name for p in self.kind.params if p.kind == "band"]
            wanted = [self.params[k] for k in wanted]
        missing = [b for b in wanted if b not in band_names]
        if missing:
            raise FeatureSpecError(
                f"feature {self.name!r} uses band(s) {missing} that the stack does not have; "
                f"available bands: {list(band_names)}")
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


class FeatureSpec:
    """An ordered, validated list of :class:`Feature` entries.

    Parameters
    ----------
    features : iterable of Feature or dict
        The entries; dicts use the plain form (see module docs).
    """

    def __init__(self, features: Iterable[Feature | Mapping[str, Any]]):
        if isinstance(features, (str, bytes, Mapping)):
            raise FeatureSpecError("a feature spec is a list of features, e.g. "
                                   "[{'name': 'gaussian', 'sigma': 2}]")
        self.features = tuple(Feature.from_dict(f) for f in features)
        if not self.features:
            raise FeatureSpecError("the feature spec is empty; give at least one feature")

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

    def input_bands(self, band_names: Sequence[str]) -> list[str]:
        """Bands the spec reads, in stack order."""
        used = {b for f in self.features for b in f.input_bands(band_names)}
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

    def to_list(self) -> list[dict]:
        """Plain list-of-dicts form."""
        return [f.to_dict() for f in self.features]

    def to_dict(self) -> dict:
        """``{"version": 1, "features": [...]}``, accepted by :meth:`from_dict`."""
        return {"version": SPEC_VERSION, "features": self.to_list()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> "FeatureSpec":
        """Inverse of :meth:`to_dict`; a bare list of feature dicts is accepted too."""
        if isinstance(data, Mapping):
            version = data.get("version", SPEC_VERSION)
            if version != SPEC_VERSION:
                raise FeatureSpecError(f"feature spec version {version!r} is not supported "
                                       f"(this rastercore reads version {SPEC_VERSION})")
            if "features" not in data:
                raise FeatureSpecError("a feature spec mapping needs a 'features' list")
            data = data["features"]
        return cls(data)

    def __iter__(self):
        return iter(self.features)

    def __len__(self) -> int:
        return len(self.features)

    def __eq__(self, other) -> bool:
        return isinstance(other, FeatureSpec) and self.features == other.features

    def __repr__(self) -> str:
        return f"FeatureSpec({list(self.features)!r})"
