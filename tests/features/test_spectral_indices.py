"""Named spectral indices: each equals its textbook formula, bands found by common name or given in the spec."""

import numpy as np
import pytest
import xarray as xr

from rastercore.errors import FeatureSpecError
from rastercore.features import compute_features

BANDS = ["coastal", "blue", "green", "red", "nir", "swir16", "swir22"]


@pytest.fixture(scope="module")
def stack():
    values = np.random.default_rng(0).uniform(0.01, 0.6, (len(BANDS), 30, 40)).astype(np.float32)
    return xr.DataArray(values, dims=("band", "y", "x"), coords={"band": BANDS}).chunk({"y": 16, "x": 16})


def _b(stack, name):
    return stack.sel(band=name).values.astype(np.float64)


@pytest.mark.parametrize("name, expected", [
    ("ndvi", lambda s: (_b(s, "nir") - _b(s, "red")) / (_b(s, "nir") + _b(s, "red"))),
    ("ndwi", lambda s: (_b(s, "green") - _b(s, "nir")) / (_b(s, "green") + _b(s, "nir"))),
    ("nbr", lambda s: (_b(s, "nir") - _b(s, "swir22")) / (_b(s, "nir") + _b(s, "swir22"))),
    ("ndbi", lambda s: (_b(s, "swir16") - _b(s, "nir")) / (_b(s, "swir16") + _b(s, "nir"))),
    ("savi", lambda s: 1.5 * (_b(s, "nir") - _b(s, "red")) / (_b(s, "nir") + _b(s, "red") + 0.5)),
    ("evi", lambda s: 2.5 * (_b(s, "nir") - _b(s, "red"))
     / (_b(s, "nir") + 6 * _b(s, "red") - 7.5 * _b(s, "blue") + 1)),
])
def test_each_index_equals_its_formula(stack, name, expected):
    got = compute_features(stack, [{"name": name}]).values[0]
    np.testing.assert_allclose(got, expected(stack), rtol=1e-6)


def test_bands_named_otherwise_are_given_in_the_spec_and_integers_scaled(stack):
    sentinel = (stack * 10000).astype(np.uint16).assign_coords(band=[f"B{i:02d}" for i in range(1, 8)])
    spec = [{"name": "ndvi", "nir": "B05", "red": "B04", "scale": 10000}]
    got = compute_features(sentinel, spec)
    assert list(got.feature.values) == ["ndvi(nir=B05,red=B04,scale=10000)"]
    nir, red = sentinel.sel(band="B05").values / 1e4, sentinel.sel(band="B04").values / 1e4
    np.testing.assert_allclose(got.values[0], (nir - red) / (nir + red), rtol=1e-6)


def test_a_missing_band_is_refused_with_the_way_to_name_it(stack):
    sar = stack.isel(band=[0, 1]).assign_coords(band=["HH", "HV"])
    with pytest.raises(FeatureSpecError, match=r"'ndvi' uses band\(s\) \['nir', 'red'\].*HH.*"
                                               r"\{name: ndvi, nir: <band>, red: <band>\}"):
        compute_features(sar, [{"name": "ndvi"}])


def test_a_zero_denominator_is_nan():
    zero = xr.DataArray(np.zeros((2, 4, 4), np.float32), dims=("band", "y", "x"), coords={"band": ["nir", "red"]})
    assert np.isnan(compute_features(zero, [{"name": "ndvi"}]).values).all()
