"""Class maps a GIS opens as they are (codes, colour table, category names read back by GDAL itself, mode
overviews), float layers with band names, and the uncertainty and spread layers of prediction."""

from __future__ import annotations

import ctypes
import glob
import os

import numpy as np
import pytest
import rasterio
import scipy.stats
import xarray as xr
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from rastercore.cli import main
from rastercore.datasets import SYNTHETIC_THRESHOLD, synthetic_scene
from rastercore.errors import ParameterError
from rastercore.export import export
from rastercore.features import compute_features
from rastercore.grid import Grid, attach_grid
from rastercore.io.cog import aux_path
from rastercore.predict import class_raster, predict, predict_lazy
from rastercore.sampling import TRAIN, draw_sample
from tests.conftest import TRANSFORM, UTM

SPEC = [{"name": "box_mean", "size": 5}]


def _gdal():
    """GDAL's C library as rasterio ships it: an independent reader of what GDAL makes of our files."""
    libs = os.path.join(os.path.dirname(rasterio.__file__), os.pardir, "rasterio.libs")
    found = glob.glob(os.path.join(libs, "libgdal*")) or glob.glob(os.path.join(rasterio.__path__[0], "libgdal*"))
    if not found:
        pytest.skip("rasterio's GDAL library is not a separate file here")
    lib = ctypes.CDLL(found[0])
    lib.GDALAllRegister()
    lib.GDALOpen.restype, lib.GDALOpen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_int]
    lib.GDALGetMetadata.restype, lib.GDALGetMetadata.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]
    lib.GDALGetRasterBand.restype, lib.GDALGetRasterBand.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_int]
    lib.GDALGetRasterCategoryNames.restype = ctypes.POINTER(ctypes.c_char_p)
    lib.GDALGetRasterCategoryNames.argtypes = [ctypes.c_void_p]
    lib.GDALGetDefaultRAT.restype, lib.GDALGetDefaultRAT.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    lib.GDALRATGetRowCount.argtypes = [ctypes.c_void_p]
    lib.GDALRATGetValueAsString.restype = ctypes.c_char_p
    lib.GDALRATGetValueAsString.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.GDALClose.argtypes = [ctypes.c_void_p]
    return lib


def gdal_categories(path) -> tuple[list[str], list[str]]:
    """The band's category names and the names column of its attribute table, as GDAL reads them."""
    lib = _gdal()
    ds = lib.GDALOpen(str(path).encode(), 0)
    try:
        lib.GDALGetMetadata(ds, None)  # GTiff reads the .aux.xml sidecar lazily; gdalinfo and QGIS do the same
        band = lib.GDALGetRasterBand(ds, 1)
        names, found = lib.GDALGetRasterCategoryNames(band), []
        while names and names[len(found)] is not None:
            found.append(names[len(found)].decode())
        rat = lib.GDALGetDefaultRAT(band)
        rows = [lib.GDALRATGetValueAsString(rat, i, 1).decode() for i in range(lib.GDALRATGetRowCount(rat))] \
            if rat else []
        return found, rows
    finally:
        lib.GDALClose(ds)


def _class_mosaic(codes: np.ndarray, names: list[str]) -> xr.DataArray:
    """A mosaic as prediction writes it: a float ``class`` layer (NaN = nodata) with class names."""
    height, width = codes.shape
    data = xr.DataArray(codes[np.newaxis].astype(np.float32), dims=("band", "y", "x"),
                        coords={"band": ["class"]}).chunk({"y": 128, "x": 128})
    mosaic = attach_grid(data, Grid(height, width, TRANSFORM, rasterio.crs.CRS.from_user_input(UTM)), nodata=np.nan)
    return mosaic.assign_attrs(class_names=names)


def test_a_class_map_is_a_styled_cog(tmp_path):
    """Codes 0 and 5 only, in blocks: mode overviews keep them (averaged ones would hold 1-4)."""
    names = ["water", "forest", "crops", "urban", "bare", "snow = ice"]
    codes = np.where((np.arange(600)[:, None] // 7 + np.arange(700)[None, :] // 5) % 3 == 0, 5.0, 0.0)
    codes[:40, :60] = np.nan
    mosaic = _class_mosaic(codes, names).assign_attrs(class_colors=[[0, 0, 255]] + [[10, 20, 30]] * 5)
    path = export(mosaic, tmp_path / "classes.tif", progress="none")
    with rasterio.open(path) as cog:
        assert cog.dtypes == ("uint8",) and cog.nodata == 255 and cog.descriptions == ("class",)
        values = cog.read(1)
        np.testing.assert_array_equal(values, np.where(np.isnan(codes), 255, codes).astype(np.uint8))
        colormap = cog.colormap(1)
        assert colormap[0] == (0, 0, 255, 255) and colormap[5] == (10, 20, 30, 255) and colormap[255][3] == 0
        assert cog.overviews(1)
        overview = cog.read(1, out_shape=(150, 175))  # from the overviews
        assert set(np.unique(overview)) <= {0, 5, 255}
    assert gdal_categories(path) == (names, names)


def test_more_than_255_classes_take_uint16_and_an_averaged_class_map_is_refused(tmp_path):
    names = [f"c{i}" for i in range(300)]
    codes = np.arange(64 * 64).reshape(64, 64) % 300.0
    raster = class_raster(_class_mosaic(codes, names))
    assert raster.dtype == np.uint16 and raster.rio.nodata == 65535
    path = export(_class_mosaic(codes, names), tmp_path / "many.tif", progress="none")
    with rasterio.open(path) as cog:
        np.testing.assert_array_equal(cog.read(1), codes.astype(np.uint16))
    assert gdal_categories(path)[0] == names
    with pytest.raises(ParameterError, match="would blend the codes"):
        export(_class_mosaic(codes, names), tmp_path / "avg.tif", resampling="average", progress="none")


def test_exporting_float_layers_over_a_class_map_removes_its_categories(tmp_path):
    mosaic = _class_mosaic(np.zeros((32, 32)), ["a", "b"])
    both = xr.concat([mosaic, mosaic.assign_coords(band=["maxprob"]) * 0 + 0.5], dim="band")
    both = both.assign_attrs(mosaic.attrs)
    path = export(both, tmp_path / "x.tif", progress="none")
    assert aux_path(path).exists()
    export(both, path, layers="maxprob", overwrite=True, progress="none")
    assert not aux_path(path).exists()  # no stale class names beside a float raster
    with rasterio.open(path) as tif:
        assert tif.dtypes == ("float32",) and tif.descriptions == ("maxprob",)
    with pytest.raises(ParameterError, match="mixes the class layer"):
        export(both, tmp_path / "y.tif", layers=["class", "maxprob"], progress="none")
    with pytest.raises(ParameterError, match="--layers names p\\[z\\]"):
        export(both, tmp_path / "y.tif", layers="p[z]", progress="none")


@pytest.fixture(scope="module")
def scene():
    ds = synthetic_scene((96, 110), seed=1, chunks=32)
    sar = np.log(ds["sar"])
    table = draw_sample(sar, ds["target"], SPEC, n=300, thresholds=SYNTHETIC_THRESHOLD, seed=0)
    feats = compute_features(sar, SPEC).values
    return sar, ds["target"], table, feats.reshape(feats.shape[0], -1).T


def test_uncertainty_layers_equal_scipy_on_the_probabilities(scene):
    sar, _, table, X_all = scene
    X, y = table.subset(TRAIN)
    forest = RandomForestClassifier(n_estimators=15, random_state=0).fit(X, y)
    mosaic = predict_lazy(forest, sar, SPEC, class_names=table.class_names,
                          layers="class,maxprob,margin,entropy,proba").values.reshape(6, -1)
    proba = forest.predict_proba(X_all)
    ordered = np.sort(proba, axis=1)
    np.testing.assert_allclose(mosaic[1], proba.max(axis=1), atol=1e-6)
    np.testing.assert_allclose(mosaic[2], ordered[:, -1] - ordered[:, -2], atol=1e-6)
    np.testing.assert_allclose(mosaic[3], scipy.stats.entropy(proba.T) / np.log(2), atol=1e-5)
    np.testing.assert_allclose(mosaic[4:6].T, proba, atol=1e-6)


def test_a_forest_regressor_writes_its_spread(scene):
    sar, target, table, X_all = scene
    X, _ = table.subset(TRAIN)
    values = target.values.reshape(-1)[:len(X)]
    forest = RandomForestRegressor(n_estimators=8, random_state=0).fit(X, values)
    mosaic = predict_lazy(forest, sar, SPEC, layers=["value", "spread"]).values.reshape(2, -1)
    trees = np.stack([tree.predict(X_all) for tree in forest.estimators_])
    np.testing.assert_allclose(mosaic[0], forest.predict(X_all), rtol=1e-5)
    np.testing.assert_allclose(mosaic[1], trees.std(axis=0), rtol=1e-4, atol=1e-6)


def test_layers_a_model_cannot_write_are_refused(scene):
    sar, target, table, _ = scene
    X, y = table.subset(TRAIN)
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    with pytest.raises(ParameterError, match="--layers class,spread: this model writes any of class, proba"):
        predict_lazy(forest, sar, SPEC, layers="class,spread")
    from sklearn.linear_model import LinearRegression

    with pytest.raises(ParameterError, match="spread needs an ensemble"):
        predict_lazy(LinearRegression().fit(X, X[:, 0]), sar, SPEC, layers="value,spread")


def test_predict_writes_a_styled_cog_with_the_users_colours(scene, tmp_path):
    sar, _, table, _ = scene
    X, y = table.subset(TRAIN)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    low, high = table.class_names
    mosaic = predict(forest, sar, tmp_path / "p.zarr", spec=SPEC, class_names=table.class_names,
                     cog=tmp_path / "p.tif", layers="class,entropy", class_colors={high: "red"}, progress="none")
    assert list(mosaic.band.values) == ["class", "entropy"]
    assert mosaic.attrs["class_colors"][1] == [255, 0, 0]
    with rasterio.open(tmp_path / "p.tif") as cog:
        assert cog.dtypes == ("uint8",) and cog.colormap(1)[1] == (255, 0, 0, 255)
        np.testing.assert_array_equal(cog.read(1), mosaic.sel(band="class").values.astype(np.uint8))
    assert gdal_categories(tmp_path / "p.tif")[0] == [low, high]


def test_the_cli_takes_layers_and_colors(scene, tmp_path):
    sar, _, table, _ = scene
    X, y = table.subset(TRAIN)
    from rastercore.models import save_model
    from rastercore.store import write_tiles

    write_tiles(sar, tmp_path / "s.zarr", progress="none")
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    save_model(forest, tmp_path / "m.skops", metadata={"feature_spec": {"features": SPEC},
                                                       "class_names": table.class_names})
    quiet = ["--scheduler", "sync", "--progress", "none"]
    assert main(["predict", str(tmp_path / "m.skops"), str(tmp_path / "s.zarr"), "-o", str(tmp_path / "p.zarr"),
                 "--layers", "class,maxprob", "--colors", f"{table.class_names[0]}=#00ff00", *quiet]) == 0
    assert main(["export", str(tmp_path / "p.zarr"), str(tmp_path / "c.tif"), *quiet]) == 0
    assert main(["export", str(tmp_path / "p.zarr"), str(tmp_path / "m.tif"), "--layers", "maxprob", *quiet]) == 0
    with rasterio.open(tmp_path / "c.tif") as cog, rasterio.open(tmp_path / "m.tif") as maxprob:
        assert cog.colormap(1)[0] == (0, 255, 0, 255) and maxprob.descriptions == ("maxprob",)


def test_colours_given_at_training_reach_the_map(scene, tmp_path):
    from rastercore.sampling import write_table
    from rastercore.training import train_from_table

    sar, _, table, _ = scene
    low, high = table.class_names
    with pytest.raises(ParameterError, match="not a colour"):
        train_from_table(table, "forest", params={"n_estimators": 3}, class_colors={low: "no-such-colour"})
    write_table(table, tmp_path / "t.h5")
    assert main(["train", str(tmp_path / "t.h5"), "-o", str(tmp_path / "m.skops"), "--family", "forest",
                 "--params", '{"n_estimators": 3}', "--colors", f"{low}=#102030", "--scheduler", "sync",
                 "--progress", "none"]) == 0
    mosaic = predict(tmp_path / "m.skops", sar, tmp_path / "p.zarr", cog=tmp_path / "p.tif",
                     class_colors={high: "white"}, progress="none")
    assert mosaic.attrs["class_colors"] == [[16, 32, 48], [255, 255, 255]]  # the model's, then the user's
    with rasterio.open(tmp_path / "p.tif") as cog:
        assert cog.colormap(1)[0] == (16, 32, 48, 255) and cog.colormap(1)[1] == (255, 255, 255, 255)
