"""Class colours: one palette per class map, shared by COGs, quicklooks, figures and legends.

A class (or cluster) map's colours are a list of RGB triples, one per class
code, kept beside the class names (``class_colors`` in a model file's
metadata and in a mosaic's attrs).  Users set some or all of them by class
name (``--colors water=#1f78b4,forest=darkgreen``, or a mapping in Python
and YAML); the rest come from :data:`DEFAULT_COLORS` in order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rastercore.errors import ParameterError

__all__ = ["DEFAULT_COLORS", "class_colors", "parse_colors", "hex_color"]

DEFAULT_COLORS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)
"""Matplotlib's ``tab10`` then the light half of ``tab20``: distinct colours for up to 20 classes, then repeated."""

RGB = tuple[int, int, int]


def _rgb(value, name: str) -> RGB:
    """An RGB triple of 0-255 ints from a colour name, ``#rrggbb`` or a triple (0-255 ints or 0-1 floats)."""
    from matplotlib.colors import to_rgb

    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 3:
        values = [float(v) for v in value]
        scale = 255 if any(v > 1 for v in values) else 1
        if all(0 <= v <= scale for v in values):
            return tuple(round(v * 255 / scale) for v in values)
    else:
        try:
            return tuple(round(c * 255) for c in to_rgb(value))
        except (TypeError, ValueError):
            pass
    raise ParameterError(f"colour {value!r} of class {name!r} (--colors) is not a colour; give a name such as "
                         "'darkgreen', '#1f78b4' or three numbers 0-255.")


def parse_colors(colors, class_names: Sequence[str]) -> dict[str, RGB]:
    """Class name -> RGB from ``"water=#1f78b4,forest=darkgreen"`` or a mapping, checked against ``class_names``.

    Raises
    ------
    ParameterError
        An entry is not ``NAME=COLOUR``, names no class, or its colour is not one.
    """
    if colors is None:
        return {}
    if isinstance(colors, str):
        pairs = []
        for entry in filter(None, (e.strip() for e in colors.split(","))):
            name, sep, value = (part.strip() for part in entry.rpartition("="))  # names may hold "="; colours never
            if not sep or not name or not value:
                raise ParameterError(f"--colors entry {entry!r} is not CLASS=COLOUR, e.g. --colors water=#1f78b4")
            pairs.append((name, value))
    elif isinstance(colors, Mapping):
        pairs = [(str(k), v) for k, v in colors.items()]
    else:
        raise ParameterError(f"colors (--colors) must map class names to colours, not {colors!r}.")
    names = [str(n) for n in class_names]
    unknown = [n for n, _ in pairs if n not in names]
    if unknown:
        raise ParameterError(f"--colors names {', '.join(unknown)}, which are not classes of the map "
                             f"({', '.join(names)}).")
    return {name: _rgb(value, name) for name, value in pairs}


def class_colors(class_names: Sequence[str], colors=None) -> list[RGB]:
    """One RGB triple per class: ``colors`` (a mapping or ``NAME=COLOUR,...``, or a full list) over the defaults.

    Parameters
    ----------
    class_names : sequence of str
        The classes, in code order.
    colors : mapping, str or sequence, optional
        Colours by class name (see :func:`parse_colors`), or one colour per
        class in code order (as stored in a model file or mosaic).

    Returns
    -------
    list of (int, int, int)
    """
    names = [str(n) for n in class_names]
    if colors is not None and not isinstance(colors, (str, Mapping)):
        colors = list(colors)
        if len(colors) != len(names):
            raise ParameterError(f"{len(colors)} colours given for {len(names)} classes ({', '.join(names)}).")
        return [_rgb(c, n) for c, n in zip(colors, names)]
    chosen = parse_colors(colors, names)
    return [chosen.get(n) or _rgb(DEFAULT_COLORS[i % len(DEFAULT_COLORS)], n) for i, n in enumerate(names)]


def hex_color(rgb: RGB) -> str:
    """``#rrggbb`` of an RGB triple."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)
