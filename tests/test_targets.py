import json

import numpy as np
import xarray as xr
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.features import rasterize
from rasterio.warp import Resampling, reproject, transform_geom

from rastercore import ingest
from rastercore.errors import RasterCoreDeprecationWarning, TargetError
from rastercore.targets import IGNORE, rasterize_polygons, target_on_grid, threshold_classes
from tests.conftest import TRANSFORM, UTM, write_tif


@pytest.fixture
def stack(tmp_path, rng):
    path = write_tif(tmp_path / "b.tif", rng.random((120, 90), dtype=np.float32))
    return ingest(path, tmp_path / "s.zarr", tile_size=32, progress="none")


def test_class_raster_on_the_same_grid(tmp_path, rng, stack):
    classes = rng.integers(0, 4, (120, 90)).astype(np.uint8)
    path = write_tif(tmp_path / "cls.tif", classes, nodata=3)
    target = target_on_grid(path, stack)
    assert target.dtype == np.int32 and target.chunks == stack.chunks[1:]
    np.testing.assert_array_equal(target.values, np.where(classes == 3, IGNORE, classes.astype(np.int32)))
    np.testing.assert_array_equal(target.x, stack.x)


def test_coarser_class_raster_is_resampled_nearest(tmp_path, rng, stack):
    coarse = rng.integers(0, 3, (60, 45)).astype(np.uint8)
    coarse_transform = TRANSFORM @ Affine.scale(2)
    path = write_tif(tmp_path / "coarse.tif", coarse, transform=coarse_transform)
    expected = np.zeros((120, 90), np.uint8)
    reproject(coarse, expected, src_transform=coarse_transform, src_crs=UTM, dst_transform=TRANSFORM,
              dst_crs=UTM, resampling=Resampling.nearest)
    np.testing.assert_array_equal(target_on_grid(path, stack).values, expected)
    np.testing.assert_array_equal(expected, np.repeat(np.repeat(coarse, 2, 0), 2, 1))


def test_finer_continuous_raster_is_averaged(tmp_path, rng, stack):
    fine = rng.random((240, 180)).astype(np.float32)
    path = write_tif(tmp_path / "fine.tif", fine, transform=TRANSFORM @ Affine.scale(0.5))
    values = target_on_grid(path, stack, kind="continuous").values
    np.testing.assert_allclose(values, fine.reshape(120, 2, 90, 2).mean(axis=(1, 3)), rtol=1e-6)


def test_target_in_another_crs_matches_a_whole_image_warp(tmp_path, rng, stack):
    src_crs = CRS.from_epsg(4326)
    west, north = rasterio.warp.transform(UTM, src_crs, [TRANSFORM.c - 200], [TRANSFORM.f + 200])
    src_transform = Affine(0.0002, 0, west[0], 0, -0.0002, north[0])
    data = rng.integers(0, 5, (30, 30)).astype(np.int16)  # about 540 x 660 m: part of the stack only
    path = write_tif(tmp_path / "geo.tif", data, crs=src_crs, transform=src_transform, nodata=-9)
    expected = np.full((120, 90), -9, np.int16)
    reproject(data, expected, src_transform=src_transform, src_crs=src_crs, src_nodata=-9, dst_transform=TRANSFORM,
              dst_crs=UTM, dst_nodata=-9, resampling=Resampling.nearest)
    got = target_on_grid(path, stack).values
    np.testing.assert_array_equal(got, np.where(expected == -9, IGNORE, expected))
    assert (got == IGNORE).any() and (got >= 0).any()  # partly outside the target's extent


def test_array_target_must_match(stack):
    with pytest.raises(TargetError, match="10 x 10 px but the stack is 120 x 90"):
        target_on_grid(stack.isel(band=0, y=slice(10), x=slice(10)), stack)


def test_threshold_classes_are_ordinal(stack):
    values = stack.isel(band=0).astype(np.float32)
    values = values.where(values < 0.95)  # some NaN
    classes = threshold_classes(values, [0.3, 0.6])
    raw = values.values
    expected = np.where(np.isnan(raw), IGNORE, np.searchsorted([0.3, 0.6], raw, side="right"))
    np.testing.assert_array_equal(classes.values, expected)
    assert classes.attrs["class_names"] == ["< 0.3", "0.3..0.6", ">= 0.6"]
    with pytest.raises(TargetError, match="increasing"):
        threshold_classes(values, [0.6, 0.3])


def test_a_value_equal_to_a_threshold_is_in_the_upper_class():
    edges = np.array([[0.3, np.nextafter(0.3, 0), 0.6, np.nextafter(0.6, 1), np.nan]], dtype=np.float64)
    classes = threshold_classes(xr.DataArray(edges, dims=("y", "x")).chunk(), [0.3, 0.6])
    np.testing.assert_array_equal(classes.values, [[1, 0, 2, 2, IGNORE]])


def _polygons_geojson(path, crs_out=4326):
    squares = [((500_100, 3_999_900), (500_400, 3_999_500), "water"),
               ((500_300, 3_999_300), (500_800, 3_998_900), "forest"),
               ((500_700, 3_999_800), (500_890, 3_999_000), "water")]
    features = []
    for (x0, y0), (x1, y1), label in squares:
        ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
        geom = transform_geom(UTM, f"EPSG:{crs_out}", {"type": "Polygon", "coordinates": [ring]})
        features.append({"type": "Feature", "geometry": geom, "properties": {"landcover": label}})
    collection = {"type": "FeatureCollection", "features": features}
    if crs_out != 4326:  # RFC 7946 GeoJSON is WGS 84; others name their CRS
        collection["crs"] = {"type": "name", "properties": {"name": f"EPSG:{crs_out}"}}
    path.write_text(json.dumps(collection))
    return path


def test_geojson_polygons_are_burned_like_a_whole_image_rasterize(tmp_path, stack):
    path = _polygons_geojson(tmp_path / "p.geojson")
    target = rasterize_polygons(path, stack, attribute="landcover")
    assert target.attrs["class_names"] == ["forest", "water"]
    collection = json.loads(path.read_text())
    shapes = [(transform_geom("EPSG:4326", UTM, f["geometry"]), {"forest": 0, "water": 1}[f["properties"]["landcover"]])
              for f in collection["features"]]
    expected = rasterize(shapes, out_shape=(120, 90), transform=TRANSFORM, fill=IGNORE, dtype=np.int32)
    np.testing.assert_array_equal(target.values, expected)
    assert set(np.unique(expected)) == {IGNORE, 0, 1}


def test_polygon_errors(tmp_path, stack):
    path = _polygons_geojson(tmp_path / "p.geojson")
    with pytest.raises(TargetError, match="no 'class' property.*landcover"):
        rasterize_polygons(path, stack)
    (tmp_path / "bad.geojson").write_text("{not json")
    with pytest.raises(TargetError, match="not valid GeoJSON"):
        rasterize_polygons(tmp_path / "bad.geojson", stack)


def test_geopackage_through_pyogrio_equals_geojson(tmp_path, stack):
    pyogrio = pytest.importorskip("pyogrio")
    shapely = pytest.importorskip("shapely")
    path = _polygons_geojson(tmp_path / "p.geojson", crs_out=32633)
    features = json.loads(path.read_text())["features"]
    geometry = np.array([shapely.to_wkb(shapely.geometry.shape(f["geometry"])) for f in features], dtype=object)
    labels = np.array([f["properties"]["landcover"] for f in features], dtype=object)
    pyogrio.raw.write(tmp_path / "p.gpkg", geometry, field_data=[labels], fields=["landcover"], crs="EPSG:32633",
                      geometry_type="Polygon", driver="GPKG")
    from_gpkg = rasterize_polygons(tmp_path / "p.gpkg", stack, attribute="landcover")
    from_json = rasterize_polygons(path, stack, attribute="landcover")
    np.testing.assert_array_equal(from_gpkg.values, from_json.values)


@pytest.mark.filterwarnings("ignore:Use `@` matmul instead:PendingDeprecationWarning")  # re-emitted by pytest.warns
def test_like_is_the_old_name_of_stack(tmp_path, rng, stack):
    classes = write_tif(tmp_path / "cls.tif", rng.integers(0, 4, (120, 90)).astype(np.uint8))
    polygons = _polygons_geojson(tmp_path / "p.geojson")
    with pytest.warns(RasterCoreDeprecationWarning, match=r"target_on_grid\(\): like is now called stack"):
        old = target_on_grid(classes, like=stack)
    np.testing.assert_array_equal(old.values, target_on_grid(classes, stack=stack).values)
    with pytest.warns(RasterCoreDeprecationWarning, match=r"rasterize_polygons\(\): like is now called stack"):
        old = rasterize_polygons(polygons, like=stack, attribute="landcover")
    np.testing.assert_array_equal(old.values, rasterize_polygons(polygons, stack, attribute="landcover").values)
    with pytest.raises(TypeError, match="got stack and its old name like"):
        target_on_grid(classes, like=stack, stack=stack)


@pytest.fixture
def continuous_tif(tmp_path, rng):
    values = rng.random((120, 90)).astype(np.float32)
    values[:3] = -9999.0
    return write_tif(tmp_path / "fraction.tif", values, nodata=-9999.0)


def _in_process_cluster():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0")
    return cluster, Client(cluster)


@pytest.mark.parametrize("scheduler", ["synchronous", "threads", "distributed"])
def test_a_continuous_target_is_never_truncated_to_classes(stack, continuous_tif, scheduler):
    import dask

    target = target_on_grid(continuous_tif, stack)  # lazy: nothing read yet
    message = rf"{continuous_tif} holds non-integer values \(e\.g\. 0\.\d+\), not class codes; give --threshold T"
    if scheduler == "distributed":  # the error is pickled on the worker and unpickled here
        cluster, client = _in_process_cluster()
        with cluster, client, pytest.raises(TargetError, match=message) as caught:
            target.compute()
    else:
        with dask.config.set(scheduler=scheduler), pytest.raises(TargetError, match=message) as caught:
            target.compute()
    assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_a_continuous_target_is_refused_in_the_counting_pass_of_sampling(stack, continuous_tif):
    from rastercore.sampling import draw_sample

    with pytest.raises(TargetError, match="non-integer values"):
        draw_sample(stack, target_on_grid(continuous_tif, stack), [{"name": "box_mean", "size": 3}], n=50)


def test_whole_number_floats_are_classes_and_a_fractional_nodata_is_no_value(tmp_path, rng, stack):
    codes = rng.integers(0, 3, (120, 90)).astype(np.float32)
    codes[:, :7] = np.nan
    target = target_on_grid(write_tif(tmp_path / "codes.tif", codes, nodata=np.nan), stack)
    np.testing.assert_array_equal(target.values, np.where(np.isnan(codes), IGNORE, codes).astype(np.int32))
    codes[:, :7] = -0.5
    target = target_on_grid(write_tif(tmp_path / "half.tif", codes, nodata=-0.5), stack)
    assert (target.values[:, :7] == IGNORE).all()
    codes[0, 10] = 2.5
    with pytest.raises(TargetError, match=r"half2\.tif holds non-integer values \(e\.g\. 2\.5\)"):
        target_on_grid(write_tif(tmp_path / "half2.tif", codes, nodata=-0.5), stack).compute()


def test_sample_command_refuses_a_continuous_target_without_threshold(tmp_path, stack, continuous_tif, capsys):
    from rastercore.cli import main

    (tmp_path / "spec.yaml").write_text("- {name: box_mean, size: 3}\n")
    out = tmp_path / "sample.h5"
    status = main(["sample", str(tmp_path / "s.zarr"), "-o", str(out), "--spec", str(tmp_path / "spec.yaml"),
                   "--target", continuous_tif, "--scheduler", "sync"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and not out.exists()
    assert err[0].startswith(f"rastercore: error: {continuous_tif} holds non-integer values (e.g. 0.")
    assert "--threshold T" in err[0] and "continuous target" in err[0]


def test_projected_geojson_without_crs_member_is_refused(tmp_path, stack):
    path = _polygons_geojson(tmp_path / "utm.geojson", crs_out=32633)
    collection = json.loads(path.read_text())
    del collection["crs"]  # UTM metres, but no crs member: read as lon/lat they burn nothing
    path.write_text(json.dumps(collection))
    with pytest.raises(TargetError, match=r"utm\.geojson has no 'crs' member, so by RFC 7946 .* WGS 84 "
                                          r"longitude/latitude, but it holds \(500400, 3999900\); add a 'crs' member"):
        rasterize_polygons(path, stack, attribute="landcover")
