"""The ``onnx`` and ``torch`` feature kinds: a fully convolutional network run per tile.

``onnx`` runs an ``.onnx`` file with ONNX Runtime (``rastercore[deep]``);
``torch`` runs a PyTorch module on the CPU, when PyTorch is installed: a
``.pt2`` file of ``torch.export.save`` (exported with dynamic height and
width) or a TorchScript file of ``torch.jit.save`` (any other name).
Everything below holds for both (the examples say ``onnx``); a PyTorch
module's input channels are read from its first 4-D weight (or the
``bands`` given) and its outputs by running it once on a small input.

A spec entry such as ``{name: onnx, path: net.onnx, bands: [red, green,
blue], halo: 8}`` feeds the network the chosen bands of a tile plus its
halo as one float32 ``(1, bands, y, x)`` batch, each band first mapped to
``x * scale + offset`` (the network's normalisation), and returns the
channels of one output as features ``onnx(path=...,output=...)/c0`` ...

Seamless tiling
    ``halo`` is the network's receptive-field radius: an output pixel may
    depend only on inputs at most ``halo`` pixels away.  Each tile is
    extended by it; at the scene edge the input is mirrored
    (``numpy.pad(mode="symmetric")``, scipy.ndimage's ``'reflect'``, as for
    every other feature).  Tile by tile then equals running the network on
    the whole scene padded by ``halo`` on each side.  When the spec is made,
    the network is probed (one input pixel changed, per stride phase) and a
    ``halo`` below the reach measured is refused.
Stride
    A network whose output is ``stride`` times coarser than its input has
    each output pixel repeated ``stride x stride`` times.  Its coarse grid
    is anchored to the scene, not to the tile: rastercore widens each
    tile's input (to a multiple of ``stride``, starting ``halo`` pixels
    before a multiple of ``stride`` in scene coordinates), so the result is
    that of the whole scene padded by ``halo`` on each side, then by the
    fewest further mirrored rows and columns at the bottom and right that
    make it a multiple of ``stride``.  Any tiling is seamless, uneven tiles
    included.  The output must be exactly the input's size divided by
    ``stride`` (convolutions padded 'same').
Nodata
    An output pixel is NaN when any input pixel within ``halo`` of it is
    NaN (nodata), as for the other kinds; NaN inputs reach the network as
    0 after ``scale`` and ``offset``.  Non-finite values the network itself
    produces from finite inputs are an error, never written.
Sessions
    One ``onnxruntime.InferenceSession`` (or PyTorch module in eval mode)
    per process and model file, created on first use (the spec holds only the path, relative to the
    working directory, so it pickles for dask workers).  Each runs on the CPU with
    ``$RASTERCORE_ONNX_THREADS`` intra-op threads (default 1: dask already
    computes one tile per worker thread); a PyTorch module runs with
    PyTorch's own thread setting.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import FeatureSpecError
from . import _filters as F
from ._registry import REQUIRED, FeatureKind, Param, register

__all__ = ["THREADS_ENV", "onnx_session", "NETWORK_KINDS"]

NETWORK_KINDS = ("onnx", "torch")
"""The feature kinds that run a network: the file format decides the runtime."""

THREADS_ENV = "RASTERCORE_ONNX_THREADS"
"""Environment variable: intra-op threads of each ONNX Runtime session (default 1)."""

_SESSIONS: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def _where(kind: str, p: dict) -> str:
    return f"feature '{kind}' ({p['path']})"


def _threads() -> int:
    value = os.environ.get(THREADS_ENV, "1")
    if not value.isdigit() or int(value) < 1:
        raise FeatureSpecError(f"${THREADS_ENV} must be a whole number >= 1, got {value!r}")
    return int(value)


def _runtime():
    try:
        import onnxruntime
    except ImportError:
        raise FeatureSpecError("feature 'onnx' needs ONNX Runtime: pip install 'rastercore[deep]'") from None
    return onnxruntime


def onnx_session(path: str):
    """The process's ONNX Runtime session of the model file ``path`` (created on first use).

    Parameters
    ----------
    path : str
        Path of an ``.onnx`` file (relative to the working directory; a spec
        file's relative paths are made relative to the file when it is read).

    Returns
    -------
    onnxruntime.InferenceSession
        On the CPU execution provider, with ``$RASTERCORE_ONNX_THREADS``
        intra-op threads (default 1).  A file changed since is reopened.

    Raises
    ------
    FeatureSpecError
        ONNX Runtime is not installed, or the file is missing or not a
        model ONNX Runtime can load.
    """
    return _network("onnx", path).session


def _network(kind: str, path: str) -> "_OnnxNet | _TorchNet":
    """The process's loaded network of ``kind`` from the file ``path`` (loaded on first use, reloaded if changed)."""
    runtime = _runtime() if kind == "onnx" else _torch()
    real = os.path.realpath(os.path.expanduser(path))
    try:
        stat = os.stat(real)
    except OSError:
        suffix = ".onnx" if kind == "onnx" else ".pt2 (torch.export.save) or TorchScript (torch.jit.save)"
        raise FeatureSpecError(f"feature '{kind}': model file {path} does not exist; give the path of an {suffix} "
                               "file (relative to the working directory, or to the spec file) in 'path'") from None
    key = (kind, real, stat.st_mtime_ns, stat.st_size, _threads())
    with _LOCK:
        net = _SESSIONS.get(key)
        if net is None:
            net = _OnnxNet(_open(runtime, real, path, key[4])) if kind == "onnx" else _TorchNet.load(
                runtime, real, path)
            for old in [k for k in _SESSIONS if k[:2] == key[:2]]:
                del _SESSIONS[old]
            _SESSIONS[key] = net
    return net


def _torch():
    try:
        import torch
    except ImportError:
        raise FeatureSpecError("feature 'torch' needs PyTorch: pip install torch (the CPU build: pip install "
                               "torch --index-url https://download.pytorch.org/whl/cpu), or export the network to "
                               "ONNX and use the 'onnx' kind") from None
    return torch


def _open(ort, real: str, path: str, threads: int):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: no optimiser chatter on every worker
    try:
        return ort.InferenceSession(real, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - ONNX Runtime's errors derive from Exception only
        raise FeatureSpecError(f"feature 'onnx': model file {path} cannot be loaded by ONNX Runtime "
                               f"({_reason(err)}); give an .onnx file exported with torch.onnx.export or "
                               "similar") from None


def _reason(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class _OnnxNet:
    """An ONNX Runtime session, seen as rastercore uses a network: one input, named outputs, run."""

    runtime = "ONNX Runtime"

    def __init__(self, session):
        self.session = session

    def input(self, where: str) -> tuple[str, int | None]:
        """Name of the one input and its number of channels (None if not fixed), or raise."""
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise FeatureSpecError(f"{where} has {len(inputs)} inputs {[i.name for i in inputs]}; rastercore "
                                   "feeds one (1, bands, y, x) float32 tensor")
        first = inputs[0]
        if first.type != "tensor(float)":
            raise FeatureSpecError(f"{where}: input {first.name!r} is {first.type}; export the network with a "
                                   "float32 input")
        if first.shape and len(first.shape) != 4:
            raise FeatureSpecError(f"{where}: input {first.name!r} has shape {list(first.shape)}; rastercore "
                                   "feeds a 4-D (1, bands, y, x) tensor")
        if first.shape and all(isinstance(d, int) for d in first.shape[2:]):
            raise FeatureSpecError(f"{where}: input {first.name!r} has a fixed size {list(first.shape)}; export "
                                   "the network with dynamic height and width (torch.onnx.export(..., "
                                   "dynamic_axes=...))")
        return first.name, first.shape[1] if first.shape and isinstance(first.shape[1], int) else None

    def outputs(self, where: str, n_in: int | None, stride: int) -> dict[str, list | None]:
        """Each output's declared shape (None or partly symbolic where the model leaves it open)."""
        return {o.name: o.shape for o in self.session.get_outputs()}

    def run(self, where: str, output: str, x: np.ndarray) -> np.ndarray:
        name, _ = self.input(where)
        return np.asarray(self.session.run([output], {name: x[np.newaxis]})[0])


class _TorchNet:
    """A PyTorch module on the CPU (exported program or TorchScript), seen as rastercore uses a network."""

    runtime = "PyTorch"

    def __init__(self, torch, module):
        self.torch, self.module = torch, module

    @classmethod
    def load(cls, torch, real: str, path: str) -> "_TorchNet":
        exported = real.endswith(".pt2")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated, not broken
                module = torch.export.load(real).module() if exported else torch.jit.load(real, map_location="cpu")
        except Exception as err:  # noqa: BLE001 - torch raises RuntimeError and its own types
            how = "torch.export.load" if exported else "torch.jit.load"
            raise FeatureSpecError(f"feature 'torch': model file {path} cannot be loaded by {how} ({_reason(err)}); "
                                   "give a .pt2 file of torch.export.save or a TorchScript file of torch.jit.save "
                                   "(or use the 'onnx' kind for an .onnx file)") from None
        if not exported:
            module = module.eval()  # an exported program is in eval mode as it was exported
        return cls(torch, module)

    def input(self, where: str) -> tuple[str, int | None]:
        """The input's channels, from the module's first 4-D weight (a convolution's), if it has one."""
        for weight in self.module.parameters():
            if weight.dim() == 4:
                return "x", int(weight.shape[1])
        return "x", None

    def outputs(self, where: str, n_in: int | None, stride: int) -> dict[str, list | None]:
        """Each output's shape on a small probe input: ``output`` for a tensor, keys or indices otherwise."""
        if n_in is None:
            raise FeatureSpecError(f"{where}: the module's input channels are not known; list the bands it "
                                   "reads, in order: bands: [...]")
        size = 8 * stride
        result = self._forward(where, np.zeros((n_in, size, size), np.float32))
        return {name: list(value.shape) for name, value in _named_outputs(result).items()}

    def run(self, where: str, output: str, x: np.ndarray) -> np.ndarray:
        return _named_outputs(self._forward(where, x))[output].numpy()

    def _forward(self, where: str, x: np.ndarray):
        torch = self.torch
        with torch.inference_mode():
            try:
                return self.module(torch.from_numpy(np.ascontiguousarray(x[np.newaxis])))
            except Exception as err:  # noqa: BLE001 - the module may raise anything
                raise FeatureSpecError(f"{where}: the module failed on a {(1, *x.shape)} input ({_reason(err)})"
                                       ) from None


def _named_outputs(result) -> dict:
    """A module's result as named tensors: ``output`` alone, a dict's keys, or a sequence's indices ``0``, ``1`` ..."""
    if isinstance(result, dict):
        return {str(k): v for k, v in result.items()}
    if isinstance(result, (tuple, list)):
        return {str(i): v for i, v in enumerate(result)}
    return {"output": result}


# -- spec resolution ----------------------------------------------------------------------


def _resolve(kind: str, p: dict) -> dict:
    where = _where(kind, p)
    net = _network(kind, p["path"])
    _, n_in = net.input(where)
    probe_in = n_in if n_in is not None or p["bands"] is None else len(p["bands"])  # a mismatch is refused below
    outputs = net.outputs(where, probe_in, p["stride"])
    if p["output"] is None:
        p["output"] = next(iter(outputs))
    elif p["output"] not in outputs:
        raise FeatureSpecError(f"{where} has no output {p['output']!r}; its outputs: {list(outputs)}")
    shape = outputs[p["output"]]
    if shape and len(shape) != 4:
        raise FeatureSpecError(f"{where}: output {p['output']!r} is {len(shape)}-D {list(shape)}; rastercore "
                               "needs a 4-D (1, channels, y, x) output: choose another with 'output'")
    fixed = shape[1] if shape and isinstance(shape[1], int) else None
    if p["channels"] is None and fixed is None:
        raise FeatureSpecError(f"{where}: the number of channels of output {p['output']!r} is not fixed in the "
                               f"model (shape {list(shape) if shape else 'unknown'}); give it: channels: <n>")
    if p["channels"] is not None and fixed is not None and p["channels"] != fixed:
        raise FeatureSpecError(f"{where}: 'channels' is {p['channels']} but output {p['output']!r} has "
                               f"{fixed}; drop 'channels' or correct it")
    p["channels"] = p["channels"] if p["channels"] is not None else fixed
    if p["bands"] is not None:
        _check_bands(kind, p, p["bands"])
    elif n_in is not None:
        _check_receptive_field(kind, p, n_in)
    return p


def _check_bands(kind: str, p: dict, bands: list[str]) -> None:
    _, wanted = _network(kind, p["path"]).input(_where(kind, p))
    if wanted is not None and wanted != len(bands):
        raise FeatureSpecError(f"{_where(kind, p)} takes {wanted} input channels but reads {len(bands)} band(s) "
                               f"{list(bands)}; list the {wanted} bands it expects, in order: bands: [...]")
    for name in ("scale", "offset"):
        value = p[name]
        if isinstance(value, list) and len(value) != len(bands):
            raise FeatureSpecError(f"{_where(kind, p)}: '{name}' has {len(value)} values for {len(bands)} "
                                   f"band(s) {list(bands)}; give one number, or one per band")
    _check_receptive_field(kind, p, len(bands))


_PROBED: set[tuple] = set()


def _changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Output pixels where any channel changed; non-finite values (a network may give NaN on random input) tell nothing."""
    with np.errstate(invalid="ignore"):
        diff = np.abs(after - before)[0]
    diff[~np.isfinite(diff)] = 0.0
    finite = np.abs(before[np.isfinite(before)])
    return diff.max(axis=0) > 1e-6 * ((finite.max() if finite.size else 0.0) + 1.0)


def _check_receptive_field(kind: str, p: dict, n_in: int) -> None:
    """Refuse a ``halo`` smaller than the receptive field measured on a probe (once per process and model).

    The probe: a random input and, for each phase of the stride, a copy with
    one pixel changed; every output pixel that changes lies within the
    receptive field of that pixel.  This is a lower bound, never a false
    alarm; the probe also checks the output's channels and ``stride``.
    """
    real = os.path.realpath(os.path.expanduser(p["path"]))
    key = (kind, real, os.stat(real).st_mtime_ns, n_in, p["output"], p["halo"], p["stride"], p["channels"])
    if key in _PROBED:
        return
    halo, stride = p["halo"], p["stride"]
    size = math.ceil((2 * halo + 4 * stride + 16) / stride) * stride
    x = np.random.default_rng(0).standard_normal((n_in, size, size)).astype(np.float32)
    base = _run(kind, p, x)
    _check_output(kind, p, base, (size, size))
    reach = 0
    for phase in range(stride):
        centre = size // 2 // stride * stride + phase
        moved = x.copy()
        moved[:, centre, centre] += 1.0
        ys, xs = np.nonzero(_changed(base, _run(kind, p, moved)).repeat(stride, axis=0).repeat(stride, axis=1))
        if ys.size:
            reach = max(reach, int(np.abs(ys - centre).max()), int(np.abs(xs - centre).max()))
    if reach > halo:
        at_least = "at least " if reach >= size // 2 - stride else ""
        raise FeatureSpecError(f"{_where(kind, p)}: the network's receptive field reaches {at_least}{reach} px but "
                               f"'halo' is {halo}; tiles would show seams: set halo: {reach} (or more)")
    _PROBED.add(key)


# -- per tile -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Span:
    """One axis of the network's input: which block pixels, how much mirroring, where the tile's pixels start."""

    take: slice
    pad: tuple[int, int]
    first: int

    @property
    def size(self) -> int:
        return self.take.stop - self.take.start + sum(self.pad)


def _span(inner: slice, length: int, origin: int, halo: int, stride: int) -> _Span:
    """The input span covering ``inner`` (block coordinates) with ``halo``, aligned to the scene's coarse grid.

    The span starts ``halo`` before a multiple of ``stride`` in scene
    coordinates and its size is a multiple of ``stride``, so whichever tile
    it serves, output pixel ``k`` covers the same scene pixels.  Pixels
    beyond the block are mirrored: exact at the scene edge (where a block
    with less halo than ``halo`` ends); elsewhere they lie outside the
    receptive field of the tile's pixels and do not matter.
    """
    start = (origin + inner.start) // stride * stride - halo - origin
    stop = start + math.ceil((inner.stop + halo - start) / stride) * stride
    take = slice(max(start, 0), min(stop, length))
    return _Span(take, (take.start - start, stop - take.stop), inner.start - start)


def _origin(kind: str, ctx, p: dict) -> tuple[int, int]:
    if ctx.origin is not None:
        return ctx.origin
    if p["stride"] > 1 and ctx.cropped:
        raise FeatureSpecError(f"{_where(kind, p)} has stride {p['stride']}: its values depend on the position in the "
                               "scene; give the block's scene (row, col) as features_for_block(..., origin=...)")
    return 0, 0


def _scaled(p: dict, n_bands: int, name: str) -> np.ndarray:
    value = p[name]
    values = value if isinstance(value, list) else [value] * n_bands
    return np.asarray(values, np.float32).reshape(-1, 1, 1)


def _net_input(ctx, bands: list[str], rows: _Span, cols: _Span) -> np.ndarray:
    """``(bands, y, x)`` float32 input of the spans, mirrored beyond the block; NaN kept."""
    x = np.empty((len(bands), rows.size, cols.size), np.float32)
    for k, band in enumerate(bands):
        part = ctx.plane(band)[rows.take, cols.take]
        x[k] = np.pad(part, (rows.pad, cols.pad), mode="symmetric") if any(rows.pad + cols.pad) else part
    return x


def _run(kind: str, p: dict, x: np.ndarray) -> np.ndarray:
    net = _network(kind, p["path"])
    try:
        return net.run(_where(kind, p), p["output"], x)
    except FeatureSpecError:
        raise
    except Exception as err:  # noqa: BLE001 - ONNX Runtime's errors derive from Exception only
        raise FeatureSpecError(f"{_where(kind, p)}: {net.runtime} failed on a {(1, *x.shape)} input "
                               f"({_reason(err)})") from None


def _check_output(kind: str, p: dict, y: np.ndarray, shape_in: tuple[int, int]) -> None:
    s = p["stride"]
    if y.ndim != 4 or y.shape[:2] != (1, p["channels"]):
        raise FeatureSpecError(f"{_where(kind, p)}: output {p['output']!r} has shape {y.shape}; rastercore expects "
                               f"(1, {p['channels']}, y, x)")
    expected = (shape_in[0] // s, shape_in[1] // s)
    if y.shape[2:] == expected:
        return
    (hi, wi), (ho, wo) = shape_in, y.shape[2:]
    hint = ("pad its convolutions 'same' so that the output is the input's size divided by an integer stride")
    if ho and wo and hi % ho == 0 and wi % wo == 0 and hi // ho == wi // wo:
        hint = f"set stride: {hi // ho}"
    raise FeatureSpecError(f"{_where(kind, p)}: the network returned {ho} x {wo} pixels for a {hi} x {wi} input with "
                           f"stride {s} (expected {expected[0]} x {expected[1]}); {hint}")


def _upsampled(y: np.ndarray, stride: int, rows: _Span, cols: _Span, shape: tuple[int, int]) -> np.ndarray:
    """``(channels, *shape)`` view or copy of the output at the tile's pixels, coarse pixels repeated."""
    r = (np.arange(shape[0]) + rows.first) // stride
    c = (np.arange(shape[1]) + cols.first) // stride
    if stride == 1:
        return y[:, r[0]:r[-1] + 1, c[0]:c[-1] + 1]
    return y[:, r][:, :, c]


def _nodata_reach(bad: np.ndarray, halo: int, rows: _Span, cols: _Span, shape: tuple[int, int]) -> np.ndarray:
    """Tile pixels with a NaN input within ``halo`` (a window max of the NaN mask)."""
    near = F.extremum(bad.astype(np.float32), 2 * halo + 1, is_max=True) if halo else bad
    return near[rows.first:rows.first + shape[0], cols.first:cols.first + shape[1]] > 0


def _network_into(kind: str, ctx, p: dict, _band, out: np.ndarray) -> None:
    bands = p["bands"] or ctx.band_names
    halo, stride = p["halo"], p["stride"]
    (row0, col0), inner = _origin(kind, ctx, p), ctx.inner
    rows = _span(inner[0], ctx.shape[0], row0, halo, stride)
    cols = _span(inner[1], ctx.shape[1], col0, halo, stride)
    x = _net_input(ctx, bands, rows, cols)
    bad = np.isnan(x).any(axis=0)
    x *= _scaled(p, len(bands), "scale")
    x += _scaled(p, len(bands), "offset")
    x[:, bad] = 0.0
    y = _run(kind, p, x)
    _check_output(kind, p, y, x.shape[1:])
    out[...] = _upsampled(y[0], stride, rows, cols, out.shape[1:])
    reach = _nodata_reach(bad, halo, rows, cols, out.shape[1:]) if bad.any() else None
    if reach is not None:
        out[:, reach] = np.nan
    broken = ~np.isfinite(out)
    if reach is not None:
        broken[:, reach] = False
    if broken.any():
        raise FeatureSpecError(f"{_where(kind, p)}: the network produced {int(broken.sum())} non-finite value(s) from "
                               "finite inputs; check 'scale' and 'offset' (the network's input normalisation) "
                               "and the model")


def _network_planes(kind: str, ctx, p: dict, band) -> list[np.ndarray]:
    """Full-size planes (the generic ``compute`` form)."""
    full = ctx.uncropped()
    out = np.empty((p["channels"],) + full.shape, np.float32)
    _network_into(kind, full, p, band, out)
    return list(out)


def _params(suffix: str) -> tuple[Param, ...]:
    return (
        Param("path", "str", doc=f"the {suffix} model file"),
        Param("bands", "bands", None, in_name=False,
              doc="bands fed to the network, in order (default every band of the stack)"),
        Param("output", "str", None, doc="name of the network output to use (default the first)"),
        Param("halo", "int", REQUIRED, minimum=0, in_name=False,
              doc="receptive-field radius in pixels: how far an output pixel sees"),
        Param("stride", "int", 1, minimum=1, in_name=False,
              doc="how many times coarser than its input the output is"),
        Param("scale", "floats", 1.0, in_name=False, doc="input mapped to x * scale + offset (one, or one per band)"),
        Param("offset", "floats", 0.0, in_name=False, doc="added after scale (one, or one per band)"),
        Param("channels", "int", None, minimum=1, in_name=False,
              doc="number of output channels, when the model does not fix it"),
    )


for _kind, _suffix, _doc in (
        ("onnx", ".onnx", "a fully convolutional ONNX network on the bands, one feature per output channel "
                          "(ONNX Runtime, CPU)"),
        ("torch", ".pt2 or TorchScript", "a fully convolutional PyTorch module (torch.export.save .pt2, or "
                                         "torch.jit.save) on the bands, one feature per output channel (CPU)")):
    register(FeatureKind(
        _kind, _params(_suffix), depth=lambda p: p["halo"], labels=lambda p: [f"c{i}" for i in range(p["channels"])],
        compute=functools.partial(_network_planes, _kind), compute_into=functools.partial(_network_into, _kind),
        per_band=False, resolve=functools.partial(_resolve, _kind), check_bands=functools.partial(_check_bands, _kind),
        doc=_doc))
