"""The pipeline on real imagery: WorldView-2 chips and polygons shipped by the dgsamples package."""

import os

import dgsamples
import numpy as np
import pytest

from rastercore import ingest
from rastercore.predict import predict
from rastercore.sampling import SpatialSplit, draw_sample
from rastercore.targets import rasterize_polygons
from rastercore.training import train_from_table

WV2_BANDS = ["coastal", "blue", "green", "yellow", "red", "rededge", "nir1", "nir2"]
VECTORS = os.path.join(os.path.dirname(dgsamples.__file__), "wv2_longmont_1k_vectors")


@pytest.fixture(scope="module")
def longmont(tmp_path_factory):
    """The 8-band WV2 multispectral scene (a DigitalGlobe .TIL mosaic, uint16, UTM 13N)."""
    return ingest(dgsamples.wv2_longmont_1k.ms, tmp_path_factory.mktemp("wv2") / "ms.zarr", bands=WV2_BANDS,
                  tile_size=256, progress="none")


def test_polygons_burn_the_same_from_either_crs(longmont):
    from_wgs84 = rasterize_polygons(os.path.join(VECTORS, "wv2_1k_poly_4326.geojson"), longmont, attribute="teststr")
    from_utm = rasterize_polygons(os.path.join(VECTORS, "wv2_1k_poly_32613.geojson"), longmont, attribute="teststr")
    np.testing.assert_array_equal(from_wgs84.values, from_utm.values)
    assert from_utm.attrs["class_names"] == ["test1", "test2"]
    assert np.bincount(from_utm.values[from_utm.values >= 0]).tolist() == [317, 137]


def test_sample_train_predict_on_real_imagery(longmont, tmp_path):
    target = rasterize_polygons(os.path.join(VECTORS, "wv2_1k_poly_32613.geojson"), longmont, attribute="teststr")
    spec = [{"name": "box_mean", "size": 5}, {"name": "normalised_difference", "a": "nir1", "b": "red"}]
    table = draw_sample(longmont, target, spec, n=120, split=SpatialSplit(validation_fraction=0), seed=0)
    assert np.bincount(table.y).tolist() == [60, 60] and table.X.shape == (120, 9)
    assert table.attrs["crs"] is not None and "UTM zone 13N" in table.attrs["crs"]
    train_from_table(table, "forest", params={"n_estimators": 20}, path=tmp_path / "m.skops")
    mosaic = predict(tmp_path / "m.skops", longmont, tmp_path / "pred.zarr", progress="none")
    classes = mosaic.sel(band="class").values
    labelled = target.values >= 0
    assert (classes[labelled] == target.values[labelled]).mean() > 0.9
    assert mosaic.rio.crs == longmont.rio.crs
    # The real mosaic's first row is all zeros (no nodata declared): the normalised
    # difference is undefined there (0 / 0), so exactly those pixels get no prediction.
    bands = longmont.sel(band=["nir1", "red"]).values.astype(float)
    np.testing.assert_array_equal(np.isfinite(classes), bands.sum(axis=0) != 0)
    assert (~np.isfinite(classes)).sum() == 500
