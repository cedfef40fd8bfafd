import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from rastercore import open_stack
from rastercore.datasets import synthetic_scene
from rastercore.demo import run_demo
from rastercore.errors import StoreExistsError


def test_demo_writes_every_output(tmp_path):
    result = run_demo(tmp_path / "demo", shape=(384, 384), tile_size=128, progress="none")
    out = result["outputs"]
    stack = open_stack(out["stack.zarr"])
    np.testing.assert_array_equal(stack.values, synthetic_scene((384, 384))["sar"].values)
    demo = Path(out["prediction.zarr"]).parent
    with rasterio.open(demo / "prediction.tif") as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and src.count == 1
        assert src.descriptions == ("class",) and src.dtypes[0] == "uint8"
    assert open(out["quicklook.png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    steps = [label.split()[1] for label in result["seconds"]]
    assert steps == ["synth", "ingest", "quicklook", "sample", "train", "predict", "evaluate", "evaluate"]
    whole = json.loads(Path(out["metrics.json"]).read_text())["classification"]
    assert whole["pixels"] == 384 * 384 and whole["overall_accuracy"] > 0.95
    validation = json.loads(Path(out["metrics_validation.json"]).read_text())["classification"]
    assert validation["pixels"] < whole["pixels"]  # few 256-px blocks here: maybe none went to validation
    with pytest.raises(StoreExistsError, match="--overwrite"):
        run_demo(tmp_path / "demo", shape=(384, 384), tile_size=128, progress="none")
