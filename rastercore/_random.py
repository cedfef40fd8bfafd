"""Counter-based random numbers: a pure function of (seed, stream, row, col).

Used wherever a result must not depend on tiling or on the number of
workers: synthetic scenes, and the random key that orders pixels when
sampling.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["uniform"]


@njit(cache=True, nogil=True)
def _mix(x):
    """splitmix64 finaliser: a well-spread 64-bit hash of a 64-bit integer."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(cache=True, nogil=True)
def uniform(seed, stream, row, col):
    """A uniform number in (0, 1), a pure function of its four integer arguments."""
    h = _mix(np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(stream))
    h = _mix(h ^ np.uint64(row & 0xFFFFFFFF) * np.uint64(0xD6E8FEB86659FD93))
    h = _mix(h ^ np.uint64(col & 0xFFFFFFFF) * np.uint64(0xA0761D6478BD642F))
    return ((h >> np.uint64(11)) + np.uint64(1)) * (1.0 / 9007199254740994.0)
