"""Quicklooks and figures that explain themselves, drawn from downsampled views (never the full scene).

Every figure has a title, and every colour in it is keyed: class maps by a
legend of class names in the map's class colours (``attrs["class_colors"]``,
else :func:`rastercore.palette.class_colors`), continuous layers by a colour
bar, RGB composites by a legend naming the band in each channel.

How a layer is drawn follows from what it is:

* **SAR backscatter** -- bands of a stack (``band`` axis, not a prediction
  mosaic) that are all named by a polarisation (``HH``, ``HV``, ``VH``,
  ``VV``, also inside a longer name such as ``sigma0_VV``, but not one
  marked ``dB``): intensities drawn in decibels, 2-98 percentile stretch;
* **other stack bands** (optical, unnamed): linear, 2-98 percentile stretch;
* **mosaic layers** (a mosaic is a result with a ``class``, ``cluster``,
  ``value``, ``p[...]``, ``label[...]`` or ``component[...]`` layer, or with
  ``class_names``) and **feature stacks** (``feature`` axis): never decibels.
  ``class`` / ``cluster`` codes as a class map; ``p[...]`` and ``label[...]``
  on their fixed 0-1 scale; everything else (``value``, ``component[i]``,
  features, uncertainty layers) linear with a 2-98 percentile stretch.

``db=`` overrides the decibel rule.  A quicklook draws one layer (``band=``,
or the only one), an RGB composite (``rgb=``, else the stack's bands named
``red``, ``green``, ``blue``, else a two-band stack as the SAR false colour
R = first, G = second, B = first / second, else the first three bands), a
mosaic's class map, or, for a mosaic without one and a feature stack, one
panel per layer (the first four) with its own colour bar.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from rastercore._deprecated import renamed_keywords
from rastercore.errors import ParameterError, StoreExistsError

__all__ = ["quicklook", "quicklook_figure", "layer_role", "is_backscatter", "overview", "class_overview",
           "comparison_figure", "confusion_figure", "probability_figure", "embedding_figure"]

DPI = 100
"""Dots per inch of every figure: one overview pixel is one PNG pixel."""

_PAD, _GAP, _TITLE_H, _CAPTION_H, _BAR_W, _MIN_BAR_H = 10, 8, 46, 20, 100, 150
_MAX_PANELS = 4
_MOSAIC_LAYER = re.compile(r"^(class|cluster|value|p\[.*\]|label\[.*\]|component\[\d+\])$")
_UNIT_LAYER = re.compile(r"^(p|label)\[.*\]$")
_POLARISATION = re.compile(r"(?<![a-z])(hh|hv|vh|vv)(?![a-z])", re.I)
_DECIBEL = re.compile(r"(?<![a-z])db(?![a-z])", re.I)
_NO_DATA_RGBA = (0, 0, 0, 0)


@renamed_keywords({"data": "stack"})
def overview(stack: xr.DataArray, *, max_size: int = 1024) -> xr.DataArray:
    """Block-average ``stack`` so its longer side is at most ``max_size`` pixels, and load it.

    Averaging runs tile by tile through dask; only the small result is in memory.
    NaN pixels are left out of the averages.
    """
    factor = _factor(stack, max_size)
    if factor > 1:
        stack = stack.coarsen(y=factor, x=factor, boundary="trim").mean()
    return stack.compute()


def class_overview(classes: xr.DataArray, *, max_size: int = 1024) -> np.ndarray:
    """Nearest-neighbour (strided) downsampling of a class map: never averages class codes."""
    factor = _factor(classes, max_size)
    return np.asarray(classes[::factor, ::factor].values, dtype=np.float32)


def _factor(data: xr.DataArray, max_size: int) -> int:
    return max(1, math.ceil(max(data.sizes["y"], data.sizes["x"]) / max_size))


# -- what a layer is -------------------------------------------------------------------------------------------

def layer_role(data: xr.DataArray) -> str:
    """What ``data``'s layers are: ``"stack"`` bands, ``"mosaic"`` layers, ``"features"``, or a bare ``"array"``.

    A ``(band, y, x)`` array is a mosaic when one of its layers is named like
    a prediction layer (``class``, ``cluster``, ``value``, ``p[...]``,
    ``label[...]``, ``component[i]``) or it carries ``class_names``; a
    ``feature`` axis (or coordinate) makes a feature stack.

    Parameters
    ----------
    data : xarray.DataArray
        ``(band, y, x)``, ``(feature, y, x)`` or one layer ``(y, x)``.

    Returns
    -------
    {"stack", "mosaic", "features", "array"}
    """
    if "feature" in data.dims or ("feature" in data.coords and "band" not in data.dims):
        return "features"
    if "band" not in data.coords:
        return "array"
    names = [str(b) for b in np.atleast_1d(data["band"].values)]
    if "class_names" in data.attrs or any(_MOSAIC_LAYER.match(n) for n in names):
        return "mosaic"
    return "stack"


def is_backscatter(names, role: str = "stack") -> bool:
    """Whether layers ``names`` of a ``role`` array are SAR intensities, drawn in dB (see the module doc).

    Parameters
    ----------
    names : sequence of str
        The layers drawn.
    role : str, default "stack"
        What the array is (:func:`layer_role`); only stack bands are backscatter.

    Returns
    -------
    bool
        True when every name holds a polarisation (HH, HV, VH, VV) and none is marked dB.
    """
    names = [str(n) for n in names]
    return role == "stack" and bool(names) and all(
        _POLARISATION.search(n) and not _DECIBEL.search(n) for n in names)


def _as_layers(data: xr.DataArray) -> tuple[xr.DataArray, list[str], str]:
    """``data`` as ``(layer, y, x)`` with dim ``band``, its layer names and role."""
    role = layer_role(data)
    if data.ndim == 2:
        dim = "feature" if role == "features" else "band"
        name = str(data[dim].values) if dim in data.coords else str(data.name or "value")
        data = data.drop_vars(dim, errors="ignore").expand_dims(band=[name])
    else:
        other = next(d for d in data.dims if d not in ("y", "x"))
        data = data.rename({other: "band"}) if other != "band" else data
    return data, [str(b) for b in data["band"].values], role


# -- which layers a quicklook draws ----------------------------------------------------------------------------

@dataclass
class _Plan:
    kind: str  # "classes", "single", "rgb", "sar", "panels"
    layers: list[str]
    note: str = ""


def _pick(names: list[str], wanted, option: str) -> str:
    """The layer ``wanted`` names (a name, or a 1-based number), else a ParameterError naming ``option``."""
    text = str(wanted).strip()
    if text in names:
        return text
    if text.isdigit() and 1 <= int(text) <= len(names):
        return names[int(text) - 1]
    raise ParameterError(f"{option}: {text!r} is not a layer of the stack; give one of {', '.join(names)} "
                         f"(or its number, 1-{len(names)}).")


def _rgb_names(rgb, names: list[str]) -> list[str]:
    parts = [p.strip() for p in rgb.split(",")] if isinstance(rgb, str) else [str(p) for p in rgb]
    if len(parts) != 3 or not all(parts):
        raise ParameterError(f"rgb (--rgb) needs three bands, red,green,blue in that order (e.g. --rgb red,green,blue "
                             f"or --rgb 5,3,2), not {rgb!r}.")
    return [_pick(names, p, "rgb (--rgb)") for p in parts]


def _plan(names: list[str], role: str, band=None, rgb=None) -> _Plan:
    from rastercore.predict import categorical_layer

    if band is not None and rgb is not None:
        raise ParameterError("give either band (--band), one layer, or rgb (--rgb), three bands -- not both.")
    if band is not None:
        name = _pick(names, band, "band (--band)")
        return _Plan("classes" if role == "mosaic" and name in ("class", "cluster") else "single", [name])
    if rgb is not None:
        return _Plan("rgb", _rgb_names(rgb, names))
    codes = categorical_layer(names) if role == "mosaic" else None
    if codes is not None:
        return _Plan("classes", [codes])
    if len(names) == 1:
        return _Plan("single", names)
    if role == "stack":
        return _stack_plan(names)
    shown = names[:_MAX_PANELS]
    note = f"first {len(shown)} of {len(names)} layers (choose with --band or --rgb)" if len(names) > len(shown) else ""
    return _Plan("panels", shown, note)


def _stack_plan(names: list[str]) -> _Plan:
    if {"red", "green", "blue"} <= set(names):
        return _Plan("rgb", ["red", "green", "blue"])
    if len(names) == 2:
        return _Plan("sar", names)
    return _Plan("rgb", names[:3])


# -- panels: an image and its key --------------------------------------------------------------------------------

@dataclass
class _Panel:
    image: np.ndarray  # (h, w, 4) uint8, drawn pixel for pixel
    caption: str = ""
    legend: tuple | None = None  # (handles, labels, title)
    colorbar: tuple | None = None  # (ScalarMappable, label, extend)
    notes: list[str] = field(default_factory=list)


def _masked(data: xr.DataArray) -> xr.DataArray:
    """``data`` as float32 with its nodata value (if any) as NaN."""
    nodata = data.rio.nodata if "spatial_ref" in data.coords else None
    data = data.astype(np.float32)
    if nodata is not None and not np.isnan(nodata):
        data = data.where(data != nodata)
    return data


def _decibels(values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10 * np.log10(np.where(values > 0, values, np.nan))


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    """The 2nd and 98th percentiles of the finite values (0, 1 when there are none; high > low)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(finite, [2, 98]))
    return low, (high if high > low else low + 1.0)


def _stretch(band: np.ndarray) -> np.ndarray:
    """Map the 2nd..98th percentile to 0..1; NaN becomes 0."""
    low, high = _percentiles(band)
    scaled = (band - low) / (high - low)
    return np.nan_to_num(np.clip(scaled, 0, 1), nan=0.0).astype(np.float32)


def _to_bytes(unit: np.ndarray) -> np.ndarray:
    """0..1 floats as 0..255 bytes (rounded)."""
    return np.round(np.clip(unit, 0, 1) * 255).astype(np.uint8)


def _class_panel(layer: xr.DataArray, attrs: dict, max_size: int, *, title: str = "classes") -> _Panel:
    """Codes in the map's class colours, no data transparent, with a legend of every class."""
    codes = class_overview(layer, max_size=max_size)
    valid = np.isfinite(codes) & (codes >= 0)
    top = int(codes[valid].max()) + 1 if valid.any() else 0
    names, colors = _class_names_colors(attrs.get("class_names"), attrs.get("class_colors"), top)
    lut = np.array([(*c, 255) for c in colors] or [(0, 0, 0, 0)], dtype=np.uint8)
    image = np.zeros(codes.shape + (4,), np.uint8)
    image[valid] = lut[codes[valid].astype(np.int64)]
    handles, labels = _class_handles(names, colors)
    if not valid.all():
        handles.append(_patch((1, 1, 1)))
        labels.append("no data")
    return _Panel(image, legend=(handles, labels, title))


def _class_names_colors(names, colors, n_codes: int) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Names and RGB colours of the classes of a map: its own (or the default palette), one per code."""
    from rastercore.palette import class_colors

    names = [str(n) for n in (names or [])]
    given = dict(zip(names, colors or []))  # codes beyond the named classes take the default palette
    names += [str(i) for i in range(len(names), n_codes)]
    try:
        return names, class_colors(names, given or None)
    except ParameterError:  # colours that are no colours: the default palette still keys the map
        return names, class_colors(names)


def _patch(rgb_unit, **kwargs):
    from matplotlib.patches import Patch

    return Patch(facecolor=rgb_unit, edgecolor="0.35", linewidth=0.6, **kwargs)


def _class_handles(names, colors) -> tuple[list, list[str]]:
    return [_patch(tuple(v / 255 for v in c)) for c in colors], list(names)


def _single_panel(values: np.ndarray, name: str, role: str, db: bool) -> _Panel:
    """One layer in a colour map with a colour bar: grey for stack bands, viridis for everything else."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    if db:
        values = _decibels(values)
    fixed = _UNIT_LAYER.match(name) and not db
    low, high = (0.0, 1.0) if fixed else _percentiles(values)
    cmap = colormaps["gray" if role == "stack" else "viridis"].with_extremes(bad=(0, 0, 0, 0))
    mappable = ScalarMappable(Normalize(low, high, clip=True), cmap)
    image = mappable.to_rgba(np.ma.masked_invalid(values), bytes=True)
    label = name + (" (dB)" if db else "")
    note = "0-1 scale" if fixed else "2-98 % stretch" + (", dB" if db else "")
    return _Panel(image, caption=name, colorbar=(mappable, label, "neither" if fixed else "both"), notes=[note])


def _rgb_panel(channels: np.ndarray, labels: list[str], db: bool) -> _Panel:
    """Three channels, each stretched between its 2nd and 98th percentiles; NaN in all three is transparent."""
    if db:
        channels = _decibels(channels)
    image = np.zeros(channels.shape[1:] + (4,), np.uint8)
    image[..., :3] = np.stack([_to_bytes(_stretch(c)) for c in channels], axis=-1)
    image[..., 3] = np.where(np.isfinite(channels).any(axis=0), 255, 0)
    handles = [_patch(c) for c in ((1, 0, 0), (0, 1, 0), (0, 0, 1))]
    names = [f"{ch}: {label}" for ch, label in zip("RGB", labels)]
    note = "2-98 % stretch per channel" + (", dB" if db else "")
    return _Panel(image, legend=(handles, names, "channels"), notes=[note])


def _panels(layers: xr.DataArray, plan: _Plan, role: str, attrs: dict, db, max_size: int) -> list[_Panel]:
    if plan.kind == "classes":
        title = "clusters" if plan.layers[0] == "cluster" else "classes"
        return [_class_panel(_masked(layers.sel(band=plan.layers[0])), attrs, max_size, title=title)]
    small = overview(_masked(layers.sel(band=plan.layers)), max_size=max_size).values
    decibels = is_backscatter(plan.layers, role) if db is None else bool(db)
    if plan.kind == "rgb":
        return [_rgb_panel(small, plan.layers, decibels)]
    if plan.kind == "sar":
        ratio = small[0] / np.where(small[1] > 0, small[1], np.nan)
        return [_rgb_panel(np.stack([small[0], small[1], ratio]), [*plan.layers, "/".join(plan.layers)], decibels)]
    return [_single_panel(values, name, role, decibels) for values, name in zip(small, plan.layers)]


# -- figure layout -----------------------------------------------------------------------------------------------

def _new_figure(**options):
    """A figure on its own Agg canvas (no pyplot state: nothing to close, safe in threads)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(dpi=DPI, **options)
    FigureCanvasAgg(fig)
    return fig


def _extent(artist, fig) -> tuple[int, int]:
    box = artist.get_window_extent(fig.canvas.get_renderer())
    return math.ceil(box.width), math.ceil(box.height)


def _add_legend(fig, panel: _Panel):
    handles, labels, title = panel.legend
    ncol = max(1, math.ceil(len(labels) / 20))
    return fig.legend(handles, labels, title=title, loc="upper left", ncol=ncol, fontsize=9, title_fontsize=9,
                      frameon=False, borderaxespad=0, handlelength=1.4, handleheight=1.1)


def _key_size(fig, panel: _Panel, legend) -> tuple[int, int]:
    if legend is not None:
        return _extent(legend, fig)
    if panel.colorbar is not None:
        return _BAR_W, max(panel.image.shape[0], _MIN_BAR_H)
    return 0, 0


def _draw_colorbar(fig, panel: _Panel, x: int, top: int, size: tuple[int, int]) -> None:
    from matplotlib.ticker import FormatStrFormatter

    width, height = fig.bbox.width, fig.bbox.height
    mappable, label, extend = panel.colorbar
    cax = fig.add_axes((x / width, (top - size[1]) / height, 14 / width, size[1] / height))
    bar = fig.colorbar(mappable, cax=cax, extend=extend, format=FormatStrFormatter("%.3g"))
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=8)


def _compose(panels: list[_Panel], title: str, subtitle: str):
    """A figure of ``panels`` side by side, each image drawn pixel for pixel, under a title and subtitle."""
    fig = _new_figure()
    legends = [_add_legend(fig, p) if p.legend else None for p in panels]
    keys = [_key_size(fig, p, legend) for p, legend in zip(panels, legends)]
    texts = [fig.text(0, 0, title, fontsize=11, weight="bold"), fig.text(0, 0, subtitle, fontsize=9)]
    caption_h = _CAPTION_H if len(panels) > 1 else 0
    captions = [fig.text(0, 0, p.caption if caption_h else "", fontsize=9) for p in panels]
    widths = [max(p.image.shape[1] + (_GAP + k[0] if k[0] else 0), _extent(c, fig)[0]) + _PAD
              for p, k, c in zip(panels, keys, captions)]
    width = max(_PAD + sum(widths), max(_extent(t, fig)[0] for t in texts) + 2 * _PAD)
    body = max(max(p.image.shape[0], k[1]) for p, k in zip(panels, keys))
    height = _TITLE_H + caption_h + body + _PAD
    fig.set_size_inches(width / DPI, height / DPI)
    texts[0].set_position((_PAD / width, 1 - 6 / height))
    texts[1].set_position((_PAD / width, 1 - 27 / height))
    for text in texts:
        text.set_verticalalignment("top")
    top, x = height - _TITLE_H - caption_h, _PAD
    for panel, legend, key, caption, step in zip(panels, legends, keys, captions, widths):
        _place(fig, panel, legend, key, x, top)
        caption.set_position((x / width, (top + 4) / height))
        x += step
    return fig


def _place(fig, panel: _Panel, legend, key, x: int, top: int) -> None:
    h, w = panel.image.shape[:2]
    fig.figimage(panel.image, xo=x, yo=top - h, origin="upper")
    if legend is not None:  # placed in inches, so that it stays beside the image at any dpi
        legend.set_bbox_to_anchor(((x + w + _GAP) / DPI, top / DPI), transform=fig.dpi_scale_trans)
    elif panel.colorbar is not None:
        _draw_colorbar(fig, panel, x + w + _GAP, top, key)


# -- the quicklook -----------------------------------------------------------------------------------------------

def _what(plan: _Plan) -> str:
    """The title's words for what a quicklook shows."""
    if plan.kind == "classes":
        return f"{plan.layers[0]} map"
    if plan.kind == "rgb":
        return "RGB " + ", ".join(plan.layers)
    if plan.kind == "sar":
        return "false colour {0}, {1}, {0}/{1}".format(*plan.layers)
    return ", ".join(plan.layers)


def _source_name(stack: xr.DataArray) -> str | None:
    from rastercore.store import store_reader

    reader = store_reader(stack)
    return Path(reader.path).name if reader is not None else None


def quicklook_figure(
    stack: xr.DataArray,
    *,
    max_size: int = 1024,
    db: bool | None = None,
    rgb=None,
    band=None,
    title: str | None = None,
):
    """The quicklook of a stack, mosaic or layer as a matplotlib figure (see :func:`quicklook`).

    Parameters
    ----------
    stack, max_size, db, rgb, band, title
        As in :func:`quicklook`.

    Returns
    -------
    matplotlib.figure.Figure
        Images in ``fig.images`` (RGBA bytes, drawn pixel for pixel at
        :data:`DPI`), legends in ``fig.legends``, colour bars as extra axes.
    """
    layers, names, role = _as_layers(stack)
    plan = _plan(names, role, band=band, rgb=rgb)
    panels = _panels(layers, plan, role, stack.attrs, db, max_size)
    factor = _factor(layers, max_size)
    notes = [n for n in dict.fromkeys(sum((p.notes for p in panels), [])) if n] + ([plan.note] if plan.note else [])
    scale = f"1 px = {factor} x {factor} px" if factor > 1 else "full resolution"
    heading = f"{title or _source_name(stack) or 'quicklook'}: {_what(plan)}"
    return _compose(panels, heading, "; ".join([*notes, scale]))


@renamed_keywords({"data": "stack"})
def quicklook(
    stack: xr.DataArray,
    path: str | os.PathLike,
    *,
    max_size: int = 1024,
    db: bool | None = None,
    rgb=None,
    band=None,
    title: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Save a PNG quicklook of a stack, a prediction mosaic, a feature stack or one layer.

    The PNG is a figure: a title (``title``, else the store's file name, and
    the layers drawn), the image, and its key.  What is drawn (see the
    module doc for the rules):

    * a mosaic's ``class`` or ``cluster`` map: each code in its class colour
      (the mosaic's ``class_colors``, else the default palette), downsampled
      by taking pixels (never averaging codes), with a legend of class names;
    * one layer (``band``, or the only one): a colour map with a colour bar;
      SAR backscatter in dB, probabilities on 0-1, the rest stretched
      between the 2nd and 98th percentiles;
    * several stack bands: an RGB composite (``rgb``, else the bands named
      ``red``, ``green``, ``blue``, else the SAR false colour of two bands,
      else the first three), each channel stretched between its 2nd and 98th
      percentiles, with a legend of the channels;
    * a mosaic without a class map, or a feature stack: one panel per layer
      (the first four), each with its colour bar.

    No data is transparent in the image, so it shows the white background.

    Parameters
    ----------
    stack : xarray.DataArray
        A stack or mosaic ``(band, y, x)``, a feature stack ``(feature, y, x)``,
        or one layer ``(y, x)``, lazy or not.
    path : path-like
        Output ``.png``.
    max_size : int, default 1024
        Longer side of each image in pixels: the overview is drawn pixel for
        pixel; title and key add margins around it.
    db : bool, optional
        Draw in decibels; default: SAR backscatter bands only.
    rgb : str or sequence of 3 str, optional
        Bands for red, green and blue (``"red,green,blue"`` or
        ``("red", "green", "blue")``); names or 1-based numbers.
    band : str, optional
        Draw this one layer (a name or a 1-based number).
    title : str, optional
        First part of the title (default: the store's file name).
    overwrite : bool, default False
        Replace an existing file.

    Raises
    ------
    ParameterError
        ``rgb`` or ``band`` names a layer the stack lacks, or both are given.
    StoreExistsError
        ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise StoreExistsError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it.")
    fig = quicklook_figure(stack, max_size=max_size, db=db, rgb=rgb, band=band,
                           title=title or _source_name(stack) or path.stem)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


# -- evaluation figures ------------------------------------------------------------------------------------------

def _check_new(path, overwrite: bool) -> Path:
    path = Path(path)
    if path.exists() and not overwrite:
        raise StoreExistsError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _where(region: str | None, unnamed: str = "") -> str:
    """``"validation pixels"`` for a named region, ``unnamed`` without one."""
    return f"{region} pixels" if region else unnamed


def _inside(mask, factor: int, shape: tuple[int, int]) -> np.ndarray | None:
    """The region ``mask`` (numpy, dask or xarray; True inside) downsampled by taking pixels, or None."""
    if mask is None:
        return None
    small = np.asarray(mask[::factor, ::factor]).astype(bool)
    return small[: shape[0], : shape[1]]


def _fade(rgba: np.ndarray, inside: np.ndarray | None) -> np.ndarray:
    """Pixels outside the region blended 70 % towards white (0..1 RGBA)."""
    if inside is None:
        return rgba
    faded = rgba.copy()
    faded[~inside, :3] = 0.3 * rgba[~inside, :3] + 0.7
    return faded


def _codes_rgba(codes: np.ndarray, colors) -> np.ndarray:
    """Class codes as 0..1 RGBA in the class colours; NaN and negative codes transparent."""
    lut = np.array([(*(v / 255 for v in c), 1.0) for c in colors])
    valid = np.isfinite(codes) & (codes >= 0) & (codes < len(lut))
    rgba = np.zeros(codes.shape + (4,))
    rgba[valid] = lut[codes[valid].astype(np.int64)]
    return rgba


def _top_code(*arrays) -> int:
    tops = [np.nanmax(a) for a in arrays if np.isfinite(a).any()]
    return int(max(tops)) + 1 if tops else 1


def comparison_figure(prediction: xr.DataArray, target: xr.DataArray, path: str | os.PathLike, *,
                      class_names=None, class_colors=None, mask=None, region: str | None = None,
                      max_size: int = 800, overwrite: bool = False) -> Path:
    """Prediction beside the target in the class colours, with an error map and a legend of the classes.

    Parameters
    ----------
    prediction, target : xarray.DataArray
        Class codes ``(y, x)`` on one grid (NaN or negative: no data).
    path : path-like
        Output ``.png``.
    class_names, class_colors : list, optional
        Default: the prediction's ``attrs`` (a mosaic's), else codes and the default palette.
    mask : array-like of bool, optional
        The scored region (True inside, e.g. :func:`rastercore.evaluate.region_mask`): pixels outside
        are faded and left out of the error map.
    region : str, optional
        Name of the region for the titles (``"validation"``...).
    max_size : int, default 800
        Longer side of each map's overview.
    overwrite : bool, default False
        Replace an existing file.
    """
    path = _check_new(path, overwrite)
    pred = class_overview(prediction, max_size=max_size)
    truth = class_overview(target, max_size=max_size)
    truth = np.where(truth < 0, np.nan, truth)
    inside = _inside(mask, _factor(prediction, max_size), pred.shape)
    names, colors = _class_names_colors(class_names or prediction.attrs.get("class_names"),
                                        class_colors if class_colors is not None
                                        else prediction.attrs.get("class_colors"), _top_code(pred, truth))
    scored = np.isfinite(pred) & np.isfinite(truth) & (True if inside is None else inside)
    error = np.ones(pred.shape + (3,))
    error[scored & (pred == truth)] = (0.75, 0.75, 0.75)
    error[scored & (pred != truth)] = (0.85, 0.1, 0.1)
    fig = _new_figure(figsize=(15, 6), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, codes, title in ((axes[0], pred, "prediction"), (axes[1], truth, "target")):
        ax.imshow(_fade(_codes_rgba(codes, colors), inside), interpolation="nearest")
        ax.set_title(title)
    wrong = (scored & (pred != truth)).sum() / max(scored.sum(), 1)
    axes[2].imshow(error, interpolation="nearest")
    axes[2].set_title(f"errors: {wrong:.1%} of the {_where(region, 'scored pixels')} of the overview")
    axes[2].legend([_patch((0.75, 0.75, 0.75)), _patch((0.85, 0.1, 0.1)), _patch((1, 1, 1))],
                   ["right", "wrong", "not scored"], loc="lower right", fontsize=8)
    handles, labels = _class_handles(names, colors)
    if inside is not None and not inside.all():
        handles.append(_patch((0.8, 0.8, 0.8)))
        labels.append(f"outside the {region or 'scored'} region (faded)")
    fig.legend(handles, labels, title="classes", loc="outside lower center", ncol=min(len(labels), 6))
    fig.suptitle(", ".join(filter(None, ["Prediction and target", _where(region)])), weight="bold")
    for ax in axes:
        ax.set_axis_off()
    fig.savefig(path, dpi=DPI)
    return path


def confusion_figure(metrics: dict, path: str | os.PathLike, *, region: str | None = None,
                     overwrite: bool = False) -> Path:
    """The confusion matrix of :func:`rastercore.evaluate.evaluate_classes`, row-normalised, with counts.

    The title names the region (``region``, e.g. ``"validation"``) and the number of pixels scored.
    """
    path = _check_new(path, overwrite)
    matrix = np.asarray(metrics["confusion_matrix"], dtype=float)
    names = metrics["classes"][: len(matrix)]
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig = _new_figure(figsize=(1.2 * len(names) + 3, 1.2 * len(names) + 2.3), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{share[i, j]:.1%}\n{int(matrix[i, j])}", ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black", fontsize=9)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    pixels = int(metrics.get("pixels", matrix.sum()))
    ax.set_title(f"Confusion matrix, {_where(region, 'pixels')} scored: {pixels:,}\n"
                 f"accuracy {metrics['overall_accuracy']:.3f}, kappa {metrics['kappa']:.3f}")
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class (row)")
    fig.savefig(path, dpi=DPI)
    return path


def probability_figure(mosaic: xr.DataArray, path: str | os.PathLike, *, mask=None, region: str | None = None,
                       max_size: int = 600, overwrite: bool = False) -> Path:
    """One panel per ``p[...]`` layer of a prediction mosaic (block-averaged overview), on one 0-1 colour bar.

    ``mask`` and ``region`` as in :func:`comparison_figure`: pixels outside the region are faded.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    path = _check_new(path, overwrite)
    layers = [str(b) for b in mosaic["band"].values if str(b).startswith("p[")]
    if not layers:
        raise ValueError("the mosaic has no probability layers (p[...]); predict with a model that has predict_proba")
    small = overview(mosaic.sel(band=layers), max_size=max_size).values
    inside = _inside(mask, _factor(mosaic, max_size), small.shape[1:])
    mappable = ScalarMappable(Normalize(0, 1), colormaps["viridis"].with_extremes(bad=(0, 0, 0, 0)))
    fig = _new_figure(figsize=(5 * len(layers), 5.4), layout="constrained")
    axes = fig.subplots(1, len(layers), squeeze=False)[0]
    for ax, layer, image in zip(axes, layers, small):
        ax.imshow(_fade(mappable.to_rgba(np.ma.masked_invalid(image)), inside), interpolation="nearest")
        ax.set_title(layer)
        ax.set_axis_off()
    fig.colorbar(mappable, ax=axes.tolist(), fraction=0.02, label="probability")
    faded = f"; outside the {region or 'scored'} region faded" if inside is not None and not inside.all() else ""
    fig.suptitle(", ".join(filter(None, ["Class probabilities", _where(region)])) + faded, weight="bold")
    fig.savefig(path, dpi=DPI)
    return path


def embedding_figure(coordinates: np.ndarray, path: str | os.PathLike, *, codes=None, class_names=None,
                     class_colors=None, method: str = "t-SNE", color_by: str | None = "class", subtitle: str = "",
                     overwrite: bool = False) -> Path:
    """A scatter of a 2-D embedding of sampled pixels (t-SNE, UMAP), coloured by class or cluster, with a legend.

    Parameters
    ----------
    coordinates : numpy.ndarray
        ``(n, 2)`` embedding.
    path : path-like
        Output ``.png``.
    codes : numpy.ndarray, optional
        Class or cluster code of each point (negative: none, drawn grey);
        without it every point is dark grey.
    class_names, class_colors : list, optional
        Names and RGB colours of codes 0, 1, ...; default the codes and the default palette.
    method : str, default "t-SNE"
        Names the axes (``t-SNE 1``, ``t-SNE 2``) and the title.
    color_by : {"class", "cluster"} or None
        Titles the legend.
    subtitle : str
        Second title line (what was embedded).
    overwrite : bool, default False
        Replace an existing file.
    """
    path = _check_new(path, overwrite)
    points = np.asarray(coordinates, dtype=float)
    area = float(np.clip(30_000 / max(len(points), 1), 1.0, 16.0))  # marker area: small clouds, big dots
    fig = _new_figure(figsize=(9, 7), layout="constrained")
    ax = fig.subplots()
    if codes is None:
        ax.scatter(points[:, 0], points[:, 1], s=area, color="0.25", linewidths=0)
    else:
        codes = np.asarray(codes)
        names, colors = _class_names_colors(class_names, class_colors, _top_code(codes.astype(float)))
        handles, labels = [], []
        for code, (name, color) in enumerate(zip(names, colors)):
            members = codes == code
            if members.any():
                rgb = tuple(v / 255 for v in color)
                ax.scatter(points[members, 0], points[members, 1], s=area, color=rgb, linewidths=0)
                handles.append(_patch(rgb))
                labels.append(f"{name} ({members.sum():,})")
        if (codes < 0).any():
            ax.scatter(points[codes < 0, 0], points[codes < 0, 1], s=area, color=(0.75, 0.75, 0.75), linewidths=0)
            handles.append(_patch((0.75, 0.75, 0.75)))
            labels.append(f"no {color_by or 'label'} ({(codes < 0).sum():,})")
        title = {"class": "classes", "cluster": "clusters"}.get(color_by, color_by)
        fig.legend(handles, labels, title=f"{title} (pixels)", loc="outside right upper")
    ax.set_xlabel(f"{method} 1")
    ax.set_ylabel(f"{method} 2")
    ax.set_title(subtitle, fontsize=9)
    coloured = f", coloured by {color_by}" if codes is not None and color_by else ""
    fig.suptitle(f"{method} view of sampled pixels{coloured}", weight="bold")
    fig.savefig(path, dpi=DPI)
    return path
