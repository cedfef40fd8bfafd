"""The ``multiscale_basic`` preset: scikit-image's multiscale_basic_features.

Same sigma sequence, same feature order (per band: for each sigma,
intensity, edges, texture eigenvalues) and same edge handling as
``skimage.feature.multiscale_basic_features`` on float input: Gaussian with
``mode='nearest'`` (``skimage.filters.gaussian``'s default), Sobel with
``mode='reflect'`` and ``numpy.gradient`` (one-sided differences at the
scene edge) for the Hessian.  The halo is the largest Gaussian radius plus
1 (Sobel) or 2 (two ``numpy.gradient`` passes).

Integer stacks are used as float values; scikit-image would first rescale
integer images to [0, 1] (``img_as_float32``), so compare on float input.
"""

from __future__ import annotations

import numpy as np

from ..errors import FeatureSpecError
from . import _filters as F
from ._registry import FeatureKind, Param, register

__all__ = ["multiscale_sigmas"]


def multiscale_sigmas(p) -> np.ndarray:
    """The sigma sequence of ``skimage.feature.multiscale_basic_features``."""
    return np.logspace(np.log2(p["sigma_min"]), np.log2(p["sigma_max"]),
                       num=p["num_sigma"], base=2, endpoint=True)


def _ms_resolve(p):
    if not (p["intensity"] or p["edges"] or p["texture"]):
        raise FeatureSpecError("feature 'multiscale_basic' needs at least one of "
                               "intensity, edges, texture set to true")
    if p["sigma_max"] < p["sigma_min"]:
        raise FeatureSpecError("feature 'multiscale_basic' needs sigma_max >= sigma_min")
    if p["num_sigma"] is None:
        p["num_sigma"] = int(np.log2(p["sigma_max"]) - np.log2(p["sigma_min"]) + 1)
    return p


def _ms_labels(p):
    kinds = (["intensity"] if p["intensity"] else []) + (["edges"] if p["edges"] else [])
    kinds += ["texture1", "texture2"] if p["texture"] else []
    return [f"{k}(sigma={s:g})" for s in multiscale_sigmas(p) for k in kinds]


def _ms_depth(p):
    extra = 2 if p["texture"] else (1 if p["edges"] else 0)
    return F.radius_for(*multiscale_sigmas(p)) + extra


def _multiscale(ctx, p, b):
    out = []
    for s in multiscale_sigmas(p):
        g = ctx.gaussian(b, s, mode=F.NEAREST)  # skimage.filters.gaussian default
        if p["intensity"]:
            out.append(g)
        if p["edges"]:
            out.append(F.sobel_magnitude(g))  # mode='reflect' like skimage.filters.sobel
        if p["texture"]:  # np.gradient twice, as skimage's _texture_filter
            gy, gx = F.gradient(g, 0), F.gradient(g, 1)
            out += F.eigvals_sym2(F.gradient(gy, 0), F.gradient(gy, 1), F.gradient(gx, 1))
    return out


register(FeatureKind(
    "multiscale_basic",
    (Param("intensity", "bool", True, in_name=False), Param("edges", "bool", True, in_name=False),
     Param("texture", "bool", True, in_name=False),
     Param("sigma_min", "float", 0.5, minimum=0, strict=True, doc="smallest sigma"),
     Param("sigma_max", "float", 16.0, minimum=0, strict=True, doc="largest sigma"),
     Param("num_sigma", "int", None, minimum=1, doc="number of sigmas (default: powers of 2)")),
    depth=_ms_depth, labels=_ms_labels, compute=_multiscale, resolve=_ms_resolve,
    doc="skimage.feature.multiscale_basic_features, same numbers and order"))
