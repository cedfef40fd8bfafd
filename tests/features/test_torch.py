"""The ``torch`` feature kind: tile by tile equals the module on the whole (mirror-padded) image.

The modules are built here with fixed random weights and saved with
``torch.export.save`` (``.pt2``) or ``torch.jit.save`` (TorchScript); the
reference runs the same module with PyTorch on the whole image padded as
rastercore pads the scene edge.
"""

from __future__ import annotations

import sys
import warnings

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from numpy.testing import assert_allclose

torch = pytest.importorskip("torch", reason="the torchscript kind runs with PyTorch")

from rastercore.errors import FeatureSpecError  # noqa: E402
from rastercore.features import FeatureSpec, compute_features  # noqa: E402

SHAPE = (90, 110)


class TwoHeads(torch.nn.Module):
    """Conv 3x3 (stride) -> ReLU -> Conv 3x3, returning (features, their negation): receptive radius 2 or 4."""

    def __init__(self, n_in: int, channels: int, stride: int):
        super().__init__()
        self.first = torch.nn.Conv2d(n_in, 4, 3, stride=stride, padding=1)
        self.second = torch.nn.Conv2d(4, channels, 3, padding=1)

    def forward(self, x):
        y = self.second(torch.relu(self.first(x)))
        return y, -y


def save_module(path, *, n_in=2, channels=3, stride=1, seed=0, heads=False):
    """Save a module with fixed random weights: ``.pt2`` with torch.export, any other name as TorchScript.

    Returns the path (str) and the module itself, the reference.
    """
    torch.manual_seed(seed)
    module = TwoHeads(n_in, channels, stride)
    if not heads:
        module = torch.nn.Sequential(module.first, torch.nn.ReLU(), module.second)
    module.eval()
    if str(path).endswith(".pt2"):
        height, width = torch.export.Dim("height"), torch.export.Dim("width")
        example = torch.zeros(1, n_in, 8 * stride, 8 * stride)
        program = torch.export.export(module, (example,), dynamic_shapes=({2: stride * height, 3: stride * width},))
        torch.export.save(program, str(path))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(torch.jit.script(module), str(path))
    return str(path), module


def whole_image(values, module, halo, *, stride=1, head=None):
    """The module on the whole image: mirror-padded by ``halo`` (and to a multiple of ``stride``), cropped back."""
    _, height, width = values.shape
    extra_y, extra_x = -(height + 2 * halo) % stride, -(width + 2 * halo) % stride
    padded = np.pad(values, ((0, 0), (halo, halo + extra_y), (halo, halo + extra_x)), mode="symmetric")
    with torch.inference_mode():
        y = module(torch.from_numpy(padded[None].astype(np.float32)))
    y = (y if head is None else y[head])[0].numpy()
    y = y.repeat(stride, axis=1).repeat(stride, axis=2)
    return y[:, halo:halo + height, halo:halo + width]


def make_stack(values, chunks):
    return xr.DataArray(da.from_array(values, chunks=(2,) + tuple(chunks)), dims=("band", "y", "x"),
                        coords={"band": ["HH", "HV"]})


@pytest.fixture(scope="module")
def values():
    return np.random.default_rng(3).random((2,) + SHAPE).astype(np.float32)


@pytest.mark.parametrize("name", ["net.pt2", "net.pt"])
@pytest.mark.parametrize("stride,halo,chunks", [(1, 2, (40, 40)), (2, 4, (37, 45)), (2, 5, (29, 110))])
def test_tiles_equal_whole_image_inference(values, tmp_path, name, stride, halo, chunks):
    path, module = save_module(tmp_path / name, stride=stride)
    spec = [{"name": "torch", "path": path, "halo": halo, "stride": stride}]
    feats = compute_features(make_stack(values, chunks), spec)
    assert list(feats.feature.values) == [f"torch(path={path},output=output)/c{i}" for i in range(3)]
    assert_allclose(feats.values, whole_image(values, module, halo, stride=stride), rtol=1e-5, atol=1e-6)


def test_a_tuple_output_is_chosen_by_its_index(values, tmp_path):
    path, module = save_module(tmp_path / "heads.pt", heads=True, channels=2)
    spec = FeatureSpec([{"name": "torch", "path": path, "halo": 2, "output": "1"}])
    assert spec.to_list()[0]["channels"] == 2
    feats = compute_features(make_stack(values, (45, 55)), spec)
    assert_allclose(feats.values, whole_image(values, module, 2, head=1), rtol=1e-5, atol=1e-6)
    with pytest.raises(FeatureSpecError, match=r"has no output '2'; its outputs: \['0', '1'\]"):
        FeatureSpec([{"name": "torch", "path": path, "halo": 2, "output": "2"}])


def test_refusals_name_the_file_and_what_to_do(tmp_path):
    path, _ = save_module(tmp_path / "net.pt2", stride=2)
    with pytest.raises(FeatureSpecError, match=r"receptive field reaches 4 px but 'halo' is 3; .*set halo: 4"):
        FeatureSpec([{"name": "torch", "path": path, "halo": 3, "stride": 2}])
    with pytest.raises(FeatureSpecError, match="returned .* set stride: 2"):
        FeatureSpec([{"name": "torch", "path": path, "halo": 4}])
    with pytest.raises(FeatureSpecError, match=r"takes 2 input channels but reads 3 band\(s\)"):
        FeatureSpec([{"name": "torch", "path": path, "halo": 4, "stride": 2, "bands": ["a", "b", "c"]}])
    with pytest.raises(FeatureSpecError, match=r"model file .*missing.pt does not exist"):
        FeatureSpec([{"name": "torch", "path": str(tmp_path / "missing.pt"), "halo": 1}])
    (tmp_path / "junk.pt").write_bytes(b"not a module")
    with pytest.raises(FeatureSpecError, match=r"cannot be loaded by torch.jit.load .*torch.jit.save"):
        FeatureSpec([{"name": "torch", "path": str(tmp_path / "junk.pt"), "halo": 1}])
    (tmp_path / "junk.pt2").write_bytes(b"not a program")
    with pytest.raises(FeatureSpecError, match=r"cannot be loaded by torch.export.load"):
        FeatureSpec([{"name": "torch", "path": str(tmp_path / "junk.pt2"), "halo": 1}])


def test_without_torch_the_message_says_what_to_install(tmp_path, monkeypatch):
    path, _ = save_module(tmp_path / "net.pt2")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(FeatureSpecError, match=r"needs PyTorch: pip install torch"):
        FeatureSpec([{"name": "torch", "path": path, "halo": 2}])
