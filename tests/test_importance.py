"""Permutation importance of feature groups, the training report, and the retrain on the top-k groups."""

import dataclasses
import json

import dask.array as da
import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.inspection import permutation_importance as sk_permutation_importance
from sklearn.linear_model import LogisticRegression

from rastercore.cli import main
from rastercore.datasets import synthetic_scene
from rastercore.errors import ParameterError
from rastercore.features import FeatureSpec
from rastercore.importance import (ImportanceTable, feature_groups, importance_figure, importance_markdown,
                                   narrow_spec, permutation_importance)
from rastercore.sampling import VALIDATION, SpatialSplit, draw_sample, write_table

# one informative family on HV; the noise band N feeds the others (box_std sees both bands)
SPEC = [{"name": "gaussian", "sigma": 2, "bands": ["HV"]},
        {"name": "box_mean", "size": 5, "bands": ["N"]},
        {"name": "box_std", "size": 5},
        {"name": "hessian_eig", "sigma": 1, "bands": ["N"]}]
FAMILIES = ["gaussian(sigma=2)", "box_mean(size=5)", "box_std(size=5)", "hessian_eig(sigma=1)"]


def run(*argv):
    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def scene():
    ds = synthetic_scene((256, 256), seed=1, chunks=128)
    sar = np.log(ds["sar"])
    noise = np.random.default_rng(3).normal(size=(256, 256)).astype(np.float32)
    data = da.stack([sar.data[1], da.from_array(noise, chunks=128)])
    stack = sar.copy(data=data).assign_coords(band=np.array(["HV", "N"], dtype=object))
    table = draw_sample(stack, ds["target"], SPEC, n=800, thresholds=0.6, split=SpatialSplit(block_size=32),
                        seed=0, allow_short=True)
    return stack, table


def _rows(n=600, seed=0):
    """Column 0 decides the class; the others are noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    y = (X[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(int)
    names = ["gaussian(sigma=2)[S]", "box_mean(size=5)[N]", "box_std(size=5)[S]", "box_std(size=5)[N]",
             "hessian_eig(sigma=1)[N]/l1"]
    return X, y, names


def test_the_informative_group_ranks_first():
    X, y, names = _rows()
    model = LogisticRegression().fit(X[:400], y[:400])
    table = permutation_importance(model, X[400:], y[400:], names, seed=0)
    assert table.groups[0] == "gaussian(sigma=2)" and table.mean[0] > 0.3
    assert list(table.mean) == sorted(table.mean, reverse=True)
    assert np.all(np.abs(table.mean[1:]) < 0.05)
    assert table.features[table.groups.index("box_std(size=5)")] == ["box_std(size=5)[S]", "box_std(size=5)[N]"]
    assert table.importances.shape == (4, 5) and table.rows == 200 and table.scoring == "score"
    np.testing.assert_allclose(table.mean, table.importances.mean(axis=1))
    np.testing.assert_allclose(table.std, table.importances.std(axis=1))


def test_a_single_column_group_equals_scikit_learn_for_that_column():
    """Groups of several columns force rastercore's own loop; a one-column group must match sklearn exactly."""
    X, y, names = _rows(seed=1)
    model = LogisticRegression().fit(X[:400], y[:400])
    groups = {"first": [names[0]], "pair": names[2:4], "last": [names[4]]}
    ours = permutation_importance(model, X[400:], y[400:], names, groups=groups, n_repeats=4, seed=7,
                                  scoring="accuracy")
    reference = sk_permutation_importance(model, X[400:], y[400:], n_repeats=4, random_state=7, scoring="accuracy")
    for group, column in (("first", 0), ("last", 4)):
        np.testing.assert_array_equal(ours.importances[ours.groups.index(group)], reference.importances[column])
    assert ours.grouping == "custom" and "box_mean(size=5)[N]" not in sum(ours.features, [])
    # one column per group: scikit-learn's own function, the same numbers
    alone = permutation_importance(model, X[400:], y[400:], names, groups="feature", n_repeats=4, seed=7,
                                   scoring="accuracy")
    for column, name in enumerate(names):
        np.testing.assert_array_equal(alone.importances[alone.groups.index(name)], reference.importances[column])


class _Recorder(ClassifierMixin, BaseEstimator):
    """Remembers every X it is scored on."""

    def fit(self, X, y):
        self.seen_ = []
        return self

    def score(self, X, y, sample_weight=None):
        self.seen_.append(np.array(X))
        return 0.0


def test_a_group_is_shuffled_jointly_and_nothing_else_moves():
    X = np.arange(40, dtype=float).reshape(10, 4) * [1, 100, 10_000, 1_000_000]
    names = ["a[x]", "b[x]", "b[y]", "c[x]"]
    model = _Recorder().fit(X, None)
    permutation_importance(model, X, np.zeros(10), names, groups="family", n_repeats=2, seed=0)
    assert len(model.seen_) == 7  # the baseline, then groups a, b and c twice each
    for Xp in model.seen_[3:5]:
        order = np.searchsorted(X[:, 1], Xp[:, 1])  # which row each shuffled b[x] came from
        np.testing.assert_array_equal(Xp[:, 2], X[order, 2])  # b[y] follows b[x]: one permutation for the group
        np.testing.assert_array_equal(Xp[:, [0, 3]], X[:, [0, 3]])
        assert not np.array_equal(Xp[:, 1], X[:, 1])


def test_groups_follow_the_feature_names():
    names = ["glcm(size=7,levels=16)[HH]/contrast", "glcm(size=7,levels=16)[HH]/entropy",
             "glcm(size=7,levels=16)[HV]/contrast", "ratio(a=HH,b=HV)", "window(r=1)[HH]/dy=-1,dx=0"]
    assert feature_groups(names, "family") == {"glcm(size=7,levels=16)": [0, 1, 2], "ratio(a=HH,b=HV)": [3],
                                               "window(r=1)": [4]}
    assert feature_groups(names, "band") == {"glcm(size=7,levels=16)[HH]": [0, 1], "glcm(size=7,levels=16)[HV]": [2],
                                             "ratio(a=HH,b=HV)": [3], "window(r=1)[HH]": [4]}
    assert feature_groups(names, "feature") == {n: [i] for i, n in enumerate(names)}


def test_narrow_spec_keeps_entries_and_bands_in_column_order():
    bands = ["HV", "N"]
    names = FeatureSpec.coerce(SPEC).feature_names(bands)
    spec, kept_bands, kept, columns = narrow_spec(SPEC, bands, ["box_std(size=5)[N]", "gaussian(sigma=2)[HV]"])
    assert spec.to_list() == [{"name": "gaussian", "sigma": 2.0, "bands": ["HV"]},
                              {"name": "box_std", "size": 5, "bands": ["N"]}]
    assert kept_bands == ["HV", "N"] and kept == ["gaussian(sigma=2)[HV]", "box_std(size=5)[N]"]
    assert [names[c] for c in columns] == kept
    spec, kept_bands, kept, _ = narrow_spec(SPEC, bands, ["box_std(size=5)[HV]", "box_std(size=5)[N]"])
    assert kept_bands == ["HV", "N"] and kept == ["box_std(size=5)[HV]", "box_std(size=5)[N]"]
    with pytest.raises(ParameterError, match="same feature and band"):
        narrow_spec(SPEC, bands, ["hessian_eig(sigma=1)[N]/l1"])


def test_figure_and_markdown_name_the_groups(tmp_path):
    X, y, names = _rows()
    model = LogisticRegression().fit(X[:400], y[:400])
    table = permutation_importance(model, X[400:], y[400:], names, seed=0, scoring="balanced_accuracy")
    png = importance_figure(table, tmp_path / "imp.png", highlight=table.groups[:2])
    text = importance_markdown(table, tmp_path / "imp.md")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "imp.md").read_text() == text
    assert all(f"`{g}`" in text for g in table.groups) and "balanced_accuracy" in text
    assert text.splitlines()[6].startswith("| 1 | `gaussian(sigma=2)` |")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imp.md", "imp.png"]  # no .partial left
    again = ImportanceTable.from_dict(json.loads(json.dumps(table.to_dict())))
    assert again.groups == table.groups and np.allclose(again.importances, table.importances)


def test_train_ranks_on_validation_rows_and_retrains_on_the_top_k(scene, tmp_path):
    from rastercore.predict import predict_lazy
    from rastercore.training import train_from_table

    stack, table = scene
    val = np.asarray(table.split) == VALIDATION
    model, meta = train_from_table(table, "hgb", params={"max_iter": 60}, path=tmp_path / "m.skops", top_k=2)
    ranking = meta["importance"]
    assert [g["group"] for g in ranking["groups"]][0] == "gaussian(sigma=2)"
    assert sorted(g["group"] for g in ranking["groups"]) == sorted(FAMILIES)
    assert ranking["rows"] == int(val.sum()) and ranking["scoring"] == "balanced_accuracy"
    top = meta["top_k"]
    assert top["groups"] == [g["group"] for g in ranking["groups"][:2]] and top["n_features_all"] == 6
    assert set(top["validation"]) == set(top["validation_all_features"]) >= {"balanced_accuracy"}
    assert top["validation"] == meta["validation"] and top["validation"]["balanced_accuracy"] > 0.8
    spec = FeatureSpec.from_dict(meta["feature_spec"])
    assert len(spec) == 2 and {f.name for f in spec} == {g.split("(")[0] for g in top["groups"]}
    assert spec.feature_names(meta["bands"]) == meta["feature_names"] == top["features"]
    assert model.n_features_in_ == len(meta["feature_names"])
    # the narrowed model predicts a stack: its spec computes only the kept features
    mosaic = predict_lazy(str(tmp_path / "m.skops"), stack).compute()
    columns = [list(table.feature_names).index(n) for n in meta["feature_names"]]
    rows, cols = np.asarray(table.row)[val], np.asarray(table.col)[val]
    expected = model.predict(np.asarray(table.X)[val][:, columns])
    np.testing.assert_array_equal(mosaic.sel(band="class").values[rows, cols], expected)
    # the report beside the model
    md = (tmp_path / "m.importance.md").read_text()
    assert all(f"`{g}`" in md for g in FAMILIES) and "Retrained on the top 2" in md
    assert (tmp_path / "m.importance.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.importance.md", "m.importance.png", "m.skops"]


def test_train_importance_only_keeps_the_model_whole(scene):
    from rastercore.training import train_from_table

    _, table = scene
    _, meta = train_from_table(table, "hgb", params={"max_iter": 30}, importance=True, importance_groups="band")
    assert "top_k" not in meta and meta["feature_names"] == list(table.feature_names)
    assert {g["group"] for g in meta["importance"]["groups"]} >= {"box_std(size=5)[HV]", "box_std(size=5)[N]"}


@pytest.fixture(scope="module")
def tables(scene, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("importance")
    _, table = scene
    write_table(table, tmp / "s.h5")
    no_validation = dataclasses.replace(table, split=np.zeros(len(table), np.int8))
    write_table(no_validation, tmp / "train_only.h5")
    return tmp


def test_cli_train_importance_and_info(tables, tmp_path, capsys):
    assert run("train", tables / "s.h5", "-o", tmp_path / "m.skops", "--family", "hgb", "--params",
               '{"max_iter": 30}', "--importance", "--top-k", "1", "--scheduler", "sync", "--progress", "none") == 0
    out = capsys.readouterr().out
    assert "importance (drop in balanced_accuracy" in out and "retrained on the top 1 group(s) (gaussian(sigma=2)" in out
    assert f"wrote {tmp_path / 'm.importance.png'}, {tmp_path / 'm.importance.md'}" in out
    assert run("info", tmp_path / "m.skops") == 0
    out = capsys.readouterr().out
    assert "importance  drop in balanced_accuracy" in out and " 1. " in out and "gaussian(sigma=2)" in out
    assert "top-k       retrained on the top 1 group(s): gaussian(sigma=2)" in out
    assert run("info", tmp_path / "m.skops", "--json") == 0
    described = json.loads(capsys.readouterr().out)
    assert described["importance"]["groups"][0]["group"] == "gaussian(sigma=2)" and described["top_k"]["k"] == 1


def test_yaml_train_step_takes_the_importance_fields(tables, tmp_path):
    from rastercore.pipeline import TrainStep

    step = TrainStep.model_validate({"kind": "train", "sample": str(tables / "s.h5"), "output": str(tmp_path / "m.skops"),
                                     "family": "hgb", "params": {"max_iter": 20}, "importance": True, "top_k": 2,
                                     "importance_groups": "band"})
    assert (step.importance, step.top_k, step.importance_groups) == (True, 2, "band")
    with pytest.raises(ValueError, match="top_k"):
        TrainStep.model_validate({"kind": "train", "sample": "s.h5", "output": "m.skops", "top_k": 0})


@pytest.mark.parametrize("argv,message", [
    (["--top-k", "0"], "--top-k (the number of feature groups to keep) must be at least 1, not 0"),
    (["--top-k", "5"], "must be between 1 and 4, not 5"),
    (["--importance", "--importance-groups", "bands"], "--importance-groups must be one of family, band, feature"),
    (["--top-k", "2", "--importance-groups", "feature"], "group the importance by 'family' or 'band'"),
    (["--importance", "@train_only"], "feature importance is measured on the validation rows, and the sample has none"),
])
def test_bad_importance_options_are_one_line(tables, tmp_path, capsys, argv, message):
    sample = tables / ("train_only.h5" if "@train_only" in argv else "s.h5")
    argv = [a for a in argv if a != "@train_only"]
    assert run("train", sample, "-o", tmp_path / "m.skops", "--family", "hgb", *argv, "--scheduler", "sync",
               "--progress", "none") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rastercore: error: ") and message in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_bad_importance_arguments_raise_before_fitting(scene):
    from rastercore.training import train_from_table

    _, table = scene
    with pytest.raises(ParameterError, match="between 1 and 4"):
        train_from_table(table, "hgb", top_k=7)
    with pytest.raises(ParameterError, match="validation rows"):
        permutation_importance(LogisticRegression(), np.zeros((0, 2)), np.zeros(0), ["a", "b"])
    with pytest.raises(ParameterError, match="names feature"):
        feature_groups(["a", "b"], {"g": ["a", "c"]})
