"""Clean-up of class maps, tile by tile, against the whole-image computation.

* regions: :func:`scipy.ndimage.label` of each class of the whole image
  (the same partition of the pixels, for 4 and 8 connectivity);
* sieve: :func:`rasterio.features.sieve` (GDAL's ``GDALSieveFilter``) of the
  whole image, with the valid pixels as its mask;
* majority: :func:`scipy.ndimage.generic_filter` with the documented tie,
  edge and nodata rules;

each for several tile sizes (8, 16, 32 and one tile), with nodata holes and
regions that span every tile; then the mosaic in, mosaic out
:func:`rastercore.maps.clean`, the ``rastercore clean`` command and bad input.
"""

import json

import dask.array as da
import numpy as np
import pytest
import rasterio.features
import xarray as xr
from scipy import ndimage

from rastercore.cli import main
from rastercore.errors import ParameterError, StoreExistsError
from rastercore.maps import clean, label_regions, majority_filter, sieve
from rastercore.store import open_stack, write_tiles

SHAPE = (97, 130)
TILE_SIZES = [8, 16, 32, None]  # None: one tile
STRUCTURE = {4: ndimage.generate_binary_structure(2, 1), 8: np.ones((3, 3), bool)}


def _scene(seed: int = 0):
    """Integer classes 0..3 in blobs with speckle, a comb of class 4 reaching every tile, nodata holes."""
    rng = np.random.default_rng(seed)
    height, width = SHAPE
    codes = ndimage.zoom(rng.integers(0, 4, (height // 6 + 1, width // 6 + 1)), 6, order=0)[:height, :width]
    speckle = rng.random(SHAPE) < 0.12
    codes[speckle] = rng.integers(0, 4, int(speckle.sum()))
    codes[::7, 3:] = 4  # one 4-connected comb: a row every 7 pixels on a spine column, so in every 8-pixel tile
    codes[:, 3] = 4
    valid = rng.random(SHAPE) > 0.04
    valid[40:52, 60:75] = False
    valid[::7, 3:] = valid[:, 3] = True  # the comb stays whole
    return codes.astype(np.int32), valid


def _with_nan(codes, valid):
    return np.where(valid, codes, np.nan).astype(np.float32)


def _scipy_labels(codes, valid, connectivity):
    """Whole-image regions: each class labelled by scipy, numbered one after the other; -1 at nodata."""
    labels = np.full(codes.shape, -1, np.int64)
    n = 0
    for c in np.unique(codes[valid]):
        found, k = ndimage.label((codes == c) & valid, STRUCTURE[connectivity])
        labels[found > 0] = found[found > 0] - 1 + n
        n += k
    return labels, n


def _same_partition(a, b) -> bool:
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def _rasterio_sieve(codes, valid, size, connectivity):
    return rasterio.features.sieve(codes, size, connectivity=connectivity, mask=valid)


def _majority_rule(values):
    """The documented rule on one window (centre in the middle, NaN outside the scene or nodata)."""
    centre = values[len(values) // 2]
    if np.isnan(centre):
        return np.nan
    classes, counts = np.unique(values[~np.isnan(values)], return_counts=True)
    top = classes[counts == counts.max()]
    return centre if centre in top else top.min()


def _scipy_majority(classes, size):
    key = (classes.tobytes(), classes.shape, size)
    if key not in _MAJORITY:
        _MAJORITY[key] = _generic_majority(classes, size)
    return _MAJORITY[key]


_MAJORITY: dict = {}  # the reference is slow (a Python call per pixel): once per map and size


def _generic_majority(classes, size):
    return ndimage.generic_filter(classes.astype(np.float64), _majority_rule, size=size, mode="constant",
                                  cval=np.nan).astype(np.float32)


# --- regions ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("tile_size", TILE_SIZES)
def test_regions_equal_scipy_label_of_each_class(tile_size, connectivity):
    codes, valid = _scene(1)
    regions = label_regions(_with_nan(codes, valid), connectivity=connectivity, tile_size=tile_size)
    labels = regions.labels.compute()
    expected, n = _scipy_labels(codes, valid, connectivity)
    assert np.array_equal(labels < 0, ~valid)
    assert _same_partition(labels[valid], expected[valid])
    assert regions.n_regions == n
    comb = labels[0, 3]
    assert (labels == comb).sum() == ((codes == 4) & valid & (expected == expected[0, 3])).sum()
    if tile_size is not None:  # the comb reaches every tile: a shared region, with its whole size
        blocks = (labels == comb)[:SHAPE[0] // tile_size * tile_size, :SHAPE[1] // tile_size * tile_size]
        assert blocks.reshape(SHAPE[0] // tile_size, tile_size, -1, tile_size).any(axis=(1, 3)).all()
        assert comb < regions.n_shared and regions.sizes[comb] == (labels == comb).sum()
        assert regions.n_shared < regions.n_regions  # regions inside a tile stay out of the tables


# --- sieve ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("tile_size", TILE_SIZES)
def test_sieve_equals_rasterio_sieve_of_the_whole_image(tile_size, connectivity):
    codes, valid = _scene(2)
    for size in (4, 30):
        got = sieve(_with_nan(codes, valid), size, connectivity=connectivity, tile_size=tile_size)
        expected = _with_nan(_rasterio_sieve(codes, valid, size, connectivity), valid)
        assert np.array_equal(got, expected, equal_nan=True), size


@pytest.mark.parametrize("seed", range(12))
def test_sieve_equals_rasterio_on_random_maps_and_uneven_tiles(seed):
    """Pure noise (long chains of small regions, many ties), blobs, integer nodata, tiles not dividing the map."""
    rng = np.random.default_rng(100 + seed)
    height, width = rng.integers(9, 70, 2)
    if seed % 3 == 0:
        codes = rng.integers(0, 3, (height, width))
    else:
        codes = ndimage.zoom(rng.integers(0, 4, (height // 3 + 1, width // 3 + 1)), 3, order=0)[:height, :width]
        codes[rng.random(codes.shape) < 0.2] = 1
    codes = codes.astype(np.int16)
    valid = rng.random(codes.shape) > (0.1 if seed % 2 else 0.0)
    connectivity, tile_size, size = (4, 8)[seed % 2], int(rng.choice([8, 9, 11, 23])), int(rng.integers(2, 50))
    got = sieve(np.where(valid, codes, -1).astype(np.int16), size, connectivity=connectivity, nodata=-1,
                tile_size=tile_size)
    expected = np.where(valid, _rasterio_sieve(codes, valid, size, connectivity), -1)
    assert got.dtype == np.int16 and np.array_equal(got, expected)


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("tile_size", [8, 16, 32])
def test_a_small_region_touching_every_tile_merges_into_its_largest_neighbour(tile_size, connectivity):
    """The comb (class 1) reaches every tile and is smaller than the sieve: all of it becomes background (0)."""
    codes = np.zeros(SHAPE, np.int32)
    codes[::6, 2:-3] = 1  # rows every 6 pixels on a spine; the background joins around the right-hand side
    codes[:, 2] = 1
    codes[50:52, 100:102] = 2  # an island inside a tile, also small
    comb = int((codes == 1).sum())
    valid = np.ones(SHAPE, bool)
    got = sieve(codes, comb + 1, connectivity=connectivity, tile_size=tile_size)
    assert np.array_equal(got, _rasterio_sieve(codes, valid, comb + 1, connectivity))
    assert not got.any()
    kept = sieve(codes, comb, connectivity=connectivity, tile_size=tile_size)  # now the comb is large enough
    assert np.array_equal(kept, _rasterio_sieve(codes, valid, comb, connectivity))
    assert (kept[codes == 1] == 1).all() and (kept[:, :2] == 1).all()  # and the strip left of it joins it


def test_sieve_keeps_regions_enclosed_by_nodata_and_never_changes_nodata():
    codes = np.zeros((20, 24), np.float32)
    codes[5:8, 5:8] = 1
    codes[4, 4:9] = codes[8, 4:9] = codes[4:9, 4] = codes[4:9, 8] = np.nan  # class 1 walled in by nodata
    codes[15, 15] = 2
    got = sieve(codes, 10, tile_size=8)
    assert np.array_equal(got[5:8, 5:8], codes[5:8, 5:8]) and got[15, 15] == 0
    assert np.array_equal(np.isnan(got), np.isnan(codes))


def test_sieve_returns_what_it_was_given():
    codes, valid = _scene(3)
    values = _with_nan(codes, valid)
    expected = sieve(values, 9, tile_size=32)
    lazy = sieve(da.from_array(values, chunks=32), 9)
    assert isinstance(lazy, da.Array) and np.array_equal(lazy.compute(), expected, equal_nan=True)
    coords = {"y": np.arange(SHAPE[0]) + 0.5, "x": np.arange(SHAPE[1]) + 0.5}
    layer = xr.DataArray(values, dims=("y", "x"), coords=coords).chunk(16)
    out = sieve(layer, 9)
    assert isinstance(out, xr.DataArray) and out.dims == ("y", "x") and out.chunks == layer.chunks
    assert np.array_equal(out.values, expected, equal_nan=True) and np.array_equal(out.x, layer.x)
    assert np.array_equal(sieve(values, 1, tile_size=8), values, equal_nan=True)  # min_size 1 changes nothing


# --- majority ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tile_size", TILE_SIZES)
def test_majority_equals_generic_filter_with_the_same_rule(tile_size):
    codes, valid = _scene(4)
    values = _with_nan(codes, valid)
    for size in (3, 5):
        got = majority_filter(values, size, tile_size=tile_size)
        assert np.array_equal(got, _scipy_majority(values, size), equal_nan=True), size


def test_majority_ties_keep_the_pixel_else_the_smallest_class():
    values = np.array([[5, 5, 2, 2],
                       [1, 7, 2, 9],
                       [1, 1, 9, 9]], np.int32)
    got = majority_filter(values, 3, tile_size=8)
    # (0, 0): 5 x2, 1 x1, 7 x1 -> 5; (1, 1): 1, 2, 5 three each, 7 not among them -> 1;
    # (1, 2): 2 x3, 9 x3 and the pixel is 2 -> 2; (2, 3): 9 x3 -> 9
    assert got[0, 0] == 5 and got[1, 1] == 1 and got[1, 2] == 2 and got[2, 3] == 9
    assert np.array_equal(got, _scipy_majority(values.astype(np.float32), 3).astype(np.int32))


# --- mosaics and the command line ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    """A class mosaic as `rastercore predict` writes it: class and probability layers, NaN nodata, 32-px tiles."""
    codes, valid = _scene(5)
    height, width = SHAPE
    layers = np.stack([_with_nan(codes, valid), np.random.default_rng(0).random(SHAPE).astype(np.float32)])
    coords = {"band": ["class", "p[a]"], "y": 4_000_000 - 10.0 * np.arange(height) - 5,
              "x": 500_000 + 10.0 * np.arange(width) + 5}
    data = xr.DataArray(layers, dims=("band", "y", "x"), coords=coords).rio.write_crs("EPSG:32633")
    data = data.rio.write_nodata(np.nan, encoded=False)
    data.attrs.update(class_names=["water", "forest", "crop", "urban", "road"],
                      class_colors=["#0000ff", "#00aa00", "#ffff00", "#ff0000", "#000000"])
    path = tmp_path_factory.mktemp("mosaic") / "prediction.zarr"
    write_tiles(data.chunk({"y": 32, "x": 32}), path, progress="none")
    return path, codes, valid


def _expected_clean(codes, valid, majority, size, connectivity):
    smoothed = _scipy_majority(_with_nan(codes, valid), majority)
    return _with_nan(_rasterio_sieve(np.nan_to_num(smoothed).astype(np.int32), valid, size, connectivity), valid)


def test_clean_writes_a_class_mosaic_equal_to_the_whole_image(mosaic, tmp_path):
    path, codes, valid = mosaic
    out = clean(path, tmp_path / "clean.zarr", majority=3, sieve=16, connectivity=8, progress="none")
    source = open_stack(path)
    assert list(out["band"].values) == ["class"] and out.chunks[1:] == source.chunks[1:]
    assert out.attrs["class_names"] == source.attrs["class_names"]
    assert out.attrs["class_colors"] == source.attrs["class_colors"]
    assert json.loads(out.attrs["rastercore_clean"]) == {"majority": 3, "sieve": 16, "connectivity": 8}
    assert out.rio.crs == source.rio.crs and out.rio.transform() == source.rio.transform()
    assert np.array_equal(out.values[0], _expected_clean(codes, valid, 3, 16, 8), equal_nan=True)
    with pytest.raises(StoreExistsError):
        clean(path, tmp_path / "clean.zarr", sieve=16, progress="none")
    assert clean(path, tmp_path / "clean.zarr", majority=3, sieve=16, connectivity=8, resume=True,
                 progress="none").shape == out.shape  # already complete: nothing to do


def test_the_cleaned_map_is_named_by_its_inputs_so_a_resumed_run_finds_its_tiles(mosaic):
    path, _, _ = mosaic
    names = {sieve(majority_filter(open_stack(path), 3), 9, connectivity=8).data.name for _ in range(2)}
    other = sieve(majority_filter(open_stack(path), 3), 10, connectivity=8).data.name
    assert len(names) == 1 and other not in names


def test_clean_command(mosaic, tmp_path, capsys):
    path, codes, valid = mosaic
    out = tmp_path / "clean.zarr"
    argv = ["clean", str(path), "-o", str(out), "--majority", "3", "--sieve", "16", "--connectivity", "8",
            "--scheduler", "sync", "--progress", "none"]
    assert main(argv) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert np.array_equal(open_stack(out).values[0], _expected_clean(codes, valid, 3, 16, 8), equal_nan=True)
    assert main(argv + ["--overwrite"]) == 0


def _assert_one_line_error(code, err, message):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("rastercore: error: ") and message in lines[0], err


@pytest.mark.parametrize("options, message", [
    (["--sieve", "0"], "sieve (--sieve)"),
    (["--majority", "4"], "majority (--majority) must be odd"),
    (["--majority", "1"], "majority (--majority)"),
    (["--sieve", "8", "--connectivity", "6"], "connectivity (--connectivity)"),
    ([], "nothing to clean"),
])
def test_bad_options_are_one_line_before_any_work(mosaic, tmp_path, capsys, options, message):
    path, _, _ = mosaic
    code = main(["clean", str(path), "-o", str(tmp_path / "c.zarr"), "--scheduler", "sync", "--progress", "none",
                 *options])
    _assert_one_line_error(code, capsys.readouterr().err, message)
    assert not (tmp_path / "c.zarr").exists()


def test_a_mosaic_without_a_class_layer_is_refused(tmp_path, capsys):
    values = xr.DataArray(np.zeros((1, 16, 16), np.float32), dims=("band", "y", "x"), coords={"band": ["value"]})
    path = tmp_path / "regression.zarr"
    write_tiles(values.chunk({"y": 8, "x": 8}), path, progress="none")
    code = main(["clean", str(path), "-o", str(tmp_path / "c.zarr"), "--sieve", "4", "--scheduler", "sync",
                 "--progress", "none"])
    _assert_one_line_error(code, capsys.readouterr().err, "has no class layer")
    with pytest.raises(ParameterError, match="no class layer"):
        clean(path, tmp_path / "c.zarr", sieve=4, progress="none")


@pytest.mark.parametrize("call, message", [
    (lambda m: sieve(m, 0), "min_size"),
    (lambda m: sieve(m, 5, connectivity=6), "connectivity"),
    (lambda m: majority_filter(m, 6), "size must be odd"),
    (lambda m: majority_filter(m, 1), "at least 3"),
    (lambda m: label_regions(m, connectivity=2), "connectivity"),
    (lambda m: sieve(m[0], 5), "(y, x) class map"),
])
def test_bad_arguments_in_python(call, message):
    with pytest.raises(ParameterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(np.zeros((8, 8), np.int32))
