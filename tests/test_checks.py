"""Arguments are checked before any work, with one error naming the argument and the allowed range."""

import numpy as np
import pytest
import xarray as xr

from rastercore.checks import check_int, check_tile_size
from rastercore.errors import ParameterError
from rastercore.sampling import SpatialSplit, draw_sample


def test_check_int_names_the_argument_and_range():
    assert check_int(np.int64(3), "k", 1) == 3
    for bad, message in [(0, "k must be at least 1, not 0"), (2.5, "k must be an integer at least 1, not 2.5"),
                         (True, "integer"), ("3", "integer")]:
        with pytest.raises(ParameterError, match=message):
            check_int(bad, "k", 1)


@pytest.mark.parametrize("size", [0, 1, -256, 10**9, 512.0])
def test_absurd_tile_sizes_are_refused(size):
    with pytest.raises(ParameterError, match=r"tile_size \(--tile-size\) must be (an integer )?between 8 and 8192"):
        check_tile_size(size)
    assert check_tile_size(None) is None and check_tile_size(256) == 256


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 0}, r"n \(-n\), the number of training rows must be at least 1, not 0"),
    ({"n": -5}, "not -5"),
    ({"n": 10, "n_validation": -1}, r"n_validation \(--n-validation\) must be at least 0"),
])
def test_empty_or_negative_samples_are_refused(kwargs, message):
    stack = xr.DataArray(np.ones((1, 20, 20), np.float32), dims=("band", "y", "x"), coords={"band": ["a"]})
    target = xr.DataArray(np.zeros((20, 20), np.int32), dims=("y", "x"))
    with pytest.raises(ParameterError, match=message):
        draw_sample(stack, target, [{"name": "box_mean", "size": 3}], **kwargs)


def test_split_blocks_are_checked():
    with pytest.raises(ParameterError, match=r"block_size \(--block-size\) must be at least 1, not 0"):
        SpatialSplit(block_size=0)
    with pytest.raises(ParameterError, match=r"validation_fraction \(--validation\) must be in \[0, 1\)"):
        SpatialSplit(validation_fraction=1.0)
