import json
import pickle
import warnings
import zipfile

import numpy as np
import pytest
import skops.io as sio
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.tree import DecisionTreeClassifier

import rastercore
import rastercore.models._persist as persist
from rastercore.errors import (ModelFileError, ModelFormatVersionError, ModelMetadataError,
                               ModelVersionWarning, RasterCoreError, SourceNotFoundError,
                               StoreExistsError, UntrustedModelTypeError)
from rastercore.models import (CascadeSVC, HurdleModel, KernelSGD, KernelSGDRegressor,
                               SampledSVC, ShardedForestClassifier, ShardedForestRegressor,
                               ThresholdedMultiLabel, load_model, read_manifest, save_model)

RNG = np.random.default_rng(0)
X = RNG.normal(size=(300, 4))
Y_CLASS = (X[:, 0] + X[:, 1] ** 2 > 0.8).astype(int)
Y_VALUE = 1 / (1 + np.exp(-(X[:, 0] + 0.5 * X[:, 2])))
Y_LABELS = np.column_stack([Y_CLASS, X[:, 2] > 0.3])

MODELS = {
    "sampled_svc": lambda: SampledSVC(param_grid={"C": [1, 10]}, probability=True, random_state=0).fit(X, Y_CLASS),
    "cascade_svc": lambda: CascadeSVC(n_shards=3, probability=True, random_state=0).fit(X, Y_CLASS),
    "kernel_sgd": lambda: KernelSGD(loss="log_loss", n_components=30, random_state=0).fit(X, Y_CLASS),
    "kernel_sgd_regressor": lambda: KernelSGDRegressor(n_components=30, random_state=0).fit(X, Y_VALUE),
    "sharded_forest": lambda: ShardedForestClassifier(n_shards=2, n_estimators_per_shard=3, random_state=0).fit(X, Y_CLASS),
    "sharded_forest_regressor": lambda: ShardedForestRegressor(n_shards=2, n_estimators_per_shard=3, random_state=0).fit(X, Y_VALUE),
    "hurdle": lambda: HurdleModel(threshold=0.6, random_state=0).fit(X, Y_VALUE),
    "multilabel": lambda: ThresholdedMultiLabel(random_state=0).fit(X, Y_LABELS).tune_thresholds(X, Y_LABELS),
}
OUTPUTS = ("predict", "predict_proba", "decision_function", "predict_class", "predict_value", "predict_scores")


@pytest.fixture
def small_model():
    return DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, Y_CLASS)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_round_trip_gives_identical_predictions(tmp_path, name):
    model = MODELS[name]()
    path = save_model(model, tmp_path / f"{name}.skops", metadata={"name": name})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same versions: no warning
        loaded = load_model(path)
    assert type(loaded) is type(model)
    compared = 0
    for method in OUTPUTS:
        if hasattr(model, method):
            np.testing.assert_array_equal(getattr(loaded, method)(X), getattr(model, method)(X))
            compared += 1
    assert compared >= 1
    if name == "multilabel":
        np.testing.assert_array_equal(loaded.thresholds_, model.thresholds_)
        assert loaded.threshold_metric_ == "f1"


def test_manifest_holds_metadata_and_versions(tmp_path, small_model):
    metadata = {
        "features": [{"name": "box_mean", "size": 7}, {"name": "ratio", "a": "HV", "b": "HH"}],
        "normalisation": {"method": "zscore", "mean": np.array([0.5, np.nan]), "std": np.float32(2.0)},
        "bands": ["HH", "HV"], "classes": ["open water", "ice"],
        "extent": {"crs": "EPSG:32633", "bounds": (500000.0, 3990000.0, 510000.0, 4000000.0)},
    }
    path = save_model(small_model, tmp_path / "m.skops", metadata=metadata)
    model, manifest = load_model(path, return_manifest=True)
    assert manifest == read_manifest(path)
    assert manifest["format_version"] == persist.MODEL_FORMAT_VERSION
    assert manifest["model_type"] == "sklearn.tree._classes.DecisionTreeClassifier"
    assert manifest["metadata"]["normalisation"] == {"method": "zscore", "mean": [0.5, None], "std": 2.0}
    assert manifest["metadata"]["extent"]["bounds"] == [500000.0, 3990000.0, 510000.0, 4000000.0]
    assert manifest["metadata"]["features"] == metadata["features"]
    assert manifest["versions"]["scikit-learn"] == sklearn.__version__
    assert manifest["versions"]["numpy"] == np.__version__
    assert manifest["versions"]["rastercore"] == rastercore.__version__
    assert set(manifest["versions"]) >= {"python", "numpy", "scikit-learn", "rastercore"}
    with zipfile.ZipFile(path) as archive:  # strict JSON: no NaN / Infinity tokens
        json.loads(archive.read(persist.MANIFEST_NAME), parse_constant=lambda token: pytest.fail(token))
    # a plain skops reader sees the same model
    plain = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    np.testing.assert_array_equal(plain.predict(X), model.predict(X))


def test_metadata_that_json_cannot_hold_is_refused_by_field(tmp_path, small_model):
    with pytest.raises(ModelMetadataError, match=r"'extent.crs' holds a builtins.set.*JSON"):
        save_model(small_model, tmp_path / "m.skops", metadata={"extent": {"crs": {"EPSG:32633"}}})
    with pytest.raises(ModelMetadataError, match=r"key 3"):
        save_model(small_model, tmp_path / "m.skops", metadata={"classes": {3: "ice"}})
    assert list(tmp_path.iterdir()) == []


def test_existing_file_needs_overwrite_and_writes_are_atomic(tmp_path, small_model, monkeypatch):
    path = tmp_path / "m.skops"
    path.write_text("keep me")
    with pytest.raises(StoreExistsError, match="m.skops already exists.*overwrite=True"):
        save_model(small_model, path)
    assert path.read_text() == "keep me"
    save_model(small_model, path, overwrite=True)
    assert isinstance(load_model(path), DecisionTreeClassifier)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.skops"]  # no .partial left behind

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(persist.zipfile.ZipFile, "writestr", broken)
    with pytest.raises(OSError, match="disk full"):
        save_model(small_model, tmp_path / "other.skops")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.skops"]


def test_other_library_versions_warn_naming_each_one(tmp_path, small_model, monkeypatch):
    here = persist._library_versions()
    old = dict(here, numpy="1.26.4", **{"scikit-learn": "1.5.2"})
    monkeypatch.setattr(persist, "_library_versions", lambda: old)
    path = save_model(small_model, tmp_path / "m.skops")
    monkeypatch.setattr(persist, "_library_versions", lambda: here)
    with pytest.warns(ModelVersionWarning) as record:
        model = load_model(path)
    message = str(record[0].message)
    assert f"scikit-learn 1.5.2 (file) vs {sklearn.__version__} (here)" in message
    assert f"numpy 1.26.4 (file) vs {np.__version__} (here)" in message
    assert "python" not in message and str(path) in message
    np.testing.assert_array_equal(model.predict(X), small_model.predict(X))


def test_newer_format_is_refused(tmp_path, small_model, monkeypatch):
    monkeypatch.setattr(persist, "MODEL_FORMAT_VERSION", 99)
    path = save_model(small_model, tmp_path / "future.skops")
    monkeypatch.undo()
    with pytest.raises(ModelFormatVersionError, match=r"future.skops.*model format 99.*upgrade rastercore"):
        load_model(path)
    with pytest.raises(ModelFormatVersionError):
        read_manifest(path)


def test_truncated_and_corrupt_files_are_clear_errors(tmp_path, small_model):
    path = save_model(small_model, tmp_path / "m.skops")
    data = path.read_bytes()
    truncated = tmp_path / "truncated.skops"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=r"truncated.skops.*corrupt or truncated"):
        load_model(truncated)
    # flip bytes inside the largest stored array: the zip checksum catches it
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.compress_size)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + info.compress_size // 2
    corrupt = bytearray(data)
    corrupt[start:start + 8] = bytes(255 - b for b in corrupt[start:start + 8])
    bad = tmp_path / "corrupt.skops"
    bad.write_bytes(bytes(corrupt))
    with pytest.raises(ModelFileError, match=r"corrupt.skops"):
        load_model(bad)


def test_foreign_files_are_refused_without_being_run(tmp_path, small_model):
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(pickle.dumps(small_model))
    with pytest.raises(ModelFileError, match=r"model.pkl.*pickle.*never loads"):
        load_model(pickled)
    text = tmp_path / "model.txt"
    text.write_text("C=1.0\ngamma=scale\n")
    with pytest.raises(ModelFileError, match=r"model.txt.*a text file"):
        load_model(text)
    plain = tmp_path / "plain.skops"
    sio.dump(small_model, plain)
    with pytest.raises(ModelFileError, match=r"plain.skops.*without a rastercore manifest"):
        load_model(plain)
    with pytest.raises(SourceNotFoundError, match="missing.skops does not exist"):
        load_model(tmp_path / "missing.skops")
    assert issubclass(ModelFileError, (RasterCoreError, ValueError))


def test_types_outside_the_allow_list_are_refused_by_name(tmp_path):
    model = ThresholdedMultiLabel(
        estimator=make_pipeline(FunctionTransformer(np.nan_to_num), LogisticRegression())).fit(X, Y_LABELS)
    path = tmp_path / "m.skops"
    with pytest.warns(UserWarning, match=r"outside rastercore's allow-list.*numpy.nan_to_num"):
        save_model(model, path)
    with pytest.raises(UntrustedModelTypeError, match=r"m.skops holds types outside.*numpy.nan_to_num.*trusted="):
        load_model(path)
    # the caller can vouch for the exact type they reviewed
    loaded = load_model(path, trusted=["numpy.nan_to_num"])
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_a_crafted_file_naming_os_system_is_refused(tmp_path, small_model):
    path = save_model(small_model, tmp_path / "m.skops")
    crafted = tmp_path / "crafted.skops"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(crafted, "w") as dst:
        for info in src.infolist():
            content = src.read(info)
            if info.filename == "schema.json":
                schema = json.loads(content)
                schema["__module__"], schema["__class__"] = "os", "system"
                content = json.dumps(schema).encode()
            dst.writestr(info.filename, content)
    with pytest.raises(UntrustedModelTypeError, match=r"os\.system"):
        load_model(crafted)


def test_the_estimator_list_for_skops_equals_scikit_learns():
    assert persist._public_estimators() == sklearn.utils.all_estimators()


SKOPS_IN_A_NEW_PROCESS = """
import sys
from rastercore.models import load_model
load_model(sys.argv[1])
torch_imported = "torch" in sys.modules
import sklearn.utils
from sklearn.utils import discovery
from skops.io import _trusted_types
from skops.io._utils import get_type_name
crawled = [get_type_name(cls) for _, cls in discovery.all_estimators() if get_type_name(cls).startswith("sklearn.")]
print(torch_imported, sklearn.utils.all_estimators is discovery.all_estimators,
      _trusted_types.SKLEARN_ESTIMATOR_TYPE_NAMES == crawled, len(crawled))
"""


def test_a_new_process_loads_a_model_without_importing_torch_and_skops_trusts_the_same_estimators(tmp_path,
                                                                                                   small_model):
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("torch") is None:  # the test extra installs it; without it nothing can be checked
        pytest.skip("torch is not installed")
    path = save_model(small_model, tmp_path / "m.skops")
    done = subprocess.run([sys.executable, "-c", SKOPS_IN_A_NEW_PROCESS, str(path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    torch_imported, restored, same, n = done.stdout.split()[-4:]
    assert (torch_imported, restored, same) == ("False", "True", "True") and int(n) > 100, done.stdout
