"""Two processes at one output: the second writer refuses while the first works; a stack replaced under a reader.

The commands run as users run them, as separate ``rastercore`` processes.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from rastercore.store import lock_path, open_stack
from tests.conftest import run_cli, wait_for_tiles

pytestmark = pytest.mark.slow

SPEC = [{"name": "box_mean", "size": 5}, {"name": "gaussian", "sigma": 2.0}]


HELD_CLI = """
import itertools, os, sys, time
import rastercore.store._publish as publish
from rastercore.cli import main
hold, free = sys.argv[1], int(sys.argv[2])
writes, store_block = itertools.count(), publish._store_block
def held(*args):
    if next(writes) >= free:  # after its first tiles, every tile write waits while the test holds the gate
        deadline = time.monotonic() + 120
        while os.path.exists(hold) and time.monotonic() < deadline:
            time.sleep(0.02)
    return store_block(*args)
publish._store_block = held
sys.exit(main(sys.argv[3:]))
"""


def _held(hold, free, *args):
    """A ``rastercore`` command that writes ``free`` tiles, then waits while the file ``hold`` exists."""
    hold.touch()
    return subprocess.Popen([sys.executable, "-c", HELD_CLI, str(hold), str(free), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("concurrency")
    (tmp / "spec.json").write_text(json.dumps(SPEC))
    threads = ("--scheduler", "threads")
    run_cli("synth", tmp / "scene", "--size", "512x512", "--progress", "none", *threads)
    run_cli("ingest", tmp / "scene" / "HH.tif", tmp / "scene" / "HV.tif", "-o", tmp / "stack.zarr", "--bands", "HH,HV",
         "--tile-size", "128", "--progress", "none", *threads)
    run_cli("sample", tmp / "stack.zarr", "--spec", tmp / "spec.json", "--target", tmp / "scene" / "target.tif",
         "--threshold", "0.6", "-n", "400", "-o", tmp / "sample.h5", *threads)
    run_cli("train", tmp / "sample.h5", "--family", "svm", "--params", '{"C": 10, "gamma": 0.5, "search": false}',
         "-o", tmp / "model.skops", *threads)
    return tmp


def _predict(scene, stack, out, *extra):
    return ("predict", scene / "model.skops", stack, "-o", out, "--progress", "none", "--scheduler", "threads", *extra)


def test_a_second_writer_of_one_output_refuses_while_the_first_works(scene, tmp_path):
    out = tmp_path / "pred.zarr"
    hold = tmp_path / "hold"
    first = _held(hold, 1, *_predict(scene, scene / "stack.zarr", out))
    wait_for_tiles(out, 1, first)
    second = run_cli(*_predict(scene, scene / "stack.zarr", out, "--overwrite"), check=False)
    hold.unlink()
    assert second.returncode == 2
    assert second.stderr.strip().splitlines()[-1].startswith(
        f"rastercore: error: {out} is being written by process {first.pid}")
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err  # the first one was not disturbed
    assert not lock_path(out).exists()
    reference = run_cli(*_predict(scene, scene / "stack.zarr", tmp_path / "ref.zarr"))
    assert reference.returncode == 0
    np.testing.assert_array_equal(open_stack(out).values, open_stack(tmp_path / "ref.zarr").values)


def test_a_stack_replaced_while_a_prediction_reads_it_is_never_read_half_old_half_new(scene, tmp_path):
    stack = tmp_path / "stack.zarr"
    run_cli("ingest", scene / "scene" / "HH.tif", scene / "scene" / "HV.tif", "-o", stack, "--bands", "HH,HV",
         "--tile-size", "128", "--progress", "none", "--scheduler", "threads")
    run_cli(*_predict(scene, stack, tmp_path / "old.zarr"))
    out = tmp_path / "pred.zarr"
    hold = tmp_path / "hold"
    reader = _held(hold, 2, *_predict(scene, stack, out))
    wait_for_tiles(out, 2, reader)
    # The same files in the other order: every pixel of the new stack differs from the old one.
    run_cli("ingest", scene / "scene" / "HV.tif", scene / "scene" / "HH.tif", "-o", stack, "--bands", "HH,HV",
         "--tile-size", "128", "--overwrite", "--progress", "none", "--scheduler", "threads")
    hold.unlink()  # the reader goes on, on the new stack, from tile 3 of 16
    _, err = reader.communicate(timeout=300)
    assert reader.returncode == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith(
        f"rastercore: error: {stack} was replaced or removed while it was being read")
    assert not out.exists()  # nothing that looks complete
