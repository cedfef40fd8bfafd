"""STAC items as inputs: the assets asked for, by asset key or by band common name.

A STAC item (a JSON file or URL) lists its rasters as assets, each at its
own resolution and often in the cloud.  :func:`item_inputs` turns an item
and a list of asset keys (``B04,B08,SCL``) or common names (``red,nir``, as
``eo:bands`` / ``bands`` spell them) into input specs and band names for
:func:`rastercore.ingest`, which reads each asset by window and resamples
them onto one grid.  Band names are the assets' common names when they
have one, else their keys, so a feature spec such as
``{name: ndvi}`` works for any sensor.

Needs ``pystac`` (``pip install 'rastercore[stac]'``).  One item at a time:
a mosaic of several items is not supported yet and is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from rastercore.errors import ParameterError, SourceNotFoundError, UnsupportedSourceError

__all__ = ["is_stac_item", "item_inputs"]


def is_stac_item(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` is a local JSON file holding a STAC item or item collection (or a URL ending in ``.json``)."""
    spec = str(spec)
    if not spec.lower().endswith(".json"):
        return False
    if "://" in spec:
        return True
    try:
        with open(spec, encoding="utf-8") as fh:
            head = json.load(fh)
    except (OSError, ValueError):
        return False
    if not isinstance(head, dict):
        return False
    features = head.get("features") if head.get("type") == "FeatureCollection" else None
    return "stac_version" in head or bool(features) and all(
        isinstance(f, dict) and "stac_version" in f for f in features)


def item_inputs(spec: str | os.PathLike, assets: Sequence[str]) -> tuple[list[str], list[str]]:
    """Input specs (absolute hrefs) and band names of the ``assets`` of the STAC item ``spec``.

    Parameters
    ----------
    spec : path or URL
        A STAC item JSON.
    assets : sequence of str
        Asset keys or band common names, in the stack's band order.

    Raises
    ------
    ParameterError
        No assets asked for, or one that the item does not have (the
        message lists what it has), or a multi-band asset.
    UnsupportedSourceError
        ``spec`` is not a single STAC item (e.g. an item collection), or
        ``pystac`` is not installed.
    """
    item = _read_item(str(spec))
    if not assets:
        keys = [key for key, asset in item.assets.items() if _is_raster(asset)]
        raise ParameterError(f"{spec} is a STAC item: name the assets to ingest with --assets (it has "
                             f"{', '.join(_describe(item))}; e.g. --assets {','.join(keys[:3])}).")
    by_key = {key: asset for key, asset in item.assets.items() if _is_raster(asset)}
    by_common = {}
    for key, asset in by_key.items():
        for name in _common_names(asset):
            by_common.setdefault(name, key)
    hrefs, names = [], []
    for wanted in assets:
        key = wanted if wanted in by_key else by_common.get(wanted)
        if key is None:
            raise ParameterError(f"{spec} has no asset or band {wanted!r}; it has {', '.join(_describe(item))}.")
        commons = _common_names(by_key[key])
        if len(commons) > 1:
            raise ParameterError(f"asset {key!r} of {spec} holds {len(commons)} bands ({', '.join(commons)}); "
                                 "only single-band assets can be ingested by name.")
        hrefs.append(by_key[key].get_absolute_href())
        names.append(commons[0] if commons else key)
    return hrefs, names


def _read_item(spec: str):
    try:
        import pystac
    except ImportError:
        raise UnsupportedSourceError(f"{spec} is a STAC item; reading STAC needs pystac: "
                                     "pip install 'rastercore[stac]'.") from None
    if "://" not in spec and not Path(spec).exists():
        raise SourceNotFoundError(f"STAC item {spec} does not exist; check the path.")
    try:
        obj = pystac.read_file(spec)
    except Exception as err:  # noqa: BLE001 - pystac raises many kinds for a bad file
        raise UnsupportedSourceError(f"{spec} could not be read as a STAC item ({type(err).__name__}: {err}).") \
            from None
    if not isinstance(obj, pystac.Item):
        raise UnsupportedSourceError(f"{spec} is a STAC {type(obj).__name__}, not a single item; ingest one item "
                                     "at a time (mosaics of several items are not supported yet).")
    return obj


def _is_raster(asset) -> bool:
    media = (asset.media_type or "").lower()
    roles = asset.roles or []
    return "image/tiff" in media or "image/jp2" in media or "data" in roles or not media


def _common_names(asset) -> list[str]:
    """Common names of an asset's bands: ``eo:bands`` (STAC 1.0) or ``bands`` with ``eo:common_name`` (1.1)."""
    fields = asset.extra_fields
    bands = fields.get("eo:bands") or fields.get("bands") or []
    names = [b.get("common_name") or b.get("eo:common_name") for b in bands if isinstance(b, dict)]
    return [n for n in names if n]


def _describe(item) -> list[str]:
    out = []
    for key, asset in item.assets.items():
        if _is_raster(asset):
            commons = _common_names(asset)
            out.append(f"{key} ({', '.join(commons)})" if commons else key)
    return out
