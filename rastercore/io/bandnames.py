"""Sensor band names: the common name a file's own name gives its band.

Landsat 8/9 and Sentinel-2 ship one file per band, named by product
conventions that say which band it holds (``LC08_L2SP_..._SR_B4.TIF``,
``T33UUP_20240601T100559_B04_10m.jp2``).  Such a band is named by its STAC
``eo:bands`` common name (``red``), so that a feature spec such as
``{name: ndvi}`` or ``{name: normalised_difference, a: nir, b: red}`` works
on either sensor without ``--bands``.  A file of such a product that holds no
spectral band (``..._QA_PIXEL.TIF``, ``..._SCL_20m.jp2``) is named by its
suffix (``QA_PIXEL``, ``SCL``).  Any other file keeps its usual name.
"""

from __future__ import annotations

import re

__all__ = ["COMMON_NAMES", "SENSOR_BANDS", "product_band_name"]

COMMON_NAMES = ("coastal", "blue", "green", "red", "yellow", "pan", "rededge", "rededge071", "rededge075",
                "rededge078", "nir", "nir08", "nir09", "cirrus", "swir16", "swir22", "lwir", "lwir11", "lwir12")
"""The STAC ``eo`` extension's band common names."""

SENSOR_BANDS = {
    "landsat-oli-tirs": {"B1": "coastal", "B2": "blue", "B3": "green", "B4": "red", "B5": "nir08", "B6": "swir16",
                         "B7": "swir22", "B8": "pan", "B9": "cirrus", "B10": "lwir11", "B11": "lwir12"},
    "sentinel-2-msi": {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge071",
                       "B06": "rededge075", "B07": "rededge078", "B08": "nir", "B8A": "nir08", "B09": "nir09",
                       "B10": "cirrus", "B11": "swir16", "B12": "swir22"},
}
"""Band codes of each sensor and their common names (as the Landsat and Sentinel-2 STAC collections give them)."""

# A product's file name: the sensor, and the part after the product id naming the band (or the QA layer).
_PRODUCT_FILES = (
    # Landsat 8/9 Collection 1/2: LC08_L1TP_190031_20200101_20200113_01_T1_B4, ..._SR_B4, ..._ST_B10, ..._QA_PIXEL
    ("landsat-oli-tirs", re.compile(r"^L[COT]0[89]_[A-Z0-9]{4}_\d{6}_\d{8}_\d{8}_\d{2}_[A-Z0-9]{2}_"
                                    r"(?:(?:SR|ST)_)?(?P<band>[A-Z0-9_]+)$", re.I)),
    # Sentinel-2 L1C/L2A granule files: T33UUP_20240601T100559_B04(_10m), S2A_..._B04
    ("sentinel-2-msi", re.compile(r"^(?:T\d{2}[A-Z]{3}_\d{8}T\d{6}|S2[A-D]_\w+?)_(?P<band>[A-Z0-9]{2,4}?)"
                                  r"(?:_\d{2}m)?$", re.I)),
)


def product_band_name(stem: str) -> str | None:
    """The name the product file ``stem`` (its name without suffix) gives its band, or None for other files.

    Parameters
    ----------
    stem : str
        A file name without its extension, e.g. ``"LC09_L2SP_190031_20240601_20240602_02_T1_SR_B5"``.

    Returns
    -------
    str or None
        The band's common name (``"nir08"``), the QA layer's name
        (``"QA_PIXEL"``, ``"SCL"``), or None when ``stem`` does not follow a
        known product convention.

    Examples
    --------
    >>> product_band_name("T33UUP_20240601T100559_B8A_20m")
    'nir08'
    >>> product_band_name("LC08_L1TP_190031_20200101_20200113_01_T1_BQA")
    'BQA'
    >>> product_band_name("HH") is None
    True
    """
    for sensor, pattern in _PRODUCT_FILES:
        match = pattern.match(stem)
        if match:
            band = match.group("band").upper()
            return SENSOR_BANDS[sensor].get(band, band)
    return None
