"""STAC items as inputs: assets by key or common name, each on its own grid, read from a server on 127.0.0.1."""

from __future__ import annotations

import json

import numpy as np
import pytest
from affine import Affine

from rastercore import ingest
from rastercore.errors import ParameterError, UnsupportedSourceError
from rastercore.grid import grid_of
from tests.conftest import UTM, write_tif
from tests.io.test_remote import server  # noqa: F401  (the loopback HTTP server fixture)

pytest.importorskip("pystac")


def _asset(href, key, common=None):
    asset = {"href": href, "type": "image/tiff; application=geotiff", "roles": ["data"]}
    if common:
        asset["eo:bands"] = [{"name": key, "common_name": common}]
    return asset


@pytest.fixture
def item(tmp_path, server):  # noqa: F811
    """A Sentinel-2-like item: red and nir at 10 m, swir16 and SCL at 20 m, served over HTTP."""
    rng = np.random.default_rng(0)
    files = {}
    for key, pixel, dtype in (("B04", 10.0, np.uint16), ("B08", 10.0, np.uint16), ("B11", 20.0, np.uint16),
                              ("SCL", 20.0, np.uint8)):
        size = 64 if pixel == 10.0 else 32
        values = rng.integers(1, 9 if key == "SCL" else 10000, (size, size)).astype(dtype)
        write_tif(tmp_path / f"{key}.tif", values, transform=Affine(pixel, 0, 500_000, 0, -pixel, 4_000_000),
                  nodata=0, tiled=True, blockxsize=16, blockysize=16)
        files[key] = values
    assets = {"B04": _asset(f"{server.url}/B04.tif", "B04", "red"),
              "B08": _asset(f"{server.url}/B08.tif", "B08", "nir"),
              "B11": _asset(f"{server.url}/B11.tif", "B11", "swir16"),
              "SCL": _asset(f"{server.url}/SCL.tif", "SCL"),
              "thumbnail": {"href": f"{server.url}/thumb.png", "type": "image/png", "roles": ["thumbnail"]}}
    doc = {"type": "Feature", "stac_version": "1.0.0", "id": "S2-test",
           "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
           "geometry": {"type": "Polygon", "coordinates": [[[14, 36], [14.01, 36], [14.01, 36.01], [14, 36]]]},
           "bbox": [14, 36, 14.01, 36.01], "properties": {"datetime": "2026-06-01T10:00:00Z"},
           "links": [], "assets": assets}
    path = tmp_path / "item.json"
    path.write_text(json.dumps(doc))
    return path, files


def test_assets_by_common_name_and_key_on_one_grid(item, tmp_path):
    path, files = item
    stack = ingest([path], tmp_path / "s.zarr", assets="red,nir,swir16,SCL", tile_size=32, progress="none")
    assert list(stack.band.values) == ["red", "nir", "swir16", "SCL"]
    assert grid_of(stack).shape == (64, 64) and grid_of(stack).transform.a == 10.0  # the finest asset's grid
    np.testing.assert_array_equal(stack.sel(band="red").values, files["B04"])
    local = ingest([str(tmp_path / f"{k}.tif") for k in ("B04", "B08", "B11", "SCL")], tmp_path / "local.zarr",
                   bands=["red", "nir", "swir16", "SCL"], tile_size=32, progress="none")
    np.testing.assert_array_equal(stack.values, local.values)  # the same as the files read locally
    scl = stack.sel(band="SCL").values
    assert set(np.unique(scl[np.isfinite(scl)])) <= set(range(1, 9))  # categorical: nearest, never blended
    from rastercore.features import compute_features

    ndvi = compute_features(stack, [{"name": "ndvi"}]).values[0]  # common names reach the spectral indices
    nir, red = files["B08"].astype(float), files["B04"].astype(float)
    np.testing.assert_allclose(ndvi, (nir - red) / (nir + red), rtol=1e-6)


def test_asset_errors_are_one_clear_line(item, tmp_path):
    path, _ = item
    with pytest.raises(ParameterError, match=r"has no asset or band 'blue'; it has B04 \(red\), B08 \(nir\)"):
        ingest([path], tmp_path / "s.zarr", assets=["red", "blue"], progress="none")
    with pytest.raises(ParameterError, match="name the assets to ingest with --assets"):
        ingest([path], tmp_path / "s.zarr", progress="none")
    collection = tmp_path / "items.json"
    collection.write_text(json.dumps({"type": "FeatureCollection", "features": [json.loads(path.read_text())]}))
    with pytest.raises((UnsupportedSourceError, ParameterError), match="items.json"):
        ingest([collection], tmp_path / "s.zarr", assets=["red"], progress="none")
    assert not (tmp_path / "s.zarr").exists()
