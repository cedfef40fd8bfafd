"""LightGBM and XGBoost (the `boost` extra): families of train_from_table, and train_distributed on a LocalCluster
checked against the same model fitted in memory on the same pixels."""

import dataclasses
import sys

import numpy as np
import pytest
import xarray as xr

from rastercore.datasets import SYNTHETIC_THRESHOLD
from rastercore.errors import ParameterError, TrainingDataError
from rastercore.features import FeatureSpec
from rastercore.sampling import TRAIN, VALIDATION, SpatialSplit, plan_pixels
from rastercore.training import build_model, plan_arrays, train_from_table

lightgbm = pytest.importorskip("lightgbm")
xgboost = pytest.importorskip("xgboost")

SPEC = [{"name": "box_mean", "size": 9}, {"name": "ratio", "a": "HV", "b": "HH"}]
SPLIT = SpatialSplit(block_size=64)
SMALL = {"lightgbm": {"n_estimators": 30, "num_leaves": 15}, "xgboost": {"n_estimators": 30, "max_depth": 4}}


@pytest.mark.parametrize("family", ["lightgbm", "xgboost"])
def test_boost_families_train_save_load_and_predict_compiled(sar_table, family, tmp_path):
    from rastercore.models import CompiledTrees, fast_predictor, load_model

    model, meta = train_from_table(sar_table, family, params=SMALL[family], path=tmp_path / "m.skops")
    assert type(model.model).__module__.startswith(family)  # inside the default prior correction
    loaded, manifest = load_model(tmp_path / "m.skops", return_manifest=True)  # on skops' allow-list
    X_val, y_val = sar_table.subset(VALIDATION)
    X_val = np.asarray(X_val)
    np.testing.assert_array_equal(loaded.predict(X_val), model.predict(X_val))
    fast = fast_predictor(loaded)
    assert isinstance(fast.inner, CompiledTrees)  # the compiled trees, under the prior correction
    np.testing.assert_array_equal(fast.predict(X_val), loaded.predict(X_val))
    saved = manifest["metadata"]
    assert saved["family"] == family and saved["validation"]["accuracy"] > 0.9


def test_xgboost_refuses_a_class_without_training_rows(sar_table):
    keep = (np.asarray(sar_table.split) != TRAIN) | (np.asarray(sar_table.y) == 0)  # no TRAIN row of class 1
    lacking = dataclasses.replace(sar_table, **{name: np.asarray(getattr(sar_table, name))[keep]
                                            for name in ("X", "y", "row", "col", "block", "split", "value")})
    with pytest.raises(TrainingDataError, match=r"xgboost.*'>= 0.6' \(code 1\) has none"):
        train_from_table(lacking, "xgboost")


def test_a_boost_family_without_its_package_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightgbm", None)  # import lightgbm now raises ImportError
    with pytest.raises(ParameterError, match=r"needs the optional LightGBM package: pip install 'rastercore\[boost\]'"):
        build_model("lightgbm")


# -- train_distributed on a LocalCluster -------------------------------------------------------------------

@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as c:
        yield c


def _pixels(sar, target, which, **plan):
    X, y, _ = plan_arrays(plan_pixels(sar, target, FeatureSpec.coerce(SPEC), split=SPLIT, seed=0, **plan), which)
    return np.asarray(X.compute(scheduler="sync")), np.asarray(y.compute(scheduler="sync"))


@pytest.mark.parametrize("family", ["lightgbm", "xgboost"])
def test_distributed_classifier_matches_the_in_memory_fit(sar_scene, client, family, tmp_path):
    from rastercore.boosting import train_distributed
    from rastercore.models import load_model

    sar, target = sar_scene
    model, meta = train_distributed(sar, target, family, spec=SPEC, split=SPLIT, thresholds=SYNTHETIC_THRESHOLD,
                                    params=SMALL[family], client=client, path=tmp_path / "m.skops")
    X_train, y_train = _pixels(sar, target, TRAIN, thresholds=SYNTHETIC_THRESHOLD)
    X_val, y_val = _pixels(sar, target, VALIDATION, thresholds=SYNTHETIC_THRESHOLD)
    assert meta["sample_size"]["train"] == len(y_train)  # every TRAIN pixel, each once
    assert meta["sample_size"]["train_per_class"] == {"< 0.6": int((y_train == 0).sum()),
                                                      ">= 0.6": int((y_train == 1).sum())}
    predicted = model.predict(X_val)
    # the scores computed tile by tile on the cluster are those of the whole validation set
    assert meta["validation"]["rows"] == len(y_val)
    assert meta["validation"]["accuracy"] == pytest.approx(float((predicted == y_val).mean()), abs=1e-12)
    reference = build_model(family, **SMALL[family]).fit(X_train, y_train)
    expected = reference.predict(X_val)
    # histogram bins are sketched per worker and merged, so the two fits differ a little, not in substance
    assert (predicted == expected).mean() > 0.99
    assert meta["validation"]["accuracy"] == pytest.approx(float((expected == y_val).mean()), abs=0.005)
    np.testing.assert_array_equal(load_model(tmp_path / "m.skops").predict(X_val), predicted)


def test_distributed_regressor_matches_the_in_memory_fit(sar_scene, client):
    from rastercore.boosting import train_distributed

    sar, target = sar_scene
    model, meta = train_distributed(sar, target, "xgboost", spec=SPEC, split=SPLIT, params=SMALL["xgboost"],
                                    client=client)
    assert meta["task"] == "regression"
    X_train, y_train = _pixels(sar, target, TRAIN)
    X_val, y_val = _pixels(sar, target, VALIDATION)
    reference = build_model("xgboost", task="regression", **SMALL["xgboost"]).fit(X_train, y_train)
    predicted, expected = model.predict(X_val), reference.predict(X_val)
    rmse = float(np.sqrt(np.mean((predicted - y_val) ** 2)))
    assert meta["validation"]["rmse"] == pytest.approx(rmse, rel=1e-5)
    assert rmse == pytest.approx(float(np.sqrt(np.mean((expected - y_val) ** 2))), rel=0.02)


def test_distributed_training_refusals(sar_scene, client):
    from rastercore.boosting import train_distributed

    sar, target = sar_scene
    with pytest.raises(ParameterError, match="not 'forest'"):
        train_distributed(sar, target, "forest", client=client)
    # one TRAIN pixel of the rare class cannot give each of two workers a share of it
    rare = xr.zeros_like(target, dtype=np.int32)
    rare[5, 5] = 1
    plan = plan_pixels(sar, rare, FeatureSpec.coerce(SPEC), split=SPLIT, seed=0)
    assert plan.counts[1, TRAIN] == 1
    with pytest.raises(TrainingDataError, match=r"every class on every worker.*\[1\]"):
        train_distributed(sar, rare, "lightgbm", spec=SPEC, split=SPLIT, client=client, validation=False)


def test_distributed_training_needs_a_client(sar_scene):
    from rastercore.boosting import train_distributed

    sar, target = sar_scene
    with pytest.raises(ParameterError, match="needs a distributed.Client"):
        train_distributed(sar, target, "xgboost")
