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


def _multiscale_into(ctx, p, b, out):
    """Write the preset's planes of band ``b`` into ``out`` (through scratch planes when cropping)."""
    plane = ctx.plane(b)
    tmp, spare = ctx.scratch(2)
    k = 0
    for s in multiscale_sigmas(p):
        g = ctx.dest(out[k], 2) if p["intensity"] else spare
        F.gaussian(plane, s, mode=F.NEAREST, out=g)  # skimage.filters.gaussian default
        if p["intensity"]:
            ctx.commit(out[k], g)
            k += 1
        if p["edges"]:  # mode='reflect' like skimage.filters.sobel
            ctx.commit(out[k], F.sobel_magnitude(g, out=ctx.dest(out[k], 3)))
            k += 1
        if p["texture"]:  # np.gradient twice, as skimage's _texture_filter
            big, small = F.hessian_gradient_eig(g, big=ctx.dest(out[k], 4), small=ctx.dest(out[k + 1], 5),
                                                scratch=tmp)
            ctx.commit(out[k], big)
            ctx.commit(out[k + 1], small)
            k += 2


def _multiscale(ctx, p, b):
    """Full-size planes (the generic ``compute`` form)."""
    out = np.empty((len(_ms_labels(p)),) + ctx.shape, np.float32)
    _multiscale_into(ctx.uncropped(), p, b, out)
    return list(out)


register(FeatureKind(
    "multiscale_basic",
    (Param("intensity", "bool", True, in_name=False), Param("edges", "bool", True, in_name=False),
     Param("texture", "bool", True, in_name=False),
     Param("sigma_min", "float", 0.5, minimum=0, strict=True, doc="smallest sigma"),
     Param("sigma_max", "float", 16.0, minimum=0, strict=True, doc="largest sigma"),
     Param("num_sigma", "int", None, minimum=1, doc="number of sigmas (default: powers of 2)")),
    depth=_ms_depth, labels=_ms_labels, compute=_multiscale, compute_into=_multiscale_into,
    resolve=_ms_resolve,
    doc="skimage.feature.multiscale_basic_features, same numbers and order"))
