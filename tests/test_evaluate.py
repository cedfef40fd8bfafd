import json

import numpy as np
import pytest
import xarray as xr
from sklearn import metrics as skm

from affine import Affine

from rastercore.datasets import synthetic_scene
from rastercore.errors import ParameterError, RasterCoreDeprecationWarning, StoreExistsError, TargetError
from rastercore.evaluate import evaluate_classes, evaluate_mosaic, evaluate_values, region_mask, write_metrics
from rastercore.sampling import VALIDATION, SpatialSplit
from rastercore.targets import IGNORE
from tests.conftest import TRANSFORM, UTM, write_tif


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


@pytest.fixture
def on_disk(tmp_path):
    """A class mosaic (64 x 80 px, UTM) written like a prediction, its class target, and a continuous target."""
    from rasterio.crs import CRS

    from rastercore.grid import Grid, attach_grid
    from rastercore.store import write_tiles

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, (64, 80))
    pred = np.where(rng.random(truth.shape) < 0.9, truth, 1 - truth).astype(np.float32)
    grid = Grid(64, 80, TRANSFORM, CRS.from_string(UTM))
    mosaic = attach_grid(xr.DataArray(pred[None], dims=("band", "y", "x"), coords={"band": ["class"]}), grid)
    write_tiles(mosaic.chunk({"y": 32, "x": 32}), tmp_path / "p.zarr", progress="none")
    codes = np.where(rng.random(truth.shape) < 0.1, np.nan, truth).astype(np.float32)  # 0.0 / 1.0, NaN nodata
    fraction = (truth * 0.5 + rng.random(truth.shape) * 0.5).astype(np.float32)  # >= 0.5 where class 1
    return (tmp_path / "p.zarr", write_tif(tmp_path / "codes.tif", codes, nodata=np.nan),
            write_tif(tmp_path / "fraction.tif", fraction), pred, codes)


def test_whole_number_float_target_is_scored_as_classes(on_disk, tmp_path):
    mosaic, codes_tif, _, pred, codes = on_disk
    result = evaluate_mosaic(mosaic, codes_tif, tmp_path / "m.json", figures=False)
    valid = np.isfinite(codes)
    assert result["classification"]["pixels"] == valid.sum()
    assert result["classification"]["overall_accuracy"] == pytest.approx((pred[valid] == codes[valid]).mean())


def test_a_class_map_against_a_continuous_target_needs_thresholds(on_disk, tmp_path, capsys):
    mosaic, _, fraction_tif, _, _ = on_disk
    with pytest.raises(TargetError, match=rf"{fraction_tif} holds non-integer values \(e\.g\. 0\.\d+\)"):
        evaluate_mosaic(mosaic, fraction_tif, tmp_path / "m.json", figures=False)
    assert not (tmp_path / "m.json").exists()
    scored = evaluate_mosaic(mosaic, fraction_tif, tmp_path / "m.json", thresholds=0.5, figures=False)
    assert scored["classification"]["overall_accuracy"] > 0.85
    from rastercore.cli import main

    assert main(["evaluate", str(mosaic), fraction_tif, "-o", str(tmp_path / "cli.json"), "--scheduler", "sync"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"rastercore: error: {fraction_tif} holds non-integer values")
    assert not (tmp_path / "cli.json").exists()


def test_a_target_elsewhere_is_refused_naming_both_files_and_their_bounds(on_disk, tmp_path):
    mosaic, _, _, pred, _ = on_disk
    far = write_tif(tmp_path / "far.tif", np.ones((64, 80), np.uint8),
                    transform=TRANSFORM @ Affine.translation(1000, 0))  # 10 km east
    with pytest.raises(TargetError) as caught:
        evaluate_mosaic(mosaic, far, tmp_path / "m.json", figures=False)
    assert str(caught.value) == (
        f"the target {far} (bounds 510000, 3999360, 510800, 4000000 in EPSG:32633) does not overlap the prediction "
        f"{mosaic} (bounds 500000, 3999360, 500800, 4000000 in EPSG:32633): there is nothing to score; give a target "
        "of the mosaic's area.")
    geographic = write_tif(tmp_path / "geo.tif", np.ones((10, 10), np.uint8), crs="EPSG:4326",
                           transform=Affine(0.01, 0, 10, 0, -0.01, 50))
    with pytest.raises(TargetError, match=r"geo\.tif \(bounds 10, 49\.9, 10\.1, 50 in EPSG:4326\) does not overlap"):
        evaluate_mosaic(mosaic, geographic, tmp_path / "m.json", figures=False)


def test_a_stack_is_not_a_prediction_mosaic(tmp_path, hh_hv):
    from rastercore import ingest

    (hh, hv), _ = hh_hv
    ingest([hh, hv], tmp_path / "stack.zarr", bands=["HH", "HV"], progress="none")
    with pytest.raises(ParameterError, match=r"stack\.zarr has no class, value or cluster layer \(its layers: HH, "
                                             r"HV\): it is not a prediction mosaic"):
        evaluate_mosaic(tmp_path / "stack.zarr", hh, tmp_path / "m.json", figures=False)
    assert not (tmp_path / "m.json").exists()


def test_a_region_without_pixels_is_refused(on_disk, tmp_path):
    from sklearn.dummy import DummyClassifier

    from rastercore.models import save_model

    mosaic, codes_tif, _, _, codes = on_disk
    model = save_model(DummyClassifier().fit([[0], [1]], [0, 1]), tmp_path / "m.skops",
                       metadata={"training": {"block_size": 16, "validation_fraction": 0.0, "gap": 0, "seed": 0}})
    with pytest.raises(TargetError, match=rf"no pixel of the validation region has both a prediction in {mosaic} and a "
                                          rf"target value in {codes_tif}: there is nothing to score.*--validation 0"):
        evaluate_mosaic(mosaic, codes_tif, tmp_path / "m.json", model=model, region="validation", figures=False)
    assert evaluate_mosaic(mosaic, codes_tif, tmp_path / "m.json", model=model, region="train",
                           figures=False)["classification"]["pixels"] == np.isfinite(codes).sum()
    empty = write_tif(tmp_path / "empty.tif", np.full(codes.shape, np.nan, np.float32), nodata=np.nan)
    with pytest.raises(TargetError, match=rf"no pixel has both a prediction in {mosaic} and a target value in {empty}"):
        evaluate_mosaic(mosaic, empty, tmp_path / "m2.json", figures=False)


def test_a_cluster_map_is_scored_as_codes(on_disk, tmp_path):
    from rastercore.stack import open_stack
    from rastercore.store import write_tiles

    mosaic, codes_tif, _, pred, codes = on_disk
    clusters = open_stack(mosaic).assign_coords(band=["cluster"])
    write_tiles(clusters, tmp_path / "clusters.zarr", progress="none")
    result = evaluate_mosaic(tmp_path / "clusters.zarr", codes_tif, tmp_path / "m.json", figures=False)
    valid = np.isfinite(codes)
    assert result["classification"]["confusion_matrix"] == skm.confusion_matrix(codes[valid], pred[valid]).tolist()


def test_class_areas_and_area_estimates_are_in_the_json_and_markdown(on_disk, tmp_path):
    mosaic, codes_tif, _, pred, codes = on_disk
    evaluate_mosaic(mosaic, codes_tif, tmp_path / "m.json", figures=False)
    areas = json.loads((tmp_path / "m.json").read_text())["classification"]["areas"]
    pixels = np.bincount(pred.astype(int).ravel())
    mapped = areas["mapped"]
    assert areas["unit"] == "ha" and mapped["region"] == "all" and mapped["pixels"] == pred.size
    assert [mapped["per_class"][k]["pixels"] for k in "01"] == pixels.tolist()
    assert [mapped["per_class"][k]["hectares"] for k in "01"] == pytest.approx(pixels * 0.01)  # 10 m pixels
    sample = areas["target_sample"]
    valid = np.isfinite(codes)
    counts = skm.confusion_matrix(pred[valid], codes[valid])  # rows: map class, columns: reference
    assert sample["reference_units"] == valid.sum() and sample["sample_counts"] == counts.tolist()
    expected = (pixels * 0.01)[:, None] * counts / counts.sum(axis=1, keepdims=True)
    assert [sample["per_class"][k]["area"] for k in "01"] == pytest.approx(expected.sum(axis=0))
    assert all(sample["per_class"][k]["area_ci95"] > 0 for k in "01")
    markdown = (tmp_path / "m.md").read_text()
    assert f"Mapped area of the all region: {pred.size * 0.01:.2f} ha in {pred.size} pixels" in markdown
    assert f"| 0 | {pixels[0]} | {pixels[0] * 0.01:.2f} |" in markdown
    assert "Error-adjusted areas from the target pixels (stratified estimator of Olofsson et al. 2014" in markdown
    line = next(x for x in markdown.splitlines() if x.startswith(f"| 1 | {counts[1].sum()} |"))
    assert f"{sample['per_class']['1']['area']:,.2f} ± {sample['per_class']['1']['area_ci95']:,.2f}" in line


@pytest.fixture
def split_model(tmp_path):
    from sklearn.dummy import DummyClassifier

    from rastercore.models import save_model

    training = {"block_size": 16, "validation_fraction": 0.5, "gap": 0, "seed": 0}
    return save_model(DummyClassifier().fit([[0], [1]], [0, 1]), tmp_path / "split.skops",
                      metadata={"training": training, "class_names": ["water", "land"]})


def _validation_pixels(mosaic) -> np.ndarray:
    from rastercore.stack import open_stack

    split = SpatialSplit(block_size=16, validation_fraction=0.5)
    return region_mask(open_stack(mosaic), split=split, which=VALIDATION, seed=0, halo=0).compute()


def test_region_areas_and_figures_show_only_the_region(on_disk, split_model, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from rastercore import viz

    mosaic, codes_tif, _, pred, codes = on_disk
    inside = _validation_pixels(mosaic)
    assert 0 < inside.sum() < inside.size
    evaluate_mosaic(mosaic, codes_tif, tmp_path / "all.json", model=split_model)
    part = evaluate_mosaic(mosaic, codes_tif, tmp_path / "val.json", model=split_model, region="validation")
    mapped = part["classification"]["areas"]["mapped"]
    assert mapped["region"] == "validation" and mapped["pixels"] == inside.sum()
    assert [mapped["per_class"][k]["pixels"] for k in ("water", "land")] == np.bincount(
        pred[inside].astype(int), minlength=2).tolist()
    whole, region = (plt.imread(tmp_path / f"{stem}_comparison.png") for stem in ("all", "val"))
    assert whole.shape != region.shape or not np.array_equal(whole, region)
    seen = {}
    monkeypatch.setattr(viz, "comparison_figure", lambda prediction, target, path, **kw: seen.update(
        prediction=np.asarray(prediction.values, float), target=np.asarray(target.values, float)))
    evaluate_mosaic(mosaic, codes_tif, tmp_path / "val.json", model=split_model, region="validation", overwrite=True)
    assert np.isnan(seen["prediction"][~inside]).all() and np.isnan(seen["target"][~inside]).all()
    np.testing.assert_array_equal(seen["prediction"][inside], pred[inside])
    np.testing.assert_array_equal(seen["target"][inside], np.where(np.isfinite(codes), codes, IGNORE)[inside])


def _write_reference(path, geometries, labels, *, crs, field="label"):
    import pyogrio.raw
    import shapely

    pyogrio.raw.write(path, shapely.to_wkb(np.array(geometries, dtype=object)), [np.array(labels, dtype=object)],
                      [field], geometry_type="Unknown", crs=crs, driver="GPKG")
    return path


@pytest.fixture
def reference_file(on_disk, tmp_path):
    """40 labelled points (WGS 84) at pixel centres of the on_disk mosaic, one outside it, and a 10 x 10 px polygon."""
    import pyproj
    import shapely

    _, _, _, pred, _ = on_disk
    rng = np.random.default_rng(5)
    rows, cols = rng.integers(0, 64, 40), rng.integers(0, 80, 40)
    labels = rng.integers(0, 2, 40)
    x, y = TRANSFORM @ (cols + 0.5, rows + 0.5)
    to_wgs84 = pyproj.Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    lon, lat = to_wgs84.transform(np.r_[x, 400_000], np.r_[y, y[0]])  # the last point lies 100 km west of the map
    polygon = shapely.transform(shapely.box(500_000, 3_999_900, 500_100, 4_000_000),  # pixels [0:10, 0:10]
                                lambda xy: np.column_stack(to_wgs84.transform(xy[:, 0], xy[:, 1])))
    names = np.array(["water", "land"])
    path = _write_reference(tmp_path / "reference.gpkg", [*shapely.points(lon, lat), polygon],
                            [*names[labels], "water", "land"], crs="EPSG:4326")
    expected = np.zeros((2, 2), np.int64)
    np.add.at(expected, (pred[rows, cols].astype(int), labels), 1)
    expected[:, 1] += np.bincount(pred[:10, :10].astype(int).ravel(), minlength=2)
    return path, expected


def test_reference_points_and_polygons_give_area_estimates_with_the_whole_maps_areas(on_disk, split_model,
                                                                                    reference_file, tmp_path):
    mosaic, codes_tif, _, pred, _ = on_disk
    path, expected = reference_file
    result = evaluate_mosaic(mosaic, codes_tif, tmp_path / "m.json", model=split_model, region="validation",
                             figures=False, reference=path, reference_field="label")
    areas = json.loads((tmp_path / "m.json").read_text())["classification"]["areas"]
    sample = areas["reference_sample"]
    assert sample["sample_counts"] == expected.tolist() == result["classification"]["areas"]["reference_sample"][
        "sample_counts"]
    assert sample["dropped"] == {"outside the map": 1, "on nodata": 0} and sample["reference_units"] == expected.sum()
    assert sample["classes"] == ["water", "land"]
    whole = np.bincount(pred.astype(int).ravel()) * 0.01
    assert [sample["per_class"][k]["mapped_area"] for k in ("water", "land")] == pytest.approx(whole)
    assert areas["mapped"]["pixels"] < pred.size  # the region's own areas are of the validation pixels only
    share = expected / expected.sum(axis=1, keepdims=True)
    assert [sample["per_class"][k]["area"] for k in ("water", "land")] == pytest.approx((whole[:, None] * share).sum(0))
    assert "Error-adjusted areas from the reference file" in (tmp_path / "m.md").read_text()


def test_the_cli_takes_a_reference_file(on_disk, split_model, reference_file, tmp_path, capsys):
    from rastercore.cli import main

    mosaic, codes_tif, _, _, _ = on_disk
    path, expected = reference_file
    out = tmp_path / "cli.json"
    assert main(["evaluate", str(mosaic), codes_tif, "-o", str(out), "--model", str(split_model), "--reference",
                 str(path), "--reference-field", "label", "--no-figures", "--scheduler", "sync"]) == 0
    assert json.loads(out.read_text())["classification"]["areas"]["reference_sample"]["sample_counts"] == \
        expected.tolist()
    assert "Error-adjusted areas from the reference file" in capsys.readouterr().out


def test_a_bad_reference_file_is_refused_before_any_work(on_disk, split_model, tmp_path):
    import shapely

    mosaic, codes_tif, _, _, _ = on_disk
    point = [shapely.Point(500_005, 3_999_995)]
    out = tmp_path / "m.json"
    with pytest.raises(ParameterError, match=r"reference file .*missing\.gpkg \(--reference\) does not exist"):
        evaluate_mosaic(mosaic, codes_tif, out, model=split_model, reference=tmp_path / "missing.gpkg")
    labelled = _write_reference(tmp_path / "a.gpkg", point, ["water"], crs=UTM)
    with pytest.raises(ParameterError, match=r"a\.gpkg has no field 'klass' \(its fields: label\); name the field "
                                             r"holding the reference class with --reference-field"):
        evaluate_mosaic(mosaic, codes_tif, out, model=split_model, reference=labelled, reference_field="klass")
    unknown = _write_reference(tmp_path / "b.gpkg", point, ["forest"], crs=UTM)
    with pytest.raises(ParameterError, match=r"'forest' in field 'label' of the reference file .*b\.gpkg is not a "
                                             r"class of the map \(its classes: water, land\)"):
        evaluate_mosaic(mosaic, codes_tif, out, model=split_model, reference=unknown, reference_field="label")
    line = _write_reference(tmp_path / "c.gpkg", [shapely.LineString([(500_000, 3_999_990), (500_050, 3_999_990)])],
                            ["water"], crs=UTM)
    with pytest.raises(ParameterError, match=r"holds a LineString; give points or polygons"):
        evaluate_mosaic(mosaic, codes_tif, out, model=split_model, reference=line, reference_field="label")
    assert not out.exists()


def test_a_cluster_map_gets_rand_index_and_mutual_information_equal_to_scikit_learn(on_disk, tmp_path):
    """Three clusters with arbitrary codes against two classes; contingency accumulated over 32-px tiles."""
    from rastercore.grid import grid_of
    from rastercore.stack import open_stack
    from rastercore.store import write_tiles

    mosaic, codes_tif, _, pred, codes = on_disk
    rng = np.random.default_rng(1)
    clusters = np.where(pred == 1, 2, np.where(rng.random(pred.shape) < 0.3, 0, 5)).astype(np.float32)
    clusters[:3] = np.nan  # unlabelled pixels are left out
    layer = open_stack(mosaic).copy(data=clusters[None]).assign_coords(band=["cluster"])
    write_tiles(layer.chunk({"y": 32, "x": 32}), tmp_path / "clusters.zarr", progress="none")
    assert grid_of(open_stack(tmp_path / "clusters.zarr")) == grid_of(open_stack(mosaic))
    result = evaluate_mosaic(tmp_path / "clusters.zarr", codes_tif, tmp_path / "m.json", figures=False)
    valid = np.isfinite(codes) & np.isfinite(clusters)
    truth, found = codes[valid].astype(int), clusters[valid].astype(int)
    scores = result["clustering"]
    assert (scores["pixels"], scores["classes"], scores["clusters"]) == (valid.sum(), 2, 3)
    assert scores["adjusted_rand_index"] == pytest.approx(skm.adjusted_rand_score(truth, found), rel=1e-12)
    assert scores["normalized_mutual_info"] == pytest.approx(skm.normalized_mutual_info_score(truth, found),
                                                             rel=1e-12)
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["clustering"]["adjusted_rand_index"] == pytest.approx(scores["adjusted_rand_index"])
    assert "Adjusted Rand index" in (tmp_path / "m.md").read_text()
    assert "clustering" not in evaluate_mosaic(mosaic, codes_tif, tmp_path / "c.json", figures=False)  # a class map


@pytest.mark.parametrize("truth,found", [
    ([0, 0, 1, 1], [5, 5, 2, 2]),  # the same partition, other codes
    ([0, 0, 1, 1], [0, 1, 0, 1]),  # worse than chance
    ([0, 0, 0, 0], [0, 0, 0, 0]),  # one class, one cluster
    ([0, 1, 2, 3], [0, 0, 0, 0]),  # one cluster
    ([0, 0, 1, 2, 2, 2, 1], [1, 1, 1, 0, 3, 3, 0]),
], ids=["relabelled", "anti", "one-one", "one-cluster", "mixed"])
def test_clustering_scores_from_a_contingency_table_equal_scikit_learn(truth, found):
    from rastercore.evaluate import clustering_scores

    table = skm.cluster.contingency_matrix(truth, found)
    scores = clustering_scores(np.pad(table, ((0, 1), (1, 0))))  # empty rows and columns do not count
    assert scores["adjusted_rand_index"] == pytest.approx(skm.adjusted_rand_score(truth, found), abs=1e-12)
    assert scores["normalized_mutual_info"] == pytest.approx(skm.normalized_mutual_info_score(truth, found), abs=1e-12)
