import json
import time

import dask
import numpy as np
import pytest
from distributed import LocalCluster, get_task_stream

from rastercore import ingest
from rastercore.errors import ParameterError, SchedulerUnreachableError
from rastercore.scheduler import SCHEDULER_ENV, choose_tile_size, client, compute_bounded, resolve_scheduler


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


@pytest.mark.parametrize("scheduler", ["bogus", "local-cluster", "127.0.0.1:8786", "http://host:8786", "tcp://"])
def test_a_scheduler_that_is_neither_a_name_nor_an_address_is_refused_before_anything_starts(scheduler, monkeypatch):
    import distributed

    monkeypatch.setattr(distributed, "Client", None)  # nothing may try to connect
    with pytest.raises(ParameterError, match=f"must be 'local', 'threads', 'sync' or a scheduler address such as "
                                             f"tcp://host:8786 .*not '{scheduler}'"):
        with client(scheduler):
            pass


@pytest.mark.parametrize("address", ["tcp://10.0.0.1:8786", "tls://scheduler.example:8786", "tcp://[::1]:8786",
                                     "inproc://10.0.0.1/123/1", "tcp://host"])
def test_scheduler_addresses_are_accepted(address):
    from rastercore.checks import check_scheduler

    assert check_scheduler(address) == address


@pytest.mark.parametrize("progress,expected", [("json", "json"), ("bar", "text"), ("none", None), ("auto", None)])
def test_the_cluster_line_follows_the_progress_mode(progress, expected, capsys):
    with client("local", n_workers=1, threads_per_worker=1, processes=False, progress=progress):
        pass
    err = capsys.readouterr().err.splitlines()
    if expected is None:  # "auto" off a terminal (pytest captures stderr) is "none"
        assert err == []
    elif expected == "json":
        record = json.loads(err[0])
        assert len(err) == 1 and record["event"] == "cluster" and record["threads"] == 1
        assert record["cluster"] == "local dask cluster" and record["dashboard"].startswith("http")
    else:
        assert len(err) == 1 and err[0].startswith("local dask cluster: 1 threads, dashboard http")


def test_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(SchedulerUnreachableError, match=r"tcp://127\.0\.0\.1:9.*--scheduler"):
        with client("tcp://127.0.0.1:9", connect_timeout="1s"):
            pass


def test_tile_size_follows_the_memory_budget():
    small = choose_tile_size(2, np.float32, memory_budget=2**30, threads=2)
    large = choose_tile_size(2, np.float32, memory_budget=16 * 2**30, threads=2)
    many_bands = choose_tile_size(16, np.float32, memory_budget=16 * 2**30, threads=2)
    assert small % 256 == 0 and 256 <= small < large <= 2048
    assert many_bands < large
    # The chosen tile with its working set fits the per-thread share of the budget.
    assert 2 * 2 * small**2 * 2 * 4 * 64 <= 2**30
    assert choose_tile_size(1, np.uint8, memory_budget=10**6, threads=8) == 256  # floor
    assert choose_tile_size(1, np.uint8, memory_budget=10**13, threads=1) == 2048  # ceiling


def test_tile_size_uses_the_active_clusters_memory():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, memory_limit="1GiB",
                      dashboard_address=":0") as cluster, Client(cluster):
        on_cluster = choose_tile_size(2, np.float32)
    assert on_cluster == choose_tile_size(2, np.float32, memory_budget=2**30, threads=2)


def _timed_square(i):
    """``i * i`` and when the task ran (in-process schedulers share the clock)."""
    began = time.monotonic()
    time.sleep(0.02)
    return i * i, began, time.monotonic()


def _peak_overlap(intervals) -> int:
    events = sorted([(t0, 1) for t0, _ in intervals] + [(t1, -1) for _, t1 in intervals])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


@pytest.mark.parametrize("scheduler", ["sync", "threads", "distributed"])
def test_compute_bounded_keeps_order_and_bounds_the_work_in_flight(scheduler):
    items = list(range(12))

    def run():
        return list(compute_bounded(items, dask.delayed(_timed_square, pure=False), per_thread=2))

    if scheduler == "distributed":
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster, \
                Client(cluster):
            results = run()
    else:
        with dask.config.set(scheduler=scheduler, num_workers=2):
            results = run()
    assert [(i, r[0]) for i, r in results] == [(i, i * i) for i in items]
    peak = _peak_overlap([r[1:] for _, r in results])
    assert peak == 1 if scheduler == "sync" else 2 <= peak <= 4


def test_compute_bounded_raises_the_tasks_error():
    def fail(i):
        if i == 3:
            raise KeyError(f"item {i}")
        return i

    with dask.config.set(scheduler="threads", num_workers=2), pytest.raises(KeyError, match="item 3"):
        list(compute_bounded(range(8), dask.delayed(fail, pure=False)))


def test_on_a_cluster_only_the_window_holds_results():
    """Results already handed out are released: the futures alive never exceed the window."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        alive = []
        for _, block in compute_bounded(range(12), dask.delayed(np.ones, pure=False), per_thread=1):
            alive.append(len(client.futures))
            assert block.shape == (_,)
    assert max(alive) <= 2 + 1, alive  # window of 2 (1 per thread) + the one being submitted
