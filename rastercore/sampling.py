"""Stratified, spatially split training samples drawn out of core.

How a sample is drawn
---------------------
1. **Split.** Pixels are grouped in square blocks; a seeded hash of each
   block's index sends it to training or validation (or ``regions`` give the
   split).  Pixels closer than ``gap`` (default: the feature halo) to a block
   of the other split are left out, so no feature window straddles the two.
2. **Count.** One pass over the tiles counts the eligible pixels (labelled,
   valid input, not in a gap) of every class in every split.  Every pixel
   has a random key, a pure function of ``(seed, row, col)``; the same pass
   keeps, per class and split, the positions of the pixels with the smallest
   keys, as many as any quota could need (plus a margin): the one read of
   the target.
3. **Quotas.** ``balanced`` (the same count per class), ``proportional`` or
   explicit counts per class, exact.
4. **Select.** The sample of a class is the ``quota`` pixels with the
   smallest keys whose features are finite: a uniform random sample without
   replacement, the same whatever the tiling or the number of workers, and
   drawn from every tile in proportion to the class's presence there.  A
   second pass reads only the stack, only at the tiles holding the kept
   pixels with the smallest keys, and computes features there, each from its
   own ``(2 halo + 1)²`` patch while they are sparse (:func:`features_at`;
   the same numbers as the whole tile's).  Where nodata in their windows
   leaves too few, passes over the tiles take every pixel whose key is
   below a rising cut-off instead (and when the quotas depend on the counts:
   a given ``regions`` split without ``n_validation``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
from numba import njit
from scipy import ndimage

from rastercore._random import uniform
from rastercore.checks import check_int
from rastercore.engine import map_located, map_tiles
from rastercore.errors import ParameterError, SamplingError
from rastercore.features import FeatureSpec, features_for_block
from rastercore.grid import grid_of
from rastercore.progress import Progress, ProgressMode
from rastercore.quotas import class_quotas
from rastercore.scheduler import compute_bounded
from rastercore.stack import nodata_of, valid_mask
from rastercore.store import writing

__all__ = ["SpatialSplit", "SampleTable", "PixelPlan", "CandidateTile", "plan_pixels", "select_pixels",
           "CountTile", "FeatureTile", "eligible_codes", "fit_streaming", "features_at", "band_ranges", "draw_sample", "write_table", "read_table", "augment_windows",
           "TRAIN", "VALIDATION"]

TRAIN, VALIDATION, EXCLUDED = 0, 1, -1
_SPLIT_STREAM, _KEY_STREAM = 101, 202


@dataclass(frozen=True)
class SpatialSplit:
    """How pixels are split into training and validation.

    Parameters
    ----------
    block_size : int, default 256
        Side of the square blocks that go wholly to one split.
    validation_fraction : float, default 0.2
        Share of blocks sent to validation (0 for no validation split).
    gap : int, optional
        Pixels within this distance of the other split are not sampled;
        default the feature spec's halo.
    regions : xarray.DataArray, optional
        Instead of blocks: ``(y, x)`` integers on the stack's grid, 0 for
        training, 1 for validation, -1 for neither.
    """

    block_size: int = 256
    validation_fraction: float = 0.2
    gap: int | None = None
    regions: xr.DataArray | None = field(default=None, compare=False)

    def __post_init__(self):
        check_int(self.block_size, "block_size (--block-size)", 1)
        if self.gap is not None:
            check_int(self.gap, "gap", 0)
        if not 0 <= self.validation_fraction < 1:
            raise ParameterError(f"validation_fraction (--validation) must be in [0, 1), not {self.validation_fraction}")

    def labels(self, like: xr.DataArray, *, seed: int, halo: int) -> da.Array:
        """Lazy int8 ``(y, x)``: TRAIN, VALIDATION or EXCLUDED (gaps included) for every pixel."""
        chunks = like.chunks[-2:]
        gap = halo if self.gap is None else self.gap
        if self.regions is None and 2 * gap <= self.block_size:  # the gap follows from the block grid
            return map_located(_block_split, self.block_size, self.validation_fraction, seed, gap, like.shape[-2:],
                               chunks=chunks, dtype=np.int8)
        if self.regions is not None:
            raw = da.asarray(self.regions.data).astype(np.int8).rechunk(chunks)
        else:
            raw = map_located(_block_split, self.block_size, self.validation_fraction, seed, 0, like.shape[-2:],
                              chunks=chunks, dtype=np.int8)
        if gap == 0:
            return raw
        labels = xr.DataArray(raw[np.newaxis], dims=("band", "y", "x"))
        return map_tiles(labels, GapTile(gap), halo=gap, n_out=1, dtype=np.int8, name="split-gap")[0]


def _block_split(block_size, fraction, seed, gap, shape, *, location):
    """Split labels of one chunk; with ``gap``, EXCLUDED near a block of the other split.

    Equal to :func:`_apply_gap` on the whole scene's labels (``mode='nearest'``
    at the scene edge), computed from the block grid: with ``2 gap <=
    block_size`` a (2 gap + 1)² window spans at most two blocks per axis, so
    its labels are those of the blocks holding its four corners (clipped to
    the scene).
    """
    (r0, r1), (c0, c1) = location
    height, width = shape
    rows, cols = np.arange(r0, r1), np.arange(c0, c1)
    lo_r, hi_r = np.maximum(rows - gap, 0) // block_size, np.minimum(rows + gap, height - 1) // block_size
    lo_c, hi_c = np.maximum(cols - gap, 0) // block_size, np.minimum(cols + gap, width - 1) // block_size
    by0, bx0 = int(lo_r[0]), int(lo_c[0])
    decisions = np.array([[VALIDATION if uniform(seed, _SPLIT_STREAM, by, bx) < fraction else TRAIN
                           for bx in range(bx0, int(hi_c[-1]) + 1)] for by in range(by0, int(hi_r[-1]) + 1)],
                         dtype=np.int8)
    return _split_pixels(decisions, rows // block_size - by0, lo_r - by0, hi_r - by0,
                         cols // block_size - bx0, lo_c - bx0, hi_c - bx0, gap > 0)


@njit(cache=True, nogil=True)
def _split_pixels(decisions, own_r, lo_r, hi_r, own_c, lo_c, hi_c, gapped):
    """Each pixel's block decision; with a gap, EXCLUDED where a corner of its window lies in a block of the
    other split (the rows' and columns' block indices are given, relative to ``decisions``)."""
    out = np.empty((own_r.shape[0], own_c.shape[0]), np.int8)
    for y in range(own_r.shape[0]):
        for x in range(own_c.shape[0]):
            own = decisions[own_r[y], own_c[x]]
            if gapped and not (decisions[lo_r[y], lo_c[x]] == own and decisions[lo_r[y], hi_c[x]] == own
                               and decisions[hi_r[y], lo_c[x]] == own and decisions[hi_r[y], hi_c[x]] == own):
                own = EXCLUDED
            out[y, x] = own
    return out


def _apply_gap(labels: np.ndarray, gap: int) -> np.ndarray:
    """EXCLUDED where the (2 gap + 1)² window holds more than one split label."""
    size = 2 * gap + 1
    same = ndimage.maximum_filter(labels, size, mode="nearest") == ndimage.minimum_filter(labels, size, mode="nearest")
    return np.where(same, labels, EXCLUDED).astype(np.int8)


class GapTile:
    """Per-tile function of the split gap on the tile engine: :func:`_apply_gap` on the window, cropped to the tile."""

    def __init__(self, gap: int):
        self.gap = gap

    def __dask_tokenize__(self):
        return ("rastercore-split-gap", self.gap)

    def __call__(self, window: np.ndarray, tile) -> np.ndarray:
        return tile.interior(_apply_gap(window[0], self.gap)[np.newaxis])


@dataclass
class SampleTable:
    """A drawn sample: features, target and where each row came from.

    Attributes
    ----------
    X : array (n, n_features) float32
    y : array (n,)
        Class codes (int32) or, for regression, values (float32).
    value : array (n,) float32 or None
        The continuous target value, when classes came from thresholds.
    row, col : array (n,) int64
        Pixel position in the stack.
    block : array (n,) int64
        Spatial block index (for grouped cross-validation).
    split : array (n,) int8
        ``TRAIN`` (0) or ``VALIDATION`` (1).
    feature_names : list of str
    class_names : list of str or None
    attrs : dict
        Feature spec, seed, quotas, grid (CRS, transform) and policy.
    """

    X: np.ndarray
    y: np.ndarray
    row: np.ndarray
    col: np.ndarray
    block: np.ndarray
    split: np.ndarray
    feature_names: list[str]
    class_names: list[str] | None = None
    value: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)

    COLUMNS = ("X", "y", "value", "row", "col", "block", "split")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, which: int) -> tuple[np.ndarray, np.ndarray]:
        """``(X, y)`` of the TRAIN (0) or VALIDATION (1) rows, loaded."""
        mask = np.asarray(self.split) == which
        return np.asarray(self.X)[mask], np.asarray(self.y)[mask]


def draw_sample(
    stack: xr.DataArray,
    target: xr.DataArray,
    spec,
    *,
    n: int = 10_000,
    per_class: str | Mapping[int, int] = "balanced",
    n_validation: int | None = None,
    split: SpatialSplit | None = None,
    thresholds=None,
    seed: int = 0,
    allow_short: bool = False,
) -> SampleTable:
    """Draw a stratified, spatially split sample of features and targets.

    Parameters
    ----------
    stack : xarray.DataArray
        ``(band, y, x)`` stack (lazy).
    target : xarray.DataArray
        ``(y, x)`` on the stack's grid (see :func:`rastercore.targets.target_on_grid`):
        int classes with ``rastercore.targets.IGNORE`` (-1), or float values with NaN.
    spec : FeatureSpec or list of dict
        Features to compute at the sampled pixels.
    n : int, default 10000
        Training rows in all (ignored when ``per_class`` gives counts).
    per_class : "balanced", "proportional" or dict, default "balanced"
        ``balanced``: ``n / n_classes`` per class; ``proportional``: as the
        classes occur; a dict ``{class: count}`` gives the training counts.
    n_validation : int, optional
        Validation rows; default ``n * f / (1 - f)`` for validation fraction ``f``.
    split : SpatialSplit, optional
        Default ``SpatialSplit()`` (256-px blocks, 20 % validation, gap = halo).
    thresholds : float or list, optional
        For a continuous target: classes ``value >= t`` (the value is kept in
        ``SampleTable.value``).  Without thresholds a continuous target is
        sampled as one stratum (regression).
    seed : int, default 0
        Fixes the split and the sample, whatever the tiling.
    allow_short : bool, default False
        Take every pixel of a class that has fewer than its quota instead of
        raising :class:`SamplingError`.

    Returns
    -------
    SampleTable
    """
    if not isinstance(per_class, Mapping):
        check_int(n, "n (-n), the number of training rows", 1)
    if n_validation is not None:
        check_int(n_validation, "n_validation (--n-validation)", 0)
    split = split or SpatialSplit()
    plan = plan_pixels(stack, target, spec, split=split, thresholds=thresholds, seed=seed,
                       keep=_quota_bounds(n, n_validation, per_class, split))
    counts, class_names, regression = plan.counts, plan.class_names, plan.regression
    if not regression and np.count_nonzero(counts.sum(axis=1)) < 2:
        present = [_name(c, class_names) for c in np.flatnonzero(counts.sum(axis=1))]
        raise SamplingError(f"the target holds only class {', '.join(present) or 'none'} where the inputs are valid; "
                            "a classifier needs at least two. Check the target, its nodata value or the thresholds.")
    fraction = split.validation_fraction if split.regions is None else counts[:, 1].sum() / max(counts.sum(), 1)
    if n_validation is None:
        n_validation = round(n * fraction / (1 - fraction)) if fraction < 1 else n
    quotas = np.stack([_quotas(counts[:, s], total, per_class, regression, allow_short, class_names, name)
                       for s, (total, name) in enumerate([(n, "training"), (n_validation, "validation")])], axis=1)
    rows = select_pixels(plan, quotas)
    table = _assemble(rows, quotas, plan, stack, per_class)
    table.attrs["counts"] = counts.tolist()
    table.attrs["thresholds"] = None if thresholds is None else np.atleast_1d(thresholds).astype(float).tolist()
    return table


@dataclass
class PixelPlan:
    """Everything needed to visit the eligible pixels of a stack tile by tile.

    A pixel is eligible when it is labelled (``strata >= 0``), its inputs
    are valid and it is not in a split gap (``labels >= 0``); its code is
    ``class * 2 + split``, and ``counts[class, split]`` counts them.  Every
    pass runs on the tile engine (:func:`rastercore.engine.tile_tasks`), which
    reads each tile (plus halo) straight from the store for an unchanged
    :func:`rastercore.open_stack` result; validity comes from the very
    window the features are computed from.
    """

    stack: xr.DataArray
    strata: da.Array
    labels: da.Array
    values: da.Array | None
    spec: FeatureSpec
    bands: list[str]
    class_names: list[str] | None
    regression: bool
    split: SpatialSplit
    seed: int
    counts: np.ndarray | None = None
    tile_counts: list[np.ndarray] | None = None  # each tile's bincount of codes, from count()
    kept: dict | None = None  # each code's pixels with the smallest keys, from count(keep)

    @property
    def n_features(self) -> int:
        """Number of features per row."""
        return len(self.spec.feature_names(self.bands))

    def cutoff_all(self, which: int) -> np.ndarray:
        """The key cut-off that takes every eligible pixel of split ``which`` (TRAIN or VALIDATION)."""
        cutoff = np.zeros(self.counts.shape)
        cutoff[:, which] = 1.0  # every key is < 1
        return cutoff

    def _tasks(self, per_tile, halo: int) -> list:
        from rastercore.engine import tile_tasks

        extras = [self.strata, self.labels] + ([] if self.values is None else [self.values])
        return [task for _, task in tile_tasks(self.stack, per_tile, halo=halo, bands=self.bands, extras=extras)]

    def count(self, keep: np.ndarray | None = None) -> np.ndarray:
        """``counts[class, split]`` of the eligible pixels: one pass over the tiles (no halo).

        Each tile's counts are kept too (``tile_counts``), so that later
        passes skip the tiles that hold no pixel they could take.  With
        ``keep`` (the most pixels a code of split ``s`` may need is
        ``keep[s]``), the same pass keeps, in ``kept``, the position, key and
        value of each code's ``keep`` eligible pixels with the smallest keys
        (all of them for a smaller code): the sample is then chosen among
        them, and the target is read once.
        """
        per_tile = CountTile(nodata_of(self.stack), keep, self.seed)
        parts, kept = [], _Smallest(keep) if keep is not None else None
        for _, result in compute_bounded(self._tasks(per_tile, 0), per_thread=4):
            if kept is not None:
                result, rows = result
                kept.add(rows)
            parts.append(result)
        self.tile_counts = parts
        self.kept = kept.rows if kept is not None else None
        size = max((len(c) for c in parts), default=0)
        size += size % 2
        total = np.zeros(max(size, 2), np.int64)
        for c in parts:
            total[: len(c)] += c
        return total.reshape(-1, 2)

    def tile_tasks(self, cutoff: np.ndarray) -> list:
        """One delayed task per tile returning the rows (dict of arrays, or None) of pixels below ``cutoff``.

        Tiles known (from :meth:`count`) to hold no eligible pixel of a code
        with a positive cut-off are left out: they could give no row.
        """
        per_tile = CandidateTile(self.spec, self.bands, nodata_of(self.stack), cutoff, self.seed)
        tasks = self._tasks(per_tile, self.spec.halo)
        if self.tile_counts is None:
            return tasks
        wanted = np.flatnonzero(cutoff.ravel() > 0)
        return [task for task, counts in zip(tasks, self.tile_counts)
                if counts[wanted[wanted < len(counts)]].any()]

    def features(self, rows: dict) -> dict:
        """``rows`` (``row``, ``col``, ...) with their features ``X``.

        One task per tile holding any of the pixels, which travel with it;
        rows keep their order.  On a stored stack only the chunks under the
        pixels' feature windows are read (:class:`rastercore.engine.LazyWindow`).
        """
        from rastercore.engine import plan_tiles, tile_tasks

        tiles = plan_tiles(self.stack, halo=self.spec.halo, bands=self.bands)
        i = np.searchsorted(np.cumsum(tiles.chunks[0]), rows["row"], side="right")
        j = np.searchsorted(np.cumsum(tiles.chunks[1]), rows["col"], side="right")
        order = np.lexsort((j, i))
        groups = np.split(order, np.flatnonzero(np.diff(i[order] * tiles.grid[1] + j[order])) + 1)
        members = {(int(i[g[0]]), int(j[g[0]])): g for g in groups if g.size}
        tile_args = {index: (rows["row"][g], rows["col"][g]) for index, g in members.items()}
        per_tile = FeatureTile(self.spec, self.bands, nodata_of(self.stack))
        X = np.empty((len(rows["row"]), self.n_features), np.float32)
        tasks = tile_tasks(tiles, per_tile, tile_args=tile_args, lazy=True)
        for (tile, _), x in compute_bounded(tasks, lambda task: task[1], per_thread=4):
            X[members[tile.index]] = x
        return {**rows, "X": X}

    def candidates(self, cutoff: np.ndarray) -> dict:
        """Rows (features, target, position, key) of every eligible pixel whose key is below its cut-off.

        Computed a few tiles at a time (:func:`rastercore.scheduler.compute_bounded`);
        rows are in tile order.
        """
        parts = [rows for _, rows in compute_bounded(self.tile_tasks(cutoff), per_thread=4) if rows is not None]
        if not parts:
            return {"X": np.zeros((0, self.n_features), np.float32), "code": np.zeros(0, np.int64),
                    "key": np.zeros(0), "row": np.zeros(0, np.int64), "col": np.zeros(0, np.int64),
                    "value": np.zeros(0, np.float32), "bands": np.zeros((0, len(self.bands)), np.float32)}
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def eligible_codes(valid: np.ndarray, strata: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``class * 2 + split`` where a pixel is valid, labelled and not in a gap; -1 elsewhere (one tile)."""
    return _counted_codes(valid, strata, labels)[0]


def _counted_codes(valid, strata, labels) -> tuple[np.ndarray, np.ndarray]:
    """:func:`eligible_codes` and their ``bincount``, in one sweep of the tile."""
    return _eligible_codes(np.ascontiguousarray(valid), np.ascontiguousarray(strata), np.ascontiguousarray(labels))


@njit(cache=True, nogil=True)
def _eligible_codes(valid, strata, labels):
    out = np.empty(valid.shape, np.int64)
    top = -1
    for y in range(valid.shape[0]):
        for x in range(valid.shape[1]):
            s, label = np.int64(strata[y, x]), np.int64(labels[y, x])
            code = s * 2 + label if valid[y, x] and s >= 0 and label >= 0 else -1
            out[y, x] = code
            top = max(top, code)
    counts = np.zeros(top + 1, np.int64)
    for y in range(valid.shape[0]):
        for x in range(valid.shape[1]):
            if out[y, x] >= 0:
                counts[out[y, x]] += 1
    return out, counts


class CountTile:
    """Per-tile function of the counting pass: eligible pixels per code (a ``bincount``).

    With ``keep`` (see :meth:`PixelPlan.count`), also the tile's rows
    (``row``, ``col``, ``key``, ``code``, ``value``) of each code's ``keep``
    pixels with the smallest keys: keys are drawn for every eligible pixel,
    and only those below a cut-off that leaves a few more than ``keep`` are kept.
    """

    def __init__(self, nodata, keep: np.ndarray | None = None, seed: int = 0):
        self.nodata, self.keep, self.seed = nodata, keep, seed

    def __dask_tokenize__(self):
        keep = None if self.keep is None else self.keep.tolist()
        return ("rastercore-count", repr(self.nodata), keep, self.seed)

    def __call__(self, window, tile, strata, labels, values=None):
        code, counts = _counted_codes(valid_mask(window, self.nodata), strata, labels)
        if self.keep is None:
            return counts
        bound = self.keep[np.arange(len(counts)) % 2]
        cutoff = np.where(counts > bound, np.minimum(1.0, _with_margin(bound) / np.maximum(counts, 1)), 1.0)
        row0, col0 = tile.origin
        ys, xs, keys = _below_cutoff(code, cutoff, self.seed, row0, col0)
        short = np.bincount(code[ys, xs], minlength=len(counts)) < np.minimum(bound, counts)
        if short.any():  # rarely: too few keys below a code's cut-off; take every key of that code
            ys, xs, keys = _below_cutoff(code, np.where(short, 1.0, cutoff), self.seed, row0, col0)
        rows = {"row": (ys + row0).astype(np.int64), "col": (xs + col0).astype(np.int64), "key": keys,
                "code": code[ys, xs],
                "value": (values[ys, xs] if values is not None else np.full(ys.size, np.nan)).astype(np.float32),
                "bands": window[:, ys, xs].T.astype(np.float32)}
        return counts, _smallest_per_code(rows, bound)


def _with_margin(quota):
    """A few more than ``quota`` (six standard deviations of a binomial count, plus 16)."""
    return quota + 6 * np.sqrt(quota) + 16


def _smallest_per_code(rows: dict, limits: np.ndarray) -> dict:
    """Of ``rows``, those among the ``limits[code]`` smallest ``(key, row, col)`` of their code; by code, then key."""
    order = np.lexsort((rows["col"], rows["row"], rows["key"], rows["code"]))
    code = rows["code"][order]
    first = np.searchsorted(code, code, side="left")  # where each row's code starts in the sorted rows
    taken = order[np.arange(code.size) - first < limits[code]]
    return {k: v[taken] for k, v in rows.items()}


class _Smallest:
    """Each code's ``keep[code % 2]`` rows with the smallest keys, over the tiles' rows added so far."""

    def __init__(self, keep: np.ndarray):
        self.keep, self.rows = keep, None

    def add(self, rows: dict) -> None:
        if self.rows is not None:
            rows = {k: np.concatenate([self.rows[k], v]) for k, v in rows.items()}
        codes = np.arange(rows["code"].max(initial=-1) + 1)
        self.rows = _smallest_per_code(rows, self.keep[codes % 2])


class FeatureTile:
    """Per-tile function: features of given pixels (scene ``rows``, ``cols``) of the tile.

    Its window may be a :class:`rastercore.engine.LazyWindow`: sparse
    pixels read only their patches, so only the chunks those touch.
    """

    def __init__(self, spec: FeatureSpec, bands: list[str], nodata):
        self.spec, self.bands, self.nodata = spec, bands, nodata

    def __dask_tokenize__(self):
        return ("rastercore-features-at", repr(self.spec.to_dict()), tuple(self.bands), repr(self.nodata))

    def __call__(self, window, tile, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        y, x = tile.window_origin
        X = features_at(window, self.spec, self.bands, rows - y, cols - x, nodata=self.nodata, origin=(y, x))
        return np.ascontiguousarray(X, np.float32)


def plan_pixels(stack: xr.DataArray, target: xr.DataArray, spec, *, split: SpatialSplit | None = None,
                thresholds=None, seed: int = 0, keep: np.ndarray | None = None) -> PixelPlan:
    """Prepare the lazy target and split labels of ``stack`` and count eligible pixels (one pass).

    Parameters
    ----------
    stack, target, spec, split, thresholds, seed
        As in :func:`draw_sample`.
    keep : array of 2 ints, optional
        The most pixels any class may need in training and in validation
        (margin included): the pass keeps each one's pixels with the
        smallest keys (:meth:`PixelPlan.count`).

    Returns
    -------
    PixelPlan
    """
    spec = FeatureSpec.coerce(spec)
    split = split or SpatialSplit()
    band_names = [str(b) for b in stack["band"].values]
    used = spec.input_bands(band_names)
    chunks = stack.chunks[1:] if stack.chunks else tuple((n,) for n in stack.shape[1:])
    strata, values, class_names, regression = _strata(target, thresholds, chunks)
    labels = split.labels(stack, seed=seed, halo=spec.halo).rechunk(chunks)
    plan = PixelPlan(stack, strata, labels, values, spec, list(used), class_names, regression, split, seed)
    plan.counts = plan.count(keep)
    return plan


def _quota_bounds(n: int, n_validation: int | None, per_class, split: SpatialSplit) -> np.ndarray | None:
    """The most rows any class can be given in training and in validation, with the margin of :func:`select_pixels`.

    None when that depends on the counts (``regions`` without ``n_validation``).
    """
    if n_validation is None:
        if split.regions is not None:
            return None
        fraction = split.validation_fraction
        n_validation = round(n * fraction / (1 - fraction)) if fraction < 1 else n
    train = max(per_class.values(), default=0) if isinstance(per_class, Mapping) else n
    return np.ceil(_with_margin(np.array([train, n_validation], np.float64))).astype(np.int64)


def _strata(target: xr.DataArray, thresholds, chunks):
    """Class codes (integers, -1 unlabelled), continuous values or None, class names, regression flag."""
    data = target.data if isinstance(target.data, da.Array) else da.from_array(np.asarray(target.data))
    data = data.rechunk(chunks)
    names = target.attrs.get("class_names")
    if np.issubdtype(data.dtype, np.integer):
        return data, None, names, False
    values = data.astype(np.float32)
    if thresholds is None:
        return da.where(da.isfinite(values), 0, -1).astype(np.int8), values, None, True
    from rastercore.targets import threshold_classes

    classes = threshold_classes(target.copy(data=values), thresholds)
    return classes.data, values, classes.attrs["class_names"], False


def _quotas(available: np.ndarray, total: int, per_class, regression: bool, allow_short: bool,
            class_names, split_name: str) -> np.ndarray:
    """Exact per-class counts for one split (:func:`rastercore.quotas.class_quotas`; a short class is an error)."""
    present = available > 0
    if not present.any() or (total == 0 and not isinstance(per_class, Mapping)):
        return np.zeros_like(available)
    if isinstance(per_class, Mapping):
        quota = np.zeros_like(available)
        scale = 1.0 if split_name == "training" else total / max(sum(per_class.values()), 1)
        for cls, count in per_class.items():
            if not 0 <= int(cls) < len(available):
                raise SamplingError(f"per_class names class {cls}, which the target does not hold.")
            quota[int(cls)] = round(count * scale)
    elif per_class in ("proportional", "balanced"):
        quota = class_quotas(available, total, balance=per_class == "balanced" and not regression)
    else:
        raise SamplingError(f"per_class must be 'balanced', 'proportional' or a dict of counts, not {per_class!r}")
    short = quota > available
    if short.any():
        if not allow_short:
            details = ", ".join(f"class {_name(c, class_names)}: {available[c]} of {quota[c]}" for c in np.flatnonzero(short))
            raise SamplingError(f"too few eligible pixels in the {split_name} split ({details}); lower n, use "
                                "per_class='proportional', or pass allow_short=True to take them all.")
        quota = np.minimum(quota, available)
    return quota


def _name(code: int, class_names) -> str:
    return f"{class_names[code]!r}" if class_names and code < len(class_names) else str(code)


def select_pixels(plan: PixelPlan, quotas: np.ndarray) -> dict:
    """The exact sample: per stratum, the ``quotas[class, split]`` eligible pixels with the smallest keys.

    Only pixels whose key is below a cut-off (a few more than needed) get
    their features computed; the cut-off is raised where too few of them
    have finite features.  The result does not depend on the tiling.

    Returns
    -------
    dict
        Rows: ``X``, ``code``, ``key``, ``row``, ``col``, ``value``, in
        scene order (row, then column).

    Raises
    ------
    SamplingError
        A stratum has fewer pixels with finite features than its quota.
    """
    counts = plan.counts
    if plan.kept is not None:  # the counting pass kept enough of the smallest keys: features at a few of them
        wanted = np.ceil(_with_margin(quotas)).astype(np.int64) * (quotas > 0)
        rows = plan.features(_smallest_per_code(plan.kept, wanted.ravel()))
        finite = np.isfinite(rows["X"]).all(axis=1)
        rows = {k: v[finite] for k, v in rows.items()}
        chosen, short = _smallest_keys(rows, quotas)
        if not short.any():
            return {k: v[chosen] for k, v in rows.items()}
    cutoff = np.where(counts > 0, np.minimum(1.0, _with_margin(quotas) / np.maximum(counts, 1)), 0.0)
    for _ in range(4):
        rows = plan.candidates(cutoff)
        chosen, short = _smallest_keys(rows, quotas)
        if not short.any():
            return {k: v[chosen] for k, v in rows.items()}
        if np.all(cutoff[short] >= 1.0):
            raise SamplingError("too few pixels with finite features (nodata within the feature window) for "
                                f"strata {np.argwhere(short).tolist()}; lower n or use allow_short=True.")
        cutoff = np.where(short, np.minimum(1.0, cutoff * 4), cutoff)
    raise SamplingError("could not gather enough candidates; this should not happen, please report it.")


def _smallest_keys(rows, quotas):
    chosen = []
    short = np.zeros_like(quotas, dtype=bool)
    stratum = rows["code"]
    for cls, s in np.argwhere(quotas > 0):
        idx = np.flatnonzero(stratum == cls * 2 + s)
        if idx.size < quotas[cls, s]:
            short[cls, s] = True
            continue
        order = np.lexsort((rows["col"][idx], rows["row"][idx], rows["key"][idx]))
        chosen.append(idx[order[: quotas[cls, s]]])
    chosen = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)
    # Rows in scene order (row, then column): independent of tiling.
    chosen = chosen[np.lexsort((rows["col"][chosen], rows["row"][chosen]))]
    return chosen, short


class CandidateTile:
    """Per-tile function of sampling: rows of the eligible pixels whose key is below their cut-off.

    Runs on the tile engine with the tile's ``strata`` and split ``labels``
    (and ``values``) blocks; returns None when the tile holds no such pixel.
    """

    def __init__(self, spec: FeatureSpec, bands: list[str], nodata, cutoff: np.ndarray, seed: int):
        self.spec, self.bands, self.nodata, self.cutoff, self.seed = spec, bands, nodata, cutoff, seed

    def __dask_tokenize__(self):
        return ("rastercore-candidates", repr(self.spec.to_dict()), tuple(self.bands), repr(self.nodata),
                self.cutoff.tobytes(), self.seed)

    def __call__(self, window: np.ndarray, tile, strata: np.ndarray, labels: np.ndarray,
                 values: np.ndarray | None = None):
        code = eligible_codes(valid_mask(tile.interior(window), self.nodata), strata, labels)
        row0, col0 = tile.origin
        ys, xs, keys = _below_cutoff(code, self.cutoff.ravel(), self.seed, row0, col0)
        if not ys.size:
            return None
        top, _, left, _ = tile.halo
        X = features_at(window, self.spec, self.bands, ys + top, xs + left, nodata=self.nodata,
                        origin=tile.window_origin)
        finite = np.isfinite(X).all(axis=1)
        ys, xs, X, keys = ys[finite], xs[finite], X[finite], keys[finite]
        return {"X": np.ascontiguousarray(X, np.float32), "code": code[ys, xs], "key": keys,
                "row": (ys + row0).astype(np.int64), "col": (xs + col0).astype(np.int64),
                "value": (values[ys, xs] if values is not None else np.full(ys.size, np.nan)).astype(np.float32),
                "bands": window[:, ys + top, xs + left].T.astype(np.float32)}


@njit(cache=True, nogil=True)
def _below_cutoff(code, cutoff, seed, row0, col0):
    """Rows, columns (row-major) and keys of a tile's eligible pixels whose key is below their code's cut-off.

    The key is :func:`rastercore._random.uniform`.  Two sweeps, counting
    then filling: arrays grown inside the loop were 15x slower than drawing
    every key twice (numba could no longer hoist their handling out of it).
    """
    n = 0
    for y in range(code.shape[0]):
        for x in range(code.shape[1]):
            c = code[y, x]
            if c >= 0 and uniform(seed, _KEY_STREAM, row0 + y, col0 + x) < cutoff[c]:
                n += 1
    ys = np.empty(n, np.int64)
    xs = np.empty(n, np.int64)
    keys = np.empty(n)
    n = 0
    for y in range(code.shape[0]):
        for x in range(code.shape[1]):
            c = code[y, x]
            if c >= 0:
                key = uniform(seed, _KEY_STREAM, row0 + y, col0 + x)
                if key < cutoff[c]:
                    ys[n], xs[n], keys[n] = y, x, key
                    n += 1
    return ys, xs, keys


def fit_streaming(estimator, plan: PixelPlan, *, which: int = TRAIN, epochs: int = 1, seed: int = 0,
                  labelled: bool = True, classes=None, batch_rows: int = 1, min_rows: int = 1, stage: str = "fit",
                  progress: ProgressMode = "auto") -> int:
    """``estimator.partial_fit`` on every eligible pixel of one split, tile by tile: the one streaming loop.

    Tiles are computed a few at a time on the cluster
    (:func:`rastercore.scheduler.compute_bounded`) and fed to the estimator
    in the driver, in a seeded random tile order per epoch, each tile's
    rows shuffled.  Tiles with fewer than ``batch_rows`` rows are pooled with
    the next ones into one call; leftovers at the end of an epoch are fitted
    if there are at least ``min_rows`` of them.

    Parameters
    ----------
    estimator : estimator with ``partial_fit``
    plan : PixelPlan
    which : int, default TRAIN
        The split whose pixels are fitted.
    epochs : int, default 1
        Passes over the pixels.
    seed : int, default 0
        Fixes the tile order and the shuffles.
    labelled : bool, default True
        ``partial_fit(X, y[, classes=...])`` with the class codes (or the
        values, for regression); False for ``partial_fit(X)`` (clustering,
        projections).
    classes : array, optional
        Passed as ``classes=`` to every call (classifiers).
    batch_rows : int, default 1
        Rows per call at least (tiles are pooled until there are as many).
    min_rows : int, default 1
        Rows the last call of an epoch needs at least (else they are left out).
    stage, progress
        Progress reporting: one unit per tile per epoch.

    Returns
    -------
    int
        Rows fitted in all (over every epoch).
    """
    tasks = plan.tile_tasks(plan.cutoff_all(which))
    rng = np.random.default_rng(seed)
    seen = 0
    with Progress(stage, epochs * len(tasks), mode=progress) as bar:
        for _ in range(epochs):
            pending: list[dict] = []
            for _, rows in compute_bounded([tasks[i] for i in rng.permutation(len(tasks))]):
                if rows is not None and len(rows["code"]):
                    shuffle = rng.permutation(len(rows["code"]))
                    pending.append({k: v[shuffle] for k, v in rows.items()})
                    if sum(len(p["code"]) for p in pending) >= batch_rows:
                        seen += _partial_fit(estimator, pending, plan, labelled, classes)
                        pending = []
                bar.update()
            if pending and sum(len(p["code"]) for p in pending) >= min_rows:
                seen += _partial_fit(estimator, pending, plan, labelled, classes)
    return seen


def _partial_fit(estimator, parts: list[dict], plan: PixelPlan, labelled: bool, classes) -> int:
    X = np.concatenate([p["X"] for p in parts])
    if not labelled:
        estimator.partial_fit(X)
        return len(X)
    y = np.concatenate([p["value"] if plan.regression else p["code"] // 2 for p in parts])
    if classes is None:
        estimator.partial_fit(X, y)
    else:
        estimator.partial_fit(X, y, classes=classes)
    return len(X)


PATCH_SHARE = 0.25
"""Below this share of a block's pixels, :func:`features_at` computes patches instead of the block."""

BLOCK_FEATURE_BYTES = 128 * 2**20
"""At most this many bytes of features at once: :func:`features_at` computes a larger block in strips of rows."""


def features_at(block: np.ndarray, spec: FeatureSpec, bands: list[str], ys: np.ndarray, xs: np.ndarray, *,
                nodata: float | None = None, origin: tuple[int, int] | None = None) -> np.ndarray:
    """Features ``(n, n_features)`` of the pixels ``(ys, xs)`` of ``block`` (a tile with its halo).

    ``block`` is an array or a :class:`rastercore.engine.LazyWindow`.

    Sparse pixels (their patches cover under :data:`PATCH_SHARE` of the
    block) are computed one ``(2 halo + 1)²`` patch each, cut from the block
    and truncated only where the block ends: a one-pixel tile with its halo,
    so the values equal the whole block's (the seamless-tiling property the
    feature engine is tested for); otherwise the block is computed once, in
    strips of rows (each with its halo) when its features would take more
    than :data:`BLOCK_FEATURE_BYTES` (e.g. the 578 ``window`` values of r=8
    on two bands).  ``origin`` is the scene (row, col) of ``block[:, 0, 0]``
    (needed by features that depend on the position: a strided ``onnx`` network).
    """
    halo = spec.halo
    height, width = block.shape[1:]
    n_features = len(spec.feature_names(bands))
    if len(ys) * (2 * halo + 1) ** 2 >= PATCH_SHARE * height * width:
        strip = max(1, BLOCK_FEATURE_BYTES // (4 * n_features * width) - 2 * halo)
        return _features_in_strips(np.asarray(block), spec, bands, ys, xs, nodata, origin, strip, n_features)
    X = np.empty((len(ys), n_features), np.float32)
    for k, (y, x) in enumerate(zip(ys.tolist(), xs.tolist())):
        r0, r1, c0, c1 = max(y - halo, 0), min(y + halo + 1, height), max(x - halo, 0), min(x + halo + 1, width)
        crop = (y - r0, r1 - y - 1, x - c0, c1 - x - 1)
        at = None if origin is None else (origin[0] + r0, origin[1] + c0)
        X[k] = features_for_block(block[:, r0:r1, c0:c1], spec, bands, nodata=nodata, crop=crop, origin=at)[:, 0, 0]
    return X


def _features_in_strips(block, spec, bands, ys, xs, nodata, origin, strip: int, n_features: int) -> np.ndarray:
    """Features of the pixels ``(ys, xs)``, computed over strips of ``strip`` block rows with their halo.

    Columns keep the block's own edges: the pixels asked for are a tile's,
    at least ``halo`` from a block side that is not the scene's edge.
    """
    height = block.shape[1]
    if strip >= height:
        return features_for_block(block, spec, bands, nodata=nodata, origin=origin)[:, ys, xs].T
    X = np.empty((len(ys), n_features), np.float32)
    for a in range(int(ys.min()), int(ys.max()) + 1, strip):
        b = min(a + strip, height)
        rows = np.flatnonzero((ys >= a) & (ys < b))
        if not rows.size:
            continue
        r0, r1 = max(a - spec.halo, 0), min(b + spec.halo, height)
        at = None if origin is None else (origin[0] + r0, origin[1])
        part = features_for_block(block[:, r0:r1], spec, bands, nodata=nodata, crop=(a - r0, r1 - b, 0, 0), origin=at)
        X[rows] = part[:, ys[rows] - a, xs[rows]].T
    return X


def _assemble(rows, quotas, plan: PixelPlan, stack, per_class) -> SampleTable:
    spec, used, class_names, regression, split, seed = (plan.spec, plan.bands, plan.class_names, plan.regression,
                                                       plan.split, plan.seed)
    grid = grid_of(stack)
    classes = rows["code"] // 2
    block_size = split.block_size
    blocks_per_row = math.ceil(grid.width / block_size)
    attrs = {
        "feature_spec": spec.to_dict(),
        "bands": list(used),
        "seed": seed,
        "per_class": per_class if isinstance(per_class, str) else {str(k): int(v) for k, v in per_class.items()},
        "quotas": quotas.tolist(),
        "task": "regression" if regression else "classification",
        "crs": grid.crs.to_wkt() if grid.crs else None,
        "transform": list(grid.transform)[:6],
        "shape": [grid.height, grid.width],
        "block_size": block_size,
        "validation_fraction": split.validation_fraction if split.regions is None else None,
        "gap": spec.halo if split.gap is None else split.gap,
        "band_ranges": band_ranges(rows["bands"], used),
    }
    y = rows["value"] if regression else classes.astype(np.int32)
    value = None if regression or np.isnan(rows["value"]).all() else rows["value"]
    if class_names is None and not regression:
        class_names = [str(c) for c in range(quotas.shape[0])]
    return SampleTable(
        X=rows["X"], y=y, value=value, row=rows["row"], col=rows["col"],
        block=(rows["row"] // block_size) * blocks_per_row + rows["col"] // block_size,
        split=(rows["code"] % 2).astype(np.int8), feature_names=spec.feature_names(list(used)),
        class_names=None if regression else list(class_names), attrs=attrs,
    )


def band_ranges(values: np.ndarray, bands: list[str]) -> dict[str, list[float]] | None:
    """``{band: [p1, p50, p99]}`` of the input values at sampled pixels (``values``: rows x bands), or None.

    Kept with the sample and the model, so prediction can tell a stack
    whose values are far from the training rows' (uint8 against calibrated
    floats, decibels against linear power).
    """
    if len(values) == 0:
        return None
    quantiles = np.percentile(values, [1, 50, 99], axis=0)
    return {band: [float(q) for q in quantiles[:, i]] for i, band in enumerate(bands)}


_OFFSET = re.compile(r"^(?P<prefix>.+)/dy=(?P<dy>-?\d+),dx=(?P<dx>-?\d+)$")


def augment_windows(table: SampleTable) -> SampleTable:
    """Eight rows per row: the flips and rotations of every raw ``window`` feature.

    Columns of ``window`` features (named ``.../dy=a,dx=b``) are permuted as
    the neighbourhood would be by each of the 8 symmetries of the square;
    other columns are repeated unchanged.  The first of each 8 rows is the
    original.
    """
    names = table.feature_names
    index = {name: i for i, name in enumerate(names)}
    perms = []
    for transform in _dihedral():
        perm = np.arange(len(names))
        for i, name in enumerate(names):
            m = _OFFSET.match(name)
            if m:
                dy, dx = transform(int(m["dy"]), int(m["dx"]))
                perm[index[f"{m['prefix']}/dy={dy},dx={dx}"]] = i
        perms.append(perm)
    X = np.asarray(table.X)
    stacked = np.stack([X[:, p] for p in perms], axis=1).reshape(-1, X.shape[1])

    def repeat(a):
        return None if a is None else np.repeat(np.asarray(a), 8, axis=0)

    return SampleTable(X=stacked, y=repeat(table.y), value=repeat(table.value), row=repeat(table.row),
                       col=repeat(table.col), block=repeat(table.block), split=repeat(table.split),
                       feature_names=names, class_names=table.class_names,
                       attrs={**table.attrs, "augmented": "dihedral-8"})


def _dihedral():
    return [lambda y, x: (y, x), lambda y, x: (x, -y), lambda y, x: (-y, -x), lambda y, x: (-x, y),
            lambda y, x: (y, -x), lambda y, x: (-y, x), lambda y, x: (x, y), lambda y, x: (-x, -y)]


# --- storage: HDF5 (buffered writer) or zarr ----------------------------------------

_ROWS_PER_WRITE = 65_536


def write_table(table: SampleTable, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a sample table to ``.h5`` (HDF5) or ``.zarr``, atomically.

    Rows go out in buffered slices of 65,536; the file appears under its
    name only once complete.  The room the columns take uncompressed is
    checked before anything is written.

    Raises
    ------
    StoreExistsError
        ``path`` exists and ``overwrite`` is false.
    OutputNotWritableError
        The disk holding ``path`` has less room than the table's columns
        take (uncompressed), or writing failed (the disk filled up); nothing
        is left under ``path``.
    """
    import json
    import shutil

    from rastercore.errors import OutputNotWritableError

    path = Path(path)
    columns = {name: np.asarray(getattr(table, name)) for name in SampleTable.COLUMNS if getattr(table, name) is not None}
    meta = json.dumps({"feature_names": table.feature_names, "class_names": table.class_names,
                       "attrs": table.attrs, "rastercore_sample_version": 1})
    writer = _write_h5 if path.suffix in (".h5", ".hdf5") else _write_zarr
    with writing(path, overwrite=overwrite) as partial:
        needed, free = sum(v.nbytes for v in columns.values()) + len(meta), shutil.disk_usage(path.parent).free
        if needed > free:
            raise OutputNotWritableError(
                f"cannot write {path}: its {len(table)} rows take up to {needed / 2**20:.1f} MiB and the disk holding "
                f"{path.parent} has {free / 2**20:.1f} MiB free; free some space or write it elsewhere.")
        try:
            writer(partial, columns, meta)
        except OSError as err:  # h5py and zarr report a full disk as OSError
            reason = os.strerror(err.errno) if err.errno else str(err)
            raise OutputNotWritableError(
                f"could not write {path}: {reason} ({shutil.disk_usage(path.parent).free / 2**20:.1f} MiB free on "
                f"the disk holding {path.parent}); free some space and rerun.") from None
    return path


def _write_h5(path: Path, columns: dict, meta: str) -> None:
    import h5py

    with h5py.File(path, "w", rdcc_nbytes=0) as f:  # no chunk cache: a failed write raises here, not at exit
        for name, values in columns.items():
            dset = f.create_dataset(name, shape=(0, *values.shape[1:]), maxshape=(None, *values.shape[1:]),
                                    dtype=values.dtype, chunks=(min(max(len(values), 1), 8192), *values.shape[1:]),
                                    compression="gzip", compression_opts=1)
            for start in range(0, len(values), _ROWS_PER_WRITE):
                part = values[start:start + _ROWS_PER_WRITE]
                dset.resize(start + len(part), axis=0)
                dset[start:start + len(part)] = part
        f.attrs["rastercore"] = meta


def _write_zarr(path: Path, columns: dict, meta: str) -> None:
    import zarr

    group = zarr.open_group(str(path), mode="w")
    for name, values in columns.items():
        arr = group.create_array(name, shape=values.shape, dtype=values.dtype,
                                 chunks=(min(max(len(values), 1), 8192), *values.shape[1:]))
        for start in range(0, len(values), _ROWS_PER_WRITE):
            arr[start:start + _ROWS_PER_WRITE] = values[start:start + _ROWS_PER_WRITE]
    group.attrs["rastercore"] = meta


def read_table(path: str | os.PathLike) -> SampleTable:
    """Open a sample table lazily: columns are dask arrays read in row chunks.

    Raises
    ------
    SamplingError
        ``path`` does not exist, is a directory that is not a zarr store,
        or is not a sample table written by :func:`write_table` (named in the message).
    """
    import json

    path = Path(path)
    is_h5 = _check_table_path(path)
    try:
        meta, columns = _open_h5_table(path) if is_h5 else _open_zarr_table(path)
        meta = json.loads(meta)
        names = meta["feature_names"], meta["class_names"], meta["attrs"]
    except (OSError, KeyError, TypeError, ValueError) as err:
        reason = "no rastercore metadata" if isinstance(err, KeyError) else f"{type(err).__name__}: {err}"
        raise SamplingError(f"{path} is not a sample table written by `rastercore sample` ({reason}); give the "
                            "file `rastercore sample -o` wrote.") from None
    if "X" not in columns:
        raise SamplingError(f"{path} holds no feature column X; give the file `rastercore sample -o` wrote.")
    return SampleTable(**{k: columns.get(k) for k in SampleTable.COLUMNS}, feature_names=names[0],
                       class_names=names[1], attrs=names[2])


def _check_table_path(path: Path) -> bool:
    """Whether ``path`` is an HDF5 table (else a zarr one); a :class:`SamplingError` if it can be neither."""
    is_h5 = path.suffix in (".h5", ".hdf5")
    if not path.exists():
        raise SamplingError(f"sample table {path} does not exist; draw one with `rastercore sample`.")
    if path.is_dir() and (is_h5 or not _is_zarr_store(path)):
        raise SamplingError(f"sample table {path} is a directory, not a sample table; give the .h5 file or .zarr "
                            "store written by `rastercore sample`.")
    if path.is_file() and not is_h5:
        raise SamplingError(f"{path} is not a sample table: those are .h5 files or .zarr stores written by "
                            "`rastercore sample`.")
    return is_h5


def _is_zarr_store(path: Path) -> bool:
    return any((path / name).exists() for name in ("zarr.json", ".zgroup", ".zarray"))


def _open_h5_table(path: Path) -> tuple[str, dict]:
    """The metadata text and lazy columns of an HDF5 sample table."""
    import h5py

    with h5py.File(path, "r") as f:
        meta = f.attrs["rastercore"]
        shapes = {name: (f[name].shape, f[name].dtype) for name in f}
    return meta, {name: da.from_array(_H5Column(str(path), name, *shapes[name]), chunks=(65_536, *shapes[name][0][1:]))
                  for name in shapes}


def _open_zarr_table(path: Path) -> tuple[str, dict]:
    """The metadata text and lazy columns of a zarr sample table."""
    import zarr

    group = zarr.open_group(str(path), mode="r")
    return group.attrs["rastercore"], {name: da.from_zarr(str(path), component=name) for name in group.array_keys()}


class _H5Column:
    """An HDF5 dataset as a picklable array-like that opens the file per read."""

    def __init__(self, path: str, name: str, shape, dtype):
        self.path, self.name, self.shape, self.dtype, self.ndim = path, name, shape, dtype, len(shape)

    def __getitem__(self, key):
        import h5py

        with h5py.File(self.path, "r") as f:
            return f[self.name][key]
