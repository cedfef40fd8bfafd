import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from rastercore import open_stack
from rastercore.cli import main
from rastercore.errors import ParameterError, PipelineError, RasterCoreDeprecationWarning
from rastercore.pipeline import demo_pipeline, load_pipeline, run_pipeline

DEMO_YAML = Path(__file__).parents[1] / "pipelines" / "demo.yaml"


def test_demo_yaml_is_the_built_in_demo():
    assert load_pipeline(DEMO_YAML) == demo_pipeline()


def test_every_pipeline_file_validates():
    for path in DEMO_YAML.parent.glob("*.yaml"):
        load_pipeline(path)


def test_run_a_small_pipeline(tmp_path):
    pipeline = demo_pipeline((256, 320), tile_size=128, output_dir=str(tmp_path / "out"))
    pipeline.steps[3].n = 400
    result = run_pipeline(pipeline, progress="none")
    assert set(result["outputs"]) == {"scene", "stack.zarr", "quicklook.png", "sample.h5", "model.skops",
                                      "prediction.zarr", "metrics.json", "metrics_validation.json"}
    stack = open_stack(tmp_path / "out" / "stack.zarr")
    assert stack.shape == (2, 256, 320) and stack.chunks[1] == (128, 128)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())["classification"]
    assert metrics["pixels"] == 256 * 320 and metrics["overall_accuracy"] > 0.9
    for figure in ("metrics_comparison.png", "metrics_confusion.png", "metrics_probabilities.png", "prediction.tif"):
        assert (tmp_path / "out" / figure).exists()


@pytest.mark.parametrize(
    "text,message",
    [
        ("name: x\noutput_dir: o\nsteps:\n  - {kind: transmogrify, output: a}\n", "steps.0"),
        ("name: x\noutput_dir: o\nsteps:\n  - {kind: synth, output: a, shape: [0, 5]}\n", r"steps\.0\.synth\.shape\.0"),
        ("name: x\noutput_dir: o\nsteps:\n  - {kind: export, input: a, output: b, colour: red}\n", "colour"),
        ("name: x\nsteps: [\n", "not valid YAML"),
        ("name: x\noutput_dir: o\nsteps:\n  - {kind: reduce, stack: s, output: p, n_clusters: 2}\n",
         r"steps\.0\.reduce\.n_clusters"),
        ("name: x\noutput_dir: o\nsteps:\n  - {kind: synth, output: a, shape: [8, 8], tile: 64, tile_size: 64}\n",
         "give tile_size only; tile is its old name"),
        ("name: x\noutput_dir: o\nsteps:\n  - {kind: ingest, inputs: [a.tif], output: s.zarr, tile_size: 100000}\n",
         r"steps\.0\.ingest\.tile_size: Input should be less than or equal to 8192"),
        ("name: x\noutput_dir: o\nsteps:\n  - {kind: export, input: s.zarr, output: s.tif, compress: gzip}\n",
         r"steps\.0\.export\.compress: Value error, compress must be one of DEFLATE"),
        ("name: x\noutput_dir: o\nsteps:\n  - {kind: train, sample: s.h5, output: m.skops, family: svn}\n",
         r"steps\.0\.train: Value error, family must be one of svm"),
        ("name: x\noutput_dir: o\nsteps:\n  - {kind: train, sample: s.h5, output: m.skops, params: {c: 1}}\n",
         r"steps\.0\.train: Value error, params: 'c' is not a parameter of the svm model; its parameters are C, "),
        ("name: x\noutput_dir: o\nsteps:\n  - {kind: train, sample: s.h5, output: m.skops, family: hgb, "
         "params: {learning_rate: -1}}\n", r"params: The 'learning_rate' parameter of HistGradientBoostingClassifier"),
    ],
)
def test_bad_pipeline_names_the_field(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PipelineError, match=message):
        load_pipeline(path)


@pytest.mark.parametrize(
    "kind,fields,old,new",
    [
        ("synth", "output: a, shape: [8, 8], tile: 64", "tile", "tile_size"),
        ("cluster", "stack: s, output: c, sample: 500", "sample", "n"),
        ("cluster", "stack: s, output: c, n_components: 3", "n_components", "n_clusters"),
        ("reduce", "stack: s, output: p, sample: 500", "sample", "n"),
    ],
)
def test_old_field_names_still_validate_with_a_warning_naming_the_file(tmp_path, kind, fields, old, new):
    text = "name: x\noutput_dir: o\nsteps:\n  - {kind: %s, %s}\n"
    (tmp_path / "old.yaml").write_text(text % (kind, fields))
    (tmp_path / "new.yaml").write_text(text % (kind, fields.replace(f" {old}:", f" {new}:")))
    with pytest.warns(RasterCoreDeprecationWarning, match=f"old.yaml: {kind} step: {old} is now called {new}"):
        pipeline = load_pipeline(tmp_path / "old.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RasterCoreDeprecationWarning)
        assert load_pipeline(tmp_path / "new.yaml") == pipeline


def test_a_directory_is_not_a_pipeline_file(tmp_path):
    with pytest.raises(PipelineError, match="is a directory; give a pipeline YAML file"):
        load_pipeline(tmp_path)


def test_a_bad_progress_mode_is_refused_before_any_step(tmp_path):
    with pytest.raises(ParameterError, match=r"progress \(--progress\) must be one of auto, bar, json, none"):
        run_pipeline(demo_pipeline((64, 64), tile_size=32, output_dir=str(tmp_path / "out")), progress="verbose")
    assert not (tmp_path / "out").exists()


def test_outputs_are_absolute_whatever_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pipeline = load_pipeline_text(tmp_path, "name: x\noutput_dir: rel\nsteps:\n  - {kind: synth, output: a, shape: [8, 8]}\n")
    result = run_pipeline(pipeline, progress="none")
    assert result["outputs"] == {"a": str(tmp_path / "rel" / "a")} and (tmp_path / "rel" / "a" / "HH.tif").exists()


def load_pipeline_text(tmp_path, text):
    (tmp_path / "p.yaml").write_text(text)
    return load_pipeline(tmp_path / "p.yaml")


@pytest.mark.parametrize("family,params", [("svm", {"C": 10, "probability": True}), ("hgb", {"quantile": 0.5}),
                                           ("forest", {"n_estimators": 10, "criterion": "squared_error"}),
                                           ("hurdle", {"clip": True}), ("multilabel", {})])
def test_train_params_of_the_classifier_or_the_regressor_pass(family, params):
    from rastercore.pipeline import check_train_params

    assert check_train_params(family, params) == params


def test_demo_pipeline_tile_is_the_old_name_of_tile_size():
    with pytest.warns(RasterCoreDeprecationWarning, match=r"demo_pipeline\(\): tile is now called tile_size"):
        old = demo_pipeline((256, 320), tile=128)
    assert old == demo_pipeline((256, 320), tile_size=128) and old.steps[0].tile_size == 128


def test_cli_run(tmp_path, capsys):
    yaml_text = (DEMO_YAML.read_text().replace("[2048, 3072]", "[256, 256]").replace("1024", "128")
                 .replace("n: 2000", "n: 300\n    block_size: 32"))  # a 256-px scene needs small split blocks
    (tmp_path / "p.yaml").write_text(yaml_text)
    code = main(["run", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "o"), "--scheduler", "sync",
                 "--progress", "none"])
    assert code == 0, capsys.readouterr().err
    assert np.isfinite(open_stack(tmp_path / "o" / "stack.zarr").values).all()
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2


def test_cli_run_prints_a_notice_for_an_old_field(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\noutput_dir: o\nsteps:\n  - {kind: synth, output: a, shape: [32, 32], tile: 16}\n")
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--scheduler", "sync", "--progress", "none"]) == 0
    assert f"rastercore: notice: {path}: synth step: tile is now called tile_size" in capsys.readouterr().err
    assert (tmp_path / "o" / "a" / "HH.tif").exists()


def test_unsupervised_pipeline_file_runs_small(tmp_path):
    import rasterio

    text = (DEMO_YAML.parent / "unsupervised.yaml").read_text()
    path = tmp_path / "u.yaml"
    path.write_text(text.replace("[2048, 3072]", "[256, 256]").replace("1024", "128"))
    result = run_pipeline(load_pipeline(path), output_dir=tmp_path / "o", progress="none")
    assert {"features.zarr", "clusters.zarr", "pca.zarr", "clusters.png"} <= set(result["outputs"])
    clusters = open_stack(tmp_path / "o" / "clusters.zarr").values
    assert set(np.unique(clusters[np.isfinite(clusters)])) == {0, 1, 2, 3}
    with rasterio.open(tmp_path / "o" / "clusters.tif") as src:
        assert src.dtypes[0] == "uint8"
    assert open_stack(tmp_path / "o" / "pca.zarr").shape == (2, 256, 256)
    assert open_stack(tmp_path / "o" / "features.zarr").shape == (4, 256, 256)
    assert (tmp_path / "o" / "kmeans.skops").exists()


def test_clean_and_polygonize_steps(tmp_path):
    """A class map cleaned and polygonised by YAML steps equals the Python calls."""
    import numpy as np
    import xarray as xr
    from rasterio.crs import CRS

    from rastercore.grid import Grid, attach_grid
    from rastercore.maps import clean, polygonize
    from rastercore.pipeline import load_pipeline, run_pipeline
    from rastercore.store import write_tiles
    from tests.conftest import TRANSFORM

    pytest.importorskip("pyogrio")  # the vector extra
    out = tmp_path / "run"
    codes = (np.random.default_rng(0).random((60, 70)) * 3).astype(np.float32).round()
    mosaic = attach_grid(xr.DataArray(codes[np.newaxis], dims=("band", "y", "x"), coords={"band": ["class"]}),
                         Grid(60, 70, TRANSFORM, CRS.from_epsg(32633)), nodata=np.nan)
    source = tmp_path / "map.zarr"  # outside the run's output directory, which must start empty
    write_tiles(mosaic.chunk({"y": 16, "x": 16}).assign_attrs(class_names=["a", "b", "c", "d"]), source,
                progress="none")
    (tmp_path / "p.yaml").write_text(
        f"name: maps\noutput_dir: {out}\nsteps:\n"
        f"  - {{kind: clean, mosaic: {source}, output: clean.zarr, majority: 3, sieve: 5, connectivity: 8}}\n"
        "  - {kind: polygonize, mosaic: clean.zarr, output: regions.gpkg, connectivity: 8}\n")
    run_pipeline(load_pipeline(tmp_path / "p.yaml"), progress="none")
    expected = clean(source, tmp_path / "clean.zarr", majority=3, sieve=5, connectivity=8, progress="none")
    np.testing.assert_array_equal(open_stack(out / "clean.zarr").values, expected.values)
    polygons = polygonize(tmp_path / "clean.zarr", tmp_path / "r.gpkg", connectivity=8, progress="none")
    import pyogrio

    assert polygons.features > 0 and pyogrio.read_info(out / "regions.gpkg")["features"] == polygons.features
