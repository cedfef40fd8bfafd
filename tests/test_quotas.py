"""The one quota rule: balanced means equal shares among the classes present, proportional as they occur."""

import numpy as np
import pytest

from rastercore.quotas import class_quotas, largest_remainder


@pytest.mark.parametrize("available,total,fill,expected", [
    ([100, 0, 50], 40, False, [20, 0, 20]),     # absent classes get nothing
    ([100, 0, 10], 40, False, [20, 0, 20]),     # without fill a short class keeps its share (the caller refuses it)
    ([100, 0, 10], 40, True, [30, 0, 10]),      # with fill it gives all it has; the others share the rest
    ([900, 60, 40], 300, True, [200, 60, 40]),  # two short classes
    ([7, 7, 7], 10, False, [4, 3, 3]),          # largest remainder: quotas sum to the total
    ([5, 5], 10**6, True, [5, 5]),              # more asked than there is: everything
])
def test_balanced_quotas(available, total, fill, expected):
    quota = class_quotas(available, total, fill=fill)
    np.testing.assert_array_equal(quota, expected)
    if fill:
        assert (quota <= np.asarray(available)).all()


def test_proportional_quotas_and_rare_classes():
    np.testing.assert_array_equal(class_quotas([900, 60, 40], 100, balance=False), [90, 6, 4])
    np.testing.assert_array_equal(class_quotas([1000, 1], 10, balance=False), [10, 0])
    np.testing.assert_array_equal(class_quotas([1000, 1], 10, balance=False, at_least_one=True), [9, 1])


def test_largest_remainder_keeps_the_sum():
    shares = np.random.default_rng(0).random(9) * 10
    parts = largest_remainder(shares)
    assert parts.sum() == round(shares.sum()) and (np.abs(parts - shares) < 1).all()
