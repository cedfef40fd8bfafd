"""Bad input, command by command and through the Python API: one clear error, and nothing left that looks complete.

Every CLI case runs a command in-process (:func:`rastercore.cli.main`) on tiny inputs and checks the exit
status (2), that stderr holds exactly one non-empty line, ``rastercore: error: ...``, naming the file or
field at fault, that no traceback was printed, and that nothing was left that opens as complete: the case's
output directory holds no output (at most the ``.partial`` of work that failed once started) and the shared
inputs (some of them given as outputs, without ``--overwrite``) are unchanged.
The cases run on ``--scheduler threads``; a subset also on the default scheduler, a local cluster the command
starts, where some errors are raised inside its worker processes (stderr is captured at the file
descriptor, so what those processes print counts too).

The Python-API cases check the exception class (a :class:`rastercore.errors.RasterCoreError`) and its message.
"""

from __future__ import annotations

import json
import pickle
import shlex

import numpy as np
import pytest
from affine import Affine

import rastercore.store._publish
from rastercore import errors
from rastercore.cli import main
from rastercore.store import partial_path
from tests.conftest import write_tif

SPECS = {
    "spec.yaml": "- {name: box_mean, size: 3}\n",
    "unknown_feature.yaml": "- {name: gausian, sigma: 2}\n",
    "even_size.yaml": "- {name: box_mean, size: 4}\n",
    "band_missing.yaml": "- {name: gaussian, sigma: 2, bands: [VV]}\n",
    "invalid.yaml": "features: [{name: gaussian, sigma: 2}\n",
}
PIPELINE_HEAD = "name: x\noutput_dir: o\nsteps:\n"
PIPELINES = {
    "not_yaml.yaml": "name: x\nsteps: [\n",
    "unknown_kind.yaml": PIPELINE_HEAD + "  - {kind: transmogrify, output: a}\n",
    "huge_tile.yaml": PIPELINE_HEAD + "  - {kind: synth, output: a, shape: [8, 8], tile_size: 1000000000}\n",
    "bad_params.yaml": PIPELINE_HEAD + "  - {kind: train, sample: s.h5, output: m.skops, family: hgb, params: {C: 1}}\n",
    "bad_compress.yaml": PIPELINE_HEAD + "  - {kind: export, input: s.zarr, output: s.tif, compress: BOGUS}\n",
}


def _cli(*argv) -> None:
    assert main([str(a) for a in argv]) == 0


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """Inputs every case reads: a 64 x 64 scene, its stack (and one naming its bands otherwise), a sample
    table, a model and its prediction; broken files of every kind (truncated, text, random bytes, a pickle)."""
    d = tmp_path_factory.mktemp("bad_input")
    quiet = ["--scheduler", "sync", "--progress", "none"]
    _cli("synth", d / "scene", "--size", "64x64", *quiet)
    hh, hv = d / "scene" / "HH.tif", d / "scene" / "HV.tif"
    _cli("ingest", hh, hv, "-o", d / "s.zarr", "--bands", "HH,HV", "--tile-size", "32", *quiet)
    _cli("ingest", hh, hv, "-o", d / "other.zarr", "--bands", "VV,VH", "--tile-size", "32", *quiet)
    for name, text in {**SPECS, **PIPELINES}.items():
        (d / name).write_text(text)
    _cli("sample", d / "s.zarr", "-o", d / "sample.h5", "--spec", d / "spec.yaml", "--target", d / "scene" / "target.tif",
         "--threshold", "0.6", "-n", "100", "--block-size", "16", "--scheduler", "sync")
    _cli("train", d / "sample.h5", "-o", d / "m.skops", "--family", "forest", "--params", '{"n_estimators": 5}',
         "--scheduler", "sync")
    _cli("predict", d / "m.skops", d / "s.zarr", "-o", d / "p.zarr", *quiet)
    (d / "text.txt").write_text("not a raster, a table or a model\n")
    (d / "random.h5").write_bytes(np.random.default_rng(0).bytes(4096))
    (d / "adir").mkdir()
    (d / "model.pkl").write_bytes(pickle.dumps({"a": "pickle, not a model file"}))
    for name, whole in (("trunc.tif", hh.read_bytes()), ("trunc.h5", (d / "sample.h5").read_bytes())):
        (d / name).write_bytes(whole[: len(whole) * 6 // 10])
    write_tif(d / "degrees.tif", np.ones((64, 64), np.float32), crs="EPSG:4326",
              transform=Affine(0.001, 0.0, 10.0, 0.0, -0.001, 50.0))
    np.save(d / "plain.npy", np.ones((8, 8), np.float32))
    (d / "item.json").write_text(json.dumps(_stac_item({"B04": (hh, "red"), "B08": (hv, "nir")})))
    return d


def _stac_item(assets: dict) -> dict:
    """A STAC item whose assets (key -> (href, common name)) are local files."""
    return {"type": "Feature", "stac_version": "1.0.0", "id": "bad-input",
            "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
            "geometry": {"type": "Point", "coordinates": [15.0, 36.1]}, "bbox": [15.0, 36.1, 15.0, 36.1],
            "properties": {"datetime": "2026-06-01T10:00:00Z"}, "links": [],
            "assets": {key: {"href": str(href), "type": "image/tiff; application=geotiff", "roles": ["data"],
                             "eo:bands": [{"name": key, "common_name": common}]}
                       for key, (href, common) in assets.items()}}


def _state(root) -> dict:
    """Every file under ``root`` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def out(tmp_path, shared):
    """A directory for the case's outputs: after the case it holds no output (at most the ``.partial`` of work
    that failed once started, never published), and the shared inputs are unchanged."""
    before = _state(shared)
    directory = tmp_path / "out"
    directory.mkdir()
    yield directory
    assert [p.name for p in directory.iterdir() if p.suffix != ".partial"] == []
    assert _state(shared) == before


def assert_one_line_error(code: int, err: str, message: str) -> None:
    """Exit status 2 and exactly one line on stderr, ``rastercore: error: ...`` containing ``message``."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("rastercore: error: ") and message in lines[0], lines[0]
    assert "Traceback" not in err


WITH_SCHEDULER = {"ingest", "export", "synth", "demo", "run", "features", "stats", "sample", "train", "predict",
                  "cluster", "reduce", "evaluate", "clean"}

# (id, argv with {d} = the shared inputs and {o} = the case's output directory, what the message names)
CLI_CASES = [
    # ingest: inputs, band names, mismatched inputs, every option, existing output
    ("ingest-missing-input", "ingest {d}/nope.tif -o {o}/x.zarr", "nope.tif does not exist"),
    ("ingest-input-is-directory", "ingest {d}/adir -o {o}/x.zarr", "input {d}/adir is a directory, not a raster"),
    ("ingest-text-file", "ingest {d}/text.txt -o {o}/x.zarr", "text.txt is not a raster GDAL can read"),
    ("ingest-truncated-geotiff", "ingest {d}/trunc.tif -o {o}/x.zarr", "trunc.tif"),
    ("ingest-band-count", "ingest {d}/scene/HH.tif {d}/scene/HV.tif -o {o}/x.zarr --bands A,B,C", "3 band names"),
    ("ingest-duplicate-bands", "ingest {d}/scene/HH.tif {d}/scene/HV.tif -o {o}/x.zarr --bands A,A", "A repeats"),
    ("ingest-mismatched-crs", "ingest {d}/scene/HH.tif {d}/degrees.tif -o {o}/x.zarr", "different CRSs"),
    ("ingest-tile-size-0", "ingest {d}/scene/HH.tif -o {o}/x.zarr --tile-size 0", "tile_size (--tile-size) must be between 8"),
    ("ingest-tile-size-negative", "ingest {d}/scene/HH.tif -o {o}/x.zarr --tile-size -256", "not -256"),
    ("ingest-tile-size-1", "ingest {d}/scene/HH.tif -o {o}/x.zarr --tile-size 1", "tile_size (--tile-size)"),
    ("ingest-tile-size-huge", "ingest {d}/scene/HH.tif -o {o}/x.zarr --tile-size 1000000000", "not 1000000000"),
    ("ingest-tile-size-text", "ingest {d}/scene/HH.tif -o {o}/x.zarr --tile-size abc", "'--tile-size'"),
    ("ingest-band-axis", "ingest {d}/scene/HH.tif -o {o}/x.zarr --band-axis 5", "band_axis (--band-axis)"),
    ("ingest-codec", "ingest {d}/scene/HH.tif -o {o}/x.zarr --codec gzip", "codec (--codec) must be one of lz4"),
    ("ingest-progress", "ingest {d}/scene/HH.tif -o {o}/x.zarr --progress bogus", "progress (--progress) must be"),
    ("ingest-scheduler", "ingest {d}/scene/HH.tif -o {o}/x.zarr --scheduler bogus", "scheduler (--scheduler"),
    ("ingest-scheduler-no-scheme", "ingest {d}/scene/HH.tif -o {o}/x.zarr --scheduler 10.0.0.1:8786",
     "tcp://host:8786"),
    ("ingest-existing-output", "ingest {d}/scene/HH.tif -o {d}/s.zarr", "s.zarr already exists"),
    # ingest onto one grid: --grid, --resolution, --crs, --bounds, --extent, --resampling, STAC --assets
    ("ingest-bounds-format", "ingest {d}/scene/HH.tif -o {o}/x.zarr --bounds 1,2,3", "four numbers LEFT,BOTTOM"),
    ("ingest-bounds-order", "ingest {d}/scene/HH.tif -o {o}/x.zarr --bounds 5,0,1,1", "LEFT < RIGHT"),
    ("ingest-bounds-outside", "ingest {d}/scene/HH.tif -o {o}/x.zarr --bounds 0,0,1,1", "cover none of the inputs"),
    ("ingest-extent", "ingest {d}/scene/HH.tif -o {o}/x.zarr --extent most", "extent (--extent) must be one of"),
    ("ingest-crs", "ingest {d}/scene/HH.tif -o {o}/x.zarr --crs EPSG:nonsense --resolution 10", "is not a CRS"),
    ("ingest-resolution-absurd", "ingest {d}/scene/HH.tif -o {o}/x.zarr --resolution 0.000001", "gigapixels"),
    ("ingest-resolution-negative", "ingest {d}/scene/HH.tif -o {o}/x.zarr --resolution -5", "positive pixel size"),
    ("ingest-grid-missing", "ingest {d}/scene/HH.tif -o {o}/x.zarr --grid {d}/nope.tif", "--grid {d}/nope.tif does"),
    ("ingest-grid-not-georeferenced", "ingest {d}/scene/HH.tif -o {o}/x.zarr --grid {d}/plain.npy",
     "has no georeferencing"),
    ("ingest-resampling-method", "ingest {d}/scene/HH.tif -o {o}/x.zarr --resampling HH=fancy", "unknown method"),
    ("ingest-resampling-band", "ingest {d}/scene/HH.tif -o {o}/x.zarr --resampling XX=nearest", "names XX"),
    ("ingest-resampling-format", "ingest {d}/scene/HH.tif -o {o}/x.zarr --resampling nearest", "not BAND=METHOD"),
    ("ingest-assets-without-item", "ingest {d}/scene/HH.tif -o {o}/x.zarr --assets red", "applies to STAC item"),
    ("ingest-asset-missing", "ingest {d}/item.json -o {o}/x.zarr --assets red,blue", "has no asset or band 'blue'"),
    ("ingest-asset-unnamed", "ingest {d}/item.json -o {o}/x.zarr", "name the assets to ingest with --assets"),
    ("ingest-no-output", "ingest {d}/scene/HH.tif", "Missing option '-o'"),
    # info, export, quicklook
    ("info-missing", "info {d}/nope.tif", "nope.tif does not exist"),
    ("info-directory", "info {d}/adir", "adir is a directory, not a raster"),
    ("info-text-file", "info {d}/text.txt", "text.txt"),
    ("export-compress", "export {d}/s.zarr {o}/x.tif --compress BOGUS", "compress (--compress) must be one of"),
    ("export-compress-jpeg-float", "export {d}/s.zarr {o}/x.tif --compress JPEG", "8-bit"),
    ("export-resampling", "export {d}/s.zarr {o}/x.tif --resampling bogus", "resampling (--resampling)"),
    ("export-existing-output", "export {d}/s.zarr {d}/scene/HH.tif", "HH.tif already exists"),
    ("export-missing-stack", "export {d}/nope.zarr {o}/x.tif", "nope.zarr"),
    ("quicklook-max-size", "quicklook {d}/s.zarr {o}/x.png --max-size 0", "max_size (--max-size) must be at least"),
    ("quicklook-existing-output", "quicklook {d}/s.zarr {d}/scene/HH.tif", "HH.tif already exists"),
    ("quicklook-not-a-stack", "quicklook {d}/text.txt {o}/x.png", "text.txt"),
    # synth, demo, run
    ("synth-size-0", "synth {o}/scene --size 0x0", "height (--size) must be at least 1"),
    ("synth-size-format", "synth {o}/scene --size 64by64", "HEIGHTxWIDTH"),
    ("synth-looks", "synth {o}/scene --size 8x8 --looks 0", "looks (--looks)"),
    ("synth-existing-output", "synth {d}/scene --size 8x8", "already exist"),
    ("demo-size", "demo --out {o}/demo --size 0x64", "height (--size)"),
    ("demo-existing-output", "demo --out {d} --size 64x64", "already holds outputs"),
    ("run-missing-file", "run {d}/nope.yaml", "nope.yaml does not exist"),
    ("run-directory", "run {d}/adir", "adir is a directory"),
    ("run-not-yaml", "run {d}/not_yaml.yaml", "is not valid YAML"),
    ("run-unknown-step", "run {d}/unknown_kind.yaml", "steps.0"),
    ("run-tile-size", "run {d}/huge_tile.yaml --out {o}/run", "steps.0.synth.tile_size"),
    ("run-train-params", "run {d}/bad_params.yaml --out {o}/run", "'C' is not a parameter of the hgb model"),
    ("run-export-compress", "run {d}/bad_compress.yaml --out {o}/run", "compress must be one of"),
    # features: spec errors, options
    ("features-unknown-feature", "features {d}/s.zarr -o {o}/f.zarr --spec {d}/unknown_feature.yaml",
     "unknown feature 'gausian'"),
    ("features-bad-parameter", "features {d}/s.zarr -o {o}/f.zarr --spec {d}/even_size.yaml", "must be odd"),
    ("features-band-missing", "features {d}/s.zarr -o {o}/f.zarr --spec {d}/band_missing.yaml", "'VV'"),
    ("features-invalid-yaml", "features {d}/s.zarr -o {o}/f.zarr --spec {d}/invalid.yaml", "is not valid YAML"),
    ("features-spec-directory", "features {d}/s.zarr -o {o}/f.zarr --spec {d}/adir", "--spec {d}/adir is a directory"),
    ("features-spec-missing", "features {d}/s.zarr -o {o}/f.zarr --spec {d}/nope.yaml", "nope.yaml does not exist"),
    ("features-normalize", "features {d}/s.zarr -o {o}/f.zarr --spec {d}/spec.yaml --normalize l2",
     "unknown normalisation 'l2'"),
    ("features-tile-size", "features {d}/s.zarr -o {o}/f.zarr --spec {d}/spec.yaml --tile-size 0", "--tile-size"),
    ("features-existing-output", "features {d}/s.zarr -o {d}/p.zarr --spec {d}/spec.yaml", "p.zarr already exists"),
    ("features-not-a-stack", "features {d}/text.txt -o {o}/f.zarr --spec {d}/spec.yaml", "text.txt"),
    ("stats-bins", "stats {d}/s.zarr --bins 0", "bins (--bins) must be between 2"),
    ("stats-missing-stack", "stats {d}/nope.zarr", "nope.zarr"),
    # sample: targets, spec, options
    ("sample-no-target", "sample {d}/s.zarr -o {o}/t.h5 --spec {d}/spec.yaml", "exactly one of --target and --polygons"),
    ("sample-target-directory", "sample {d}/s.zarr -o {o}/t.h5 --spec {d}/spec.yaml --target {d}/adir",
     "--target {d}/adir is a directory, not a raster"),
    ("sample-target-missing", "sample {d}/s.zarr -o {o}/t.h5 --spec {d}/spec.yaml --target {d}/nope.tif",
     "nope.tif does not exist"),
    ("sample-target-not-classes", "sample {d}/s.zarr -o {o}/t.h5 --spec {d}/spec.yaml --target {d}/scene/HH.tif",
     "HH.tif holds non-integer values"),
    ("sample-unknown-feature", "sample {d}/s.zarr -o {o}/t.h5 --spec {d}/unknown_feature.yaml "
     "--target {d}/scene/target.tif --threshold 0.6", "unknown feature 'gausian'"),
    ("sample-block-size", "sample {d}/s.zarr -o {o}/t.h5 --spec {d}/spec.yaml --target {d}/scene/target.tif "
     "--threshold 0.6 --block-size 0", "block_size (--block-size) must be at least 1"),
    ("sample-n", "sample {d}/s.zarr -o {o}/t.h5 --spec {d}/spec.yaml --target {d}/scene/target.tif --threshold 0.6 -n 0",
     "n (-n)"),
    ("sample-validation", "sample {d}/s.zarr -o {o}/t.h5 --spec {d}/spec.yaml --target {d}/scene/target.tif "
     "--threshold 0.6 --validation 1.5", "validation_fraction (--validation)"),
    ("sample-per-class", "sample {d}/s.zarr -o {o}/t.h5 --spec {d}/spec.yaml --target {d}/scene/target.tif "
     "--threshold 0.6 --per-class most", "per_class (--per-class)"),
    ("sample-threshold", "sample {d}/s.zarr -o {o}/t.h5 --spec {d}/spec.yaml --target {d}/scene/target.tif "
     "--threshold high", "--threshold must be numbers"),
    ("sample-existing-output", "sample {d}/s.zarr -o {d}/sample.h5 --spec {d}/spec.yaml --target {d}/scene/target.tif "
     "--threshold 0.6", "sample.h5 already exists"),
    # train: --params, the sample table, existing model
    ("train-params-not-object", "train {d}/sample.h5 -o {o}/m.skops --family hgb --params [1,2]",
     "params (--params) must be a JSON object"),
    ("train-params-unknown-key", "train {d}/sample.h5 -o {o}/m.skops --family hgb --params {{\"C\":1}}",
     "'C' is not a parameter of the hgb model"),
    ("train-params-bad-value", "train {d}/sample.h5 -o {o}/m.skops --family forest --params {{\"n_estimators\":0}}",
     "'n_estimators' parameter"),
    ("train-params-seed", "train {d}/sample.h5 -o {o}/m.skops --family hgb --params {{\"random_state\":1}}",
     "set it with seed (--seed)"),
    ("train-params-not-json", "train {d}/sample.h5 -o {o}/m.skops --params {{C:1", "--params is not valid JSON"),
    ("train-family", "train {d}/sample.h5 -o {o}/m.skops --family svn", "family (--family) must be one of"),
    ("train-labels", "train {d}/sample.h5 -o {o}/m.skops --family multilabel --labels low", "--labels must be numbers"),
    ("train-table-text-file", "train {d}/text.txt -o {o}/m.skops", "text.txt is not a sample table"),
    ("train-table-directory", "train {d}/adir -o {o}/m.skops", "sample table {d}/adir is a directory"),
    ("train-table-random-h5", "train {d}/random.h5 -o {o}/m.skops", "random.h5 is not a sample table"),
    ("train-table-truncated", "train {d}/trunc.h5 -o {o}/m.skops", "trunc.h5 is not a sample table"),
    ("train-table-is-a-stack", "train {d}/s.zarr -o {o}/m.skops", "s.zarr is not a sample table"),
    ("train-table-missing", "train {d}/nope.h5 -o {o}/m.skops", "nope.h5 does not exist"),
    ("train-existing-output", "train {d}/sample.h5 -o {d}/m.skops --family hgb", "m.skops already exists"),
    ("train-colors", "train {d}/sample.h5 -o {o}/m.skops --family hgb --colors nope=red", "--colors names nope"),
    # predict: model files, --band-map, stacks
    ("predict-model-missing", "predict {d}/nope.skops {d}/s.zarr -o {o}/p.zarr", "nope.skops"),
    ("predict-model-directory", "predict {d}/adir {d}/s.zarr -o {o}/p.zarr", "adir is a folder, not a model file"),
    ("predict-model-text", "predict {d}/text.txt {d}/s.zarr -o {o}/p.zarr", "text.txt is not a readable model file"),
    ("predict-model-pickle", "predict {d}/model.pkl {d}/s.zarr -o {o}/p.zarr", "model.pkl is not a readable model file"),
    ("predict-model-is-a-table", "predict {d}/sample.h5 {d}/s.zarr -o {o}/p.zarr", "sample.h5 is not a readable model"),
    ("predict-band-map-format", "predict {d}/m.skops {d}/s.zarr -o {o}/p.zarr --band-map VV",
     "--band-map entry 'VV' is not STACK=MODEL"),
    ("predict-band-map-twice", "predict {d}/m.skops {d}/other.zarr -o {o}/p.zarr --band-map VV=HH,VV=HV",
     "names stack band 'VV' twice"),
    ("predict-band-map-unknown", "predict {d}/m.skops {d}/s.zarr -o {o}/p.zarr --band-map VV=HH",
     "--band-map names VV, which the stack does not have"),
    ("predict-bands-missing", "predict {d}/m.skops {d}/other.zarr -o {o}/p.zarr", "--band-map"),
    ("predict-existing-output", "predict {d}/m.skops {d}/s.zarr -o {d}/p.zarr", "p.zarr already exists"),
    ("predict-codec", "predict {d}/m.skops {d}/s.zarr -o {o}/p.zarr --codec gzip", "codec (--codec)"),
    ("predict-layers-unknown", "predict {d}/m.skops {d}/s.zarr -o {o}/p.zarr --layers class,spread",
     "this model writes any of class, proba"),
    ("predict-colors-format", "predict {d}/m.skops {d}/s.zarr -o {o}/p.zarr --colors red",
     "--colors entry 'red' is not CLASS=COLOUR"),
    ("predict-colors-class", "predict {d}/m.skops {d}/s.zarr -o {o}/p.zarr --colors water=red",
     "--colors names water, which are not classes"),
    ("predict-colors-colour", "predict {d}/m.skops {d}/s.zarr -o {o}/p.zarr --colors '>= 0.6=reddish'",
     "is not a colour"),
    # maps: export, clean
    ("export-layers-missing", "export {d}/p.zarr {o}/x.tif --layers maxprob", "--layers names maxprob"),
    ("export-class-averaged", "export {d}/p.zarr {o}/x.tif --resampling average", "would blend the codes"),
    ("export-class-mixed", "export {d}/p.zarr {o}/x.tif --layers 'class,p[>= 0.6]'", "mixes the class layer"),
    ("clean-nothing", "clean {d}/p.zarr -o {o}/c.zarr", "--majority"),
    ("clean-majority-even", "clean {d}/p.zarr -o {o}/c.zarr --majority 4", "majority"),
    ("clean-sieve-0", "clean {d}/p.zarr -o {o}/c.zarr --sieve 0", "sieve"),
    ("clean-connectivity", "clean {d}/p.zarr -o {o}/c.zarr --sieve 4 --connectivity 6", "connectivity"),
    ("clean-not-a-class-map", "clean {d}/s.zarr -o {o}/c.zarr --sieve 4", "no class"),
    ("clean-existing-output", "clean {d}/p.zarr -o {d}/s.zarr --sieve 4", "s.zarr already exists"),
    # cluster, reduce
    ("cluster-k", "cluster {d}/s.zarr -o {o}/k.zarr -k 0", "n_clusters (-k/--n-clusters) must be at least 1"),
    ("cluster-n", "cluster {d}/s.zarr -o {o}/k.zarr -n 0", "n (-n)"),
    ("cluster-epochs", "cluster {d}/s.zarr -o {o}/k.zarr --stream --epochs 0", "epochs (--epochs)"),
    ("cluster-spec-directory", "cluster {d}/s.zarr -o {o}/k.zarr --spec {d}/adir", "--spec {d}/adir is a directory"),
    ("cluster-existing-output", "cluster {d}/s.zarr -o {d}/p.zarr", "p.zarr already exists"),
    ("reduce-n-components", "reduce {d}/s.zarr -o {o}/r.zarr --n-components 0", "n_components (--n-components)"),
    # evaluate
    ("evaluate-region", "evaluate {d}/p.zarr {d}/scene/target.tif -o {o}/e.json --region most", "region (--region)"),
    ("evaluate-target-directory", "evaluate {d}/p.zarr {d}/adir -o {o}/e.json", "TARGET {d}/adir is a directory"),
    ("evaluate-target-missing", "evaluate {d}/p.zarr {d}/nope.tif -o {o}/e.json", "nope.tif does not exist"),
    ("evaluate-stack-not-mosaic", "evaluate {d}/s.zarr {d}/scene/target.tif -o {o}/e.json", "s.zarr has no class"),
    ("evaluate-model-text", "evaluate {d}/p.zarr {d}/scene/target.tif -o {o}/e.json --model {d}/text.txt",
     "text.txt is not a readable model file"),
    ("evaluate-threshold", "evaluate {d}/p.zarr {d}/scene/target.tif -o {o}/e.json --threshold x",
     "--threshold must be numbers"),
    ("evaluate-reference-missing", "evaluate {d}/p.zarr {d}/scene/target.tif -o {o}/e.json --reference {d}/nope.gpkg",
     "nope.gpkg"),
    ("evaluate-reference-text", "evaluate {d}/p.zarr {d}/scene/target.tif -o {o}/e.json --reference {d}/text.txt",
     "text.txt"),
    ("quicklook-rgb-unknown", "quicklook {d}/s.zarr {o}/x.png --rgb red,green,blue", "--rgb"),
    ("evaluate-existing-output", "evaluate {d}/p.zarr {d}/scene/target.tif -o {d}/spec.yaml", "spec.yaml already exists"),
    # the command line itself
    ("unknown-command", "transmogrify {d}/s.zarr", "No such command 'transmogrify'"),
    ("unknown-option", "ingest {d}/scene/HH.tif -o {o}/x.zarr --tile 64", "No such option: --tile"),
]

# Cases that also run on the default scheduler (a local cluster): errors inside its workers, or before it starts.
ON_LOCAL_CLUSTER = {"ingest-truncated-geotiff", "ingest-mismatched-crs", "ingest-existing-output", "ingest-scheduler",
                    "ingest-bounds-outside", "ingest-asset-missing",
                    "export-compress-jpeg-float", "features-band-missing", "features-bad-parameter",
                    "sample-target-not-classes", "train-params-bad-value", "train-table-random-h5",
                    "predict-bands-missing", "predict-model-text", "evaluate-stack-not-mosaic"}


def _argv(template: str, shared, out, scheduler: str | None) -> list[str]:
    # split at spaces except inside '...' (class names hold spaces); other quotes are kept as typed
    argv = [a.strip("'").format(d=shared, o=out) for a in shlex.split(template, posix=False)]
    if argv[0] in WITH_SCHEDULER and scheduler is not None and "--scheduler" not in argv:
        argv += ["--scheduler", scheduler]
    return argv


CLI_PARAMS = [pytest.param(argv, message, "threads", id=f"threads-{case}") for case, argv, message in CLI_CASES] + [
    pytest.param(argv, message, None, id=f"local-{case}") for case, argv, message in CLI_CASES
    if case in ON_LOCAL_CLUSTER]


@pytest.mark.parametrize("template,message,scheduler", CLI_PARAMS)
def test_bad_input_is_one_line_and_leaves_nothing(template, message, scheduler, shared, out, capfd, monkeypatch):
    monkeypatch.delenv("RASTERCORE_SCHEDULER", raising=False)
    code = main(_argv(template, shared, out, scheduler))
    assert_one_line_error(code, capfd.readouterr().err, message.format(d=shared, o=out))


def test_every_case_is_named_once_and_the_local_subset_exists():
    names = [case for case, _, _ in CLI_CASES]
    assert len(names) == len(set(names)) and ON_LOCAL_CLUSTER <= set(names)
    assert {t.split()[0] for _, t, _ in CLI_CASES} >= WITH_SCHEDULER | {"info", "quicklook"}


def test_a_bad_scheduler_from_the_environment_is_named(shared, out, capfd, monkeypatch):
    monkeypatch.setenv("RASTERCORE_SCHEDULER", "tpc://host:8786")
    code = main(_argv("ingest {d}/scene/HH.tif -o {o}/x.zarr", shared, out, None))
    assert_one_line_error(code, capfd.readouterr().err, "$RASTERCORE_SCHEDULER) must be")


@pytest.mark.parametrize("json_progress", [False, True], ids=["text", "json"])
def test_with_json_progress_the_error_is_one_json_line(shared, out, capfd, json_progress):
    import json

    argv = _argv("ingest {d}/scene/HH.tif -o {o}/x.zarr --tile-size 0", shared, out, "threads")
    code = main(argv + ["--progress", "json"] if json_progress else argv)
    lines = capfd.readouterr().err.splitlines()
    assert code == 2 and len(lines) == 1
    if json_progress:
        assert json.loads(lines[0]) == {"event": "error", "status": 2,
                                        "message": "tile_size (--tile-size) must be between 8 and 8192, not 0."}
    else:
        assert lines[0] == "rastercore: error: tile_size (--tile-size) must be between 8 and 8192, not 0."


# --- an interrupted run's partial output, without --resume or --overwrite ----------------------------------------

PARTIAL_CASES = {
    "ingest": "ingest {d}/scene/HH.tif {d}/scene/HV.tif -o {o}/x.zarr --bands HH,HV --tile-size 32",
    "features": "features {d}/s.zarr -o {o}/x.zarr --spec {d}/spec.yaml",
    "predict": "predict {d}/m.skops {d}/s.zarr -o {o}/x.zarr",
}


@pytest.mark.parametrize("command", sorted(PARTIAL_CASES))
def test_an_interrupted_partial_needs_resume_or_overwrite(command, shared, tmp_path, capfd, monkeypatch):
    out = tmp_path / "out"
    argv = _argv(PARTIAL_CASES[command], shared, out, "threads") + ["--progress", "none"]
    with monkeypatch.context() as patch:  # every tile written, then stopped before the store is published
        patch.setattr(rastercore.store._publish, "_finalise", lambda *a: None)
        main(argv)
    partial = partial_path(out / "x.zarr")
    before = _state(partial)
    capfd.readouterr()
    code = main(argv)
    err = capfd.readouterr().err
    assert_one_line_error(code, err, f"an interrupted run left {partial}")
    assert "pass --resume to finish it or --overwrite to start over" in err
    assert not (out / "x.zarr").exists() and _state(partial) == before
    assert main(argv + ["--resume"]) == 0 and (out / "x.zarr").exists()


# --- the Python API ----------------------------------------------------------------------------------------------


def _open(d, name):
    from rastercore import open_stack

    return open_stack(d / name)


def _ingest(d, o, inputs, **options):
    from rastercore import ingest

    return ingest([str(d / name) for name in inputs], o / "x.zarr", progress="none", **options)


def _enter_client(scheduler):
    from rastercore.scheduler import client

    with client(scheduler):
        pass


def _predict(d, o, stack, **options):
    from rastercore.predict import predict

    return predict(d / "m.skops", _open(d, stack), o / "x.zarr", progress="none", **options)


def _write_cog(d, o, **options):
    from rastercore.io import write_cog

    return write_cog(_open(d, "s.zarr"), o / "x.tif", progress="none", **options)


def _features(d, o, **options):
    from rastercore.features import write_features

    return write_features(_open(d, "s.zarr"), [{"name": "box_mean", "size": 3}], o / "x.zarr", progress="none",
                          **options)


def _read_table(path):
    from rastercore.sampling import read_table

    return read_table(path)


def _check_params(family, params):
    from rastercore.pipeline import check_train_params

    return check_train_params(family, params)


def _load_pipeline(path):
    from rastercore.pipeline import load_pipeline

    return load_pipeline(path)


def _run_demo_pipeline(o, progress):
    from rastercore.pipeline import demo_pipeline, run_pipeline

    return run_pipeline(demo_pipeline((64, 64), tile_size=32, output_dir=str(o / "run")), progress=progress)


def _load_model(path):
    from rastercore.models import load_model

    return load_model(path)


def _progress(mode):
    from rastercore.progress import Progress

    return Progress("stage", 1, mode=mode)


def _stats(d, bins):
    from rastercore.preprocess import compute_band_stats

    return compute_band_stats(_open(d, "s.zarr"), bins=bins)


def _split(block_size):
    from rastercore.sampling import SpatialSplit

    return SpatialSplit(block_size=block_size)


def _spec(path):
    from rastercore.features import FeatureSpec

    return FeatureSpec.from_file(path)


API_CASES = [
    ("ingest-truncated", lambda d, o: _ingest(d, o, ["trunc.tif"]), errors.SourceReadError, "trunc.tif"),
    ("ingest-tile-size", lambda d, o: _ingest(d, o, ["scene/HH.tif"], tile_size=0), errors.ParameterError,
     "tile_size (--tile-size) must be between 8 and 8192, not 0."),
    ("ingest-mismatched", lambda d, o: _ingest(d, o, ["scene/HH.tif", "degrees.tif"]),
     errors.MisalignedInputsError, "different CRSs"),
    ("ingest-band-names", lambda d, o: _ingest(d, o, ["scene/HH.tif"], bands=["A", "B"]), errors.BandNameError,
     "2 band names"),
    ("read-table-text", lambda d, o: _read_table(d / "text.txt"), errors.SamplingError, "text.txt is not a sample table"),
    ("read-table-directory", lambda d, o: _read_table(d / "adir"), errors.SamplingError, "adir is a directory"),
    ("read-table-random-h5", lambda d, o: _read_table(d / "random.h5"), errors.SamplingError,
     "random.h5 is not a sample table written by `rastercore sample`"),
    ("read-table-stack", lambda d, o: _read_table(d / "s.zarr"), errors.SamplingError, "(no rastercore metadata)"),
    ("params-unknown", lambda d, o: _check_params("hgb", {"C": 1}), errors.ParameterError,
     "'C' is not a parameter of the hgb model"),
    ("params-not-mapping", lambda d, o: _check_params("svm", [1, 2]), errors.ParameterError, "must be a JSON object"),
    ("params-mixed", lambda d, o: _check_params("hgb", {"class_weight": "balanced", "quantile": 0.5}),
     errors.ParameterError, "mixes parameters of the hgb classifier and regressor"),
    ("params-reserved", lambda d, o: _check_params("hurdle", {"threshold": 1}), errors.ParameterError,
     "set it with labels (--labels)"),
    ("scheduler", lambda d, o: _enter_client("bogus"), errors.ParameterError, "not 'bogus'"),
    ("progress", lambda d, o: _progress("verbose"), errors.ParameterError,
     "progress (--progress) must be one of auto, bar, json, none, not 'verbose'."),
    ("pipeline-directory", lambda d, o: _load_pipeline(d / "adir"), errors.PipelineError, "adir is a directory"),
    ("pipeline-params", lambda d, o: _load_pipeline(d / "bad_params.yaml"), errors.PipelineError,
     "steps.0.train: Value error, params: 'C' is not a parameter"),
    ("pipeline-progress", lambda d, o: _run_demo_pipeline(o, "verbose"), errors.ParameterError, "not 'verbose'"),
    ("predict-band-map", lambda d, o: _predict(d, o, "s.zarr", band_map="VV"), errors.ParameterError,
     "--band-map entry 'VV' is not STACK=MODEL"),
    ("predict-bands-missing", lambda d, o: _predict(d, o, "other.zarr"), errors.BandNameError,
     "HH, HV missing"),
    ("model-pickle", lambda d, o: _load_model(d / "model.pkl"), errors.ModelFileError, "model.pkl"),
    ("model-directory", lambda d, o: _load_model(d / "adir"), errors.ModelFileError, "is a folder"),
    ("cog-jpeg-float", lambda d, o: _write_cog(d, o, compress="jpeg"), errors.ParameterError,
     "compress (--compress) JPEG holds only 8-bit (uint8) data, not float32"),
    ("features-tile-size", lambda d, o: _features(d, o, tile_size=1), errors.ParameterError, "tile_size"),
    ("stats-bins", lambda d, o: _stats(d, 1), errors.ParameterError, "bins (--bins) must be between 2"),
    ("split-block-size", lambda d, o: _split(0), errors.ParameterError, "block_size (--block-size)"),
    ("spec-unknown-feature", lambda d, o: _spec(d / "unknown_feature.yaml"), errors.FeatureSpecError,
     "unknown feature 'gausian'"),
]


@pytest.mark.parametrize("call,error,message", [pytest.param(*case[1:], id=case[0]) for case in API_CASES])
def test_python_api_raises_a_named_error(call, error, message, shared, out):
    with pytest.raises(error) as raised:
        call(shared, out)
    assert isinstance(raised.value, errors.RasterCoreError)
    assert message in str(raised.value)
