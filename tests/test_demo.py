import numpy as np
import pytest
import rasterio

from rastercore import open_stack
from rastercore.datasets import synthetic_scene
from rastercore.demo import run_demo
from rastercore.errors import StoreExistsError


def test_demo_writes_every_output(tmp_path):
    result = run_demo(tmp_path / "demo", shape=(256, 384), tile_size=128, progress="none")
    out = result["outputs"]
    stack = open_stack(out["stack.zarr"])
    np.testing.assert_array_equal(stack.values, synthetic_scene((256, 384))["sar"].values)
    with rasterio.open(out["stack.tif"]) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and src.count == 2
    for png in ("quicklook.png", "target.png"):
        assert open(out[png], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert [label.split()[1] for label in result["seconds"]] == ["synth", "ingest", "ingest", "quicklook", "quicklook", "export"]
    with pytest.raises(StoreExistsError, match="--overwrite"):
        run_demo(tmp_path / "demo", shape=(256, 384), tile_size=128, progress="none")
    run_demo(tmp_path / "demo", shape=(256, 384), tile_size=128, progress="none", overwrite=True)
