import dask
import numpy as np
import pytest
from distributed import LocalCluster, get_task_stream

from rastercore import ingest
from rastercore.scheduler import SCHEDULER_ENV, client, resolve_scheduler
from rastercore.errors import SchedulerUnreachableError


def test_resolve_scheduler_prefers_argument_then_environment(monkeypatch):
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    assert resolve_scheduler() == "local"
    monkeypatch.setenv(SCHEDULER_ENV, "tcp://10.0.0.1:8786")
    assert resolve_scheduler() == "tcp://10.0.0.1:8786"
    assert resolve_scheduler("threads") == "threads"


@pytest.mark.parametrize("mode,expected", [("threads", "threads"), ("sync", "synchronous")])
def test_local_modes_yield_no_client(mode, expected):
    with client(mode) as c:
        assert c is None and dask.config.get("scheduler") == expected


def test_local_cluster_runs_the_work(tmp_path, hh_hv, capsys):
    (hh, hv), expected = hh_hv
    with client("local", n_workers=1, threads_per_worker=2, processes=False) as c:
        with get_task_stream(c) as stream:
            stack = ingest([hh, hv], tmp_path / "s.zarr", tile_size=128, progress="none")
        assert len(stream.data) >= 6  # the 3 x 2 tile writes ran on the cluster
    assert "dashboard http" in capsys.readouterr().err
    np.testing.assert_array_equal(stack.values, expected)


def test_existing_cluster_by_address_and_environment(tmp_path, hh_hv, monkeypatch):
    (hh, hv), expected = hh_hv
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        monkeypatch.setenv(SCHEDULER_ENV, cluster.scheduler_address)
        with client(quiet=True) as c:
            assert c.scheduler.address == cluster.scheduler_address
            with get_task_stream(c) as stream:
                stack = ingest([hh, hv], tmp_path / "s.zarr", tile_size=128, progress="none")
            assert len(stream.data) >= 6
    np.testing.assert_array_equal(stack.values, expected)


def test_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(SchedulerUnreachableError, match=r"tcp://127\.0\.0\.1:9.*--scheduler"):
        with client("tcp://127.0.0.1:9", connect_timeout="1s"):
            pass
