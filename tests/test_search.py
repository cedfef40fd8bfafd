"""Spatially cross-validated search: folds of whole blocks (with the gap), checked against scikit-learn's own search."""

import math

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, GroupKFold, StratifiedGroupKFold

from rastercore.errors import ParameterError, SamplingError, TrainingDataError
from rastercore.sampling import TRAIN, VALIDATION, SpatialSplit, draw_sample, write_table
from rastercore.search import DEFAULT_GRIDS, search, search_grid, spatial_folds
from rastercore.training import build_model, train_from_table

SPEC = [{"name": "box_mean", "size": 9}, {"name": "ratio", "a": "HV", "b": "HH"}]
SPLIT = SpatialSplit(block_size=64)
SMALL = {"forest": {"n_estimators": 20}, "extra-trees": {"n_estimators": 20}, "sgd": {"n_components": 30}}


@pytest.fixture(scope="module")
def regression_table(sar_scene):
    sar, target = sar_scene
    return draw_sample(sar, target, SPEC, n=300, split=SPLIT, seed=0)


def _train(sar_table):
    rows = np.asarray(sar_table.split) == TRAIN
    return (np.asarray(sar_table.X)[rows], np.asarray(sar_table.y)[rows], np.asarray(sar_table.block)[rows],
            np.asarray(sar_table.row)[rows], np.asarray(sar_table.col)[rows])


def test_folds_never_split_a_block():
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 40, 2000)
    for y in (rng.integers(0, 3, 2000), rng.random(2000)):  # stratified (classes) and plain (values)
        folds = spatial_folds(blocks, y, 4)
        assert len(folds) == 4
        tested = np.concatenate([test for _, test in folds])
        assert np.array_equal(np.sort(tested), np.arange(2000))  # every row held out exactly once
        fold_of = np.empty(2000, int)
        for k, (train, test) in enumerate(folds):
            fold_of[test] = k
            assert not set(blocks[train]) & set(blocks[test])
            assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(2000))
        for block in np.unique(blocks):  # every block's rows land in one fold
            assert len(np.unique(fold_of[blocks == block])) == 1


def test_the_gap_leaves_out_training_rows_near_the_held_out_blocks(sar_table):
    _, y, blocks, rows, cols = _train(sar_table)
    gap, size, (height, width) = sar_table.attrs["gap"], sar_table.attrs["block_size"], sar_table.attrs["shape"]
    assert gap == 4
    plain = spatial_folds(blocks, y, 3)
    gapped = spatial_folds(blocks, y, 3, rows=rows, cols=cols, gap=gap, block_size=size, shape=(height, width))
    per_row = math.ceil(width / size)
    dropped = 0
    for (train, test), (train_gap, test_gap) in zip(plain, gapped):
        assert np.array_equal(test, test_gap)
        # independent reference: Chebyshev distance from each training pixel to each held-out block's rectangle
        near = np.zeros(len(train), bool)
        for block in np.unique(blocks[test]):
            r0, c0 = (block // per_row) * size, (block % per_row) * size
            r1, c1 = min(r0 + size, height) - 1, min(c0 + size, width) - 1
            dr = np.maximum.reduce([r0 - rows[train], np.zeros(len(train), int), rows[train] - r1])
            dc = np.maximum.reduce([c0 - cols[train], np.zeros(len(train), int), cols[train] - c1])
            near |= np.maximum(dr, dc) <= gap
        np.testing.assert_array_equal(train_gap, train[~near])
        dropped += near.sum()
    assert dropped > 0  # the synthetic sample has training rows next to other training blocks


def test_search_equals_gridsearchcv_over_group_folds(sar_table, regression_table):
    X, y, blocks, _, _ = _train(sar_table)
    grid = {"C": [0.001, 0.1, 10.0]}
    best, report = search("logistic", X, y, blocks, grid, estimator=build_model("logistic"))
    reference = GridSearchCV(build_model("logistic"), {"logisticregression__C": grid["C"]},
                             cv=StratifiedGroupKFold(3), scoring="balanced_accuracy").fit(X, y, groups=blocks)
    means = [c["mean"] for c in report["candidates"]]
    np.testing.assert_allclose(means, reference.cv_results_["mean_test_score"])
    np.testing.assert_allclose([c["std"] for c in report["candidates"]], reference.cv_results_["std_test_score"])
    np.testing.assert_allclose([c["scores"][1] for c in report["candidates"]],
                               reference.cv_results_["split1_test_score"])
    assert best == {"C": reference.best_params_["logisticregression__C"]}
    assert best == report["candidates"][int(np.argmax(means))]["params"] == report["best"]["params"]
    assert report["best"]["mean"] == max(means) and report["folds"] == 3
    assert report["blocks"] == len(np.unique(blocks)) and report["scoring"] == "balanced_accuracy"

    X, y, blocks, _, _ = _train(regression_table)
    grid = {"max_leaf_nodes": [4, 31], "learning_rate": [0.05, 0.3]}
    hgb = build_model("hgb", task="regression", max_iter=30)
    best, report = search("hgb", X, y, blocks, grid, estimator=hgb)
    reference = GridSearchCV(build_model("hgb", task="regression", max_iter=30), grid, cv=GroupKFold(3),
                             scoring="r2").fit(X, y, groups=blocks)
    np.testing.assert_allclose([c["mean"] for c in report["candidates"]], reference.cv_results_["mean_test_score"])
    assert best == reference.best_params_ and report["scoring"] == "r2"


@pytest.mark.parametrize("family", sorted(DEFAULT_GRIDS))
def test_every_default_grid_runs(sar_table, family):
    X, y, blocks, _, _ = _train(sar_table)
    keep = np.isin(blocks, np.unique(blocks)[:9])  # a tiny sar_table: 9 blocks
    X, y, blocks = X[keep], y[keep], blocks[keep]
    fixed = {**SMALL.get(family, {}), **({"search": False} if family == "svm" else {})}
    best, report = search(family, X, y, blocks, "default", estimator=build_model(family, **fixed))
    assert len(report["candidates"]) == math.prod(len(v) for v in DEFAULT_GRIDS[family].values())
    assert set(best) == set(DEFAULT_GRIDS[family])
    means = [c["mean"] for c in report["candidates"]]
    assert report["best"]["mean"] == max(means) and all(len(c["scores"]) == 3 for c in report["candidates"])
    if family == "svm":  # gamma: multiples of the sample's "scale" value
        scale = 1 / (X.shape[1] * X.astype(np.float64).var())
        np.testing.assert_allclose(search_grid("svm", "default", X)["gamma"], [0.1 * scale, scale, 10 * scale])


def test_randomised_search_tries_n_iter_candidates(sar_table):
    X, y, blocks, _, _ = _train(sar_table)
    best, report = search("logistic", X, y, blocks, {"C": [0.01, 0.1, 1.0, 10.0, 100.0]}, n_iter=2, seed=3,
                          estimator=build_model("logistic"))
    assert report["strategy"] == "random" and len(report["candidates"]) == 2
    assert best in [c["params"] for c in report["candidates"]]


@pytest.mark.parametrize("family", ["extra-trees", "logistic"])
def test_new_families_train_save_and_predict(sar_table, regression_table, family, tmp_path):
    from rastercore.models import load_model

    model, meta = train_from_table(sar_table, family, path=tmp_path / "m.skops")
    loaded = load_model(tmp_path / "m.skops")
    X_val, _ = sar_table.subset(VALIDATION)
    np.testing.assert_array_equal(loaded.predict(X_val), model.predict(X_val))
    assert meta["validation"]["accuracy"] > (0.85 if family == "logistic" else 0.9)  # logistic: a linear boundary
    assert meta["family"] == family and "search" not in meta
    if family == "logistic":
        with pytest.raises(SamplingError, match="logistic is a classifier"):
            train_from_table(regression_table, family)
    else:
        _, meta = train_from_table(regression_table, family, params={"n_estimators": 20})
        assert meta["validation"]["r2"] > 0.5


def test_train_from_table_searches_the_training_rows_then_refits(sar_table, tmp_path):
    from rastercore.models import load_model

    model, meta = train_from_table(sar_table, "extra-trees", params={"n_estimators": 20}, search="default",
                                   path=tmp_path / "m.skops")
    report = meta["search"]
    X, y, blocks, rows, cols = _train(sar_table)
    assert report["blocks"] == len(np.unique(blocks))  # TRAIN rows only: validation blocks stay held out
    assert report["gap"] == sar_table.attrs["gap"] and len(report["candidates"]) == 4
    best = report["best"]["params"]
    inner = getattr(model, "model", model)  # a prior-corrected model wraps the fitted forest
    assert {k: inner.get_params()[k] for k in best} == best and inner.n_estimators == 20
    assert meta["params"] == {"n_estimators": 20, **best}
    expected, _ = search("extra-trees", X, y, blocks, "default", estimator=build_model("extra-trees", n_estimators=20),
                         rows=rows, cols=cols, gap=sar_table.attrs["gap"], block_size=64, shape=sar_table.attrs["shape"])
    assert best == expected
    _, manifest = load_model(tmp_path / "m.skops", return_manifest=True)
    assert manifest["metadata"]["search"]["best"] == report["best"]


def test_sampled_svc_searches_over_block_folds(sar_table):
    from sklearn.svm import SVC

    from rastercore.models import SampledSVC

    X, y, blocks, _, _ = _train(sar_table)
    model = SampledSVC(param_grid={"C": [0.1, 10.0]}, n_samples=None, random_state=0).fit(X, y, groups=blocks)
    idx = model.sample_indices_
    reference = GridSearchCV(SVC(kernel="rbf", cache_size=500), {"C": [0.1, 10.0]}, cv=StratifiedGroupKFold(3)
                             ).fit(X[idx], y[idx], groups=blocks[idx])
    np.testing.assert_allclose(model.cv_results_["mean_test_score"], reference.cv_results_["mean_test_score"])
    with pytest.raises(TrainingDataError, match="at least cv=3 spatial blocks"):
        SampledSVC(random_state=0).fit(X, y, groups=np.where(blocks == blocks[0], 0, 1))
    # through train_from_table the svm's own search gets the blocks, and reports like the spatial search
    _, meta = train_from_table(sar_table, "svm", params={"param_grid": {"C": [0.1, 10.0]}})
    assert meta["search"]["folds"] == 3 and len(meta["search"]["candidates"]) == 2


def test_search_on_the_dask_cluster_equals_in_process(sar_table):
    import dask
    from distributed import Client, LocalCluster, get_task_stream

    X, y, blocks, _, _ = _train(sar_table)
    grid = {"C": [0.01, 1.0]}
    local = search("logistic", X, y, blocks, grid, estimator=build_model("logistic"))
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster) as client, dask.config.set(scheduler=client), get_task_stream(client) as stream:
            remote = search("logistic", X, y, blocks, grid, estimator=build_model("logistic"))
    assert len(stream.data) >= 2 and remote == local


def test_bad_search_input(sar_table):
    X, y, blocks, _, _ = _train(sar_table)
    with pytest.raises(TrainingDataError, match="needs at least 3 spatial blocks for 3 folds, but the training rows "
                                                "lie in 2"):
        search("logistic", X, y, np.where(blocks == blocks[0], 0, 1), "default", estimator=build_model("logistic"))
    with pytest.raises(ParameterError, match="'C' needs a non-empty list"):
        train_from_table(sar_table, "logistic", search={"C": []})
    with pytest.raises(ParameterError, match="must be 'default' or a JSON object"):
        train_from_table(sar_table, "logistic", search="defaults")
    with pytest.raises(ParameterError, match="the hurdle model cannot be searched"):
        train_from_table(sar_table, "hurdle", search="default")


@pytest.mark.parametrize("grid,message", [
    ({"D": [1, 2]}, "search (--search): 'D' is not a parameter of the logistic model; its parameters are C, "),
    ({"C": [1, -1]}, "search (--search): The 'C' parameter of LogisticRegression must be"),
    ({"C": []}, "search (--search): 'C' needs a non-empty list"),
    ([1, 2], "search (--search) must be 'default' or a non-empty JSON object"),
])
def test_check_train_params_checks_the_grid(grid, message):
    from rastercore.pipeline import check_train_params

    with pytest.raises(ParameterError) as err:
        check_train_params("logistic", {}, search=grid)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    assert check_train_params("logistic", {"max_iter": 50}, search={"C": [1, 10]}) == {"max_iter": 50}
    assert check_train_params("hgb", {}, search="default") == {}


def test_cli_train_with_a_search(sar_table, tmp_path, capfd):
    from rastercore.cli import main
    from rastercore.models import load_model

    write_table(sar_table, tmp_path / "s.h5")
    argv = ["train", str(tmp_path / "s.h5"), "-o", str(tmp_path / "m.skops"), "--family", "logistic",
            "--scheduler", "sync", "--progress", "none"]
    assert main(argv + ["--search", '{"C": [0.01, 10]}']) == 0
    out = capfd.readouterr().out
    _, manifest = load_model(tmp_path / "m.skops", return_manifest=True)
    best = manifest["metadata"]["search"]["best"]
    assert f"search: best C={best['params']['C']:.4g}: balanced_accuracy {best['mean']:.4f} ± {best['std']:.4f}" in out
    assert main(["train", str(tmp_path / "s.h5"), "-o", str(tmp_path / "h.skops"), "--family", "hgb", "--search",
                 "default", "--n-iter", "2", "--scheduler", "sync", "--progress", "none"]) == 0
    _, manifest = load_model(tmp_path / "h.skops", return_manifest=True)
    assert len(manifest["metadata"]["search"]["candidates"]) == 2
    capfd.readouterr()
    code = main(["train", str(tmp_path / "s.h5"), "-o", str(tmp_path / "bad.skops"), "--family", "logistic",
                 "--search", '{"D": [1]}', "--scheduler", "sync", "--progress", "none"])
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "search (--search): 'D' is not a parameter" in lines[0]
    assert not (tmp_path / "bad.skops").exists()


def test_yaml_train_step_with_a_search(sar_table, tmp_path):
    from rastercore.errors import PipelineError
    from rastercore.models import load_model
    from rastercore.pipeline import load_pipeline, run_pipeline

    write_table(sar_table, tmp_path / "s.h5")  # outside the output directory, which must start empty
    (tmp_path / "p.yaml").write_text(
        "name: x\noutput_dir: o\nsteps:\n"
        f"  - {{kind: train, sample: {tmp_path / 's.h5'}, output: m.skops, family: logistic, "
        "search: {C: [0.01, 10]}}\n")
    run_pipeline(load_pipeline(tmp_path / "p.yaml"), output_dir=tmp_path / "o", progress="none")
    _, manifest = load_model(tmp_path / "o" / "m.skops", return_manifest=True)
    assert [c["params"] for c in manifest["metadata"]["search"]["candidates"]] == [{"C": 0.01}, {"C": 10}]
    (tmp_path / "bad.yaml").write_text(
        "name: x\noutput_dir: o\nsteps:\n"
        "  - {kind: train, sample: s.h5, output: m.skops, family: forest, search: {max_depht: [2, 4]}}\n")
    with pytest.raises(PipelineError, match="search: 'max_depht' is not a parameter of the forest model"):
        load_pipeline(tmp_path / "bad.yaml")
