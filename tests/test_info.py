"""``rastercore info`` on model files: text and JSON for a model trained by the CLI; one error line for other files."""

import hashlib
import json
import pickle
import zipfile

import numpy as np
import pytest
import sklearn

from rastercore.cli import main
from rastercore.sampling import TRAIN, VALIDATION, read_table
from rastercore.models import read_manifest


def run(*argv):
    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("info")
    quiet = ("--scheduler", "sync", "--progress", "none")
    assert run("synth", tmp / "scene", "--size", "256x256", *quiet) == 0
    assert run("ingest", tmp / "scene" / "HH.tif", tmp / "scene" / "HV.tif", "-o", tmp / "s.zarr",
               "--bands", "HH,HV", "--tile-size", "128", *quiet) == 0
    (tmp / "spec.yaml").write_text("- {name: box_mean, size: 5}\n")
    assert run("sample", tmp / "s.zarr", "-o", tmp / "sample.h5", "--spec", tmp / "spec.yaml", "--target",
               tmp / "scene" / "target.tif", "--threshold", "0.6", "-n", "300", "--block-size", "64", *quiet) == 0
    assert run("train", tmp / "sample.h5", "-o", tmp / "model.skops", "--family", "forest",
               "--params", '{"n_estimators": 10}', *quiet) == 0
    return tmp


def test_info_describes_a_model_file(trained, capsys):
    capsys.readouterr()
    assert run("info", trained / "model.skops") == 0
    out = capsys.readouterr().out
    rows = {line[2:13].strip(): line[14:] for line in out.splitlines()[1:] if line[2:13].strip()}
    assert out.splitlines()[0] == f"{trained / 'model.skops'} (rastercore model)"
    assert rows["family"] == "forest (sklearn.ensemble._forest.RandomForestClassifier)"
    assert rows["task"] == "classification"
    meta = read_manifest(trained / "model.skops")["metadata"]  # a balanced sample, corrected to the scene's priors
    scene = ", ".join(f"{k} {v:.3f}" for k, v in meta["priors"]["scene"].items())
    assert meta["priors"]["corrected"] and rows["priors"] == f"scene (corrected): train < 0.6 0.500, >= 0.6 0.500; " \
                                                              f"target {scene}"
    assert rows["classes"].startswith(" 0  #1f77b4  < 0.6  (") and "  #ff7f0e  >= 0.6  (" in out
    assert "(colours: model file)" in out  # train keeps the colours (here the default palette) in the model
    assert rows["bands"] == "HH, HV"
    assert rows["features"] == "2: box_mean(size=5)[HH], box_mean(size=5)[HV]"
    assert rows["spec"] == '[{"name": "box_mean", "size": 5}]'
    assert rows["validation"].startswith("accuracy 0.") and "balanced_accuracy" in rows["validation"]
    table = read_table(trained / "sample.h5")
    split = np.asarray(table.split)
    assert rows["sample"] == f"{(split == TRAIN).sum()} train, {(split == VALIDATION).sum()} validation"
    assert f"scikit-learn {sklearn.__version__}" in rows["versions"] and "rastercore " in rows["versions"]
    assert rows["sha256"] == hashlib.sha256((trained / "model.skops").read_bytes()).hexdigest()


def test_info_json_of_a_model_file(trained, capsys):
    capsys.readouterr()
    assert run("info", trained / "model.skops", "--json") == 0
    d = json.loads(capsys.readouterr().out)
    table = read_table(trained / "sample.h5")
    split, y = np.asarray(table.split), np.asarray(table.y)
    assert d["kind"] == "rastercore model" and d["family"] == "forest" and d["task"] == "classification"
    assert d["estimator"] == "sklearn.ensemble._forest.RandomForestClassifier"
    assert d["classes"] == [
        {"code": code, "name": name, "color": colour, "train": int(((y == code) & (split == TRAIN)).sum()),
         "validation": int(((y == code) & (split == VALIDATION)).sum())}
        for code, (name, colour) in enumerate(zip(["< 0.6", ">= 0.6"], ["#1f77b4", "#ff7f0e"]))]
    assert d["bands"] == ["HH", "HV"] and d["feature_names"] == list(table.feature_names)
    assert d["feature_spec"]["features"] == [{"name": "box_mean", "size": 5}]
    assert d["sample_size"]["train"] == (split == TRAIN).sum()
    assert d["sample_size"]["validation"] == d["validation"]["rows"] == (split == VALIDATION).sum()
    assert 0.5 < d["validation"]["accuracy"] <= 1 and d["params"] == {"n_estimators": 10} and d["thresholds"] == [0.6]
    assert d["versions"]["scikit-learn"] == sklearn.__version__ and d["format_version"] == 1
    assert d["file_sha256"] == hashlib.sha256((trained / "model.skops").read_bytes()).hexdigest()


def test_info_shows_the_colours_the_model_file_keeps(tmp_path, capsys):
    from sklearn.dummy import DummyClassifier

    from rastercore.models import save_model

    model = DummyClassifier().fit(np.zeros((4, 1)), [0, 1, 0, 1])
    save_model(model, tmp_path / "m.bin", metadata={"class_names": ["water", "land"],
                                                    "class_colors": [[31, 120, 180], [0, 100, 0]]})
    assert run("info", tmp_path / "m.bin") == 0  # any file load_model reads, whatever its name
    out = capsys.readouterr().out
    assert " 0  #1f78b4  water" in out and " 1  #006400  land" in out and "(colours: model file)" in out
    assert "family      not recorded (sklearn.dummy.DummyClassifier)" in out
    assert "sample      not recorded" in out and "validation  not recorded" in out


def _not_models(tmp_path):
    (tmp_path / "notes.skops").write_text("not a model\n")
    (tmp_path / "pickled.skops").write_bytes(pickle.dumps({"a": 1}))
    with zipfile.ZipFile(tmp_path / "plain.zip", "w") as archive:
        archive.writestr("schema.json", "{}")


@pytest.mark.parametrize("name,message", [
    ("notes.skops", "notes.skops is not a readable model file: it is a text file"),
    ("pickled.skops", "it is a Python pickle, which rastercore never loads"),
    ("plain.zip", "plain.zip is a zip archive without a rastercore manifest"),
    ("missing.skops", "missing.skops does not exist"),
])
def test_info_on_a_file_that_is_no_model_is_one_error_line(tmp_path, capsys, name, message):
    _not_models(tmp_path)
    assert run("info", tmp_path / name) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert captured.out == "" and len(err) == 1 and err[0].startswith("rastercore: error: ") and message in err[0]
