import json

import numpy as np
import pytest
import xarray as xr
from sklearn import metrics as skm

from rastercore.datasets import synthetic_scene
from rastercore.errors import RasterCoreDeprecationWarning, StoreExistsError, TargetError
from rastercore.evaluate import evaluate_classes, evaluate_values, region_mask, write_metrics
from rastercore.sampling import VALIDATION, SpatialSplit
from rastercore.targets import IGNORE


@pytest.fixture
def maps():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, (90, 110)).astype(np.int32)
    pred = np.where(rng.random(truth.shape) < 0.8, truth, rng.integers(0, 3, truth.shape)).astype(np.float32)
    truth[:5] = IGNORE
    pred[:, :4] = np.nan
    dims = ("y", "x")
    coords = {"y": np.arange(90.0)[::-1], "x": np.arange(110.0)}
    return (xr.DataArray(pred, dims=dims, coords=coords).chunk(32), xr.DataArray(truth, dims=dims, coords=coords).chunk(32),
            pred, truth)


def test_classification_metrics_equal_scikit_learn(maps):
    prediction, target, pred, truth = maps
    got = evaluate_classes(prediction, target, class_names=["a", "b", "c"])
    valid = (truth >= 0) & np.isfinite(pred)
    t, p = truth[valid], pred[valid].astype(int)
    np.testing.assert_array_equal(got["confusion_matrix"], skm.confusion_matrix(t, p))
    assert got["pixels"] == valid.sum()
    assert got["overall_accuracy"] == pytest.approx(skm.accuracy_score(t, p))
    assert got["kappa"] == pytest.approx(skm.cohen_kappa_score(t, p))
    precision, recall, f1, support = skm.precision_recall_fscore_support(t, p)
    iou = skm.jaccard_score(t, p, average=None)
    for i, name in enumerate("abc"):
        m = got["per_class"][name]
        assert (m["precision"], m["recall"], m["f1"], m["iou"], m["support"]) == pytest.approx(
            (precision[i], recall[i], f1[i], iou[i], support[i]))
    assert got["mean_iou"] == pytest.approx(iou.mean())


def test_regression_metrics_equal_scikit_learn():
    rng = np.random.default_rng(1)
    truth = rng.random((70, 60)).astype(np.float32)
    pred = (truth + rng.normal(0, 0.1, truth.shape)).astype(np.float32)
    truth[0, :10] = np.nan
    got = evaluate_values(xr.DataArray(pred, dims=("y", "x")).chunk(25), xr.DataArray(truth, dims=("y", "x")).chunk(25))
    valid = np.isfinite(truth)
    assert got["pixels"] == valid.sum()
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(truth[valid], pred[valid])), rel=1e-6)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(truth[valid], pred[valid]), rel=1e-6)
    assert got["r2"] == pytest.approx(skm.r2_score(truth[valid], pred[valid]), rel=1e-6)
    assert got["bias"] == pytest.approx(float((pred[valid].astype(float) - truth[valid]).mean()), abs=1e-7)


def test_regions_and_validation_split(maps):
    prediction, target, pred, truth = maps
    box = region_mask(prediction, bounds=(10, 20, 50, 60))
    got = evaluate_classes(prediction, target, mask=box)
    rows = slice(90 - 1 - 60, 90 - 20)  # y is 89..0 from the top
    sub_t, sub_p = truth[rows, 10:51], pred[rows, 10:51]
    valid = (sub_t >= 0) & np.isfinite(sub_p)
    assert got["pixels"] == valid.sum()
    scene = synthetic_scene((128, 128), chunks=64)
    split = SpatialSplit(block_size=32, validation_fraction=0.5)
    mask = region_mask(scene["target"], split=split, which=VALIDATION, seed=3, halo=2).compute()
    labels = split.labels(scene["target"], seed=3, halo=2).compute()
    np.testing.assert_array_equal(mask, labels == VALIDATION)
    with pytest.warns(RasterCoreDeprecationWarning, match=r"region_mask\(\): like is now called stack"):
        old = region_mask(like=prediction, bounds=(10, 20, 50, 60))
    np.testing.assert_array_equal(old.compute(), box.compute())


def test_write_metrics_json_and_markdown(maps, tmp_path):
    prediction, target, _, _ = maps
    metrics = evaluate_classes(prediction, target, class_names=["a", "b", "c"])
    json_path, md_path = write_metrics(metrics, tmp_path / "metrics.json")
    assert json.loads(json_path.read_text())["kappa"] == metrics["kappa"]
    assert "| a |" in md_path.read_text() and "Overall accuracy" in md_path.read_text()
    with pytest.raises(StoreExistsError):
        write_metrics(metrics, tmp_path / "metrics.json")


def test_metrics_over_no_pixels_are_valid_json(maps, tmp_path):
    prediction, target, _, _ = maps
    empty = evaluate_classes(prediction, target, mask=np.zeros(prediction.shape, bool))
    assert empty["pixels"] == 0
    path, _ = write_metrics(empty, tmp_path / "m.json")
    assert json.loads(path.read_text())["overall_accuracy"] is None


def test_shape_mismatch(maps):
    prediction, target, _, _ = maps
    with pytest.raises(TargetError, match="target_on_grid"):
        evaluate_classes(prediction, target[:10])
