"""On an active distributed client the estimators run their parallel work there, with the same result."""

import dask
import numpy as np
import pytest
from distributed import Client, LocalCluster, get_task_stream

from rastercore.models import CascadeSVC, SampledSVC, ShardedForestClassifier, ThresholdedMultiLabel


@pytest.fixture(scope="module")
def cluster_client():
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            yield client


@pytest.fixture
def dask_client(cluster_client):
    """The cluster's client as the active dask scheduler (the suite's default is synchronous)."""
    with dask.config.set(scheduler=cluster_client):
        yield cluster_client


def _models():
    return [
        SampledSVC(param_grid={"C": [1.0, 10.0], "gamma": [0.5, 2.0]}, random_state=0),
        CascadeSVC(n_shards=4, random_state=0),
        ShardedForestClassifier(n_shards=3, n_estimators_per_shard=5, random_state=0),
        ThresholdedMultiLabel(random_state=0),
    ]


def test_same_models_on_a_cluster_as_in_process(moons, dask_client):
    X, y, Xt, _ = moons
    targets = [y, y, y, np.column_stack([y, X[:, 0] > 0.5])]
    local = [model.fit(X, t) for model, t in zip(_models(), targets)]
    for model, target, reference in zip(_models(), targets, local):
        with get_task_stream(dask_client) as stream:
            model.fit(X, target)
        assert len(stream.data) >= 2, f"{type(model).__name__} did not use the cluster"
        np.testing.assert_array_equal(model.predict(Xt), reference.predict(Xt))
        if isinstance(model, SampledSVC):  # the grid search ran under joblib's dask backend
            assert model.best_params_ == reference.best_params_
            np.testing.assert_allclose(model.cv_results_["mean_test_score"],
                                       reference.cv_results_["mean_test_score"])
