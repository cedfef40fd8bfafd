"""The machine-learning commands, end to end: sample, train, predict, evaluate."""

import json
import os

import dgsamples
import numpy as np
import pytest
import rasterio

from rastercore.cli import main
from rastercore.models import load_model


def run(*argv):
    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli_ml")
    assert run("synth", tmp / "scene", "--size", "384x384", "--scheduler", "sync", "--progress", "none") == 0
    assert run("ingest", tmp / "scene" / "HH.tif", tmp / "scene" / "HV.tif", "-o", tmp / "s.zarr", "--bands", "HH,HV",
               "--tile-size", "128", "--scheduler", "sync", "--progress", "none") == 0
    (tmp / "spec.yaml").write_text("- {name: box_mean, size: 9}\n- {name: cv, size: 9}\n")
    return tmp


def test_sample_train_predict_evaluate(workspace, capsys):
    tmp = workspace
    assert run("sample", tmp / "s.zarr", "-o", tmp / "sample.h5", "--spec", tmp / "spec.yaml",
               "--target", tmp / "scene" / "target.tif", "--threshold", "0.6", "-n", "400", "--block-size", "64",
               "--scheduler", "sync") == 0
    assert "rows x 4 features" in capsys.readouterr().out
    assert run("train", tmp / "sample.h5", "-o", tmp / "m.skops", "--family", "svm",
               "--params", '{"search": false, "probability": true}', "--scheduler", "sync") == 0
    assert "validation" in capsys.readouterr().out
    assert run("predict", tmp / "m.skops", tmp / "s.zarr", "-o", tmp / "p.zarr", "--cog", tmp / "p.tif",
               "--scheduler", "sync", "--progress", "none") == 0
    assert "layers class, p[< 0.6], p[>= 0.6]" in capsys.readouterr().out
    with rasterio.open(tmp / "p.tif") as src:
        assert src.count == 1 and src.dtypes[0] == "uint8" and src.crs.to_epsg() == 32633
    assert run("evaluate", tmp / "p.zarr", tmp / "scene" / "target.tif", "-o", tmp / "val.json",
               "--model", tmp / "m.skops", "--region", "validation", "--scheduler", "sync") == 0
    out = capsys.readouterr().out
    metrics = json.loads((tmp / "val.json").read_text())
    assert metrics["region"] == "validation" and metrics["classification"]["overall_accuracy"] > 0.95
    assert "Overall accuracy" in out and (tmp / "val_confusion.png").exists()


def test_sample_from_polygons_on_real_imagery(tmp_path, capsys):
    bands = "coastal,blue,green,yellow,red,rededge,nir1,nir2"
    assert run("ingest", dgsamples.wv2_longmont_1k.ms, "-o", tmp_path / "wv2.zarr", "--bands", bands,
               "--scheduler", "sync", "--progress", "none") == 0
    (tmp_path / "spec.yaml").write_text("- {name: box_mean, size: 3, bands: [red, nir1]}\n")
    polygons = os.path.join(os.path.dirname(dgsamples.__file__), "wv2_longmont_1k_vectors", "wv2_1k_poly_4326.geojson")
    assert run("sample", tmp_path / "wv2.zarr", "-o", tmp_path / "s.zarr", "--spec", tmp_path / "spec.yaml",
               "--polygons", polygons, "--attribute", "teststr", "-n", "100", "--validation", "0",
               "--scheduler", "sync") == 0
    assert "classes {'test1': 50, 'test2': 50}" in capsys.readouterr().out
    assert run("train", tmp_path / "s.zarr", "-o", tmp_path / "m.skops", "--family", "hgb", "--scheduler", "sync") == 0


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "{tmp}/sample.h5", "-o", "{tmp}/x.skops", "--family", "svn"], "family (--family) must be one of svm"),
        (["train", "{tmp}/sample.h5", "-o", "{tmp}/x.skops", "--params", "{{C: 1"], "not valid JSON"),
        (["sample", "{tmp}/s.zarr", "-o", "{tmp}/x.h5", "--spec", "{tmp}/spec.yaml"], "exactly one of --target"),
        (["train", "{tmp}/missing.h5", "-o", "{tmp}/x.skops"], "missing.h5 does not exist"),
        (["predict", "{tmp}/spec.yaml", "{tmp}/s.zarr", "-o", "{tmp}/x.zarr"], "spec.yaml"),
    ],
)
def test_ml_command_errors_are_one_line(workspace, capsys, argv, message):
    if not (workspace / "sample.h5").exists():
        pytest.skip("needs the sample of test_sample_train_predict_evaluate")
    assert run(*[a.format(tmp=workspace) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rastercore: error: ") and message in err[0]


def test_train_model_is_the_old_spelling_of_family(workspace, tmp_path, capsys):
    assert run("sample", workspace / "s.zarr", "-o", tmp_path / "sample.h5", "--spec", workspace / "spec.yaml",
               "--target", workspace / "scene" / "target.tif", "--threshold", "0.6", "-n", "100",
               "--block-size", "64", "--scheduler", "sync") == 0
    capsys.readouterr()
    assert run("train", tmp_path / "sample.h5", "-o", tmp_path / "m.skops", "--model", "hgb", "--scheduler", "sync") == 0
    captured = capsys.readouterr()
    assert "rastercore: notice: rastercore train: --model is now called --family" in captured.err
    assert f"wrote {tmp_path / 'm.skops'}: hgb" in captured.out


def test_predict_maps_bands_named_otherwise(workspace, tmp_path, capsys):
    """--band-map VV=HH,VH=HV: a stack of the same measurements under other names predicts as the original."""
    from rastercore import open_stack

    if not (workspace / "m.skops").exists():
        pytest.skip("needs the model of test_sample_train_predict_evaluate")
    assert run("ingest", workspace / "scene" / "HH.tif", workspace / "scene" / "HV.tif", "-o", tmp_path / "vv.zarr",
               "--bands", "VV,VH", "--tile-size", "128", "--scheduler", "sync", "--progress", "none") == 0
    argv = ["predict", workspace / "m.skops", tmp_path / "vv.zarr", "-o", tmp_path / "p.zarr", "--scheduler", "sync",
            "--progress", "none"]
    assert run(*argv) == 2
    assert "--band-map STACK=MODEL (e.g. --band-map VV=HH,VH=HV)" in capsys.readouterr().err
    assert run(*argv, "--band-map", "VV=HH,VH=HV") == 0
    np.testing.assert_array_equal(open_stack(tmp_path / "p.zarr").values, open_stack(workspace / "p.zarr").values)


def test_train_checks_params_against_the_family_before_reading_the_sample(tmp_path, capsys):
    assert run("train", tmp_path / "never.h5", "-o", tmp_path / "m.skops", "--family", "forest",
               "--params", '{"n_estimators": 10, "max_depht": 3}') == 2
    err = capsys.readouterr().err
    assert "'max_depht' is not a parameter of the forest model" in err and "max_depth" in err
    assert not (tmp_path / "m.skops").exists()


def test_train_with_a_support_vector_budget(workspace, tmp_path, capsys):
    assert run("train", tmp_path / "never.h5", "-o", tmp_path / "m.skops", "--params",
               '{"max_support_vectors": 1}') == 2
    assert "'max_support_vectors' parameter of SampledSVC must be an int in the range [2, inf)" in capsys.readouterr().err
    assert run("sample", workspace / "s.zarr", "-o", tmp_path / "t.h5", "--spec", workspace / "spec.yaml",
               "--target", workspace / "scene" / "target.tif", "--threshold", "0.6", "-n", "400",
               "--block-size", "64", "--scheduler", "sync", "--progress", "none") == 0
    capsys.readouterr()
    assert run("train", tmp_path / "t.h5", "-o", tmp_path / "m.skops", "--params",
               '{"search": false, "max_support_vectors": 10, "budget_tolerance": 0.05}', "--scheduler", "sync") == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("support vectors:")]
    assert len(line) == 1 and " of " in line[0] and "held-out labels unchanged" in line[0], line
    kept = int(load_model(tmp_path / "m.skops").svc_.n_support_.sum())
    assert line[0].startswith(f"support vectors: {kept} of ") and kept <= 10
    assert run("info", tmp_path / "m.skops") == 0
    info = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  model ")]
    assert info == [f"  model       {line[0].removeprefix('support vectors: ')} support vectors"], info
    assert run("train", tmp_path / "t.h5", "-o", tmp_path / "m.skops", "--overwrite", "--params",
               '{"search": false, "max_support_vectors": 2, "budget_tolerance": 0}', "--scheduler", "sync") == 2
    err = capsys.readouterr().err
    assert "raise max_support_vectors or budget_tolerance" in err and "Traceback" not in err


def test_sample_and_train_report_json_progress(workspace, tmp_path, capsys):
    assert run("sample", workspace / "s.zarr", "-o", tmp_path / "t.h5", "--spec", workspace / "spec.yaml",
               "--target", workspace / "scene" / "target.tif", "--threshold", "0.6", "-n", "100",
               "--block-size", "64", "--scheduler", "sync", "--progress", "json") == 0
    assert run("train", tmp_path / "t.h5", "-o", tmp_path / "m.skops", "--family", "hgb", "--scheduler", "sync",
               "--progress", "json") == 0
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(r["stage"], r["done"], r["total"]) for r in records] == [("sample", 1, 1), ("train", 1, 1)]
