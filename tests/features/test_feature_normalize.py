"""Normalisation kept with the feature spec: round trip, tiling, block == lazy."""

from __future__ import annotations

import json

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
import yaml
from numpy.testing import assert_array_equal

from rastercore.errors import BandNameError, FeatureSpecError
from rastercore.features import FeatureSpec, compute_features, features_for_block
from rastercore.preprocess import NORMALIZE_METHODS, Normalizer, compute_band_stats

NY, NX = 30, 26
BANDS = ["HH", "HV", "VV"]
FILL = -9999.0
ENTRIES = [{"name": "gaussian", "sigma": 1.2, "bands": ["HV", "HH"]},
           {"name": "box_std", "size": 3, "bands": ["HV"]},
           {"name": "ratio", "a": "HH", "b": "HV"}]


@pytest.fixture(scope="module")
def raw():
    rng = np.random.default_rng(3)
    v = rng.gamma(2.0, 0.3, (3, NY, NX)).astype(np.float32)
    v[1] = 0.5 * v[0] + v[1] + 1.0
    v[0, 4, 5] = np.nan
    v[1, 20:22, 0:3] = FILL
    return v


def stack_of(values, chunks):
    return xr.DataArray(da.from_array(values, chunks=chunks), dims=("band", "y", "x"),
                        coords={"band": BANDS, "y": np.arange(NY) + 0.5, "x": np.arange(NX) + 0.5},
                        attrs={"_FillValue": FILL})


@pytest.fixture(autouse=True, scope="module")
def synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


@pytest.fixture(scope="module", params=NORMALIZE_METHODS)
def fitted(request, raw):
    return FeatureSpec(ENTRIES).fit_normalizer(stack_of(raw, (3, NY, NX)), request.param)


def test_fit_covers_the_bands_the_features_use(fitted):
    assert fitted.normalizer.band_names == ["HH", "HV"]  # VV is not used
    assert fitted.is_fitted and fitted.normalize_options["method"] == fitted.normalizer.method
    assert fitted.input_bands(BANDS) == ["HH", "HV"]


def test_round_trip_keeps_the_statistics(fitted, raw):
    for dumped in (json.loads(json.dumps(fitted.to_dict())),
                   yaml.safe_load(yaml.safe_dump(fitted.to_dict()))):
        again = FeatureSpec.from_dict(dumped)
        assert again == fitted
        assert again.to_dict() == fitted.to_dict()
        assert again.normalizer.to_dict() == fitted.normalizer.to_dict()
    assert fitted != FeatureSpec(ENTRIES)
    stack = stack_of(raw, (3, 11, 9))
    assert_array_equal(compute_features(stack, FeatureSpec.from_dict(fitted.to_dict())).values,
                       compute_features(stack, fitted).values)


def test_chunked_equals_whole_and_equals_normalising_first(fitted, raw):
    whole = compute_features(stack_of(raw, (3, NY, NX)), fitted).values
    for chunks in [(1, 7, 9), (2, 13, 26), (3, 5, 4)]:
        assert_array_equal(compute_features(stack_of(raw, chunks), fitted).values, whole)
    # the same as normalising the stack lazily (Normalizer.apply), then plain features
    norm = fitted.normalizer
    plain = stack_of(raw, (3, 11, 9)).sel(band=norm.band_names)
    expected = compute_features(norm.apply(plain), FeatureSpec(ENTRIES)).values
    assert_array_equal(whole, expected)
    assert not np.array_equal(whole, compute_features(stack_of(raw, (3, NY, NX)), ENTRIES).values,
                              equal_nan=True)


@pytest.mark.parametrize("window", [(slice(0, 17), slice(5, 26)), (slice(8, 30), slice(0, 14))])
def test_features_for_block_on_tile_plus_halo_equals_compute_features(fitted, raw, window):
    lazy = compute_features(stack_of(raw, (3, 8, 8)), fitted).values
    halo = fitted.halo
    rows, cols = window
    r0, r1 = max(rows.start - halo, 0), min(rows.stop + halo, NY)
    c0, c1 = max(cols.start - halo, 0), min(cols.stop + halo, NX)
    block = raw[:, r0:r1, c0:c1]  # raw values, nodata by value, every band of the stack
    got = features_for_block(block, fitted, BANDS, nodata=FILL)
    inner = got[:, rows.start - r0:rows.stop - r0, cols.start - c0:cols.stop - c0]
    assert_array_equal(inner, lazy[:, rows, cols])


def test_request_in_a_spec_file_is_fitted_on_demand(raw):
    spec = FeatureSpec.from_dict({"normalize": {"method": "percentile", "low": 1, "high": 99},
                                  "features": ENTRIES})
    assert not spec.is_fitted and spec.to_dict()["normalize"]["method"] == "percentile"
    stack = stack_of(raw, (3, NY, NX))
    with pytest.raises(FeatureSpecError, match="fit_normalizer"):
        compute_features(stack, spec)
    with pytest.raises(FeatureSpecError, match="no statistics"):
        features_for_block(raw, spec, BANDS)
    fitted = spec.fit_normalizer(stack)
    assert (fitted.normalizer.method, fitted.normalizer.low, fitted.normalizer.high) == ("percentile", 1, 99)
    assert FeatureSpec(ENTRIES, normalize="minmax").fit_normalizer(stack, "zca").normalizer.method == "zca"


def test_user_built_normalizer_over_more_bands(raw):
    stack = stack_of(raw, (3, 10, 10))
    stats = compute_band_stats(stack)
    zscore = FeatureSpec(ENTRIES, normalize=Normalizer(stats, "zscore"))
    assert zscore.input_bands(BANDS) == ["HH", "HV"]
    zca = FeatureSpec(ENTRIES, normalize=Normalizer(stats, "zca"))
    assert zca.input_bands(BANDS) == BANDS  # whitening mixes all three
    whole = compute_features(stack, zca).values
    assert_array_equal(features_for_block(raw, zca, BANDS, nodata=FILL), whole)
    with pytest.raises(FeatureSpecError, match="lacks"):
        zca.input_bands(["HH", "HV"])


def test_normalisation_errors(raw):
    stack = stack_of(raw, (3, NY, NX))
    hh_only = FeatureSpec([{"name": "gaussian", "sigma": 1, "bands": ["HH"]}]).fit_normalizer(stack)
    wider = FeatureSpec(ENTRIES, normalize=hh_only.normalizer)
    with pytest.raises(FeatureSpecError, match=r"no statistics for band\(s\) \['HV'\]"):
        compute_features(stack, wider)
    for bad, pattern in [("l2", "unknown normalisation"), ({"method": "zscore", "lo": 1}, "no option"),
                         ({"method": "percentile", "low": 50, "high": 10}, "low < high"),
                         ({"method": "zscore", "eps": "x"}, "must be a number"), (3, "method name")]:
        with pytest.raises(FeatureSpecError, match=pattern):
            FeatureSpec(ENTRIES, normalize=bad)
    with pytest.raises(FeatureSpecError, match="no key"):
        FeatureSpec.from_dict({"features": ENTRIES, "normalise": "zscore"})
    with pytest.raises(BandNameError, match="differ"):
        hh_only.normalizer.apply_block(raw[:2], ["HV", "VV"])


def test_spec_file_yaml_and_json(tmp_path, raw):
    text = "normalize: {method: zca, eps: 1e-5}\nfeatures:\n  - {name: gaussian, sigma: 1.2}\n"
    (tmp_path / "spec.yaml").write_text(text)
    spec = FeatureSpec.from_file(tmp_path / "spec.yaml")
    assert spec.normalize_options == {"method": "zca", "low": 2.0, "high": 98.0, "eps": 1e-5}
    fitted = spec.fit_normalizer(stack_of(raw, (3, NY, NX)))
    (tmp_path / "fitted.json").write_text(json.dumps(fitted.to_dict()))
    assert FeatureSpec.from_file(tmp_path / "fitted.json") == fitted
    (tmp_path / "bad.yaml").write_text("features: [{name: gaussian, sigma: 1\n")
    with pytest.raises(FeatureSpecError, match="bad.yaml is not valid YAML at line 2"):
        FeatureSpec.from_file(tmp_path / "bad.yaml")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FeatureSpec.from_file(tmp_path / "missing.yaml")


@pytest.mark.parametrize("method", ["zscore", "minmax", "percentile", "zca"])
def test_a_constant_band_is_named_when_normalisation_would_empty_it(method):
    import xarray as xr

    from rastercore.features import FeatureSpec, compute_features
    from rastercore.preprocess import NormalizationWarning

    values = np.stack([np.random.default_rng(0).random((40, 50)), np.full((40, 50), 3.0)]).astype(np.float32)
    stack = xr.DataArray(values, dims=("band", "y", "x"), coords={"band": ["a", "flat"]}).chunk({"y": 20})
    spec = FeatureSpec([{"name": "cv", "size": 3}], normalize=method)
    with pytest.warns(NormalizationWarning, match="band flat has the single value 3 over the stack.*NaN everywhere"):
        fitted = spec.fit_normalizer(stack)
    with pytest.warns(NormalizationWarning):
        assert fitted.normalizer.warn_constant_bands() == ["flat"]
    feats = compute_features(stack, fitted).values
    assert np.isfinite(feats[0]).any() and (method == "zca" or not np.isfinite(feats[1]).any())
