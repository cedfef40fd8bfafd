import json
import sys

import numpy as np
import pytest
import yaml

from rastercore import open_stack
from rastercore.cli import main
from rastercore.datasets import SYNTHETIC_THRESHOLD, synthetic_scene
from rastercore.errors import ParameterError, SamplingError
from rastercore.features import FeatureSpec, compute_features
from rastercore.store import write_tiles
from rastercore.unsupervised import fit_unsupervised, sample_pixels

torch = pytest.importorskip("torch", reason="the autoencoder extra: pip install 'rastercore[autoencoder]'")
ort = pytest.importorskip("onnxruntime")

from rastercore import autoencoder as ae  # noqa: E402  (after the skip: it is only useful with torch)

TRAIN = {"n": 600, "epochs": 3, "patience": 2, "batch_size": 64, "block_size": 32, "progress": "none"}


@pytest.fixture(scope="module")
def sar():
    """Log intensities of a 128 x 128 single-look synthetic SAR pair in 48-px tiles, and its classes."""
    ds = synthetic_scene((128, 128), seed=2, chunks=48)
    classes = (ds["target"].values >= SYNTHETIC_THRESHOLD).astype(int)
    return np.log(ds["sar"]), classes


@pytest.fixture(scope="module")
def trained(sar, tmp_path_factory):
    path = tmp_path_factory.mktemp("ae") / "encoder.onnx"
    return ae.train_autoencoder(sar[0], path, seed=4, **TRAIN)


def test_patches_are_the_scene_around_each_sampled_pixel_mirrored_at_the_edge(sar):
    stack = sar[0]
    drawn = ae.sample_patches(stack, patch=16, n=50, seed=1)
    assert drawn["patches"].shape == (50, 2, 16, 16) and drawn["bands"] == ["HH", "HV"]
    pixels = sample_pixels(stack, [{"name": "window", "r": 8}], n=50, seed=1)
    np.testing.assert_array_equal(drawn["row"], pixels["row"])
    padded = np.pad(stack.values, ((0, 0), (8, 8), (8, 8)), mode="symmetric")  # scipy.ndimage's 'reflect'
    for k, (r, c) in enumerate(zip(drawn["row"], drawn["col"])):
        np.testing.assert_array_equal(drawn["patches"][k], padded[:, r:r + 16, c:c + 16])

    other = ae.sample_patches(stack.chunk({"y": 100, "x": 30}), patch=16, n=50, seed=1)  # any tiling
    np.testing.assert_array_equal(other["patches"], drawn["patches"])
    one_band = ae.sample_patches(stack, bands=["HV"], patch=16, n=50, seed=1)
    np.testing.assert_array_equal(one_band["patches"][:, 0], drawn["patches"][:, 1])


def test_training_writes_the_encoder_its_spec_and_report(trained):
    assert trained.encoder.exists() and trained.spec.exists() and trained.report.exists()
    assert not list(trained.encoder.parent.glob("*.partial"))
    assert len(trained.train_loss) == len(trained.validation_loss) == 3  # patience 2 cannot stop 3 epochs early
    assert 1 <= trained.best_epoch <= 3
    assert min(trained.validation_loss) < trained.baseline_loss  # it learned more than each band's mean
    assert trained.n_train > 0 and trained.n_validation > 0 and trained.n_train + trained.n_validation <= 600
    written = yaml.safe_load(trained.spec.read_text())
    assert written == {"features": [trained.feature_spec]}
    spec = trained.feature_spec
    assert spec["halo"] == ae.HALO and spec["stride"] == ae.STRIDE and spec["bands"] == ["HH", "HV"]
    report = json.loads(trained.report.read_text())
    assert report["best_epoch"] == trained.best_epoch and report["torch"] == torch.__version__
    # the spec is valid as it stands: making it probes the network's reach, which must fit the halo
    assert FeatureSpec.from_file(trained.spec).feature_names(["HH", "HV"]) == [
        f"onnx(path={trained.encoder},output=latent)/c{i}" for i in range(8)]


def test_the_exported_encoder_is_the_torch_encoder(tmp_path):
    torch.manual_seed(0)
    encoder, _ = ae._networks(torch, 3, 5)
    encoder.eval()
    path = tmp_path / "e.onnx"
    ae._export(torch, encoder, 3, path, overwrite=False)
    x = np.random.default_rng(0).normal(size=(1, 3, 44, 28)).astype(np.float32)  # any size divisible by 4
    with torch.no_grad():
        expected = encoder(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert got.shape == (1, 5, 11, 7)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_the_encoder_as_a_feature_is_seamless_tile_by_tile(trained, sar):
    stack = sar[0]
    tiled = compute_features(stack, FeatureSpec.from_file(trained.spec)).values
    whole = compute_features(stack.chunk({"y": 128, "x": 128}), FeatureSpec.from_file(trained.spec)).values
    assert tiled.shape == (8, 128, 128) and np.isfinite(tiled).all()
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-5)


def test_the_same_seed_trains_the_same_encoder(trained, sar, tmp_path):
    again = ae.train_autoencoder(sar[0], tmp_path / "again.onnx", seed=4, **TRAIN)
    assert again.validation_loss == trained.validation_loss and again.feature_spec["scale"] == trained.feature_spec["scale"]


def test_latent_features_separate_the_classes_better_than_raw_bands(sar, trained):
    """Single-look speckle: the raw bands barely tell the classes apart; the encoder summarises 4 x 4
    neighbourhoods.  A linear classifier fitted on the scene's left half and scored on its right half
    is the probe (k-means on two clusters was: its ARI moved from 0.05 to 0.25 with the training seed)."""
    from sklearn.linear_model import LogisticRegression

    from rastercore.features import compute_features

    stack, classes = sar

    def probe(spec):
        F = np.asarray(compute_features(stack, spec).values)
        half = F.shape[2] // 2
        left, right = (F[:, :, s].reshape(F.shape[0], -1).T for s in (slice(None, half), slice(half, None)))
        model = LogisticRegression(max_iter=1000).fit(left, classes[:, :half].ravel())
        return model.score(right, classes[:, half:].ravel())

    latent, raw = probe(FeatureSpec.from_file(trained.spec)), probe([{"name": "window", "r": 0}])
    assert latent > raw + 0.08, (latent, raw)


def test_refusals_come_before_any_work(sar, tmp_path):
    stack = sar[0]
    with pytest.raises(ParameterError, match="multiple of 4"):
        ae.train_autoencoder(stack, tmp_path / "e.onnx", patch=18)
    with pytest.raises(ParameterError, match="name it \\*.onnx"):
        ae.train_autoencoder(stack, tmp_path / "e.pt")
    with pytest.raises(ParameterError, match="no band 'VV'"):
        ae.train_autoencoder(stack, tmp_path / "e.onnx", bands=["VV"], **TRAIN)
    tiny = stack.isel(y=slice(0, 4), x=slice(0, 4))
    with pytest.raises(SamplingError, match="only 16 patches"):
        ae.train_autoencoder(tiny, tmp_path / "e.onnx", **TRAIN)
    assert not list(tmp_path.iterdir())


def test_without_torch_the_message_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ParameterError, match=r"pip install 'rastercore\[autoencoder\]'"):
        ae._torch()


def test_cli_trains_then_clusters_the_latent_features(sar, tmp_path, capsys):
    stack = tmp_path / "stack.zarr"
    write_tiles(sar[0], stack, progress="none")
    encoder = tmp_path / "enc.onnx"
    args = ["autoencoder", str(stack), "-o", str(encoder), "-n", "300", "--epochs", "2", "--batch-size", "64",
            "--block-size", "32", "--scheduler", "sync", "--progress", "none"]
    assert main(args) == 0
    assert "best epoch" in capsys.readouterr().out
    assert main(args) == 2  # outputs exist
    assert "already exists" in capsys.readouterr().err
    assert main(["cluster", str(stack), "-o", str(tmp_path / "c.zarr"), "-k", "2", "--spec",
                 str(tmp_path / "enc.yaml"), "-n", "500", "--scheduler", "sync", "--progress", "none"]) == 0
    assert open_stack(tmp_path / "c.zarr").shape == (1, 128, 128)
    assert main(["autoencoder", str(stack), "-o", str(tmp_path / "x.onnx"), "--patch", "18"]) == 2
    err = capsys.readouterr().err
    assert "patch (--patch) must be a multiple of 4" in err and "Traceback" not in err


def test_a_pipeline_trains_the_encoder_and_clusters_with_its_spec_file(sar, tmp_path):
    from rastercore.pipeline import load_pipeline, run_pipeline

    out, stack = tmp_path / "out", str(tmp_path / "stack.zarr")
    write_tiles(sar[0], stack, progress="none")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({
        "name": "ae", "output_dir": str(out), "steps": [
            {"kind": "autoencoder", "stack": stack, "output": "enc.onnx", "n": 300, "epochs": 2,
             "batch_size": 64, "block_size": 32},
            {"kind": "cluster", "stack": stack, "output": "clusters.zarr", "features": "enc.yaml",
             "n_clusters": 2, "n": 500},
            {"kind": "features", "stack": stack, "output": "latent.zarr", "features": "enc.yaml"},
        ]}))
    run_pipeline(load_pipeline(tmp_path / "p.yaml"), progress="none")
    assert open_stack(out / "clusters.zarr").shape == (1, 128, 128)
    assert yaml.safe_load((out / "enc.yaml").read_text())["features"][0]["path"] == str(out / "enc.onnx")
    assert open_stack(out / "latent.zarr").shape == (8, 128, 128)


def test_a_spec_file_names_its_network_relative_to_itself(trained, tmp_path, monkeypatch):
    relative = dict(trained.feature_spec, path=trained.encoder.name)
    spec_file = trained.encoder.parent / "relative.yaml"
    spec_file.write_text(yaml.safe_dump([relative]))
    monkeypatch.chdir(tmp_path)  # elsewhere: the file's own directory decides, not the working directory
    assert FeatureSpec.from_file(spec_file).to_list()[0]["path"] == str(trained.encoder)
