import numpy as np
import pytest
import xarray as xr

from rastercore.datasets import SYNTHETIC_THRESHOLD, synthetic_scene
from rastercore.errors import SamplingError, StoreExistsError
from rastercore.features import compute_features
from rastercore.sampling import (
    EXCLUDED,
    TRAIN,
    VALIDATION,
    SpatialSplit,
    augment_windows,
    draw_sample,
    read_table,
    write_table,
)

SPEC = [{"name": "box_mean", "size": 7}, {"name": "ratio", "a": "HV", "b": "HH"}]


@pytest.fixture(scope="module")
def scene():
    return synthetic_scene((300, 340), seed=2, chunks=128)


def test_quotas_are_exact_and_tiling_does_not_matter(scene):
    table = draw_sample(scene["sar"], scene["target"], SPEC, n=600, thresholds=SYNTHETIC_THRESHOLD, seed=4,
                        split=SpatialSplit(block_size=64))
    assert np.bincount(table.y[table.split == TRAIN]).tolist() == [300, 300]
    assert len(table) == 600 + 150 and np.bincount(table.y[table.split == VALIDATION]).tolist() == [75, 75]
    rechunked = scene.chunk({"y": 77, "x": 100})
    again = draw_sample(rechunked["sar"], rechunked["target"], SPEC, n=600, thresholds=SYNTHETIC_THRESHOLD, seed=4,
                        split=SpatialSplit(block_size=64))
    np.testing.assert_array_equal(table.row, again.row)
    np.testing.assert_array_equal(table.col, again.col)
    np.testing.assert_array_equal(table.X, again.X)
    other = draw_sample(scene["sar"], scene["target"], SPEC, n=600, thresholds=SYNTHETIC_THRESHOLD, seed=5,
                        split=SpatialSplit(block_size=64))
    assert len(set(zip(table.row, table.col)) & set(zip(other.row, other.col))) < 100


def test_rows_hold_the_features_and_target_of_their_pixel(scene):
    table = draw_sample(scene["sar"], scene["target"], SPEC, n=300, thresholds=SYNTHETIC_THRESHOLD, seed=1)
    whole = compute_features(scene["sar"], SPEC).values  # independent: the whole-image feature stack
    np.testing.assert_allclose(table.X, whole[:, table.row, table.col].T, rtol=1e-6)
    target = scene["target"].values[table.row, table.col]
    np.testing.assert_array_equal(table.y, (target >= SYNTHETIC_THRESHOLD).astype(int))
    np.testing.assert_allclose(table.value, target)
    assert table.feature_names == ["box_mean(size=7)[HH]", "box_mean(size=7)[HV]", "ratio(a=HV,b=HH)"]
    assert table.class_names == ["< 0.6", ">= 0.6"]


def test_no_feature_window_crosses_the_split(scene):
    block, halo = 48, 3  # box_mean(size=7) needs 3 pixels around
    table = draw_sample(scene["sar"], scene["target"], SPEC, n=1000, thresholds=SYNTHETIC_THRESHOLD, seed=0,
                        split=SpatialSplit(block_size=block, validation_fraction=0.4), per_class="proportional")
    raw = SpatialSplit(block_size=block, validation_fraction=0.4, gap=0).labels(scene["sar"], seed=0, halo=0).compute()
    assert {TRAIN, VALIDATION} <= set(np.unique(raw))
    for r, c, s in zip(table.row, table.col, table.split):
        window = raw[max(r - halo, 0):r + halo + 1, max(c - halo, 0):c + halo + 1]
        assert (window == s).all()
    assert (table.split == VALIDATION).any()
    # And the gap is no wider than needed: pixels right at the margin are eligible.
    margins = np.minimum(table.row % block, block - 1 - table.row % block)
    assert margins.min() <= halo + 1


def test_proportional_and_explicit_quotas(scene):
    table = draw_sample(scene["sar"], scene["target"], SPEC, n=500, thresholds=SYNTHETIC_THRESHOLD, seed=1,
                        per_class="proportional")
    counts = np.array(table.attrs["counts"])[:, TRAIN]
    expected = counts / counts.sum() * 500
    assert np.abs(np.bincount(table.y[table.split == TRAIN]) - expected).max() < 1
    explicit = draw_sample(scene["sar"], scene["target"], SPEC, n=0, thresholds=SYNTHETIC_THRESHOLD, seed=1,
                           per_class={0: 40, 1: 10}, n_validation=25)
    assert np.bincount(explicit.y[explicit.split == TRAIN]).tolist() == [40, 10]
    assert np.bincount(explicit.y[explicit.split == VALIDATION]).tolist() == [20, 5]


def test_too_few_pixels_and_one_class_are_clear_errors(scene):
    with pytest.raises(SamplingError, match=r"too few eligible pixels in the training split \(class '< 0.6': \d+ of 100000"):
        draw_sample(scene["sar"], scene["target"], SPEC, n=200_000, thresholds=SYNTHETIC_THRESHOLD)
    short = draw_sample(scene["sar"], scene["target"], SPEC, n=200_000, thresholds=SYNTHETIC_THRESHOLD,
                        allow_short=True)
    assert (np.array(short.attrs["quotas"]) <= np.array(short.attrs["counts"])).all()
    with pytest.raises(SamplingError, match="only class '< 2'.*at least two"):
        draw_sample(scene["sar"], scene["target"], SPEC, n=100, thresholds=2.0)


def test_regression_sample_and_nodata(scene):
    sar = scene["sar"].where(scene["sar"].x < scene["sar"].x[200])  # right part is nodata
    table = draw_sample(sar, scene["target"], SPEC, n=400, seed=3)
    assert table.class_names is None and table.y.dtype == np.float32
    np.testing.assert_allclose(table.y, scene["target"].values[table.row, table.col])
    assert table.col.max() < 200 - 3 and np.isfinite(table.X).all()


def test_given_regions_split(scene):
    regions = xr.zeros_like(scene["target"], dtype=np.int8).where(scene["target"].y > scene["target"].y[150], 1)
    table = draw_sample(scene["sar"], scene["target"], SPEC, n=300, thresholds=SYNTHETIC_THRESHOLD,
                        split=SpatialSplit(regions=regions.astype(np.int8)))
    assert (table.row[table.split == TRAIN] < 150 - 3).all()
    assert (table.row[table.split == VALIDATION] >= 150 + 3).all()


def test_augmentation_rotates_and_flips_raw_windows(scene):
    spec = [{"name": "window", "r": 1, "bands": ["HH"]}, {"name": "box_mean", "size": 3, "bands": ["HH"]}]
    table = draw_sample(scene["sar"], scene["target"], spec, n=20, thresholds=SYNTHETIC_THRESHOLD, seed=2)
    augmented = augment_windows(table)
    assert len(augmented) == 8 * len(table)
    hh = scene["sar"].sel(band="HH").values
    r, c = table.row[0], table.col[0]
    patch = hh[r - 1:r + 2, c - 1:c + 2]
    expected = {tuple(np.round(t.ravel(), 6)) for k in range(4) for t in (np.rot90(patch, k), np.rot90(patch.T, k))}
    got = {tuple(np.round(row[:9], 6)) for row in augmented.X[:8]}
    assert got == expected
    np.testing.assert_array_equal(augmented.X[:8, 9], np.full(8, table.X[0, 9]))


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_table_round_trip_lazy(tmp_path, scene, suffix):
    table = draw_sample(scene["sar"], scene["target"], SPEC, n=200, thresholds=SYNTHETIC_THRESHOLD)
    path = write_table(table, tmp_path / f"sample{suffix}")
    back = read_table(path)
    import dask.array as da

    assert isinstance(back.X, da.Array)
    for name in ("X", "y", "value", "row", "col", "block", "split"):
        np.testing.assert_array_equal(np.asarray(getattr(back, name)), getattr(table, name))
    assert back.feature_names == table.feature_names and back.class_names == table.class_names
    assert back.attrs["feature_spec"] == table.attrs["feature_spec"]
    with pytest.raises(StoreExistsError):
        write_table(table, path)


@pytest.mark.parametrize("spec", [
    SPEC,
    [{"name": "structure_eig", "sigma": 1.5}, {"name": "hessian_eig", "sigma": 2.0}, {"name": "cv", "size": 5}],
    [{"name": "multiscale_basic", "sigma_max": 4}],
])
def test_features_of_sparse_pixels_from_patches_equal_the_whole_block(monkeypatch, spec):
    """Patches (a one-pixel tile with its halo) give the block's values, at its edges and corners too."""
    import rastercore.sampling as sampling
    from rastercore.features import FeatureSpec, features_for_block

    rng = np.random.default_rng(0)
    block = rng.gamma(2.0, 0.3, (2, 61, 53)).astype(np.float32)
    block[1, 30, 30] = np.nan
    ys = np.array([0, 0, 60, 60, 1, 30, 31, 45, 2] + rng.integers(0, 61, 20).tolist())
    xs = np.array([0, 52, 0, 52, 50, 30, 29, 3, 26] + rng.integers(0, 53, 20).tolist())
    spec = FeatureSpec.coerce(spec)
    whole = features_for_block(block, spec, ["HH", "HV"])[:, ys, xs].T
    monkeypatch.setattr(sampling, "PATCH_SHARE", np.inf)  # always patches
    patches = sampling.features_at(block, spec, ["HH", "HV"], ys, xs)
    np.testing.assert_array_equal(patches, whole)
    monkeypatch.setattr(sampling, "PATCH_SHARE", 0.0)  # always the whole block
    np.testing.assert_array_equal(sampling.features_at(block, spec, ["HH", "HV"], ys, xs), whole)
    n_features = whole.shape[1]
    for rows in (1, 7, 25):  # the whole block in strips of rows, each with its halo
        monkeypatch.setattr(sampling, "BLOCK_FEATURE_BYTES", 4 * n_features * 53 * (rows + 2 * spec.halo))
        np.testing.assert_array_equal(sampling.features_at(block, spec, ["HH", "HV"], ys, xs), whole)


@pytest.mark.parametrize("block_size, gap, chunks", [(64, 5, 100), (50, 12, 37), (16, 8, 40), (16, 15, 40), (40, 1, 999)])
def test_blockwise_gap_equals_the_filtered_split(block_size, gap, chunks):
    """The split with its gap, from the block grid, equals max/min filtering of the whole scene's labels."""
    from rastercore.sampling import _apply_gap

    like = xr.DataArray(np.zeros((1, 203, 171), np.float32), dims=("band", "y", "x")).chunk({"y": chunks, "x": chunks})
    split = SpatialSplit(block_size=block_size, validation_fraction=0.4, gap=gap)
    fast = split.labels(like, seed=3, halo=0).compute()
    plain = SpatialSplit(block_size=block_size, validation_fraction=0.4, gap=0).labels(like, seed=3, halo=0).compute()
    np.testing.assert_array_equal(fast, _apply_gap(plain, gap))
    assert (fast == EXCLUDED).any() and set(np.unique(plain)) == {TRAIN, VALIDATION}


@pytest.mark.parametrize("unlabelled", [[], [(0, 0), (2, 3)]])
def test_a_draw_reads_each_tile_of_the_target_once(unlabelled):
    """Classes and values both come from the target, and the counting pass keeps the candidates: one read
    per tile in all, not one per use or per pass; no row comes from an unlabelled tile."""
    import threading

    import dask
    import dask.array as da
    import xarray as xr

    from rastercore.datasets import SYNTHETIC_THRESHOLD, synthetic_scene
    from rastercore.sampling import SpatialSplit, draw_sample

    ds = synthetic_scene((256, 256), seed=1, chunks=64)
    values, reads, lock = ds["target"].values.copy(), [], threading.Lock()
    for i, j in unlabelled:
        values[i * 64:(i + 1) * 64, j * 64:(j + 1) * 64] = np.nan

    def read(block_info=None):
        with lock:
            reads.append(block_info[None]["chunk-location"])
        (r0, r1), (c0, c1) = block_info[None]["array-location"]
        return values[r0:r1, c0:c1]

    target = xr.DataArray(da.map_blocks(read, dtype=np.float32, chunks=((64,) * 4, (64,) * 4)), dims=("y", "x"))
    with dask.config.set(scheduler="threads"):
        table = draw_sample(ds["sar"], target, [{"name": "box_mean", "size": 3}], n=200,
                            thresholds=SYNTHETIC_THRESHOLD, split=SpatialSplit(block_size=64), seed=0)
    tiles = [(i, j) for i in range(4) for j in range(4)]
    assert sorted(reads) == tiles
    assert not any((r // 64, c // 64) in unlabelled for r, c in zip(table.row, table.col))


def _reference_sample(sar, target, spec, quotas, split, seed):
    """The definition, on the whole image: per class and split, the pixels with the smallest keys
    (``uniform(seed, 202, row, col)``, ties by row and column) among the valid, labelled, ungapped ones
    whose features are finite."""
    from rastercore._random import uniform

    halo = max(s.get("size", 1) for s in spec) // 2
    labels = split.labels(sar, seed=seed, halo=halo).compute()
    classes = (target.values >= SYNTHETIC_THRESHOLD).astype(int)
    finite = np.isfinite(compute_features(sar, spec).values).all(axis=0) & np.isfinite(sar.values).all(axis=0)
    rows, cols = np.nonzero(finite & (labels >= 0))
    keys = np.array([uniform(seed, 202, r, c) for r, c in zip(rows.tolist(), cols.tolist())])
    code = classes[rows, cols] * 2 + labels[rows, cols]
    chosen = []
    for cls, s in np.argwhere(quotas > 0):
        idx = np.flatnonzero(code == cls * 2 + s)
        chosen.extend(idx[np.lexsort((cols[idx], rows[idx], keys[idx]))][: quotas[cls, s]])
    return sorted(zip(rows[chosen].tolist(), cols[chosen].tolist()))


@pytest.mark.parametrize("holes, falls_back", [(0.0, False), (0.002, False), (0.05, True)])
def test_the_sample_is_the_definition_on_the_whole_image(scene, monkeypatch, holes, falls_back):
    """Chosen in one pass among the kept candidates, or, when too many of those have nodata in their window,
    by the cut-off passes; either way exactly the whole-image definition."""
    from rastercore.sampling import PixelPlan

    sar = scene["sar"].copy(deep=True).load()
    sar.values[:, np.random.default_rng(0).random(sar.shape[1:]) < holes] = np.nan
    sar = sar.chunk({"y": 128, "x": 128})
    calls = []
    candidates = PixelPlan.candidates
    monkeypatch.setattr(PixelPlan, "candidates", lambda self, cutoff: calls.append(1) or candidates(self, cutoff))
    split = SpatialSplit(block_size=64)
    table = draw_sample(sar, scene["target"], SPEC, n=400, thresholds=SYNTHETIC_THRESHOLD, seed=7, split=split)
    quotas = np.array(table.attrs["quotas"])
    assert quotas.sum() == len(table) == 500
    assert sorted(zip(table.row.tolist(), table.col.tolist())) == _reference_sample(
        sar, scene["target"], SPEC, quotas, split, seed=7)
    assert bool(calls) is falls_back
