"""Declarations of feature kinds and validation of their parameters.

A :class:`FeatureKind` says which parameters a feature takes, how deep a
halo it needs, how its outputs are labelled and how it is computed on one
block.  :data:`REGISTRY` maps spec names to kinds; ``_catalogue`` fills it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import FeatureSpecError

__all__ = ["REQUIRED", "Param", "FeatureKind", "REGISTRY", "register", "get_kind"]


def _band_list(where: str, value: Any) -> list[str]:
    bands = [value] if isinstance(value, str) else value
    if not isinstance(bands, (list, tuple)) or not bands or not all(isinstance(b, str) and b for b in bands):
        raise FeatureSpecError(f"{where} must be a non-empty list of band names, got {value!r}")
    if len(set(bands)) != len(bands):
        raise FeatureSpecError(f"{where} lists a band twice: {list(bands)}")
    return list(bands)


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Param:
    """One parameter of a feature kind.

    Parameters
    ----------
    name : str
        Key in the spec.
    kind : {"float", "int", "bool", "band", "str", "bands", "floats"}
        Expected type; ints are accepted for floats.  ``"band"`` is one band
        name, ``"bands"`` a list of band names (one name is read as a list
        of one), ``"str"`` any non-empty text (e.g. a file path) and
        ``"floats"`` a number or a non-empty list of numbers.
    default : Any
        Value when omitted; :data:`REQUIRED` if it must be given.  ``None``
        means "derived from other parameters" (see ``FeatureKind.resolve``).
    minimum : float, optional
        Smallest allowed value (inclusive) for numbers.
    strict : bool
        If true, ``minimum`` itself is not allowed.
    odd : bool
        Integers must be odd (window sizes).
    in_name : bool
        Whether the parameter is shown in output feature names.
    doc : str
        One-line description used in error messages.
    """

    name: str
    kind: str
    default: Any = REQUIRED
    minimum: float | None = None
    strict: bool = False
    odd: bool = False
    in_name: bool = True
    doc: str = ""

    def check(self, feature: str, value: Any) -> Any:
        """Return ``value`` coerced to this parameter's type, or raise."""
        where = f"feature {feature!r}, parameter {self.name!r}"
        if value is None and self.default is None:
            return None
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise FeatureSpecError(f"{where} must be true or false, got {value!r}")
            return value
        if self.kind == "band":
            if not isinstance(value, str) or not value:
                raise FeatureSpecError(f"{where} must be a band name, got {value!r}")
            return value
        if self.kind == "str":
            if not isinstance(value, str) or not value:
                raise FeatureSpecError(f"{where} must be a non-empty text, got {value!r}")
            return value
        if self.kind == "bands":
            return _band_list(where, value)
        if self.kind == "floats" and isinstance(value, (list, tuple)):
            if not value:
                raise FeatureSpecError(f"{where} must be a number or a non-empty list of numbers, got {value!r}")
            return [self._number(where, v) for v in value]
        return self._number(where, value)

    def _number(self, where: str, value: Any) -> int | float:
        if not _is_number(value) or not math.isfinite(value):
            raise FeatureSpecError(f"{where} must be a finite number, got {value!r}")
        if self.kind == "int":
            if int(value) != value:
                raise FeatureSpecError(f"{where} must be a whole number, got {value!r}")
            value = int(value)
        else:
            value = float(value)
        if self.minimum is not None:
            bad = value <= self.minimum if self.strict else value < self.minimum
            if bad:
                op = ">" if self.strict else ">="
                raise FeatureSpecError(f"{where} must be {op} {self.minimum:g}, got {value!r}")
        if self.odd and value % 2 != 1:
            raise FeatureSpecError(f"{where} must be odd (window centred on the pixel), got {value!r}")
        return value


@dataclass(frozen=True)
class FeatureKind:
    """A feature type: parameters, halo depth, output labels and computation.

    ``depth(params)`` is the halo (pixels) a block needs so its interior
    matches the whole-image result.  ``labels(params)`` names the outputs per
    band (``[""]`` for one output).  ``compute(ctx, params, band)`` returns a
    sequence of 2-D float32 arrays, one per label; for kinds that are not
    per-band, ``band`` is ``None``.  ``resolve(params)`` fills derived
    defaults and checks cross-parameter rules.  ``compute_into(ctx, params,
    band, out)``, when given, writes the planes straight into ``out``
    (float32, one plane per label) instead of returning them.
    ``check_bands(params, bands)``, when given, checks the bands a feature
    reads once the stack's band names are known (e.g. their number against
    a network's input channels).

    A kind that is not per-band may take a parameter ``bands`` of kind
    ``"bands"``: the spec's ``bands`` list then goes there, ``None`` meaning
    every band of the stack, in stack order.
    """

    name: str
    params: tuple[Param, ...]
    depth: Callable[[dict], int]
    labels: Callable[[dict], list[str]]
    compute: Callable[..., Any]
    per_band: bool = True
    resolve: Callable[[dict], dict] = field(default=lambda p: p)
    doc: str = ""
    compute_into: Callable[..., None] | None = None
    check_bands: Callable[[dict, list[str]], None] | None = None

    @property
    def takes_band_list(self) -> bool:
        """Whether the spec's ``bands`` list is a parameter of this kind (read together, not per band)."""
        return any(p.name == "bands" and p.kind == "bands" for p in self.params)

    def param_names(self) -> list[str]:
        """Names of the parameters this kind accepts."""
        return [p.name for p in self.params]

    def validate(self, given: dict) -> dict:
        """Check ``given`` parameters and return them complete and typed."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise FeatureSpecError(
                f"feature {self.name!r} has no parameter(s) {', '.join(map(repr, unknown))}; "
                f"valid parameters: {self._describe()}"
            )
        out = {}
        for p in self.params:
            if p.name in given:
                out[p.name] = p.check(self.name, given[p.name])
            elif p.default is REQUIRED:
                raise FeatureSpecError(
                    f"feature {self.name!r} needs parameter {p.name!r} ({p.doc}); "
                    f"valid parameters: {self._describe()}"
                )
            else:
                out[p.name] = p.default
        return self.resolve(out)

    def _describe(self) -> str:
        parts = []
        for p in self.params:
            default = "required" if p.default is REQUIRED else f"default {p.default!r}"
            parts.append(f"{p.name} ({default})")
        if self.per_band:
            parts.append("bands (default: all bands)")
        return ", ".join(parts) if parts else "none"


REGISTRY: dict[str, FeatureKind] = {}


def register(kind: FeatureKind) -> FeatureKind:
    """Add ``kind`` to :data:`REGISTRY` (names must be unique)."""
    if kind.name in REGISTRY:
        raise ValueError(f"feature kind {kind.name!r} registered twice")
    REGISTRY[kind.name] = kind
    return kind


def get_kind(name: Any) -> FeatureKind:
    """Look a feature kind up by name, with an error listing valid names."""
    if not isinstance(name, str) or name not in REGISTRY:
        raise FeatureSpecError(
            f"unknown feature {name!r}; valid feature names: {', '.join(sorted(REGISTRY))}"
        )
    return REGISTRY[name]
