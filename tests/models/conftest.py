"""Small, seeded toy data sets for the model tests."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_circles, make_moons


def _split(X, y, n_train):
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


@pytest.fixture
def moons():
    """Two interleaved half-moons (not linearly separable): 400 training and 400 test rows."""
    X, y = make_moons(800, noise=0.25, random_state=0)
    return _split(X, y, 400)


@pytest.fixture
def circles():
    """Two concentric rings (a linear model scores about 0.5): 2000 training and 1000 test rows."""
    X, y = make_circles(3000, noise=0.1, factor=0.5, random_state=0)
    return _split(X, y, 2000)


@pytest.fixture
def three_blobs():
    """Three overlapping Gaussian classes in 4-D: 450 training and 450 test rows."""
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0, 0, 0], [2, 0, 1, 0], [0, 2, 0, 1]], dtype=float)
    y = rng.integers(0, 3, 900)
    X = centres[y] + rng.normal(scale=1.0, size=(900, 4))
    return _split(X, y, 450)


@pytest.fixture(autouse=True)
def _one_openmp_thread():
    """Single-threaded OpenMP/BLAS inside the model tests.

    HistGradientBoosting's OpenMP threads spin-wait; on a loaded 2-core
    machine one fit then takes seconds instead of 0.1 s.  The estimators'
    own parallelism (threads, dask) is unaffected.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield
