"""On a real dask cluster: a scheduler and two workers started as processes on 127.0.0.1.

The CLI runs as a user runs it (a subprocess with ``--scheduler tcp://...``).
Checked: the results equal a local run; a worker killed with SIGKILL in the
middle of a prediction changes nothing; a killed scheduler ends the command
with one line (no traceback), and ``--resume`` on a local run then finishes
the same mosaic.  Every process is started here, on free ports, bounded in
time, and killed at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rastercore.store import open_stack, partial_path
from tests.conftest import run_cli, wait_for_tiles

pytestmark = pytest.mark.slow

SPEC = [{"name": "box_mean", "size": 5}, {"name": "gaussian", "sigma": 2.0}]


def _start(args, log):
    return subprocess.Popen([sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


class Cluster:
    """A ``dask scheduler`` and ``n`` ``dask worker`` processes on 127.0.0.1."""

    def __init__(self, tmp: Path, n_workers: int = 2):
        self.log = open(tmp / "cluster.log", "w")
        file = tmp / "scheduler.json"
        self.scheduler = _start(["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                                 "--no-dashboard", "--scheduler-file", str(file)], self.log)
        deadline = time.monotonic() + 60
        while not file.exists() or not file.read_text().strip():
            assert time.monotonic() < deadline and self.scheduler.poll() is None, "the scheduler did not start"
            time.sleep(0.2)
        self.address = json.loads(file.read_text())["address"]
        self.workers = [_start(["distributed.cli.dask_worker", self.address, "--nthreads", "1", "--nworkers", "1",
                                "--no-dashboard", "--memory-limit", "2GiB", "--host", "127.0.0.1"], self.log)
                        for _ in range(n_workers)]
        self._wait_for_workers(n_workers)

    def _wait_for_workers(self, n: int) -> None:
        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(n, timeout=60)

    def close(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            _stop(proc)
        self.log.close()


@pytest.fixture
def cluster(tmp_path):
    running = Cluster(tmp_path)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A synthetic scene, ingested, with a model trained on it (all local, threads)."""
    tmp = tmp_path_factory.mktemp("real-cluster")
    (tmp / "spec.json").write_text(json.dumps(SPEC))
    run_cli("synth", tmp / "scene", "--size", "768x1024", "--scheduler", "threads", "--progress", "none")
    run_cli("ingest", tmp / "scene" / "HH.tif", tmp / "scene" / "HV.tif", "-o", tmp / "stack.zarr", "--bands", "HH,HV",
         "--tile-size", "128", "--scheduler", "threads", "--progress", "none")
    run_cli("sample", tmp / "stack.zarr", "--spec", tmp / "spec.json", "--target", tmp / "scene" / "target.tif",
         "--threshold", "0.6", "-n", "400", "-o", tmp / "local.h5", "--scheduler", "threads")
    run_cli("train", tmp / "local.h5", "--family", "svm", "--params", '{"C": 10, "gamma": 0.5, "search": false}',
         "-o", tmp / "model.skops", "--scheduler", "threads")
    run_cli("predict", tmp / "model.skops", tmp / "stack.zarr", "-o", tmp / "local.zarr", "--scheduler", "threads",
         "--progress", "none")
    return tmp


def test_cluster_runs_equal_local_runs(scene, cluster, tmp_path):
    on = ["--scheduler", cluster.address]
    run_cli("ingest", scene / "scene" / "HH.tif", scene / "scene" / "HV.tif", "-o", tmp_path / "stack.zarr", "--bands",
         "HH,HV", "--tile-size", "128", "--progress", "none", *on)
    np.testing.assert_array_equal(open_stack(tmp_path / "stack.zarr").values, open_stack(scene / "stack.zarr").values)
    run_cli("sample", scene / "stack.zarr", "--spec", scene / "spec.json", "--target", scene / "scene" / "target.tif",
         "--threshold", "0.6", "-n", "400", "-o", tmp_path / "sample.h5", *on)
    from rastercore.sampling import read_table

    here, there = read_table(scene / "local.h5"), read_table(tmp_path / "sample.h5")
    for column in ("X", "y", "row", "col", "split"):
        np.testing.assert_array_equal(np.asarray(getattr(there, column)), np.asarray(getattr(here, column)))
    run_cli("predict", scene / "model.skops", scene / "stack.zarr", "-o", tmp_path / "pred.zarr", "--progress", "none",
         *on)
    np.testing.assert_array_equal(open_stack(tmp_path / "pred.zarr").values, open_stack(scene / "local.zarr").values)


def _predict_in_background(scene, out, address):
    return subprocess.Popen([sys.executable, "-m", "rastercore.cli", "predict", str(scene / "model.skops"),
                             str(scene / "stack.zarr"), "-o", str(out), "--progress", "none", "--scheduler", address],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_killed_worker_changes_nothing(scene, cluster, tmp_path):
    out = tmp_path / "pred.zarr"
    proc = _predict_in_background(scene, out, cluster.address)
    wait_for_tiles(out, 4, proc)
    os.killpg(cluster.workers[0].pid, signal.SIGKILL)  # mid-predict: its tasks are run again elsewhere
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    np.testing.assert_array_equal(open_stack(out).values, open_stack(scene / "local.zarr").values)


def test_a_killed_scheduler_is_one_line_and_resume_finishes_locally(scene, cluster, tmp_path):
    out = tmp_path / "pred.zarr"
    proc = _predict_in_background(scene, out, cluster.address)
    wait_for_tiles(out, 4, proc)
    os.killpg(cluster.scheduler.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("rastercore: error: lost the dask cluster"), err
    assert "--resume" in lines[-1] and "Traceback" not in err
    assert not out.exists() and partial_path(out).exists()  # nothing looks complete
    run_cli("predict", scene / "model.skops", scene / "stack.zarr", "-o", out, "--resume", "--scheduler", "threads",
         "--progress", "none")
    np.testing.assert_array_equal(open_stack(out).values, open_stack(scene / "local.zarr").values)
