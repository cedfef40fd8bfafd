"""How many rows to draw from each class: the one quota rule of every sample rastercore draws.

Used by the out-of-core sampler (:func:`rastercore.sampling.draw_sample`,
per split, exact and refusing short classes unless asked) and by the
estimators that subsample their training rows in memory
(:class:`rastercore.models.SampledSVC`, filling short classes from the
others).  "Balanced" means the same thing in both: equal shares among the
classes present; "proportional" means shares as the classes occur.
"""

from __future__ import annotations

import numpy as np

__all__ = ["class_quotas", "largest_remainder"]


def class_quotas(available, total: int, *, balance: bool = True, fill: bool = False,
                 at_least_one: bool = False) -> np.ndarray:
    """Rows to draw from each class for a sample of ``total`` rows.

    Parameters
    ----------
    available : array of int
        Rows (pixels) each class holds.
    total : int
        Rows wanted in all.
    balance : bool, default True
        Equal shares among the classes present; else shares in proportion
        to ``available``.  Fractional shares are rounded by the largest
        remainder, so the quotas sum to ``total``.
    fill : bool, default False
        A class holding fewer rows than its share gives all it has and the
        other classes share the rest (water filling), so no quota exceeds
        what is available; without it a quota may exceed ``available``
        (the caller decides whether that is an error).
    at_least_one : bool, default False
        Every class present keeps at least one row (``total`` is raised to
        the number of classes present if it is smaller).

    Returns
    -------
    numpy.ndarray of int64
    """
    available = np.asarray(available, dtype=np.int64)
    present = available > 0
    if not present.any() or total <= 0 and not at_least_one:
        return np.zeros_like(available)
    if fill and total >= available.sum():
        return available.copy()
    if at_least_one:
        total = max(int(total), int(present.sum()))
    if not balance:
        quota = largest_remainder(available / available.sum() * total)
        if at_least_one:  # a rare class's single row is taken from the largest quotas
            lifted = present & (quota == 0)
            quota[lifted] = 1
            for _ in range(int(lifted.sum())):
                quota[np.argmax(quota)] -= 1
        return np.minimum(quota, available) if fill else quota
    quota = np.zeros_like(available)
    open_ = present.copy()
    while True:  # water filling: classes that cannot fill their share give all they have
        remaining = total - quota[~open_].sum()
        shares = largest_remainder(open_ / open_.sum() * remaining)
        short = open_ & (shares > available)
        if not fill or not short.any():
            quota[open_] = shares[open_]
            return quota
        quota[short] = available[short]
        open_ &= ~short


def largest_remainder(shares) -> np.ndarray:
    """Integer parts of ``shares`` that sum to ``round(sum(shares))``: the largest fractions get the extra units."""
    shares = np.asarray(shares, dtype=np.float64)
    floor = np.floor(shares).astype(np.int64)
    missing = int(round(shares.sum())) - int(floor.sum())
    order = np.argsort(-(shares - floor), kind="stable")
    floor[order[:missing]] += 1
    return floor
