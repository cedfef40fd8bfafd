import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from rastercore.cli import app, main
from tests.conftest import write_tif

COMMANDS = ["ingest", "info", "export", "quicklook", "synth", "demo", "run", "features", "stats", "sample", "train",
            "predict", "evaluate", "cluster", "reduce", "view", "autoencoder", "clean", "polygonize"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    assert main([command, "--help"]) == 0
    assert "Usage: rastercore " + command in capsys.readouterr().out


def test_top_level_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(c in out for c in COMMANDS)
    import typer

    assert sorted(typer.main.get_command(app).commands) == sorted(COMMANDS)


def test_help_lists_the_codecs_and_model_families_and_hides_old_spellings(capsys):
    from rastercore.store import CODECS
    from rastercore.training import MODEL_FAMILIES

    assert main(["ingest", "--help"]) == 0
    out = capsys.readouterr().out
    assert all(codec in out for codec in CODECS)
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert all(family in out for family in MODEL_FAMILIES) and "--family" in out and "--model" not in out
    assert main(["cluster", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--n-clusters" in out and "--clusters" not in out and "--sample" not in out
    assert main(["reduce", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--n-components" in out and "--components" not in out


def test_ingest_info_export_with_json_progress(tmp_path, hh_hv, capsys):
    (hh, hv), expected = hh_hv
    stack = str(tmp_path / "s.zarr")
    code = main(["ingest", hh, hv, "-o", stack, "--bands", "HH,HV", "--tile-size", "128",
                 "--scheduler", "sync", "--progress", "json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "bands    HH, HV" in captured.out and "EPSG:32633" in captured.out
    records = [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")]
    assert records[-1]["stage"] == "ingest" and records[-1]["done"] == records[-1]["total"] == 6
    assert main(["info", stack, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape"] == [2, 300, 200] and info["tile"] == [128, 128]
    import zarr

    codecs = zarr.open_array(store=stack, path="data", mode="r").metadata.codecs
    assert [c.cname.value for c in codecs if hasattr(c, "cname")] == ["lz4"]  # the default
    assert main(["ingest", hh, "-o", str(tmp_path / "z.zarr"), "--codec", "zstd", "--scheduler", "sync",
                 "--progress", "none"]) == 0
    codecs = zarr.open_array(store=str(tmp_path / "z.zarr"), path="data", mode="r").metadata.codecs
    assert [c.cname.value for c in codecs if hasattr(c, "cname")] == ["zstd"]
    capsys.readouterr()
    tif = str(tmp_path / "s.tif")
    assert main(["export", stack, tif, "--scheduler", "sync", "--progress", "none"]) == 0
    with rasterio.open(tif) as src:
        np.testing.assert_array_equal(src.read(), expected)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["info", "{tmp}/missing.tif"], "missing.tif does not exist"),
        (["ingest", "{hh}", "{odd}", "-o", "{tmp}/s.zarr", "--scheduler", "sync"], "in different CRSs"),
        (["ingest", "{hh}", "-o", "{tmp}/s.zarr", "--bands", "A,B", "--scheduler", "sync"], "2 band names given"),
        (["ingest", "{hh}", "-o", "{tmp}", "--scheduler", "sync"], "already exists"),
        (["info", "{tmp}/never.zarr"], "does not exist"),
        (["ingest", "{hh}", "-o", "{tmp}/c.zarr", "--codec", "gzip", "--scheduler", "sync"],
         "codec (--codec) must be one of lz4, zstd, none, not 'gzip'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, hh_hv, capsys, argv, message):
    (hh, _), _ = hh_hv
    odd = write_tif(tmp_path / "odd.tif", np.zeros((10, 10), np.float32), crs="EPSG:4326",
                    transform=Affine(0.001, 0, 15.0, 0, -0.001, 36.0))
    argv = [a.format(tmp=tmp_path, hh=hh, odd=odd) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rastercore: error:") and message in err[0]


def test_usage_error_is_one_line_and_exits_2(capsys):
    assert main(["ingest"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "rastercore: error: Missing argument 'inputs'; see `rastercore ingest --help`."]


def test_version(capsys):
    from rastercore import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"rastercore {__version__}\n"


def test_with_json_progress_stderr_is_only_json_lines_on_a_local_cluster(tmp_path, capfd, monkeypatch):
    """The cluster, the progress and the notices are JSON objects; nothing else reaches stderr."""
    monkeypatch.delenv("RASTERCORE_SCHEDULER", raising=False)
    scan = write_tif(tmp_path / "scan.png", np.zeros((64, 64), np.uint8), crs=None, driver="PNG")
    assert main(["ingest", scan, "-o", str(tmp_path / "s.zarr"), "--tile-size", "32", "--progress", "json"]) == 0
    lines = capfd.readouterr().err.splitlines()
    assert [line for line in lines if not line.startswith("{")] == []
    records = [json.loads(line) for line in lines]
    cluster = [r for r in records if r.get("event") == "cluster"]
    assert len(cluster) == 1 and cluster[0]["threads"] >= 1 and cluster[0]["dashboard"].startswith("http")
    assert any(r.get("event") == "notice" and "no CRS or geotransform" in r["message"] for r in records)
    assert records[-1]["stage"] == "ingest" and records[-1]["done"] == records[-1]["total"] > 0


def test_without_progress_a_local_cluster_prints_nothing(tmp_path, hh_hv, capfd, monkeypatch):
    monkeypatch.delenv("RASTERCORE_SCHEDULER", raising=False)
    (hh, _), _ = hh_hv
    assert main(["ingest", hh, "-o", str(tmp_path / "s.zarr"), "--progress", "none"]) == 0
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("command", ["sample", "train", "evaluate", "stats"])
def test_every_long_command_takes_progress(command, capsys):
    assert main([command, "--help"]) == 0
    assert "--progress" in capsys.readouterr().out


def test_stats_reports_json_progress(small_stack, capsys):
    capsys.readouterr()
    assert main(["stats", small_stack, "--scheduler", "sync", "--progress", "json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(r["stage"], r["done"], r["total"]) for r in records] == [("stats", 1, 1)]


@pytest.mark.parametrize(
    "argv,target,paths",
    [
        (["ingest", "a.tif", "b.h5:/data/HV", "-o", "s.zarr"], "rastercore.stack.ingest", ["a.tif", "b.h5:/data/HV", "s.zarr"]),
        (["synth", "scene", "--size", "8x8"], "rastercore.datasets.write_synthetic_scene", ["scene"]),
        (["run", "p.yaml"], "rastercore.pipeline.load_pipeline", ["p.yaml"]),
        (["train", "t.h5", "-o", "m.skops"], "rastercore.sampling.read_table", ["t.h5"]),
    ],
    ids=["ingest", "synth", "run", "train"],
)
def test_path_arguments_reach_the_work_absolute(tmp_path, monkeypatch, capsys, argv, target, paths):
    """Workers on a cluster run elsewhere: every path the CLI hands on is absolute."""
    import importlib

    from rastercore.errors import ParameterError

    received = []

    def stop(*args, **kwargs):
        received.extend(str(a) for a in [*args, *kwargs.values()] for a in (a if isinstance(a, list) else [a]))
        raise ParameterError("stopped here")

    module, name = target.rsplit(".", 1)
    monkeypatch.setattr(importlib.import_module(module), name, stop)
    monkeypatch.chdir(tmp_path)
    assert main(argv + (["--scheduler", "sync"] if argv[0] != "run" else [])) == 2
    assert "stopped here" in capsys.readouterr().err
    assert {str(tmp_path / p) for p in paths} <= set(received)


def test_urls_and_vsi_paths_are_kept_as_given():
    from rastercore.cli import _absolute

    assert _absolute("s3://bucket/a.tif") == "s3://bucket/a.tif"
    assert _absolute("/vsicurl/https://host/a.tif") == "/vsicurl/https://host/a.tif"
    assert _absolute(Path("a.zarr")) == Path.cwd() / "a.zarr" and _absolute(None) is None


@pytest.fixture(scope="module")
def busy_scene(tmp_path_factory):
    """Two 1024 x 1024 bands: an ingest in 64-px tiles (256 tiles) runs for seconds."""
    tmp = tmp_path_factory.mktemp("busy")
    rng = np.random.default_rng(1)
    bands = rng.gamma(1.0, 0.2, (2, 1024, 1024)).astype(np.float32)
    return [write_tif(tmp / f"{name}.tif", band) for name, band in zip(("HH", "HV"), bands)], bands


def _ctrl_c_after_the_first_tile(argv: list[str], output: Path) -> subprocess.CompletedProcess:
    """Run ``rastercore argv`` and send SIGINT to its process group (as Ctrl-C in a terminal) once a tile is written."""
    from rastercore.store import LEDGER_DIR, partial_path

    env = {k: v for k, v in os.environ.items() if k != "RASTERCORE_SCHEDULER"}
    proc = subprocess.Popen([sys.executable, "-m", "rastercore.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)
    ledger, deadline = partial_path(output) / LEDGER_DIR, time.monotonic() + 120
    while not any(ledger.glob("*.done")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no tile was written in 120 s"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.mark.parametrize("scheduler", [["--scheduler", "threads"], []], ids=["threads", "local-cluster"])
def test_ctrl_c_is_one_line_exit_130_and_resume_finishes(busy_scene, tmp_path, scheduler):
    (hh, hv), bands = busy_scene
    output = tmp_path / "s.zarr"
    argv = ["ingest", hh, hv, "-o", str(output), "--tile-size", "64", "--progress", "none"]
    result = _ctrl_c_after_the_first_tile(argv + scheduler, output)
    assert result.returncode == 130, result.stderr
    assert result.stderr.splitlines() == ["rastercore: interrupted; rerun the same command with --resume to finish"]
    assert not output.exists()
    assert main(argv + ["--resume", "--scheduler", "threads"]) == 0
    from rastercore import open_stack

    np.testing.assert_array_equal(open_stack(output).values, bands)


def test_console_script_prints_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "rastercore.cli", "info", str(tmp_path / "nope.tif")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "nope.tif does not exist" in result.stderr


def test_notice_for_ungeoreferenced_input(tmp_path, capsys):
    path = write_tif(tmp_path / "scan.png", np.zeros((20, 20), np.uint8), crs=None, driver="PNG")
    assert main(["ingest", path, "-o", str(tmp_path / "s.zarr"), "--scheduler", "sync", "--progress", "none"]) == 0
    assert "rastercore: notice:" in capsys.readouterr().err


def test_synth_writes_scene(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "scene"), "--size", "64x96", "--scheduler", "sync", "--progress", "none"]) == 0
    with rasterio.open(tmp_path / "scene" / "HH.tif") as src:
        assert src.shape == (64, 96)
    assert main(["synth", str(tmp_path / "x"), "--size", "64by96"]) == 2


SPEC_YAML = """\
normalize: zscore
features:
  - {name: gaussian, sigma: 1.5}
  - {name: box_std, size: 5, bands: [HV]}
  - {name: ratio, a: HV, b: HH}
"""


@pytest.fixture
def small_stack(tmp_path, hh_hv):
    (hh, hv), _ = hh_hv
    path = str(tmp_path / "s.zarr")
    assert main(["ingest", hh, hv, "-o", path, "--bands", "HH,HV", "--tile-size", "128",
                 "--scheduler", "sync", "--progress", "none"]) == 0
    return path


def test_features_writes_store_equal_to_compute_features(tmp_path, small_stack, capsys):
    from rastercore import open_stack
    from rastercore.features import SPEC_ATTR, FeatureSpec, compute_features, stored_spec

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(SPEC_YAML)
    out = str(tmp_path / "f.zarr")
    capsys.readouterr()
    assert main(["features", small_stack, "-o", out, "--spec", str(spec_file), "--scheduler", "sync",
                 "--progress", "none"]) == 0
    printed = capsys.readouterr().out
    assert "4 features" in printed and "zscore" in printed and "ratio(a=HV,b=HH)" in printed
    feats = open_stack(out)
    assert feats.dims == ("feature", "y", "x") and feats.dtype == np.float32
    assert feats.chunks[1][0] == feats.chunks[2][0] == 128
    assert feats.rio.crs == open_stack(small_stack).rio.crs
    saved = json.loads(feats.attrs[SPEC_ATTR])
    assert saved["normalize"]["method"] == "zscore" and saved["normalize"]["stats"]["band_names"] == ["HH", "HV"]
    stack = open_stack(small_stack)
    expected = compute_features(stack, FeatureSpec.from_file(spec_file).fit_normalizer(stack))
    assert list(feats["feature"].values) == list(expected["feature"].values)
    np.testing.assert_array_equal(feats.values, expected.values)
    assert stored_spec(out) == FeatureSpec.from_dict(saved)
    # the saved spec, reused on the same stack, gives the same store (no refit)
    (tmp_path / "fitted.json").write_text(feats.attrs[SPEC_ATTR])
    again = str(tmp_path / "g.zarr")
    assert main(["features", small_stack, "-o", again, "--spec", str(tmp_path / "fitted.json"),
                 "--tile-size", "256", "--scheduler", "sync", "--progress", "none"]) == 0
    np.testing.assert_array_equal(open_stack(again).values, feats.values)
    assert open_stack(again).chunks[1][0] == 256


def test_features_resume_writes_only_missing_tiles(tmp_path, small_stack, monkeypatch, capsys):
    import rastercore.store._publish
    from rastercore import open_stack
    from rastercore.store import partial_path

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(SPEC_YAML)
    out = tmp_path / "f.zarr"
    argv = ["features", small_stack, "-o", str(out), "--spec", str(spec_file), "--tile-size", "128",
            "--scheduler", "sync", "--progress", "none"]
    original = rastercore.store._publish._store_block
    calls = []

    def failing(*args):
        calls.append(args[2])
        if len(calls) > 3:
            raise OSError("disk full")
        return original(*args)

    monkeypatch.setattr(rastercore.store._publish, "_store_block", failing)
    assert main(argv) == 1  # an unexpected error: one line, no traceback
    assert capsys.readouterr().err.strip().startswith("rastercore: error: unexpected OSError: disk full")
    assert partial_path(out).exists() and not out.exists()
    written = []
    monkeypatch.setattr(rastercore.store._publish, "_store_block", lambda *a: written.append(a[2]) or original(*a))
    assert main(argv + ["--resume"]) == 0
    assert len(written) == 6 - 3  # 3 x 2 tiles in all
    monkeypatch.undo()
    assert main(argv[:3] + [str(tmp_path / "whole.zarr")] + argv[4:]) == 0
    np.testing.assert_array_equal(open_stack(out).values, open_stack(tmp_path / "whole.zarr").values)


def test_features_list(capsys):
    assert main(["features", "--list"]) == 0
    out = capsys.readouterr().out
    assert "multiscale_basic" in out and "sigma=(required)" in out and "size=3" in out


def test_stats_matches_numpy(small_stack, hh_hv, capsys):
    _, expected = hh_hv
    capsys.readouterr()
    assert main(["stats", small_stack, "--json", "--scheduler", "sync"]) == 0
    got = json.loads(capsys.readouterr().out)["bands"]
    assert list(got) == ["HH", "HV"]
    for band, values in zip(got, expected.astype(np.float64)):
        assert got[band]["count"] == values.size
        np.testing.assert_allclose([got[band][k] for k in ("min", "max", "mean", "std")],
                                   [values.min(), values.max(), values.mean(), values.std()], rtol=1e-9)
        width = (values.max() - values.min()) / 1024
        assert abs(got[band]["p50"] - np.median(values)) <= 2 * width
    assert main(["stats", small_stack, "--scheduler", "sync"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["band", "count", "min"] and table[1].startswith("HH")


@pytest.mark.parametrize(
    "spec_text,extra,message",
    [
        ("- {name: gausian, sigma: 2}\n", [], "unknown feature 'gausian'; valid feature names: box_max"),
        ("features: [{name: gaussian, sigma: 2}\n", [], "is not valid YAML at line 2"),
        ("- {name: gaussian, sigma: 2, bands: [VV]}\n", [], "['VV'] that the stack does not have"),
        ("- {name: ratio, a: HH, b: VH}\n", [], "available bands: ['HH', 'HV']"),
        ("- {name: gaussian, sigma: 2}\n", ["--normalize", "l2"], "unknown normalisation 'l2'"),
        ("- {name: box_mean, size: 4}\n", [], "must be odd"),
    ],
)
def test_features_bad_input_is_one_line_and_exit_2(tmp_path, small_stack, capsys, spec_text, extra, message):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(spec_text)
    capsys.readouterr()
    code = main(["features", small_stack, "-o", str(tmp_path / "f.zarr"), "--spec", str(spec_file),
                 "--scheduler", "sync", "--progress", "none", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("rastercore: error:") and message in err[0]
    if "valid feature names" in message:
        assert all(name in err[0] for name in ("gaussian", "multiscale_basic", "ratio", "window"))
    assert not (tmp_path / "f.zarr").exists()


def test_features_without_output_is_a_usage_error(small_stack, capsys):
    assert main(["features", small_stack, "--spec", "spec.yaml"]) == 2
    assert "missing -o/--output" in capsys.readouterr().err


def test_demo_prints_outputs_and_metrics(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path / "d"), "--size", "256x256", "--scheduler", "sync", "--progress", "none"])
    out = capsys.readouterr().out
    assert code == 0
    assert "prediction.zarr" in out and "Evaluation (all pixels)" in out and "Overall accuracy" in out
    assert "Evaluation (validation pixels)" in out


def test_feature_store_exports_and_describes(tmp_path, hh_hv, capsys):
    (hh, hv), _ = hh_hv
    stack = tmp_path / "s.zarr"
    assert main(["ingest", hh, hv, "-o", str(stack), "--bands", "HH,HV", "--scheduler", "sync", "--progress", "none"]) == 0
    (tmp_path / "spec.yaml").write_text("- {name: box_mean, size: 3}\n")
    feats = tmp_path / "f.zarr"
    assert main(["features", str(stack), "-o", str(feats), "--spec", str(tmp_path / "spec.yaml"),
                 "--scheduler", "sync", "--progress", "none"]) == 0
    assert main(["info", str(feats), "--json"]) == 0
    assert main(["export", str(feats), str(tmp_path / "f.tif"), "--scheduler", "sync", "--progress", "none"]) == 0
    with rasterio.open(tmp_path / "f.tif") as src:
        assert src.count == 2 and src.descriptions == ("box_mean(size=3)[HH]", "box_mean(size=3)[HV]")


def test_cluster_and_reduce_write_maps_and_models(tmp_path, small_stack, capsys):
    from rastercore import open_stack
    from rastercore.models import load_model
    from rastercore.predict import predict_lazy

    clusters, model, cog = tmp_path / "k.zarr", tmp_path / "k.skops", tmp_path / "k.tif"
    assert main(["cluster", small_stack, "-o", str(clusters), "-k", "3", "-n", "2000", "--model", str(model),
                 "--cog", str(cog), "--scheduler", "sync", "--progress", "none"]) == 0
    assert "3 clusters, fitted on 2000 pixels" in capsys.readouterr().out
    stack = open_stack(small_stack)
    fitted, manifest = load_model(model, return_manifest=True)
    expected = predict_lazy(fitted, stack, manifest["metadata"]["feature_spec"])
    np.testing.assert_array_equal(open_stack(clusters).values, expected.values)
    with rasterio.open(cog) as src:
        assert src.dtypes[0] == "uint8" and src.crs == stack.rio.crs
        np.testing.assert_array_equal(src.read(1), expected.values[0].astype(np.uint8))
    assert main(["cluster", small_stack, "-o", str(clusters), "--scheduler", "sync"]) == 2
    assert "already exists" in capsys.readouterr().err

    components = tmp_path / "pca.zarr"
    assert main(["reduce", small_stack, "-o", str(components), "--n-components", "2", "--stream", "--scheduler", "sync",
                 "--progress", "none"]) == 0
    out = capsys.readouterr().out
    assert "2 components (explained variance ratio" in out and "fitted on 60000 pixels" in out
    assert [str(b) for b in open_stack(components)["band"].values] == ["component[0]", "component[1]"]


@pytest.mark.parametrize(
    "argv,notice,printed",
    [
        (["cluster", "--clusters", "2", "-n", "500"], "rastercore cluster: --clusters is now called --n-clusters",
         "2 clusters, fitted on 500 pixels"),
        (["cluster", "-k", "2", "--sample", "500"], "rastercore cluster: --sample is now called -n",
         "2 clusters, fitted on 500 pixels"),
        (["reduce", "--components", "2", "--sample", "500"],
         "rastercore reduce: --components is now called --n-components", "2 components"),
        (["reduce", "-n", "2", "--sample", "500"],
         "rastercore reduce: -n is the number of components; spell it --n-components; in the next release -n will "
         "be the sample size", "2 components"),
    ],
    ids=["cluster --clusters", "cluster --sample", "reduce --components", "reduce -n"],
)
def test_old_option_spellings_still_work_with_a_notice(tmp_path, small_stack, capsys, argv, notice, printed):
    command, *options = argv
    capsys.readouterr()
    assert main([command, small_stack, "-o", str(tmp_path / "out.zarr"), *options, "--scheduler", "sync",
                 "--progress", "none"]) == 0
    captured = capsys.readouterr()
    assert f"rastercore: notice: {notice}" in captured.err and captured.err.count("rastercore: notice:") == 1
    assert printed in captured.out and "fitted on 500 pixels" in captured.out
