"""The ``onnx`` feature kind: tile by tile equals ONNX Runtime on the whole (mirror-padded) image.

The networks are built here with ``onnx.helper`` (fixed random weights);
the reference runs them with ONNX Runtime directly on the whole image,
padded as rastercore pads the scene edge (``numpy.pad(mode="symmetric")``,
scipy's ``'reflect'``).
"""

from __future__ import annotations

import sys

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from numpy.testing import assert_allclose

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from rastercore.errors import FeatureSpecError  # noqa: E402
from rastercore.features import Feature, FeatureSpec, FeatureTile, compute_features, features_for_block  # noqa: E402

BANDS = ["red", "green", "blue"]
SHAPE = (100, 130)


def save_net(path, nodes, inits, *, n_in=3, out_shape=None, output="y", extra_outputs=()):
    """Write a one-input network (input ``x``, NCHW float32, dynamic y/x) and return its path as str."""
    graph = helper.make_graph(
        nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n_in, "h", "w"])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, out_shape), *extra_outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime >= 1.17
    onnx.save(model, str(path))
    return str(path)


def conv(name, source, n_in, n_out, rng, *, stride=1):
    """A 3x3 'same' convolution node with fixed random weights, and its initialisers."""
    weights = numpy_helper.from_array((rng.standard_normal((n_out, n_in, 3, 3)) * 0.4).astype(np.float32), f"{name}_w")
    bias = numpy_helper.from_array((rng.standard_normal(n_out) * 0.1).astype(np.float32), f"{name}_b")
    node = helper.make_node("Conv", [source, f"{name}_w", f"{name}_b"], [name], pads=[1, 1, 1, 1],
                            strides=[stride, stride])
    return node, [weights, bias]


def two_convs(path, *, n_in=3, channels=5, stride=1, seed=0, out_shape="fixed"):
    """Conv 3x3 (stride) -> Relu -> Conv 3x3: receptive radius 2 (stride 1) or 4 (stride 2)."""
    rng = np.random.default_rng(seed)
    first, w1 = conv("h", "x", n_in, 4, rng, stride=stride)
    second, w2 = conv("y", "r", 4, channels, rng)
    shape = [1, channels, "h2", "w2"] if out_shape == "fixed" else out_shape
    return save_net(path, [first, helper.make_node("Relu", ["h"], ["r"]), second], w1 + w2, n_in=n_in,
                    out_shape=shape)


def whole_image(values, path, halo, *, stride=1, scale=1.0, offset=0.0):
    """ONNX Runtime on the whole image: mirror-padded by ``halo`` (and to a multiple of ``stride``), cropped back."""
    _, height, width = values.shape
    extra_y, extra_x = -(height + 2 * halo) % stride, -(width + 2 * halo) % stride
    padded = np.pad(values, ((0, 0), (halo, halo + extra_y), (halo, halo + extra_x)), mode="symmetric")
    x = padded * np.reshape(scale, (-1, 1, 1)).astype(np.float32) + np.reshape(offset, (-1, 1, 1)).astype(np.float32)
    y = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x[None].astype(np.float32)})[0][0]
    y = y.repeat(stride, axis=1).repeat(stride, axis=2)
    return y[:, halo:halo + height, halo:halo + width]


def make_stack(values, chunks, bands=BANDS):
    return xr.DataArray(da.from_array(values, chunks=(len(bands),) + tuple(chunks)), dims=("band", "y", "x"),
                        coords={"band": bands, "y": np.arange(values.shape[1]), "x": np.arange(values.shape[2])})


@pytest.fixture(scope="module")
def values():
    return np.random.default_rng(1).random((3,) + SHAPE).astype(np.float32)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    return two_convs(tmp_path_factory.mktemp("nets") / "net.onnx")


@pytest.fixture(scope="module")
def strided(tmp_path_factory):
    return two_convs(tmp_path_factory.mktemp("nets") / "strided.onnx", stride=2, channels=3, seed=2)


def test_tiles_equal_whole_image_inference(values, net):
    feats = compute_features(make_stack(values, (40, 40)), [{"name": "onnx", "path": net, "halo": 2}])
    assert list(feats.feature.values) == [f"onnx(path={net},output=y)/c{i}" for i in range(5)]
    assert_allclose(feats.values, whole_image(values, net, 2), rtol=1e-5, atol=1e-6)


def test_halo_is_the_kinds_depth_and_a_wider_spec_halo_changes_nothing(values, net):
    spec = FeatureSpec([{"name": "onnx", "path": net, "halo": 2}, {"name": "gaussian", "sigma": 2}])
    assert Feature.from_dict({"name": "onnx", "path": net, "halo": 7}).depth == 7
    assert spec.halo == spec.features[1].depth > 2  # tiles carry more halo than the network needs
    feats = compute_features(make_stack(values, (33, 47)), spec)
    assert_allclose(feats.values[:5], whole_image(values, net, 2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunks", [(40, 40), (37, 45), (11, 130)])
def test_strided_network_is_seamless_for_any_tiling(values, strided, chunks):
    spec = [{"name": "onnx", "path": strided, "halo": 4, "stride": 2}]
    feats = compute_features(make_stack(values, chunks), spec).values
    assert_allclose(feats, whole_image(values, strided, 4, stride=2), rtol=1e-5, atol=1e-6)


def test_strided_network_with_a_halo_that_is_not_a_multiple_of_the_stride(values, strided):
    spec = [{"name": "onnx", "path": strided, "halo": 5, "stride": 2}, {"name": "box_mean", "size": 9}]
    feats = compute_features(make_stack(values, (29, 52)), spec).values[:3]
    assert_allclose(feats, whole_image(values, strided, 5, stride=2), rtol=1e-5, atol=1e-6)


def test_threaded_workers_share_one_session(values, net):
    with dask.config.set(scheduler="threads", num_workers=2):
        feats = compute_features(make_stack(values, (40, 40)), [{"name": "onnx", "path": net, "halo": 2}]).values
    assert_allclose(feats, whole_image(values, net, 2), rtol=1e-5, atol=1e-6)


def test_named_bands_in_order_with_scale_and_offset(tmp_path, values):
    path = two_convs(tmp_path / "two.onnx", n_in=2, channels=2)
    four = np.concatenate([values, values[:1] * 3])
    stack = make_stack(four, (40, 40), bands=["red", "green", "blue", "nir"])
    spec = [{"name": "onnx", "path": path, "halo": 2, "bands": ["nir", "green"], "scale": [0.5, 2.0], "offset": -1}]
    feats = compute_features(stack, spec)
    assert FeatureSpec(spec).input_bands(["red", "green", "blue", "nir"]) == ["green", "nir"]
    expected = whole_image(four[[3, 1]], path, 2, scale=[0.5, 2.0], offset=-1.0)
    assert_allclose(feats.values, expected, rtol=1e-5, atol=1e-6)


def test_spec_round_trips_with_resolved_output_and_channels(net):
    spec = FeatureSpec([{"name": "onnx", "path": net, "halo": 2}])
    plain = spec.to_dict()["features"][0]
    assert plain["output"] == "y" and plain["channels"] == 5 and plain["bands"] is None
    assert FeatureSpec.from_dict(spec.to_dict()) == spec


def test_nodata_reaches_the_halo_and_no_further(values, net):
    holey = values.copy()
    holey[1, 50, 60] = np.nan
    feats = compute_features(make_stack(holey, (40, 40)), [{"name": "onnx", "path": net, "halo": 2}]).values
    reach = np.zeros(SHAPE, bool)
    reach[48:53, 58:63] = True
    assert np.isnan(feats[:, reach]).all() and np.isfinite(feats[:, ~reach]).all()
    assert_allclose(feats[:, ~reach], whole_image(np.nan_to_num(holey), net, 2)[:, ~reach], rtol=1e-5, atol=1e-6)


def test_dynamic_channels_need_the_channels_parameter(tmp_path, values):
    rng = np.random.default_rng(4)
    first, weights = conv("c", "x", 3, 4, rng)
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "head")
    nodes = [first, helper.make_node("Shape", ["c"], ["tail"], start=2),
             helper.make_node("Concat", ["head", "tail"], ["shape"], axis=0),
             helper.make_node("Reshape", ["c", "shape"], ["y"])]
    path = save_net(tmp_path / "dynamic.onnx", nodes, weights + [shape])
    with pytest.raises(FeatureSpecError, match=r"channels of output 'y' is not fixed.*channels: <n>"):
        FeatureSpec([{"name": "onnx", "path": path, "halo": 1}])
    feats = compute_features(make_stack(values, (40, 40)), [{"name": "onnx", "path": path, "halo": 1, "channels": 4}])
    assert_allclose(feats.values, whole_image(values, path, 1), rtol=1e-5, atol=1e-6)
    with pytest.raises(FeatureSpecError, match="output 'y' has shape"):
        features_for_block(values[:, :20, :20], [{"name": "onnx", "path": path, "halo": 1, "channels": 3}], BANDS)


def test_sample_train_predict_with_a_network_feature(tmp_path):
    from rastercore.datasets import SYNTHETIC_THRESHOLD, synthetic_scene
    from rastercore.predict import predict
    from rastercore.sampling import SpatialSplit, draw_sample
    from rastercore.training import train_from_table

    ds = synthetic_scene((96, 110), seed=0, chunks=40)
    sar = np.log(ds["sar"]).astype(np.float32)
    path = two_convs(tmp_path / "sar.onnx", n_in=2, channels=3, stride=2, seed=5)
    spec = [{"name": "onnx", "path": path, "halo": 4, "stride": 2, "scale": 0.5}]
    reference = whole_image(sar.values, path, 4, stride=2, scale=0.5)
    table = draw_sample(sar, ds["target"], spec, n=120, thresholds=SYNTHETIC_THRESHOLD,
                        split=SpatialSplit(block_size=24), seed=0)
    assert_allclose(table.X, reference[:, table.row, table.col].T, rtol=1e-5, atol=1e-6)  # sparse patches too
    model, _ = train_from_table(table, "logistic", path=tmp_path / "model.skops")
    mosaic = predict(tmp_path / "model.skops", sar, tmp_path / "pred.zarr", progress="none")  # spec from the file
    expected = model.predict(reference.reshape(3, -1).T).reshape(96, 110)
    assert (mosaic.sel(band="class").values == expected).mean() > 0.999  # float32 ties at the boundary aside


def test_sampled_patches_keep_the_strided_grid(values, strided):
    from rastercore.sampling import features_at

    spec = FeatureSpec([{"name": "onnx", "path": strided, "halo": 4, "stride": 2}])
    rows, cols = slice(33, 81), slice(47, 101)  # a tile plus its 4-px halo, at odd scene offsets
    ys, xs = np.array([4, 9, 30, 43]), np.array([4, 11, 20, 49])  # sparse: one patch each
    got = features_at(values[:, rows, cols], spec, BANDS, ys, xs, origin=(33, 47))
    expected = whole_image(values, strided, 4, stride=2)[:, ys + 33, xs + 47].T
    assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_tile_function_pickles_without_a_session(values, net):
    import cloudpickle

    spec = FeatureSpec([{"name": "onnx", "path": net, "halo": 2}])
    features_for_block(values[:, :10, :10], spec, BANDS)  # the session now exists in this process
    blob = cloudpickle.dumps(FeatureTile(spec, BANDS))
    assert b"InferenceSession" not in blob and len(blob) < 20_000
    tile = cloudpickle.loads(blob)
    assert_allclose(features_for_block(values, tile.spec, BANDS), whole_image(values, net, 2), rtol=1e-5, atol=1e-6)


def test_on_a_local_process_cluster(values, net):
    from rastercore.scheduler import client

    with client("local", n_workers=1, threads_per_worker=2, quiet=True, progress="none"):
        feats = compute_features(make_stack(values, (40, 40)), [{"name": "onnx", "path": net, "halo": 2}]).values
    assert_allclose(feats, whole_image(values, net, 2), rtol=1e-5, atol=1e-6)


# -- refusals ---------------------------------------------------------------------------------


def test_missing_halo_file_and_unreadable_file(tmp_path, net):
    with pytest.raises(FeatureSpecError, match="needs parameter 'halo'.*receptive-field radius"):
        FeatureSpec([{"name": "onnx", "path": net}])
    with pytest.raises(FeatureSpecError, match=r"model file .*nowhere.onnx does not exist"):
        FeatureSpec([{"name": "onnx", "path": str(tmp_path / "nowhere.onnx"), "halo": 2}])
    (tmp_path / "junk.onnx").write_text("not a network")
    with pytest.raises(FeatureSpecError, match=r"junk.onnx cannot be loaded by ONNX Runtime"):
        FeatureSpec([{"name": "onnx", "path": str(tmp_path / "junk.onnx"), "halo": 2}])


def test_bands_that_do_not_fit_the_network(values, net):
    with pytest.raises(FeatureSpecError, match=r"takes 3 input channels but reads 2 band\(s\) \['red', 'blue'\]"):
        FeatureSpec([{"name": "onnx", "path": net, "halo": 2, "bands": ["red", "blue"]}])
    with pytest.raises(FeatureSpecError, match="takes 3 input channels but reads 4"):
        compute_features(make_stack(np.concatenate([values, values[:1]]), (40, 40), bands=BANDS + ["nir"]),
                         [{"name": "onnx", "path": net, "halo": 2}])
    with pytest.raises(FeatureSpecError, match=r"uses band\(s\) \['nir'\] that the stack does not have"):
        compute_features(make_stack(values, (40, 40)),
                         [{"name": "onnx", "path": net, "halo": 2, "bands": ["red", "green", "nir"]}])
    with pytest.raises(FeatureSpecError, match="'scale' has 2 values for 3 band"):
        FeatureSpec([{"name": "onnx", "path": net, "halo": 2, "bands": BANDS, "scale": [1, 2]}])


def test_outputs_that_are_not_feature_maps(tmp_path, net):
    rng = np.random.default_rng(0)
    first, weights = conv("c", "x", 3, 2, rng)
    flat = save_net(tmp_path / "flat.onnx", [first, helper.make_node("Flatten", ["c"], ["y"], axis=2)], weights,
                    out_shape=[1, 2, "n"])
    with pytest.raises(FeatureSpecError, match=r"output 'y' is 2-D.*needs a 4-D \(1, channels, y, x\) output"):
        FeatureSpec([{"name": "onnx", "path": flat, "halo": 1}])
    with pytest.raises(FeatureSpecError, match=r"has no output 'logits'; its outputs: \['y'\]"):
        FeatureSpec([{"name": "onnx", "path": net, "halo": 2, "output": "logits"}])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "fixed",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 224, 224])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "fixed.onnx")
    with pytest.raises(FeatureSpecError, match=r"fixed size \[1, 3, 224, 224\].*dynamic_axes"):
        FeatureSpec([{"name": "onnx", "path": str(tmp_path / "fixed.onnx"), "halo": 0}])


def test_a_halo_smaller_than_the_receptive_field_is_refused(net, strided):
    with pytest.raises(FeatureSpecError, match=r"receptive field reaches 2 px but 'halo' is 1.*set halo: 2"):
        FeatureSpec([{"name": "onnx", "path": net, "halo": 1}])
    with pytest.raises(FeatureSpecError, match=r"receptive field reaches 4 px but 'halo' is 3"):
        FeatureSpec([{"name": "onnx", "path": strided, "halo": 3, "stride": 2}])


def test_undeclared_stride_is_refused_with_the_factor(values, strided):
    with pytest.raises(FeatureSpecError, match=r"returned (\d+) x \1 pixels for a .* input with stride 1.*set stride: 2"):
        FeatureSpec([{"name": "onnx", "path": strided, "halo": 4}])
    with pytest.raises(FeatureSpecError, match=r"depend on the position.*origin="):
        features_for_block(values[:, :36, :36], [{"name": "onnx", "path": strided, "halo": 4, "stride": 2}], BANDS,
                           crop=(4, 4, 4, 4))


def test_non_finite_network_output_is_an_error(tmp_path, values):
    path = save_net(tmp_path / "log.onnx", [helper.make_node("Log", ["x"], ["y"])], [], out_shape=[1, 3, "h", "w"])
    spec = [{"name": "onnx", "path": path, "halo": 0, "offset": -0.5}]  # log of negative numbers: NaN
    with pytest.raises(FeatureSpecError, match=r"produced \d+ non-finite value\(s\) from finite inputs.*'scale'"):
        compute_features(make_stack(values, (40, 40)), spec).values


def test_without_onnxruntime_the_extra_is_named(monkeypatch, net):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(FeatureSpecError, match=r"pip install 'rastercore\[deep\]'"):
        FeatureSpec([{"name": "onnx", "path": net, "halo": 2}])



def test_network_pipeline_file_runs_small(tmp_path, monkeypatch):
    import json
    import runpy
    from pathlib import Path

    from rastercore.pipeline import load_pipeline, run_pipeline

    pipelines = Path(__file__).parents[2] / "pipelines"
    monkeypatch.chdir(tmp_path)  # the spec's network path is relative to the working directory
    runpy.run_path(str(pipelines / "tiny_net.py"))["tiny_sar_net"]()
    text = (pipelines / "network.yaml").read_text()
    (tmp_path / "p.yaml").write_text(text.replace("[1024, 1536]", "[256, 384]").replace("512", "128")
                                     .replace("n: 2000", "n: 600").replace("block_size: 128", "block_size: 64"))
    run_pipeline(load_pipeline(tmp_path / "p.yaml"), output_dir=tmp_path / "o", progress="none")
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["classification"]["overall_accuracy"] > 0.9
