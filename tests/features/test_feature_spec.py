"""Feature spec: validation, errors, names, halo and round trips."""

from __future__ import annotations

import json

import pytest
import yaml

from rastercore.errors import FeatureSpecError
from rastercore.features import Feature, FeatureSpec, available_features

BANDS = ["HH", "HV"]


def test_error_is_a_value_error():
    assert issubclass(FeatureSpecError, ValueError)


def test_unknown_name_lists_valid_names():
    with pytest.raises(FeatureSpecError, match="unknown feature 'gausian'") as info:
        FeatureSpec([{"name": "gausian", "sigma": 1}])
    for name in ("gaussian", "box_mean", "multiscale_basic", "ratio"):
        assert name in str(info.value)


@pytest.mark.parametrize("entry,pattern", [
    ({"name": "gaussian", "sigma": 1, "sgima": 2}, "no parameter.*'sgima'.*sigma"),
    ({"name": "gaussian"}, "needs parameter 'sigma'"),
    ({"name": "gaussian", "sigma": -1}, "must be > 0"),
    ({"name": "gaussian", "sigma": "2"}, "finite number"),
    ({"name": "gaussian", "sigma": float("nan")}, "finite number"),
    ({"name": "box_mean", "size": 4}, "must be odd"),
    ({"name": "box_mean", "size": 2.5}, "whole number"),
    ({"name": "box_mean", "size": True}, "finite number"),
    ({"name": "window", "r": -1}, "must be >= 0"),
    ({"name": "multiscale_basic", "edges": 1}, "true or false"),
    ({"name": "multiscale_basic", "intensity": False, "edges": False, "texture": False},
     "at least one"),
    ({"name": "glcm", "vmin": 1, "vmax": 1}, "vmax > vmin"),
    ({"name": "glcm", "vmin": 0, "vmax": 1, "size": 3, "distance": 3}, "distance < size"),
    ({"name": "ratio", "a": "HH"}, "needs parameter 'b'"),
    ({"name": "ratio", "a": "HH", "b": "HV", "bands": ["HH"]}, "not 'bands'"),
    ({"name": "gaussian", "sigma": 1, "bands": []}, "non-empty"),
    ({"sigma": 1}, "'name' key"),
])
def test_bad_entries_raise_clear_errors(entry, pattern):
    with pytest.raises(FeatureSpecError, match=pattern):
        FeatureSpec([entry])


def test_spec_shape_errors():
    with pytest.raises(FeatureSpecError, match="empty"):
        FeatureSpec([])
    with pytest.raises(FeatureSpecError, match="list of features"):
        FeatureSpec("gaussian")
    with pytest.raises(FeatureSpecError, match="version"):
        FeatureSpec.from_dict({"version": 99, "features": []})


def test_unknown_band_lists_available_bands():
    spec = FeatureSpec([{"name": "gaussian", "sigma": 1, "bands": ["VV"]}])
    with pytest.raises(FeatureSpecError, match=r"\['VV'\].*available bands: \['HH', 'HV'\]"):
        spec.feature_names(BANDS)
    with pytest.raises(FeatureSpecError, match="available bands"):
        FeatureSpec([{"name": "ratio", "a": "HH", "b": "VH"}]).feature_names(BANDS)


def test_duplicate_outputs_are_rejected():
    spec = FeatureSpec([{"name": "gaussian", "sigma": 1}, {"name": "gaussian", "sigma": 1.0,
                                                             "bands": ["HV"]}])
    with pytest.raises(FeatureSpecError, match="duplicate"):
        spec.feature_names(BANDS)


def test_feature_names_are_readable_and_ordered():
    spec = FeatureSpec([
        {"name": "gaussian", "sigma": 2, "bands": ["HH"]},
        {"name": "ratio", "a": "HH", "b": "HV"},
        Feature("hessian_eig", sigma=1.5),
        {"name": "window", "r": 1, "bands": "HV"},
    ])
    names = spec.feature_names(BANDS)
    assert names[:6] == [
        "gaussian(sigma=2)[HH]", "ratio(a=HH,b=HV)",
        "hessian_eig(sigma=1.5)[HH]/l1", "hessian_eig(sigma=1.5)[HH]/l2",
        "hessian_eig(sigma=1.5)[HV]/l1", "hessian_eig(sigma=1.5)[HV]/l2",
    ]
    assert names[6] == "window(r=1)[HV]/dy=-1,dx=-1" and len(names) == 6 + 9
    assert spec.input_bands(["HV", "HH", "VV"]) == ["HV", "HH", "VV"]  # hessian: all bands
    narrow = FeatureSpec([{"name": "box_mean", "bands": ["HV"]}, {"name": "ratio", "a": "HH", "b": "HV"}])
    assert narrow.input_bands(["HV", "VV", "HH"]) == ["HV", "HH"]


def test_multiscale_names_follow_skimage_order():
    spec = FeatureSpec([{"name": "multiscale_basic", "sigma_max": 2, "edges": False}])
    names = spec.feature_names(["HH"])
    head = "multiscale_basic(sigma_min=0.5,sigma_max=2,num_sigma=3)[HH]/"
    sigmas = ["0.5", "1", "2"]
    assert names == [head + f"{k}(sigma={s})" for s in sigmas
                     for k in ("intensity", "texture1", "texture2")]


@pytest.mark.parametrize("entry,halo", [
    ({"name": "gaussian", "sigma": 2}, 8),          # int(4 * 2 + 0.5), as scipy
    ({"name": "gaussian", "sigma": 0.6}, 2),
    ({"name": "box_max", "size": 7}, 3),
    ({"name": "window", "r": 2}, 2),
    ({"name": "dog", "sigma": 1}, 6),              # sigma2 = 1.6 -> int(6.9)
    ({"name": "structure_eig", "sigma": 1, "rho": 2}, 4 + 8),
    ({"name": "glcm", "vmin": 0, "vmax": 1, "size": 9}, 4),
    ({"name": "ratio", "a": "HH", "b": "HV"}, 0),
    ({"name": "multiscale_basic"}, 64 + 2),
    ({"name": "multiscale_basic", "texture": False, "sigma_max": 4}, 16 + 1),
])
def test_halo_per_feature(entry, halo):
    assert FeatureSpec([entry]).halo == halo


def test_spec_halo_is_the_maximum():
    spec = FeatureSpec([{"name": "box_mean", "size": 3}, {"name": "gaussian", "sigma": 1}])
    assert spec.halo == 4


def test_round_trip_through_json_and_yaml():
    spec = FeatureSpec([
        {"name": "gaussian", "sigma": 2, "bands": ["HH"]},
        {"name": "structure_eig", "sigma": 1},
        {"name": "glcm", "vmin": -25, "vmax": 5, "levels": 8},
        {"name": "normalised_difference", "a": "HH", "b": "HV"},
        {"name": "multiscale_basic", "sigma_max": 4, "texture": False},
    ])
    for dumped in (json.loads(json.dumps(spec.to_dict())), yaml.safe_load(yaml.safe_dump(spec.to_dict()))):
        again = FeatureSpec.from_dict(dumped)
        assert again == spec
        assert again.feature_names(BANDS) == spec.feature_names(BANDS)
    assert FeatureSpec.coerce(spec.to_list()) == spec
    assert FeatureSpec.coerce(spec.to_list()[0]) == FeatureSpec(spec.to_list()[:1])
    assert spec.to_list()[1]["rho"] == 0.5  # derived defaults are stored resolved


def test_python_objects_equal_dicts():
    assert Feature("gaussian", sigma=2, bands=["HH"]) == Feature.from_dict(
        {"name": "gaussian", "sigma": 2.0, "bands": ["HH"]})
    assert "sigma=2" in repr(Feature("gaussian", sigma=2))


def test_available_features_describes_every_kind():
    info = available_features()
    assert info["gaussian"]["params"] == {"sigma": "required"}
    assert info["ratio"]["per_band"] is False
    assert all(v["doc"] for v in info.values())
