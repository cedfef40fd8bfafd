import csv
import sys

import numpy as np
import pytest

from rastercore.cli import main
from rastercore.datasets import SYNTHETIC_THRESHOLD, synthetic_scene
from rastercore.errors import ParameterError
from rastercore.store import write_tiles
from rastercore.unsupervised import DEFAULT_SPEC, map_unsupervised, sample_pixels
from rastercore.views import embedding_view, write_view
from tests.conftest import run_cli

N = 300


@pytest.fixture(scope="module")
def scene():
    ds = synthetic_scene((96, 96), seed=0, chunks=48, looks=4)
    return ds["sar"], ds["target"]


def _standardized(X):
    X = X.astype(float)
    return (X - X.mean(axis=0)) / X.std(axis=0)


def test_a_tsne_view_embeds_the_sample_as_opentsne_does_coloured_by_class(scene, tmp_path):
    import openTSNE

    sar, target = scene
    view = embedding_view(sar, None, method="tsne", n=N, target=target, thresholds=SYNTHETIC_THRESHOLD, seed=3)
    sample = sample_pixels(sar, DEFAULT_SPEC, n=N, seed=3)
    np.testing.assert_array_equal(view.row, sample["row"])
    np.testing.assert_array_equal(view.col, sample["col"])
    reference = openTSNE.TSNE(n_components=2, perplexity=30, random_state=3, n_jobs=1).fit(_standardized(sample["X"]))
    np.testing.assert_allclose(view.coordinates, np.asarray(reference), rtol=1e-6, atol=1e-6)
    expected = (target.values[sample["row"], sample["col"]] >= SYNTHETIC_THRESHOLD).astype(int)
    np.testing.assert_array_equal(view.codes, expected)
    assert view.color_by == "class" and view.names == ["< 0.6", ">= 0.6"]

    again = embedding_view(sar, None, method="tsne", n=N, seed=3)  # seeded: the same view
    np.testing.assert_array_equal(again.coordinates, view.coordinates)
    assert again.codes is None

    figure, table = write_view(view, tmp_path / "view.png")
    assert table == tmp_path / "view.csv"
    with open(figure, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(table) as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["row", "col", "map_x", "map_y", "tsne_1", "tsne_2", "class", "class_name"]
    assert [(int(r["row"]), int(r["col"])) for r in rows] == list(zip(sample["row"], sample["col"]))
    np.testing.assert_allclose([[float(r["tsne_1"]), float(r["tsne_2"])] for r in rows], view.coordinates)
    assert float(rows[0]["map_x"]) == sar["x"].values[sample["col"][0]]
    assert {r["class_name"] for r in rows} == {"< 0.6", ">= 0.6"}


def test_a_umap_view_is_umap_of_the_sample_coloured_by_cluster(scene, tmp_path):
    import umap

    sar, _ = scene
    clusters, _ = map_unsupervised(sar, tmp_path / "k.zarr", None, n_clusters=3, n=2000, progress="none")
    view = embedding_view(sar, None, method="umap", n=N, clusters=tmp_path / "k.zarr", seed=1)
    sample = sample_pixels(sar, DEFAULT_SPEC, n=N, seed=1)
    reference = umap.UMAP(n_neighbors=15, random_state=1, n_jobs=1).fit_transform(_standardized(sample["X"]))
    np.testing.assert_allclose(view.coordinates, reference, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(view.codes, clusters.values[0][sample["row"], sample["col"]].astype(int))
    assert view.color_by == "cluster" and view.names == ["0", "1", "2"]


def test_view_arguments_are_refused_in_one_sentence(scene, monkeypatch):
    sar, target = scene
    with pytest.raises(ParameterError, match=r"pca maps every pixel; run `rastercore reduce --method pca`"):
        embedding_view(sar, method="pca")
    with pytest.raises(ParameterError, match="unknown view method 'isomap'"):
        embedding_view(sar, method="isomap")
    with pytest.raises(ParameterError, match="not both"):
        embedding_view(sar, target=target, clusters=target)
    monkeypatch.setitem(sys.modules, "openTSNE", None)  # as if not installed
    missing = r"the t-SNE view needs the optional package openTSNE: pip install 'rastercore\[embed\]'$"
    with pytest.raises(ParameterError, match=missing):
        embedding_view(sar, method="tsne")


def test_cli_view_writes_figure_and_table_and_refuses_in_one_line(scene, tmp_path, capsys, monkeypatch):
    sar, target = scene
    stack = tmp_path / "s.zarr"
    write_tiles(sar, stack, progress="none")
    assert main(["view", str(stack), "-o", str(tmp_path / "v.png"), "-n", str(N), "--scheduler", "sync",
                 "--progress", "none"]) == 0
    assert f"wrote {tmp_path / 'v.png'} (tsne view of {N} pixels) and {tmp_path / 'v.csv'}" in capsys.readouterr().out
    assert (tmp_path / "v.png").stat().st_size > 0 and (tmp_path / "v.csv").exists()

    monkeypatch.setitem(sys.modules, "umap", None)
    assert main(["view", str(stack), "-o", str(tmp_path / "u.png"), "--method", "umap", "--scheduler", "sync"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["rastercore: error: the UMAP view needs the optional package umap-learn: pip install "
                   "'rastercore[embed]'"]
    done = run_cli("view", stack, "-o", tmp_path / "k.png", "--method", "kmeans", check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr + done.stdout
    assert done.stderr.strip().splitlines() == ["rastercore: error: kmeans maps every pixel; run `rastercore cluster` "
                                                "for it. A view embeds a sample with one of: tsne, umap."]


def test_pipeline_steps_reduce_with_kernel_pca_and_draw_a_view(tmp_path):
    from rastercore.errors import PipelineError
    from rastercore.pipeline import load_pipeline, run_pipeline
    from rastercore.stack import open_stack

    text = """name: u
output_dir: o
steps:
  - {kind: synth, output: scene, shape: [64, 64], seed: 0, tile_size: 32}
  - {kind: ingest, inputs: [scene/HH.tif, scene/HV.tif], output: stack.zarr, bands: [HH, HV]}
  - {kind: reduce, stack: stack.zarr, output: kpca.zarr, method: kpca, n_components: 2, n: 200, gamma: 0.3}
  - {kind: cluster, stack: stack.zarr, output: clusters.zarr, n_clusters: 2, standardize: false}
  - {kind: view, stack: stack.zarr, output: view.png, n: 200, clusters: clusters.zarr}
"""
    (tmp_path / "p.yaml").write_text(text)
    run_pipeline(load_pipeline(tmp_path / "p.yaml"), output_dir=tmp_path / "o", progress="none")
    assert open_stack(tmp_path / "o" / "kpca.zarr").shape == (2, 64, 64)
    with open(tmp_path / "o" / "view.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 200 and {r["cluster"] for r in rows} <= {"0", "1"}
    (tmp_path / "bad.yaml").write_text(text.replace("method: kpca", "method: tsne"))
    with pytest.raises(PipelineError, match=r"steps\.2\.reduce\.method: Value error, t-SNE is a view of a sample"):
        load_pipeline(tmp_path / "bad.yaml")
