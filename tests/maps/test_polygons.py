"""rastercore.maps.polygonize: tile by tile equals rasterio.features.shapes of the whole image."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import rasterio.features
import shapely
import xarray as xr
from rasterio.crs import CRS
from scipy import ndimage

from rastercore.cli import main
from rastercore.errors import ParameterError, StoreExistsError
from rastercore.grid import Grid, attach_grid
from rastercore.maps import polygonize
from rastercore.store import partial_path, write_tiles
from tests.conftest import TRANSFORM, UTM

pyogrio = pytest.importorskip("pyogrio")

NAMES = ["water", "forest", "crop", "urban", "bare", "road", "ring", "pond"]
PIXEL_AREA = 100.0  # TRANSFORM: 10 m pixels


def _blobs(seed: int, shape=(97, 130)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random((4, *shape)), (0, 4, 4)).argmax(0).astype(np.float32)


def _blob_map() -> np.ndarray:
    """Blobs across several tiles, a ring (class 6) around a pond (7) across tile edges, nodata holes."""
    codes = _blobs(0)
    yy, xx = np.mgrid[:codes.shape[0], :codes.shape[1]] + 0.5
    r = np.hypot(yy - 48, xx - 64)
    codes[(r > 9) & (r < 17)] = 6
    codes[r <= 9] = 7
    codes[np.hypot(yy - 12, xx - 110) < 6] = np.nan
    codes[np.random.default_rng(1).random(codes.shape) < 0.01] = np.nan
    return codes


def _comb_map() -> np.ndarray:
    """A comb of class 5 touching every tile (of 8 px or more), blobs between its teeth, nodata."""
    codes = _blobs(2)
    codes[4::8, :] = 5
    codes[:, 0] = 5
    codes[np.random.default_rng(3).random(codes.shape) < 0.02] = np.nan
    return codes


MAPS = {"blobs": _blob_map(), "comb": _comb_map()}


def _mosaic(codes: np.ndarray, band: str = "class") -> xr.DataArray:
    grid = Grid(*codes.shape, TRANSFORM, CRS.from_string(UTM))
    mosaic = attach_grid(xr.DataArray(codes[None], dims=("band", "y", "x"), coords={"band": [band]}), grid)
    mosaic = mosaic.rio.write_nodata(np.nan, encoded=False)
    mosaic.attrs["class_names"] = NAMES
    return mosaic


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("polygons")
    paths = {}
    for name, codes in MAPS.items():
        paths[name] = root / f"{name}.zarr"
        write_tiles(_mosaic(codes).chunk({"y": 16, "x": 16}), paths[name], progress="none")
    return paths


def _read(path):
    meta, _, wkb, values = pyogrio.raw.read(path)
    return meta, shapely.from_wkb(wkb), dict(zip(meta["fields"], values))


def _whole_image(codes: np.ndarray, connectivity: int):
    """rasterio.features.shapes of the whole image: geometries (made valid) and codes."""
    valid = np.isfinite(codes)
    shapes = list(rasterio.features.shapes(np.where(valid, codes, 0).astype(np.int32), mask=valid,
                                           connectivity=connectivity, transform=TRANSFORM))
    geoms = shapely.make_valid(np.array([shapely.geometry.shape(g) for g, _ in shapes], dtype=object))
    return geoms, np.array([v for _, v in shapes], dtype=int)


SOURCES = [8, 16, 32, "one tile"]


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("name", sorted(MAPS))
def test_tile_by_tile_equals_the_whole_image(stores, tmp_path, name, source, connectivity):
    codes = MAPS[name]
    if source == "one tile":  # in memory, one block: the dask (not store) path
        mosaic, tile_size = _mosaic(codes).chunk({"y": -1, "x": -1}), None
    else:
        mosaic, tile_size = stores[name], source
    out = tmp_path / "classes.gpkg"
    result = polygonize(mosaic, out, connectivity=connectivity, tile_size=tile_size, progress="none")
    meta, geoms, fields = _read(out)
    expected, expected_codes = _whole_image(codes, connectivity)
    assert result.features == len(geoms) == len(expected)
    assert shapely.is_valid(geoms).all()
    assert set(shapely.get_type_id(geoms)) == {3 if connectivity == 4 else 6}  # Polygon / MultiPolygon
    for code in np.unique(expected_codes):
        mine = fields["class"] == code
        assert mine.sum() == (expected_codes == code).sum(), f"features of class {code}"
        assert fields["area"][mine].sum() == np.sum(codes == code) * PIXEL_AREA  # exact
        assert shapely.area(geoms[mine]).sum() == pytest.approx(np.sum(codes == code) * PIXEL_AREA, rel=1e-12)
        difference = shapely.symmetric_difference(shapely.union_all(geoms[mine]),
                                                  shapely.union_all(expected[expected_codes == code]))
        assert difference.area < 1e-6
    assert result.per_class == {NAMES[c]: int((expected_codes == c).sum()) for c in np.unique(expected_codes)}


@pytest.mark.filterwarnings("ignore:Dataset has no geotransform")  # rasterio on threads; hushed outside pytest
def test_tiles_on_threads_give_the_same_polygons(stores, tmp_path):
    import dask

    outs = []
    for scheduler in ("synchronous", "threads"):
        with dask.config.set(scheduler=scheduler):
            polygonize(stores["comb"], tmp_path / f"{scheduler}.gpkg", connectivity=8, simplify=15, tile_size=8,
                       progress="none")
        outs.append(sorted(shapely.to_wkb(shapely.normalize(_read(tmp_path / f"{scheduler}.gpkg")[1])).tolist()))
    assert outs[0] == outs[1]


@pytest.mark.parametrize("connectivity, expected", [(4, 7), (8, 4)])
def test_regions_meeting_only_at_tile_corners(tmp_path, connectivity, expected):
    codes = np.zeros((16, 24), np.float32)
    codes[7, 7] = codes[8, 8] = 1  # diagonal across the corner of tiles (0, 0) and (1, 1)
    codes[7, 8] = codes[8, 7] = 2  # and across tiles (0, 1) and (1, 0)
    codes[7, 15] = codes[8, 16] = 1  # one more crossing at the next corner, beside nodata
    codes[8, 15] = np.nan
    out = tmp_path / "c.gpkg"
    result = polygonize(_mosaic(codes).chunk({"y": 8, "x": 8}), out, connectivity=connectivity, progress="none")
    _, fields = _read(out)[1:]
    assert result.features == len(_whole_image(codes, connectivity)[0]) == expected
    assert fields["area"].sum() == np.isfinite(codes).sum() * PIXEL_AREA


def test_the_features_carry_class_names_areas_and_the_crs(stores, tmp_path):
    out = tmp_path / "c.gpkg"
    polygonize(stores["blobs"], out, progress="none")
    meta, geoms, fields = _read(out)
    assert meta["fields"].tolist() == ["class", "class_name", "area", "area_ha"]
    assert meta["geometry_type"] == "Polygon" and meta["crs"] == UTM
    assert [NAMES[c] for c in fields["class"]] == fields["class_name"].tolist()
    np.testing.assert_array_equal(fields["area_ha"], fields["area"] / 1e4)
    (ring,), (pond,) = geoms[fields["class"] == 6], geoms[fields["class"] == 7]
    hole = max((shapely.Polygon(r) for r in ring.interiors), key=lambda h: h.area)
    assert hole.contains(pond) and not ring.overlaps(pond)  # one ring around the pond, which is a polygon of its own
    assert pyogrio.list_layers(out)[:, 0].tolist() == ["c"]


def test_a_map_without_georeferencing_has_areas_in_pixels(tmp_path):
    codes = MAPS["blobs"]
    plain = xr.DataArray(codes[None], dims=("band", "y", "x"), coords={"band": ["cluster"]}).chunk({"y": 32, "x": 32})
    out = tmp_path / "c.gpkg"
    polygonize(plain, out, progress="none")
    meta, geoms, fields = _read(out)
    assert meta["fields"].tolist() == ["class", "class_name", "area"]
    assert fields["area"].sum() == np.isfinite(codes).sum()
    assert fields["class_name"].tolist() == [str(c) for c in fields["class"]]  # no class names: the codes


@pytest.mark.parametrize("connectivity", [4, 8])
def test_simplification_is_seamless_valid_close_in_area_and_independent_of_tiles(stores, tmp_path, connectivity):
    exact = np.isfinite(MAPS["blobs"]).sum() * PIXEL_AREA
    outs = []
    for tile_size in (8, 32):
        out = tmp_path / f"s{tile_size}.gpkg"
        polygonize(stores["blobs"], out, connectivity=connectivity, simplify=15, tile_size=tile_size, progress="none")
        meta, geoms, fields = _read(out)
        assert shapely.is_valid(geoms).all()
        areas = shapely.area(geoms)
        assert areas.sum() == pytest.approx(shapely.union_all(geoms).area, abs=1e-3)  # no overlaps
        assert areas.sum() == pytest.approx(exact, rel=0.01)
        assert fields["area"].sum() == exact  # the attribute stays the region's exact area
        outs.append(sorted(shapely.to_wkb(shapely.normalize(geoms)).tolist()))
    assert outs[0] == outs[1]


def test_simplification_removes_vertices(stores, tmp_path):
    counts = []
    for simplify in (None, 15):
        out = tmp_path / f"v{simplify}.gpkg"
        polygonize(stores["blobs"], out, simplify=simplify, progress="none")
        counts.append(shapely.get_num_coordinates(_read(out)[1]).sum())
    assert counts[1] < 0.6 * counts[0]


def test_geoparquet_is_written_streamed_with_its_metadata(stores, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import json

    gpkg, parquet = tmp_path / "c.gpkg", tmp_path / "c.parquet"
    polygonize(stores["comb"], gpkg, connectivity=8, progress="none")
    result = polygonize(stores["comb"], parquet, connectivity=8, progress="none")
    table = pq.read_table(parquet)
    geo = json.loads(table.schema.metadata[b"geo"])
    assert geo["primary_column"] == "geometry" and geo["columns"]["geometry"]["encoding"] == "WKB"
    assert geo["columns"]["geometry"]["geometry_types"] == ["MultiPolygon"]
    assert geo["columns"]["geometry"]["crs"]["id"] == {"authority": "EPSG", "code": 32633}
    _, geoms, fields = _read(gpkg)
    assert table.num_rows == result.features == len(geoms)
    assert table["class"].to_pylist() == fields["class"].tolist()
    assert shapely.equals(shapely.from_wkb(table["geometry"].to_pylist()), geoms).all()


def test_geoparquet_without_pyarrow_is_refused_in_one_line(stores, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ParameterError, match=r"pip install pyarrow"):
        polygonize(stores["blobs"], tmp_path / "c.parquet")
    status = main(["polygonize", str(stores["blobs"]), "-o", str(tmp_path / "c.gpkg"), "--format", "parquet",
                   "--scheduler", "sync"])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and "pip install pyarrow" in err
    assert not (tmp_path / "c.parquet").exists() and not (tmp_path / "c.gpkg").exists()


def test_missing_vector_extra_is_one_clear_error(stores, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyogrio", None)
    with pytest.raises(ParameterError, match=r"pip install 'rastercore\[vector\]'"):
        polygonize(stores["blobs"], tmp_path / "c.gpkg")


def test_the_cli_writes_polygons(stores, tmp_path, capsys):
    out = tmp_path / "classes.gpkg"
    status = main(["polygonize", str(stores["blobs"]), "-o", str(out), "--connectivity", "8", "--simplify", "5",
                   "--tile-size", "32", "--scheduler", "sync", "--progress", "none"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    _, geoms, fields = _read(out)
    assert f"wrote {out}: {len(geoms)} polygons (" in captured.out and "ring 1" in captured.out
    assert shapely.is_valid(geoms).all() and set(fields["class_name"]) <= set(NAMES)


@pytest.mark.parametrize("argv, message", [
    (["--simplify", "-1"], "simplify (--simplify) must be a tolerance of 0 or more"),
    (["--connectivity", "6"], "connectivity (--connectivity) must be one of 4, 8"),
    (["--format", "shp"], "format (--format) must be one of gpkg, parquet"),
    (["--layer", "p[water]"], "layer (--layer) 'p[water]' is not a layer"),
    (["--tile-size", "4"], "tile_size (--tile-size) must be between"),
])
def test_bad_options_are_one_line_each(stores, tmp_path, capsys, argv, message):
    out = tmp_path / "c.gpkg"
    status = main(["polygonize", str(stores["blobs"]), "-o", str(out), "--scheduler", "sync", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists() and not partial_path(out).exists()


def test_a_map_without_a_class_layer_is_refused(tmp_path, capsys):
    store = tmp_path / "stack.zarr"
    write_tiles(_mosaic(MAPS["blobs"], band="HH").chunk({"y": 32, "x": 32}), store, progress="none")
    status = main(["polygonize", str(store), "-o", str(tmp_path / "c.gpkg"), "--scheduler", "sync"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "has no class layer ('class' or 'cluster'" in err[0]
    out = tmp_path / "hh.gpkg"  # any layer of integer codes may be asked for by name
    assert polygonize(store, out, layer="HH", progress="none").features == len(_whole_image(MAPS["blobs"], 4)[0])


def test_a_layer_of_non_integer_values_is_refused(tmp_path):
    values = _mosaic(MAPS["blobs"] + 0.5).chunk({"y": 32, "x": 32})
    with pytest.raises(ParameterError, match="not integer class codes"):
        polygonize(values, tmp_path / "c.gpkg", progress="none")
    assert not (tmp_path / "c.gpkg").exists() and not partial_path(tmp_path / "c.gpkg").exists()


def test_an_existing_output_is_kept_unless_overwrite(stores, tmp_path, capsys):
    out = tmp_path / "c.gpkg"
    out.write_text("keep me")
    status = main(["polygonize", str(stores["blobs"]), "-o", str(out), "--scheduler", "sync"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "already exists" in err[0] and out.read_text() == "keep me"
    with pytest.raises(StoreExistsError):
        polygonize(stores["blobs"], out, progress="none")
    polygonize(stores["blobs"], out, overwrite=True, progress="none")
    assert pyogrio.read_info(out)["features"] > 0


def test_nothing_half_written_looks_complete(stores, tmp_path, monkeypatch):
    from rastercore.maps import _polygons

    merge, calls = _polygons._Outline.merge, []

    def fail_later(self, groups):
        calls.append(groups)
        if len(calls) == 20:
            raise RuntimeError("interrupted")
        return merge(self, groups)

    monkeypatch.setattr(_polygons._Outline, "merge", fail_later)
    monkeypatch.setattr(_polygons, "_BATCH", 5)  # some features are written before the failure
    out = tmp_path / "c.gpkg"
    with pytest.raises(RuntimeError, match="interrupted"):
        polygonize(stores["blobs"], out, tile_size=8, progress="none")
    assert not out.exists() and not partial_path(out).exists()


def test_an_all_nodata_map_gives_an_empty_layer(tmp_path):
    out = tmp_path / "c.gpkg"
    empty = _mosaic(np.full((20, 30), np.nan, np.float32)).chunk({"y": 8, "x": 8})
    assert polygonize(empty, out, progress="none").features == 0
    assert pyogrio.read_info(out)["features"] == 0
