import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio

from rastercore.cli import app, main
from tests.conftest import write_tif

COMMANDS = ["ingest", "info", "export", "quicklook", "synth", "demo", "run"]


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
    tif = str(tmp_path / "s.tif")
    assert main(["export", stack, tif, "--scheduler", "sync", "--progress", "none"]) == 0
    with rasterio.open(tif) as src:
        np.testing.assert_array_equal(src.read(), expected)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["info", "{tmp}/missing.tif"], "missing.tif does not exist"),
        (["ingest", "{hh}", "{odd}", "-o", "{tmp}/s.zarr", "--scheduler", "sync"], "do not line up"),
        (["ingest", "{hh}", "-o", "{tmp}/s.zarr", "--bands", "A,B", "--scheduler", "sync"], "2 band names given"),
        (["ingest", "{hh}", "-o", "{tmp}", "--scheduler", "sync"], "already exists"),
        (["info", "{tmp}/never.zarr"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, hh_hv, capsys, argv, message):
    (hh, _), _ = hh_hv
    odd = write_tif(tmp_path / "odd.tif", np.zeros((10, 10), np.float32))
    argv = [a.format(tmp=tmp_path, hh=hh, odd=odd) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rastercore: error:") and message in err[0]


def test_usage_error_exits_2(capsys):
    assert main(["ingest"]) == 2
    assert "Missing argument" in capsys.readouterr().err


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
