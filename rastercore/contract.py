"""What a model expects of the stack it predicts, checked before any tile is computed.

A model file records the bands it was trained on (in order), the names of
its features and the value ranges of the training pixels' bands.  Before
prediction :func:`match_model_inputs`:

* finds each training band in the stack **by name** (through an explicit
  ``band_map`` of stack name to model name when the stack calls them
  otherwise) and refuses a stack that lacks any, naming them;
* computes the features in the model's training order whatever the
  stack's band order (with a notice when the orders differ);
* refuses a model file whose feature spec does not give the features the
  estimator was fitted on (names, or ``n_features_in_``);
* warns when the stack's values are far from the training pixels'
  (8-bit counts against calibrated reflectance, decibels against linear
  power), from a few small windows of the stack.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import dask
import numpy as np
import xarray as xr

from rastercore.errors import BandNameError, ModelFileError, ParameterError
from rastercore.features import FeatureSpec
from rastercore.stack import as_float, band_names

__all__ = ["ModelInputs", "match_model_inputs", "parse_band_map", "InputRangeWarning"]

SPREAD_RATIO = 20.0
"""A stack whose 1-99 % value spread differs from the training pixels' by more than this factor is flagged."""


class InputRangeWarning(UserWarning):
    """The stack's values are far from those the model was trained on."""


@dataclass(frozen=True)
class ModelInputs:
    """How the stack's bands feed the model.

    Attributes
    ----------
    bands : list of str
        The model's band names, in training order (what the features are
        computed from).
    stack_bands : list of str
        The stack band read for each of them.
    """

    bands: list[str]
    stack_bands: list[str]


def parse_band_map(text: str | Mapping[str, str] | None) -> dict[str, str]:
    """``"VV=HH,VH=HV"`` (stack name = model name) as a dict; a mapping is returned as a dict.

    Raises
    ------
    ParameterError
        An entry is not ``STACK=MODEL`` or names a band twice.
    """
    if text is None or isinstance(text, Mapping):
        return dict(text or {})
    mapping: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        stack_name, sep, model_name = (part.strip() for part in entry.partition("="))
        if not sep or not stack_name or not model_name:
            raise ParameterError(f"--band-map entry {entry!r} is not STACK=MODEL, e.g. --band-map VV=HH,VH=HV")
        if stack_name in mapping:
            raise ParameterError(f"--band-map names stack band {stack_name!r} twice")
        mapping[stack_name] = model_name
    return mapping


def match_model_inputs(model, spec: FeatureSpec, stack: xr.DataArray, *, bands: Sequence[str] | None = None,
                       feature_names: Sequence[str] | None = None, band_ranges: Mapping | None = None,
                       band_map: Mapping[str, str] | str | None = None, what: str = "the model") -> ModelInputs:
    """Check that ``stack`` can feed ``model``; say which stack band stands for each model band.

    Parameters
    ----------
    model : fitted estimator
    spec : FeatureSpec
        The model's feature spec.
    stack : xarray.DataArray
        ``(band, y, x)``.
    bands : sequence of str, optional
        The model's training bands in order (a model file's ``bands``);
        default the bands ``spec`` uses, in stack order.
    feature_names : sequence of str, optional
        The model's feature names (a model file's ``feature_names``).
    band_ranges : mapping, optional
        ``{band: [p1, p50, p99]}`` of the training pixels (a model file's ``band_ranges``).
    band_map : mapping or str, optional
        Stack band name -> model band name, for stacks that name the bands
        otherwise (``{"VV": "HH"}`` or ``"VV=HH"``).
    what : str
        How messages name the model (e.g. its file).

    Raises
    ------
    BandNameError
        The stack lacks a band the model needs, or ``band_map`` names a band
        the stack does not have.
    ModelFileError
        The spec's features are not the ones the estimator was fitted on.
    """
    names = band_names(stack)
    mapping = parse_band_map(band_map)
    unknown = [b for b in mapping if b not in names]
    if unknown:
        raise BandNameError(f"--band-map names {', '.join(unknown)}, which the stack does not have "
                            f"(its bands: {', '.join(names)}).")
    model_names = [mapping.get(b, b) for b in names]  # what the model calls each stack band
    expected = list(bands) if bands is not None else spec.input_bands(model_names)
    missing = [b for b in expected if b not in model_names]
    if missing:
        raise BandNameError(
            f"{what} was trained on bands {', '.join(expected)}, but the stack has {', '.join(names)}: "
            f"{', '.join(missing)} missing. If the stack holds the same measurements under other names, map "
            f"them with --band-map STACK=MODEL (e.g. --band-map {_example_map(names, missing)}).")
    stack_bands = [names[model_names.index(b)] for b in expected]
    _check_features(model, spec, expected, feature_names, what)
    if [b for b in names if b in stack_bands] != stack_bands:
        warnings.warn(f"the stack's bands are in the order {', '.join(names)}; {what}'s features are computed in "
                      f"its training order {', '.join(stack_bands)}.", UserWarning, stacklevel=3)
    if band_ranges:
        _check_ranges(stack, stack_bands, expected, band_ranges, what)
    return ModelInputs(list(expected), stack_bands)


def _example_map(names: list[str], missing: list[str]) -> str:
    pairs = [f"{s}={m}" for s, m in zip([n for n in names if n not in missing], missing)]
    return ",".join(pairs) or "VV=HH"


def _check_features(model, spec: FeatureSpec, bands: list[str], feature_names, what: str) -> None:
    computed = spec.feature_names(bands)
    if feature_names is not None and list(feature_names) != computed:
        raise ModelFileError(f"{what} is inconsistent: its feature spec gives {len(computed)} features "
                             f"({', '.join(computed[:4])}...) but it was fitted on {len(feature_names)} "
                             f"({', '.join(list(feature_names)[:4])}...); retrain it or save it again.")
    expected = getattr(model, "n_features_in_", None)
    if isinstance(expected, (int, np.integer)) and expected != len(computed):
        raise ModelFileError(f"{what} is inconsistent: its feature spec gives {len(computed)} features, but the "
                             f"estimator expects {int(expected)}; retrain it with this spec or save it again.")


def _check_ranges(stack: xr.DataArray, stack_bands: list[str], bands: list[str], band_ranges: Mapping,
                  what: str) -> None:
    sample = _value_sample(stack, stack_bands)
    for stack_band, band, values in zip(stack_bands, bands, sample):
        trained = band_ranges.get(band)
        if trained is None or values.size == 0:
            continue
        low, mid, high = np.percentile(values, [1, 50, 99])
        t_low, _, t_high = (float(v) for v in trained)
        width, t_width = high - low, t_high - t_low
        outside = not (t_low - t_width <= mid <= t_high + t_width)
        spread = t_width > 0 and width > 0 and max(width / t_width, t_width / width) > SPREAD_RATIO
        if outside or spread:
            warnings.warn(
                f"band {stack_band} of the stack has values {low:.4g} to {high:.4g} (median {mid:.4g}), far from "
                f"the training pixels' {t_low:.4g} to {t_high:.4g} for {what}'s band {band}: check the units "
                "(8-bit counts vs reflectance, decibels vs linear power); the predictions may be meaningless.",
                InputRangeWarning, stacklevel=4)


def _value_sample(stack: xr.DataArray, stack_bands: list[str], windows: int = 3, side: int = 64) -> list[np.ndarray]:
    """Finite values of each band from ``windows`` x ``windows`` small windows spread over the scene."""
    data = as_float(stack)
    names = band_names(stack)
    idx = [names.index(b) for b in stack_bands]
    height, width = stack.shape[1:]
    rows = np.linspace(0, max(height - side, 0), windows).astype(int)
    cols = np.linspace(0, max(width - side, 0), windows).astype(int)
    parts = dask.compute(*[data[idx, r:r + side, c:c + side] for r in rows for c in cols])
    stacked = np.concatenate([p.reshape(len(idx), -1) for p in parts], axis=1)
    return [band[np.isfinite(band)] for band in stacked]
