import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import rasterio
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.svm import SVC

import rastercore.store._publish
from rastercore import ingest
from rastercore.datasets import SYNTHETIC_THRESHOLD, synthetic_scene
from rastercore.errors import IncompleteStoreError, StoreExistsError
from rastercore.features import compute_features
from rastercore.models import save_model
from rastercore.predict import predict, predict_lazy
from rastercore.sampling import TRAIN, draw_sample
from rastercore.stack import open_stack
from rastercore.store import partial_path

SPEC = [{"name": "box_mean", "size": 7}, {"name": "gaussian", "sigma": 1.5, "bands": ["HV"]}]


@pytest.fixture(scope="module")
def scene():
    ds = synthetic_scene((200, 230), seed=0, chunks=64)  # 39 % class 1
    sar = np.log(ds["sar"])
    table = draw_sample(sar, ds["target"], SPEC, n=400, thresholds=SYNTHETIC_THRESHOLD, seed=0)
    X, y = table.subset(TRAIN)
    return sar, ds["target"], table, X, y


def _whole_image_X(sar):
    feats = compute_features(sar, SPEC).values  # independent reference: the whole feature stack
    return feats.reshape(feats.shape[0], -1).T


@pytest.mark.parametrize("chunks", [64, (37, 90)])
def test_svc_mosaic_equals_scikit_learn_on_the_whole_image(scene, chunks):
    sar, _, table, X, y = scene
    svc = SVC(random_state=0).fit(X, y)
    mosaic = predict_lazy(svc, sar.chunk({"y": chunks if isinstance(chunks, int) else chunks[0],
                                          "x": chunks if isinstance(chunks, int) else chunks[1]}), SPEC,
                          class_names=table.class_names)
    assert list(mosaic.band.values) == ["class"]  # no probability=True: no probability layers
    expected = svc.predict(_whole_image_X(sar)).reshape(200, 230)
    np.testing.assert_array_equal(mosaic.sel(band="class").values, expected)
    assert mosaic.rio.crs == sar.rio.crs and mosaic.rio.transform() == sar.rio.transform()


def test_forest_probabilities_and_nodata(scene):
    sar, _, table, X, y = scene
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    holey = sar.where((sar.y > sar.y[120]) | (sar.x < sar.x[100]))  # rows >= 120, cols >= 100: nodata
    holey = holey.where(sar.y > sar.y[140])  # ...and every row from 140
    mosaic = predict_lazy(forest, holey.chunk({"y": 64, "x": 64}), SPEC, class_names=table.class_names).values
    assert mosaic.shape == (3, 200, 230)
    X_all = _whole_image_X(holey)
    valid = np.isfinite(X_all).all(axis=1)
    proba = np.full((len(X_all), 2), np.nan, np.float32)
    proba[valid] = forest.predict_proba(X_all[valid])
    np.testing.assert_allclose(mosaic[1:].reshape(2, -1).T, proba, atol=1e-6)
    assert np.isnan(mosaic[:, 120:, 100:]).all() and np.isnan(mosaic[:, 140:, :]).all()
    assert np.isfinite(mosaic[:, :110, :90]).all()  # clear of the nodata by more than the halo


CALLS = []


class CountingForest(RandomForestRegressor):
    def predict(self, X):
        CALLS.append(len(X))
        return super().predict(X)


def test_all_nodata_tiles_are_not_computed(scene):
    sar, _, _, X, y = scene
    CALLS.clear()
    calls = CALLS
    model = CountingForest(n_estimators=3, random_state=0).fit(X, y.astype(float))
    empty_rows = sar.where(sar.y <= sar.y[64]).chunk({"y": 64, "x": 64})  # first tile row all NaN
    mosaic = predict_lazy(model, empty_rows, SPEC, fast=False)  # count the calls of its own predict
    assert list(mosaic.band.values) == ["value"]
    values = mosaic.values
    assert np.isnan(values[0, :64]).all() and len(calls) == 4 * 3  # 4 x 4 tiles, 1 row skipped


def test_model_file_mosaic_cog_and_resume_after_kill_9(scene, tmp_path, monkeypatch):
    sar, _, table, X, y = scene
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    model_path = save_model(model, tmp_path / "m.skops",
                            metadata={"feature_spec": table.attrs["feature_spec"], "class_names": table.class_names})
    stack_path = tmp_path / "s.zarr"
    from rastercore.store import write_tiles

    write_tiles(sar.chunk({"y": 40, "x": 40}).astype(np.float32), stack_path, progress="none")
    out = tmp_path / "pred.zarr"
    script = f"""
import time, dask
import rastercore.store._publish as tiles
original = tiles._store_block
def slow(*a):
    time.sleep(0.1)
    return original(*a)
tiles._store_block = slow
dask.config.set(scheduler="synchronous")
from rastercore.predict import predict
from rastercore.stack import open_stack
predict({str(model_path)!r}, open_stack({str(stack_path)!r}), {str(out)!r}, progress="none")
"""
    proc = subprocess.Popen([sys.executable, "-c", script])
    ledger = partial_path(out) / rastercore.store.LEDGER_DIR
    deadline = time.monotonic() + 120
    while len(list(ledger.glob("*.done"))) < 5:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    done = len(list(ledger.glob("*.done")))
    with pytest.raises(IncompleteStoreError):
        open_stack(out)
    written = []
    original = rastercore.store._publish._store_block
    monkeypatch.setattr(rastercore.store._publish, "_store_block", lambda *a: written.append(1) or original(*a))
    resumed = predict(model_path, open_stack(stack_path), out, resume=True, cog=tmp_path / "pred.tif",
                      progress="none")
    assert len(written) == 30 - done  # 5 x 6 tiles of 40 px
    clean = predict(model_path, open_stack(stack_path), tmp_path / "clean.zarr", progress="none")
    np.testing.assert_array_equal(resumed.values, clean.values)
    assert resumed.attrs["class_names"] == table.class_names  # from the model file's manifest
    assert list(resumed.band.values) == ["class", "p[< 0.6]", "p[>= 0.6]"]
    with rasterio.open(tmp_path / "pred.tif") as src:  # the class map, compact
        assert src.count == 1 and src.dtypes[0] == "uint8" and src.nodata == 255 and src.crs == sar.rio.crs
        classes = clean.sel(band="class").values
        np.testing.assert_array_equal(src.read(1), np.where(np.isnan(classes), 255, classes))


def test_prediction_on_a_distributed_cluster_equals_the_local_one(scene, tmp_path):
    from distributed import Client, LocalCluster, get_task_stream

    sar, _, table, X, y = scene
    from rastercore.models import SampledSVC

    model = SampledSVC(search=False, probability=True, random_state=0).fit(X, y)
    local = predict_lazy(model, sar, SPEC).values
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client, get_task_stream(client) as stream:
        mosaic = predict(model, sar, tmp_path / "p.zarr", spec=SPEC, progress="none")
        values = mosaic.values
    assert any("predict" in str(task["key"]) for task in stream.data)
    np.testing.assert_array_equal(values, local)


@pytest.fixture
def model_file(scene, tmp_path):
    _, _, table, X, y = scene
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    return save_model(model, tmp_path / "m.skops",
                      metadata={"feature_spec": table.attrs["feature_spec"], "class_names": table.class_names})


def test_resume_after_a_kill_in_the_cog_stage_writes_the_cog_without_predicting_again(scene, tmp_path, monkeypatch,
                                                                                      model_file):
    import rastercore.io.cog

    sar = scene[0]
    predict(model_file, sar, tmp_path / "clean.zarr", cog=tmp_path / "clean.tif", progress="none")
    out, cog = tmp_path / "pred.zarr", tmp_path / "pred.tif"
    temporary = tmp_path / "pred.tif.tiled.partial"
    kept = tmp_path / "kept"

    def killed(tmp, partial, **options):
        assert tmp == temporary  # GDAL opens it as a whole GeoTIFF: its name says it is unfinished
        with rasterio.open(tmp) as src:
            assert src.count == 1 and src.width == 230
        shutil.copy(tmp, kept)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(rastercore.io.cog, "_copy_to_cog", killed)
        with pytest.raises(KeyboardInterrupt):
            predict(model_file, sar, out, cog=cog, progress="none")
    assert out.exists() and not cog.exists()
    shutil.copy(kept, temporary)  # what kill -9 leaves behind: the temporary and a partial COG
    partial_path(cog).write_bytes(b"half a COG")
    assert sorted(p.name for p in tmp_path.glob("pred.tif*")) == ["pred.tif.partial", "pred.tif.tiled.partial"]
    written = []
    original = rastercore.store._publish._store_block
    monkeypatch.setattr(rastercore.store._publish, "_store_block", lambda *a: written.append(1) or original(*a))
    resumed = predict(model_file, sar, out, cog=cog, resume=True, progress="none")
    assert written == []  # the complete mosaic is not predicted again
    with rasterio.open(cog) as src, rasterio.open(tmp_path / "clean.tif") as ref:
        np.testing.assert_array_equal(src.read(), ref.read())
        assert src.profile == ref.profile and src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    assert sorted(p.name for p in tmp_path.glob("pred.tif*")) == ["pred.tif", "pred.tif.aux.xml"]  # + class names
    stamp = cog.stat().st_mtime_ns
    predict(model_file, sar, out, cog=cog, resume=True, progress="none")  # nothing left to do
    assert cog.stat().st_mtime_ns == stamp and written == []
    np.testing.assert_array_equal(resumed.values, open_stack(tmp_path / "clean.zarr").values)


def test_resume_refuses_a_complete_mosaic_of_another_grid(scene, tmp_path, model_file):
    sar = scene[0]
    predict(model_file, sar, tmp_path / "pred.zarr", progress="none")
    with pytest.raises(StoreExistsError, match=r"pred\.zarr already holds a complete mosaic .* --overwrite"):
        predict(model_file, sar.isel(y=slice(0, 128)), tmp_path / "pred.zarr", resume=True, progress="none")
