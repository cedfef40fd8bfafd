"""A scene autoencoder: a small convolutional network trained on patches of a stack; its encoder becomes a feature.

:func:`train_autoencoder` draws an exact uniform random sample of patches
from the stack out of core (the ``window`` feature kind through the pixel
sampler, so a patch near the scene edge is mirrored exactly as the feature
engine mirrors it), standardises each band, and trains a convolutional
autoencoder with PyTorch on the CPU (``pip install 'rastercore[autoencoder]'``):

* **encoder** ``Conv 3x3 (bands -> 16) - ReLU - Conv 3x3 /2 (16 -> 32) - ReLU - Conv 3x3 /2 (32 -> latent)``:
  one latent vector per 4 x 4 pixels (stride 4), each seeing a 19 x 19
  neighbourhood (receptive radius 4, so ``halo = 4 + 4 - 1 = 7`` by the
  rule of the ``onnx`` feature kind);
* **decoder** ``Upsample x2 - Conv 3x3 (latent -> 32) - ReLU - Upsample x2 - Conv 3x3 (32 -> 16) - ReLU - Conv 3x3 (16 -> bands)``.

The bottleneck is spatial: ``latent`` numbers stand for ``16 x bands``
input values, so the code cannot copy its input and must summarise the
neighbourhood (for single-look SAR, mostly the speckle-free local
backscatter and texture).  Training minimises the mean squared
reconstruction error with Adam, seeded, with early stopping on validation
patches held out by spatial blocks (``block_size`` pixels; whole blocks go
to validation, so neighbouring, overlapping patches never sit on both
sides).  The best epoch's encoder is exported to ONNX, and the feature spec
to use it -- ``{name: onnx, path: ..., bands: [...], halo: 7, stride: 4,
scale: [...], offset: [...]}`` -- is written beside it, so that
``rastercore features``, ``cluster``, ``sample`` and ``predict`` run it
tile by tile like any other feature (and tile by tile equals the whole
scene: see the ``onnx`` kind).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr
import yaml

from rastercore.checks import check_int
from rastercore.errors import ParameterError, SamplingError
from rastercore.progress import Progress, ProgressMode
from rastercore.store import check_output, writing

__all__ = ["AutoencoderResult", "sample_patches", "train_autoencoder", "check_autoencoder", "STRIDE", "HALO",
           "spec_path", "report_path"]

STRIDE = 4
"""The encoder's output is this many times coarser than the pixel grid (two stride-2 convolutions)."""

HALO = 7
"""The encoder's receptive radius (4) plus ``STRIDE - 1``: the ``halo`` of its ``onnx`` feature."""

_HIDDEN = (16, 32)
_MIN_PATCH = 2 * HALO + 2  # a patch must hold more than one receptive field


@dataclass
class AutoencoderResult:
    """What :func:`train_autoencoder` wrote and how training went.

    Attributes
    ----------
    encoder, spec, report : Path
        The ONNX encoder, the feature spec that runs it (YAML) and this
        report (JSON).
    feature_spec : dict
        The spec, as written.
    train_loss, validation_loss : list of float
        Mean squared reconstruction error (standardised units) per epoch.
    best_epoch : int
        The epoch (from 1) whose weights were kept.
    stopped_early : bool
        Whether the validation loss stopped improving before ``epochs``.
    n_train, n_validation : int
        Patches in each part.
    baseline_loss : float
        Validation error of predicting 0 (each band's mean) everywhere: a
        useful model is well below it.
    seconds : float
        Training time.
    """

    encoder: Path
    spec: Path
    report: Path
    feature_spec: dict
    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    n_train: int = 0
    n_validation: int = 0
    baseline_loss: float = float("nan")
    seconds: float = 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("encoder", "spec", "report"):
            out[key] = str(out[key])
        return out


def spec_path(encoder: str | os.PathLike) -> Path:
    """Where the feature spec of an encoder file goes: the same name with ``.yaml``."""
    return Path(encoder).with_suffix(".yaml")


def report_path(encoder: str | os.PathLike) -> Path:
    """Where the training report of an encoder file goes: the same name with ``.json``."""
    return Path(encoder).with_suffix(".json")


def check_autoencoder(*, latent: int = 8, patch: int = 16, n: int = 20_000, epochs: int = 30, patience: int = 5,
                      batch_size: int = 256, learning_rate: float = 1e-3, validation_fraction: float = 0.2,
                      block_size: int = 256) -> None:
    """Refuse impossible training options in one line each (before any work)."""
    for value, name, low in ((latent, "latent (--latent)", 1), (n, "n (-n), the number of patches", 20),
                             (epochs, "epochs (--epochs)", 1), (patience, "patience (--patience)", 1),
                             (batch_size, "batch_size (--batch-size)", 1), (block_size, "block_size (--block-size)", 1)):
        check_int(value, name, low)
    if check_int(patch, "patch (--patch)", _MIN_PATCH) % STRIDE:
        raise ParameterError(f"patch (--patch) must be a multiple of {STRIDE} (the encoder's stride), not {patch}.")
    for value, name in ((learning_rate, "learning_rate (--learning-rate)"), (validation_fraction, "validation_fraction")):
        if not (isinstance(value, (int, float)) and 0 < value < 1):
            raise ParameterError(f"{name} must be in (0, 1), not {value!r}.")


def _torch():
    try:
        return importlib.import_module("torch")
    except ImportError:
        raise ParameterError("training an autoencoder needs PyTorch: pip install 'rastercore[autoencoder]' "
                             "(for the CPU-only build, first: pip install torch --index-url "
                             "https://download.pytorch.org/whl/cpu).") from None


def sample_patches(stack: xr.DataArray, *, bands: list[str] | None = None, patch: int = 16, n: int = 20_000,
                   seed: int = 0) -> dict:
    """An exact uniform random sample of ``patch x patch`` windows of ``stack``, drawn out of core.

    The patches are the ``window`` feature (radius ``patch // 2``) of the
    pixels :func:`rastercore.unsupervised.sample_pixels` draws, cut to
    ``patch x patch`` (the sampled pixel at ``[patch // 2, patch // 2]``):
    the same patches for any tiling, mirrored at the scene edge, and none
    touching a NaN or nodata pixel.

    Returns
    -------
    dict
        ``patches`` ``(n, bands, patch, patch)`` float32, ``row`` and
        ``col`` of their centre pixels, ``bands`` (names).
    """
    from rastercore.stack import band_names
    from rastercore.unsupervised import sample_pixels

    names = band_names(stack)
    bands = list(names if bands is None else bands)
    missing = [b for b in bands if b not in names]
    if missing:
        raise ParameterError(f"the stack has no band {', '.join(map(repr, missing))}; its bands are "
                             f"{', '.join(names)}.")
    radius = patch // 2
    spec = [{"name": "window", "r": radius, "bands": bands}]
    rows = sample_pixels(stack, spec, n=n, seed=seed)
    side = 2 * radius + 1
    patches = rows["X"].reshape(len(rows["X"]), len(bands), side, side)[:, :, :patch, :patch]
    return {"patches": np.ascontiguousarray(patches), "row": rows["row"], "col": rows["col"], "bands": bands}


def _networks(torch, n_bands: int, latent: int):
    nn = torch.nn
    hidden_1, hidden_2 = _HIDDEN
    encoder = nn.Sequential(
        nn.Conv2d(n_bands, hidden_1, 3, padding=1), nn.ReLU(),
        nn.Conv2d(hidden_1, hidden_2, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(hidden_2, latent, 3, stride=2, padding=1),
    )
    decoder = nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(latent, hidden_2, 3, padding=1), nn.ReLU(),
        nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(hidden_2, hidden_1, 3, padding=1), nn.ReLU(),
        nn.Conv2d(hidden_1, n_bands, 3, padding=1),
    )
    return encoder, decoder


def _validation_rows(row: np.ndarray, col: np.ndarray, block_size: int, fraction: float, seed: int) -> np.ndarray:
    """Which patches are held out: those whose centre lies in a seeded random share of ``block_size`` blocks."""
    block = (row // block_size) * (int(col.max()) // block_size + 1) + col // block_size
    ids, where = np.unique(block, return_inverse=True)
    rng = np.random.default_rng([seed, 7])
    held = rng.random(len(ids)) < fraction
    if held.all() or not held.any():  # too few blocks to split that way: hold out whole blocks by count
        order = rng.permutation(len(ids))
        held = np.zeros(len(ids), bool)
        held[order[:max(1, min(len(ids) - 1, round(fraction * len(ids))))]] = True
    return held[where]


def train_autoencoder(
    stack: xr.DataArray,
    encoder_path: str | os.PathLike,
    *,
    bands: list[str] | None = None,
    latent: int = 8,
    patch: int = 16,
    n: int = 20_000,
    epochs: int = 30,
    patience: int = 5,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    validation_fraction: float = 0.2,
    block_size: int = 256,
    seed: int = 0,
    overwrite: bool = False,
    progress: ProgressMode = "auto",
) -> AutoencoderResult:
    """Train a convolutional autoencoder on patches of ``stack``; write its encoder (ONNX) and feature spec.

    Parameters
    ----------
    stack : xarray.DataArray
        ``(band, y, x)``, e.g. :func:`rastercore.open_stack`.
    encoder_path : path
        The ONNX file to write; the feature spec goes beside it
        (:func:`spec_path`, ``.yaml``) and the report too (:func:`report_path`, ``.json``).
    bands : list of str, optional
        Bands the network reads, in this order (default all).
    latent : int, default 8
        Latent features per 4 x 4 pixels: the encoder's output channels.
    patch : int, default 16
        Side of the training patches (a multiple of 4, at least 16).
    n : int, default 20000
        Patches drawn (fewer if the scene has fewer valid pixels).
    epochs, patience : int
        At most ``epochs`` passes; stop when the validation loss has not
        improved for ``patience`` epochs, keeping the best epoch's weights.
    batch_size, learning_rate : Adam's mini-batch size and step.
    validation_fraction : float, default 0.2
        Share of ``block_size``-pixel blocks whose patches are held out.
    seed : int
        Seeds the patch sample, the split, the initial weights and the
        batch order: the same seed gives the same encoder on one machine.
    overwrite : bool
        Replace existing outputs.

    Returns
    -------
    AutoencoderResult
    """
    check_autoencoder(latent=latent, patch=patch, n=n, epochs=epochs, patience=patience, batch_size=batch_size,
                      learning_rate=learning_rate, validation_fraction=validation_fraction, block_size=block_size)
    torch = _torch()
    encoder_path = Path(encoder_path).absolute()
    if encoder_path.suffix.lower() != ".onnx":
        raise ParameterError(f"the encoder is written as ONNX: name it *.onnx, not {encoder_path.name}.")
    check_output(encoder_path, spec_path(encoder_path), report_path(encoder_path), overwrite=overwrite)
    started = time.perf_counter()
    drawn = sample_patches(stack, bands=bands, patch=patch, n=n, seed=seed)
    patches = drawn["patches"]
    if len(patches) < 20:
        raise SamplingError(f"only {len(patches)} patches of {patch} x {patch} valid pixels in the stack; an "
                            "autoencoder needs at least 20: use a smaller --patch or a larger scene.")
    mean = patches.mean(axis=(0, 2, 3), dtype=np.float64)
    std = patches.std(axis=(0, 2, 3), dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    standardized = ((patches - mean[:, None, None]) / std[:, None, None]).astype(np.float32)
    held = _validation_rows(drawn["row"], drawn["col"], block_size, validation_fraction, seed)
    fitted = _fit(torch, standardized[~held], standardized[held], latent=latent, epochs=epochs, patience=patience,
                  batch_size=batch_size, learning_rate=learning_rate, seed=seed, progress=progress)
    spec = {"name": "onnx", "path": str(encoder_path), "bands": drawn["bands"], "halo": HALO, "stride": STRIDE,
            "scale": [float(1 / s) for s in std], "offset": [float(-m / s) for m, s in zip(mean, std)]}
    result = AutoencoderResult(encoder_path, spec_path(encoder_path), report_path(encoder_path), spec,
                               n_train=int((~held).sum()), n_validation=int(held.sum()),
                               seconds=time.perf_counter() - started, **fitted["history"])
    _export(torch, fitted["encoder"], len(drawn["bands"]), encoder_path, overwrite)
    with writing(result.spec, overwrite=overwrite) as partial:
        partial.write_text(f"# encoder of a scene autoencoder ({result.report.name}); rastercore "
                           f"{_version()}\n" + yaml.safe_dump({"features": [spec]}, sort_keys=False))
    with writing(result.report, overwrite=overwrite) as partial:
        partial.write_text(json.dumps(result.to_dict() | {"latent": latent, "patch": patch, "seed": seed,
                                                          "torch": torch.__version__}, indent=2))
    return result


def _version() -> str:
    from rastercore import __version__

    return __version__


def _fit(torch, train: np.ndarray, validation: np.ndarray, *, latent, epochs, patience, batch_size, learning_rate,
         seed, progress) -> dict:
    """Adam on the mean squared reconstruction error, early stopping on ``validation``; the best encoder."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    encoder, decoder = _networks(torch, train.shape[1], latent)
    model = torch.nn.Sequential(encoder, decoder)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    train_t, validation_t = torch.from_numpy(train), torch.from_numpy(validation)
    history = {"train_loss": [], "validation_loss": [], "best_epoch": 0, "stopped_early": False,
               "baseline_loss": float(np.mean(validation.astype(np.float64) ** 2))}
    best, best_state = math.inf, None
    with Progress("autoencoder", epochs, mode=progress, unit="epoch") as bar:
        for epoch in range(1, epochs + 1):
            model.train()
            total = 0.0
            for batch in torch.randperm(len(train_t), generator=generator).split(batch_size):
                x = train_t[batch]
                optimizer.zero_grad()
                loss = torch.nn.functional.mse_loss(model(x), x)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            history["train_loss"].append(total / len(train_t))
            history["validation_loss"].append(_loss(torch, model, validation_t, batch_size))
            bar.update()
            if history["validation_loss"][-1] < best:
                best, history["best_epoch"] = history["validation_loss"][-1], epoch
                best_state = {k: v.clone() for k, v in encoder.state_dict().items()}
            elif epoch - history["best_epoch"] >= patience:
                history["stopped_early"] = epoch < epochs
                break
    encoder.load_state_dict(best_state)
    return {"encoder": encoder.eval(), "history": history}


def _loss(torch, model, x, batch_size: int) -> float:
    model.eval()
    with torch.no_grad():
        total = sum(float(torch.nn.functional.mse_loss(model(part), part, reduction="sum")) for part in
                    x.split(batch_size))
    return total / x.numel()


def _export(torch, encoder, n_bands: int, path: Path, overwrite: bool) -> None:
    """The encoder as ONNX (opset 18, any input size divisible by the stride), written atomically."""
    height, width = torch.export.Dim("height"), torch.export.Dim("width")
    example = torch.zeros(1, n_bands, 8 * STRIDE, 8 * STRIDE)
    with writing(path, overwrite=overwrite) as partial, warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals, not on this network
        quiet = logging.getLogger("torch.onnx")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            torch.onnx.export(encoder, (example,), str(partial), input_names=["x"], output_names=["latent"],
                              dynamic_shapes=({2: STRIDE * height, 3: STRIDE * width},), dynamo=True,
                              opset_version=18, external_data=False)
        finally:
            quiet.setLevel(level)
