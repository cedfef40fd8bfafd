"""The ``onnx`` feature kind: a fully convolutional network run per tile with ONNX Runtime.

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
    One ``onnxruntime.InferenceSession`` per process and model file,
    created on first use (the spec holds only the path, relative to the
    working directory, so it pickles for dask workers).  Each runs on the CPU with
    ``$RASTERCORE_ONNX_THREADS`` intra-op threads (default 1: dask already
    computes one tile per worker thread).
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import FeatureSpecError
from . import _filters as F
from ._registry import REQUIRED, FeatureKind, Param, register

__all__ = ["THREADS_ENV", "onnx_session"]

THREADS_ENV = "RASTERCORE_ONNX_THREADS"
"""Environment variable: intra-op threads of each ONNX Runtime session (default 1)."""

_SESSIONS: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def _where(p: dict) -> str:
    return f"feature 'onnx' ({p['path']})"


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
    ort = _runtime()
    real = os.path.realpath(os.path.expanduser(path))
    try:
        stat = os.stat(real)
    except OSError:
        raise FeatureSpecError(f"feature 'onnx': model file {path} does not exist; give the path of an .onnx "
                               "file (relative to the working directory, or to the spec file) in 'path'") from None
    key = (real, stat.st_mtime_ns, stat.st_size, _threads())
    with _LOCK:
        session = _SESSIONS.get(key)
        if session is None:
            session = _open(ort, real, path, key[3])
            for old in [k for k in _SESSIONS if k[0] == real]:
                del _SESSIONS[old]
            _SESSIONS[key] = session
    return session


def _open(ort, real: str, path: str, threads: int):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: no optimiser chatter on every worker
    try:
        return ort.InferenceSession(real, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - ONNX Runtime's errors derive from Exception only
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FeatureSpecError(f"feature 'onnx': model file {path} cannot be loaded by ONNX Runtime ({reason}); "
                               "give an .onnx file exported with torch.onnx.export or similar") from None


# -- spec resolution ----------------------------------------------------------------------


def _resolve(p: dict) -> dict:
    net = onnx_session(p["path"])
    _net_input_info(p, net)
    outputs = {o.name: o for o in net.get_outputs()}
    if p["output"] is None:
        p["output"] = net.get_outputs()[0].name
    elif p["output"] not in outputs:
        raise FeatureSpecError(f"{_where(p)} has no output {p['output']!r}; its outputs: {list(outputs)}")
    shape = outputs[p["output"]].shape
    if shape and len(shape) != 4:
        raise FeatureSpecError(f"{_where(p)}: output {p['output']!r} is {len(shape)}-D {list(shape)}; rastercore "
                               "needs a 4-D (1, channels, y, x) output: choose another with 'output'")
    fixed = shape[1] if shape and isinstance(shape[1], int) else None
    if p["channels"] is None and fixed is None:
        raise FeatureSpecError(f"{_where(p)}: the number of channels of output {p['output']!r} is not fixed in the "
                               f"model (shape {list(shape) if shape else 'unknown'}); give it: channels: <n>")
    if p["channels"] is not None and fixed is not None and p["channels"] != fixed:
        raise FeatureSpecError(f"{_where(p)}: 'channels' is {p['channels']} but output {p['output']!r} has "
                               f"{fixed}; drop 'channels' or correct it")
    p["channels"] = p["channels"] if p["channels"] is not None else fixed
    if p["bands"] is not None:
        _check_bands(p, p["bands"])
    else:
        _, n_in = _net_input_info(p, net)
        if n_in is not None:
            _check_receptive_field(p, n_in)
    return p


def _net_input_info(p: dict, net) -> tuple[str, int | None]:
    """Name of the network's one input and its number of channels (None if not fixed), or raise."""
    inputs = net.get_inputs()
    if len(inputs) != 1:
        raise FeatureSpecError(f"{_where(p)} has {len(inputs)} inputs {[i.name for i in inputs]}; rastercore "
                               "feeds one (1, bands, y, x) float32 tensor")
    first = inputs[0]
    if first.type != "tensor(float)":
        raise FeatureSpecError(f"{_where(p)}: input {first.name!r} is {first.type}; export the network with a "
                               "float32 input")
    if first.shape and len(first.shape) != 4:
        raise FeatureSpecError(f"{_where(p)}: input {first.name!r} has shape {list(first.shape)}; rastercore "
                               "feeds a 4-D (1, bands, y, x) tensor")
    if first.shape and all(isinstance(d, int) for d in first.shape[2:]):
        raise FeatureSpecError(f"{_where(p)}: input {first.name!r} has a fixed size {list(first.shape)}; export the "
                               "network with dynamic height and width (torch.onnx.export(..., dynamic_axes=...))")
    channels = first.shape[1] if first.shape and isinstance(first.shape[1], int) else None
    return first.name, channels


def _check_bands(p: dict, bands: list[str]) -> None:
    _, wanted = _net_input_info(p, onnx_session(p["path"]))
    if wanted is not None and wanted != len(bands):
        raise FeatureSpecError(f"{_where(p)} takes {wanted} input channels but reads {len(bands)} band(s) "
                               f"{list(bands)}; list the {wanted} bands it expects, in order: bands: [...]")
    for name in ("scale", "offset"):
        value = p[name]
        if isinstance(value, list) and len(value) != len(bands):
            raise FeatureSpecError(f"{_where(p)}: '{name}' has {len(value)} values for {len(bands)} band(s) "
                                   f"{list(bands)}; give one number, or one per band")
    _check_receptive_field(p, len(bands))


_PROBED: set[tuple] = set()


def _changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Output pixels where any channel changed; non-finite values (a network may give NaN on random input) tell nothing."""
    with np.errstate(invalid="ignore"):
        diff = np.abs(after - before)[0]
    diff[~np.isfinite(diff)] = 0.0
    finite = np.abs(before[np.isfinite(before)])
    return diff.max(axis=0) > 1e-6 * ((finite.max() if finite.size else 0.0) + 1.0)


def _check_receptive_field(p: dict, n_in: int) -> None:
    """Refuse a ``halo`` smaller than the receptive field measured on a probe (once per process and model).

    The probe: a random input and, for each phase of the stride, a copy with
    one pixel changed; every output pixel that changes lies within the
    receptive field of that pixel.  This is a lower bound, never a false
    alarm; the probe also checks the output's channels and ``stride``.
    """
    real = os.path.realpath(os.path.expanduser(p["path"]))
    key = (real, os.stat(real).st_mtime_ns, n_in, p["output"], p["halo"], p["stride"], p["channels"])
    if key in _PROBED:
        return
    halo, stride = p["halo"], p["stride"]
    size = math.ceil((2 * halo + 4 * stride + 16) / stride) * stride
    x = np.random.default_rng(0).standard_normal((n_in, size, size)).astype(np.float32)
    base = _run(p, x)
    _check_output(p, base, (size, size))
    reach = 0
    for phase in range(stride):
        centre = size // 2 // stride * stride + phase
        moved = x.copy()
        moved[:, centre, centre] += 1.0
        ys, xs = np.nonzero(_changed(base, _run(p, moved)).repeat(stride, axis=0).repeat(stride, axis=1))
        if ys.size:
            reach = max(reach, int(np.abs(ys - centre).max()), int(np.abs(xs - centre).max()))
    if reach > halo:
        at_least = "at least " if reach >= size // 2 - stride else ""
        raise FeatureSpecError(f"{_where(p)}: the network's receptive field reaches {at_least}{reach} px but "
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


def _origin(ctx, p: dict) -> tuple[int, int]:
    if ctx.origin is not None:
        return ctx.origin
    if p["stride"] > 1 and ctx.cropped:
        raise FeatureSpecError(f"{_where(p)} has stride {p['stride']}: its values depend on the position in the "
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


def _run(p: dict, x: np.ndarray) -> np.ndarray:
    net = onnx_session(p["path"])
    name, _ = _net_input_info(p, net)
    try:
        y = net.run([p["output"]], {name: x[np.newaxis]})[0]
    except Exception as err:  # noqa: BLE001 - ONNX Runtime's errors derive from Exception only
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FeatureSpecError(f"{_where(p)}: ONNX Runtime failed on a {tuple(x[np.newaxis].shape)} input "
                               f"({reason})") from None
    return np.asarray(y)


def _check_output(p: dict, y: np.ndarray, shape_in: tuple[int, int]) -> None:
    s = p["stride"]
    if y.ndim != 4 or y.shape[:2] != (1, p["channels"]):
        raise FeatureSpecError(f"{_where(p)}: output {p['output']!r} has shape {y.shape}; rastercore expects "
                               f"(1, {p['channels']}, y, x)")
    expected = (shape_in[0] // s, shape_in[1] // s)
    if y.shape[2:] == expected:
        return
    (hi, wi), (ho, wo) = shape_in, y.shape[2:]
    hint = ("pad its convolutions 'same' so that the output is the input's size divided by an integer stride")
    if ho and wo and hi % ho == 0 and wi % wo == 0 and hi // ho == wi // wo:
        hint = f"set stride: {hi // ho}"
    raise FeatureSpecError(f"{_where(p)}: the network returned {ho} x {wo} pixels for a {hi} x {wi} input with "
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


def _onnx_into(ctx, p: dict, _band, out: np.ndarray) -> None:
    bands = p["bands"] or ctx.band_names
    halo, stride = p["halo"], p["stride"]
    (row0, col0), inner = _origin(ctx, p), ctx.inner
    rows = _span(inner[0], ctx.shape[0], row0, halo, stride)
    cols = _span(inner[1], ctx.shape[1], col0, halo, stride)
    x = _net_input(ctx, bands, rows, cols)
    bad = np.isnan(x).any(axis=0)
    x *= _scaled(p, len(bands), "scale")
    x += _scaled(p, len(bands), "offset")
    x[:, bad] = 0.0
    y = _run(p, x)
    _check_output(p, y, x.shape[1:])
    out[...] = _upsampled(y[0], stride, rows, cols, out.shape[1:])
    reach = _nodata_reach(bad, halo, rows, cols, out.shape[1:]) if bad.any() else None
    if reach is not None:
        out[:, reach] = np.nan
    broken = ~np.isfinite(out)
    if reach is not None:
        broken[:, reach] = False
    if broken.any():
        raise FeatureSpecError(f"{_where(p)}: the network produced {int(broken.sum())} non-finite value(s) from "
                               "finite inputs; check 'scale' and 'offset' (the network's input normalisation) "
                               "and the model")


def _onnx(ctx, p: dict, band) -> list[np.ndarray]:
    """Full-size planes (the generic ``compute`` form)."""
    full = ctx.uncropped()
    out = np.empty((p["channels"],) + full.shape, np.float32)
    _onnx_into(full, p, band, out)
    return list(out)


register(FeatureKind(
    "onnx",
    (Param("path", "str", doc="the .onnx model file"),
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
           doc="number of output channels, when the model does not fix it")),
    depth=lambda p: p["halo"], labels=lambda p: [f"c{i}" for i in range(p["channels"])],
    compute=_onnx, compute_into=_onnx_into, per_band=False, resolve=_resolve, check_bands=_check_bands,
    doc="a fully convolutional ONNX network on the bands, one feature per output channel (ONNX Runtime, CPU)"))
