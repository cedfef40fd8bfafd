import json

import numpy as np
import pytest
from sklearn.linear_model import SGDClassifier, SGDRegressor

from rastercore.datasets import SYNTHETIC_THRESHOLD
from rastercore.errors import SamplingError
from rastercore.sampling import TRAIN, VALIDATION, SpatialSplit, draw_sample, plan_pixels
from rastercore.training import pixel_arrays, train_incremental

SPEC = [{"name": "box_mean", "size": 9}, {"name": "ratio", "a": "HV", "b": "HH"}]
SPLIT = SpatialSplit(block_size=64)


class Recorder:
    """A partial_fit estimator that remembers what it was fed."""

    def __init__(self):
        self.batches = []

    def partial_fit(self, X, y, classes=None):
        self.batches.append((X.copy(), y.copy(), classes))
        return self


def test_every_training_pixel_is_seen_once_per_epoch(sar_scene):
    sar, target = sar_scene
    recorder = train_incremental(Recorder(), sar, target, SPEC, thresholds=SYNTHETIC_THRESHOLD, split=SPLIT,
                                 epochs=2, progress="none")
    plan = plan_pixels(sar, target, SPEC, thresholds=SYNTHETIC_THRESHOLD, split=SPLIT)
    per_epoch = plan.counts[:, TRAIN].sum()
    assert recorder.n_pixels_seen_ == 2 * per_epoch
    assert all(list(c) == [0, 1] for _, _, c in recorder.batches)
    X, y, classes = pixel_arrays(sar, target, SPEC, thresholds=SYNTHETIC_THRESHOLD, split=SPLIT)
    X, y = X.compute(), y.compute()
    assert len(y) == per_epoch and classes.tolist() == [0, 1]
    fed = np.concatenate([b[0] for b in recorder.batches])[: len(y) * 2]
    assert np.isclose(np.sort(fed[:, 0]), np.sort(np.concatenate([X[:, 0], X[:, 0]]))).all()


def test_streaming_fit_equals_the_in_memory_fit_and_generalises(sar_scene):
    """GaussianNB's partial_fit is exact: streamed tile by tile == fitted on all pixels at once."""
    from sklearn.naive_bayes import GaussianNB

    sar, target = sar_scene
    streamed = train_incremental(GaussianNB(), sar, target, SPEC, thresholds=0.45, split=SPLIT, epochs=1,
                                 progress="none")
    X, y, _ = pixel_arrays(sar, target, SPEC, thresholds=0.45, split=SPLIT)
    reference = GaussianNB().fit(X.compute(), y.compute())
    np.testing.assert_allclose(streamed.theta_, reference.theta_, rtol=1e-5)
    np.testing.assert_allclose(streamed.var_, reference.var_, rtol=1e-4)
    np.testing.assert_allclose(streamed.class_count_, reference.class_count_)
    val = draw_sample(sar, target, SPEC, n=0, per_class={0: 1, 1: 1}, n_validation=2000, thresholds=0.45,
                      split=SPLIT)
    X_val, y_val = val.subset(VALIDATION)
    assert len(y_val) == 2000 and streamed.score(X_val, y_val) > 0.85


def test_regression_and_progress(sar_scene, capsys):
    sar, target = sar_scene
    model = train_incremental(SGDRegressor(random_state=0), sar, target, SPEC, split=SPLIT, epochs=1,
                              progress="json")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[-1]["done"] == lines[-1]["total"] == 9  # 3 x 3 tiles, one epoch
    assert model.n_pixels_seen_ > 0 and np.isfinite(model.coef_).all()


def test_dask_ml_incremental_accepts_the_pixel_arrays(sar_scene):
    from dask_ml.wrappers import Incremental

    sar, target = sar_scene
    X, y, classes = pixel_arrays(sar, target, SPEC, thresholds=SYNTHETIC_THRESHOLD, split=SPLIT)
    model = Incremental(SGDClassifier(random_state=0)).fit(X, y, classes=classes)
    assert set(model.estimator_.classes_) == {0, 1}


def test_one_class_is_a_clear_error(sar_scene):
    sar, target = sar_scene
    with pytest.raises(SamplingError, match="at least two"):
        train_incremental(SGDClassifier(), sar, target, SPEC, thresholds=1.5, split=SPLIT, progress="none")


@pytest.mark.parametrize("family", ["svm", "cascade-svm", "forest", "sharded-forest", "hgb", "sgd", "hurdle",
                                    "multilabel"])
def test_every_family_trains_saves_and_loads(sar_table, family, tmp_path):
    from rastercore.models import load_model
    from rastercore.training import train_from_table

    params = {"search": False} if family == "svm" else {}
    labels = [0.4, SYNTHETIC_THRESHOLD] if family == "multilabel" else None
    model, meta = train_from_table(sar_table, family, params=params, labels=labels, path=tmp_path / "m.skops")
    loaded, manifest = load_model(tmp_path / "m.skops", return_manifest=True)
    X_val, _ = sar_table.subset(VALIDATION)
    np.testing.assert_array_equal(loaded.predict(X_val), model.predict(X_val))
    saved = manifest["metadata"]
    assert saved["feature_spec"] == sar_table.attrs["feature_spec"] and saved["bands"] == ["HH", "HV"]
    assert saved["family"] == family and saved["training"]["crs"] == sar_table.attrs["crs"]
    scores = saved["validation"]
    if family == "hurdle":
        assert scores["rmse"] < 0.25
    elif family == "multilabel":
        assert min(scores["f1_per_label"]) > 0.8
    else:
        assert scores["accuracy"] > 0.9


def test_support_vector_budget_is_reported(sar_table):
    from rastercore.training import train_from_table

    full, _ = train_from_table(sar_table, "svm", params={"search": False})
    n_full = int(full.svc_.n_support_.sum())
    model, meta = train_from_table(sar_table, "svm", params={"search": False, "max_support_vectors": n_full // 2,
                                                             "budget_tolerance": 0.02})
    budget = meta["support_vector_budget"]
    assert budget["support_vectors"] == n_full and budget["kept"] == model.svc_.n_support_.sum() <= n_full // 2
    assert meta["support_vectors"] == budget["kept"] and meta["validation"]["accuracy"] > 0.9
    X_val, _ = sar_table.subset(VALIDATION)  # rows neither fit saw: the budget barely changes the answers there
    assert np.mean(model.predict(X_val) == full.predict(X_val)) >= 0.98


def test_training_errors(sar_table):
    from rastercore.training import train_from_table

    with pytest.raises(SamplingError, match="unknown model family 'svn'"):
        train_from_table(sar_table, "svn")
    with pytest.raises(SamplingError, match="label thresholds"):
        train_from_table(sar_table, "multilabel")
