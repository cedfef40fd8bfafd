"""Prediction checks what the model is fed: bands by name and order, feature count, value ranges."""

import warnings

import numpy as np
import pytest

from rastercore.contract import InputRangeWarning, parse_band_map
from rastercore.datasets import SYNTHETIC_THRESHOLD, synthetic_scene
from rastercore.errors import BandNameError, FeatureSpecError, ModelFileError, ParameterError
from rastercore.models import load_model, read_manifest, save_model
from rastercore.predict import predict_lazy
from rastercore.sampling import draw_sample
from rastercore.training import train_from_table

SPEC = [{"name": "box_mean", "size": 5}, {"name": "gaussian", "sigma": 1.0, "bands": ["HV"]},
        {"name": "ratio", "a": "HV", "b": "HH"}]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model file trained on bands HH, HV of a linear-power scene, and that scene."""
    ds = synthetic_scene((200, 230), seed=0, chunks=64)  # 39 % class 1
    sar = ds["sar"]
    table = draw_sample(sar, ds["target"], SPEC, n=300, thresholds=SYNTHETIC_THRESHOLD, seed=0)
    path = tmp_path_factory.mktemp("contract") / "model.skops"
    train_from_table(table, "forest", params={"n_estimators": 10}, path=path)
    return path, sar


def _renamed(sar, names, order=None):
    data = sar if order is None else sar.isel(band=order)
    return data.assign_coords(band=np.array(names, dtype=object))


def _quiet_predict(model, stack, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputRangeWarning)
        return predict_lazy(model, stack, **kwargs).values


def test_the_model_file_records_its_inputs(trained):
    path, _ = trained
    meta = read_manifest(path)["metadata"]
    assert meta["bands"] == ["HH", "HV"]
    assert meta["feature_names"][:2] == ["box_mean(size=5)[HH]", "box_mean(size=5)[HV]"]
    assert set(meta["band_ranges"]) == {"HH", "HV"} and all(len(v) == 3 for v in meta["band_ranges"].values())


def test_bands_in_another_order_are_matched_by_name(trained):
    path, sar = trained
    expected = _quiet_predict(path, sar)
    swapped = _renamed(sar, ["HV", "HH"], order=[1, 0])  # same data, stack order HV, HH
    with pytest.warns(UserWarning, match="order HV, HH.*training order HH, HV"):
        got = predict_lazy(path, swapped).values
    np.testing.assert_array_equal(got, expected)


def test_other_band_names_are_refused_unless_mapped(trained):
    path, sar = trained
    expected = _quiet_predict(path, sar)
    other = _renamed(sar, ["VV", "VH"])
    with pytest.raises(BandNameError, match=r"trained on bands HH, HV.*has VV, VH: HH, HV missing.*--band-map"):
        predict_lazy(path, other)
    np.testing.assert_array_equal(_quiet_predict(path, other, band_map="VV=HH,VH=HV"), expected)
    np.testing.assert_array_equal(_quiet_predict(path, other, band_map={"VV": "HH", "VH": "HV"}), expected)
    with pytest.raises(BandNameError, match="--band-map names XX, which the stack does not have"):
        predict_lazy(path, other, band_map="XX=HH")


def test_a_one_band_stack_is_refused(trained):
    path, sar = trained
    with pytest.raises(BandNameError, match="HV missing"):
        predict_lazy(path, sar.isel(band=[0]))


def test_a_model_file_whose_spec_disagrees_with_the_estimator_is_refused(trained, tmp_path):
    path, sar = trained
    model, manifest = load_model(path, return_manifest=True)
    meta = dict(manifest["metadata"], feature_spec=SPEC[:1], feature_names=None)
    broken = save_model(model, tmp_path / "broken.skops", metadata=meta)
    with pytest.raises(ModelFileError, match="gives 2 features, but the estimator expects 4"):
        predict_lazy(broken, sar)
    renamed = save_model(model, tmp_path / "renamed.skops",
                         metadata=dict(manifest["metadata"], feature_names=["a", "b", "c", "d"]))
    with pytest.raises(ModelFileError, match="fitted on 4"):
        predict_lazy(renamed, sar)


@pytest.mark.parametrize("convert", ["uint8 counts", "decibels"])
def test_values_far_from_the_training_pixels_are_flagged(trained, convert):
    path, sar = trained
    if convert == "uint8 counts":
        data = (np.clip(sar / float(sar.max()), 0, 1) * 255).astype(np.uint8)
    else:
        data = 10 * np.log10(sar)
    with pytest.warns(InputRangeWarning, match="far from the training pixels'.*check the units"):
        predict_lazy(path, data.assign_attrs(sar.attrs))


def test_band_map_text_is_parsed_or_refused():
    assert parse_band_map("VV=HH, VH=HV") == {"VV": "HH", "VH": "HV"}
    assert parse_band_map(None) == {}
    for bad in ("VV", "VV=", "VV=HH,VV=HV"):
        with pytest.raises(ParameterError, match="--band-map"):
            parse_band_map(bad)


def test_in_memory_models_are_checked_against_their_spec(trained):
    path, sar = trained
    model = load_model(path)
    with pytest.raises(ModelFileError, match="estimator expects 4"):
        predict_lazy(model, sar, SPEC[:1])
    with pytest.raises(FeatureSpecError, match=r"uses band\(s\) \['HV'\] that the stack does not have"):
        predict_lazy(model, sar.isel(band=[0]), SPEC)
