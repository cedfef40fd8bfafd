"""The feature kinds rastercore knows, registered in ``_registry.REGISTRY``.

Every compute function takes a :class:`BlockContext` (the bands of one block
as float32 planes, with memoised Gaussian smoothings), the validated
parameters and a band name, and returns a list of 2-D float32 arrays.
Scene edges follow scipy.ndimage ``mode='reflect'``.  The scikit-image
preset lives in ``_preset``.
"""

from __future__ import annotations

import threading

import numpy as np

from ..errors import FeatureSpecError
from . import _filters as F
from ._registry import REQUIRED, FeatureKind, Param, register

__all__ = ["BlockContext"]


_POOL = threading.local()


def _scratch_planes(shape: tuple[int, int], n: int) -> list[np.ndarray]:
    """``n`` float32 planes of ``shape`` kept by this thread from block to block.

    Reusing them spares the kernel the page faults of fresh allocations.
    Only the latest shape is kept.
    """
    planes = getattr(_POOL, "planes", None)
    if planes is None or planes[0] != shape:
        planes = _POOL.planes = (shape, [])
    while len(planes[1]) < n:
        planes[1].append(np.empty(shape, np.float32))
    return planes[1][:n]


class BlockContext:
    """Bands of one ``(band, y, x)`` block, as C-contiguous float32 planes.

    ``crop`` (top, bottom, left, right) are the halo pixels the caller drops:
    outputs hold only ``inner``.  Kinds with ``compute_into`` compute each
    full-size plane into :meth:`dest` and hand it to :meth:`commit`.
    ``origin`` is the scene (row, column) of the block's first pixel, or
    None when unknown (only kinds whose result depends on the position, such
    as a strided network, read it).
    """

    def __init__(self, block: np.ndarray, band_names, crop=None, origin=None):
        self._block = block
        self._index = {name: i for i, name in enumerate(band_names)}
        self._memo: dict = {}
        self.origin = None if origin is None else (int(origin[0]), int(origin[1]))
        top, bottom, left, right = crop or (0, 0, 0, 0)
        ny, nx = block.shape[1:]
        self.inner = (slice(top, ny - bottom), slice(left, nx - right))
        self.cropped = bool(top or bottom or left or right)

    @property
    def shape(self) -> tuple[int, int]:
        """(y, x) shape of the planes."""
        return tuple(self._block.shape[1:])

    def uncropped(self) -> "BlockContext":
        """The same block (and memo) without cropping."""
        if not self.cropped:
            return self
        ctx = BlockContext(self._block, list(self._index), origin=self.origin)
        ctx._memo = self._memo
        return ctx

    @property
    def band_names(self) -> list[str]:
        """Names of the block's bands, in block order."""
        return list(self._index)

    def scratch(self, n: int, start: int = 0) -> list[np.ndarray]:
        """Work planes ``start .. start + n - 1`` (this thread's, reused from block to block).

        Their content does not outlive the feature that asked for them.
        """
        return _scratch_planes(self.shape, start + n)[start:]

    def dest(self, out_plane: np.ndarray, i: int) -> np.ndarray:
        """Full-size plane to compute output ``out_plane`` into: itself, or scratch plane ``i`` when cropping."""
        return self.scratch(1, i)[0] if self.cropped else out_plane

    def commit(self, out_plane: np.ndarray, full: np.ndarray) -> None:
        """Store the full-size result ``full`` of ``out_plane`` (its inner part when cropping)."""
        if self.cropped:
            out_plane[...] = full[self.inner]
        elif full is not out_plane:
            out_plane[...] = full

    def plane(self, band: str) -> np.ndarray:
        """The float32 plane of ``band``."""
        key = ("plane", band)
        if key not in self._memo:
            plane = self._block[self._index[band]]
            self._memo[key] = np.ascontiguousarray(plane, dtype=np.float32)
        return self._memo[key]

    def gaussian(self, band, sigma, order=(0, 0), mode=F.REFLECT, out=None) -> np.ndarray:
        """Memoised :func:`_filters.gaussian` of ``band`` (computed into ``out`` if given)."""
        key = ("gaussian", band, float(sigma), tuple(order), mode)
        if key not in self._memo:
            self._memo[key] = F.gaussian(self.plane(band), sigma, order=order, mode=mode, out=out)
        elif out is not None:
            out[...] = self._memo[key]
        return self._memo[key]


def _one(label=""):
    return lambda p: [label]


SIZE = Param("size", "int", 3, minimum=1, odd=True, doc="odd window width in pixels")


def _sigma(doc="Gaussian standard deviation in pixels"):
    return Param("sigma", "float", REQUIRED, minimum=0, strict=True, doc=doc)


def _size_depth(p):
    return p["size"] // 2


def _sigma_depth(p):
    return F.gaussian_radius(p["sigma"])


# -- raw neighbourhood and box statistics ---------------------------------

def _window_labels(p):
    r = p["r"]
    return [f"dy={dy},dx={dx}" for dy in range(-r, r + 1) for dx in range(-r, r + 1)]


register(FeatureKind(
    "window", (Param("r", "int", 1, minimum=0, doc="radius in pixels"),),
    depth=lambda p: p["r"], labels=_window_labels,
    compute=lambda ctx, p, b: list(F.window_values(ctx.plane(b), p["r"])),
    doc="values at every offset within radius r ((2r+1)**2 outputs)"))

register(FeatureKind(
    "box_mean", (SIZE,), depth=_size_depth, labels=_one(),
    compute=lambda ctx, p, b: [F.box_mean(ctx.plane(b), p["size"])],
    compute_into=lambda ctx, p, b, out: ctx.commit(
        out[0], F.box_mean(ctx.plane(b), p["size"], out=ctx.dest(out[0], 0))),
    doc="mean over a size x size window"))


def _box_std(ctx, p, b):
    _, var = F.box_moments(ctx.plane(b), p["size"])
    return [np.sqrt(var).astype(np.float32)]


def _cv(ctx, p, b):
    return [F.box_cv(ctx.plane(b), p["size"])]


register(FeatureKind("box_std", (SIZE,), depth=_size_depth, labels=_one(),
                     compute=_box_std, doc="population standard deviation over the window"))
register(FeatureKind(
    "box_min", (SIZE,), depth=_size_depth, labels=_one(),
    compute=lambda ctx, p, b: [F.extremum(ctx.plane(b), p["size"], is_max=False)],
    doc="minimum over the window"))
register(FeatureKind(
    "box_max", (SIZE,), depth=_size_depth, labels=_one(),
    compute=lambda ctx, p, b: [F.extremum(ctx.plane(b), p["size"], is_max=True)],
    doc="maximum over the window"))
register(FeatureKind("cv", (SIZE,), depth=_size_depth, labels=_one(), compute=_cv,
                     doc="local coefficient of variation std/mean (NaN where mean is 0)"))

# -- Gaussian family ------------------------------------------------------

register(FeatureKind(
    "gaussian", (_sigma(),), depth=_sigma_depth, labels=_one(),
    compute=lambda ctx, p, b: [ctx.gaussian(b, p["sigma"])],
    compute_into=lambda ctx, p, b, out: ctx.commit(  # memoised planes must not live in scratch
        out[0], ctx.gaussian(b, p["sigma"], out=None if ctx.cropped else out[0])),
    doc="Gaussian smoothing (scipy.ndimage.gaussian_filter)"))


def _gradmag(ctx, p, b):
    s = p["sigma"]
    return [F.hypot_scaled([ctx.gaussian(b, s, (1, 0)), ctx.gaussian(b, s, (0, 1))])]


def _laplacian(ctx, p, b):
    s = p["sigma"]
    return [ctx.gaussian(b, s, (2, 0)) + ctx.gaussian(b, s, (0, 2))]


def _hessian(ctx, p, b):
    s = p["sigma"]
    return list(F.eigvals_sym2(ctx.gaussian(b, s, (2, 0)), ctx.gaussian(b, s, (1, 1)),
                               ctx.gaussian(b, s, (0, 2))))


register(FeatureKind("gradient_magnitude", (_sigma(),), depth=_sigma_depth, labels=_one(),
                     compute=_gradmag,
                     doc="Gaussian gradient magnitude (scipy gaussian_gradient_magnitude)"))
register(FeatureKind("laplacian", (_sigma(),), depth=_sigma_depth, labels=_one(),
                     compute=_laplacian, doc="Laplacian of Gaussian (scipy gaussian_laplace)"))
register(FeatureKind("hessian_eig", (_sigma(),), depth=_sigma_depth,
                     labels=lambda p: ["l1", "l2"], compute=_hessian,
                     doc="Hessian-of-Gaussian eigenvalues, l1 >= l2"))


def _dog_resolve(p):
    if p["sigma2"] is None:
        p["sigma2"] = 1.6 * p["sigma"]
    if p["sigma2"] == p["sigma"]:
        raise FeatureSpecError("feature 'dog' needs sigma2 different from sigma")
    return p


register(FeatureKind(
    "dog", (_sigma(), Param("sigma2", "float", None, minimum=0, strict=True,
                            doc="second sigma (default 1.6 * sigma)")),
    depth=lambda p: F.radius_for(p["sigma"], p["sigma2"]), labels=_one(),
    compute=lambda ctx, p, b: [ctx.gaussian(b, p["sigma"]) - ctx.gaussian(b, p["sigma2"])],
    resolve=_dog_resolve, doc="difference of Gaussians gaussian(sigma) - gaussian(sigma2)"))


def _structure(ctx, p, b):
    s, rho = p["sigma"], p["rho"]
    gy, gx = ctx.gaussian(b, s, (1, 0)), ctx.gaussian(b, s, (0, 1))
    parts = [F.gaussian(np.ascontiguousarray(u * v), rho) for u, v in ((gy, gy), (gy, gx), (gx, gx))]
    return list(F.eigvals_sym2(*parts))


def _structure_resolve(p):
    if p["rho"] is None:
        p["rho"] = 0.5 * p["sigma"]
    return p


register(FeatureKind(
    "structure_eig", (_sigma("derivative (inner) scale"),
                      Param("rho", "float", None, minimum=0, strict=True,
                            doc="integration (outer) scale, default sigma / 2")),
    depth=lambda p: F.gaussian_radius(p["sigma"]) + F.gaussian_radius(p["rho"]),
    labels=lambda p: ["l1", "l2"], compute=_structure, resolve=_structure_resolve,
    doc="structure-tensor eigenvalues, l1 >= l2 (ilastik style)"))

# -- texture --------------------------------------------------------------


def _glcm_resolve(p):
    if not p["vmax"] > p["vmin"]:
        raise FeatureSpecError("feature 'glcm' needs vmax > vmin (the global grey-level range, "
                               "e.g. percentiles from rastercore.preprocess.compute_band_stats)")
    if p["distance"] >= p["size"]:
        raise FeatureSpecError("feature 'glcm' needs distance < size so pixel pairs fit in the window")
    return p


def _glcm(ctx, p, b):
    return list(F.glcm_props(ctx.plane(b), p["size"], vmin=p["vmin"], vmax=p["vmax"],
                             levels=p["levels"], distance=p["distance"]))


register(FeatureKind(
    "glcm", (Param("size", "int", 7, minimum=3, odd=True, doc="odd window width"),
             Param("levels", "int", 16, minimum=2, doc="number of grey levels"),
             Param("vmin", "float", doc="value mapped to grey level 0"),
             Param("vmax", "float", doc="value mapped to the top grey level"),
             Param("distance", "int", 1, minimum=1, doc="pixel-pair offset")),
    depth=_size_depth, labels=lambda p: ["contrast", "homogeneity", "entropy"], compute=_glcm,
    resolve=_glcm_resolve, doc="GLCM contrast/homogeneity/entropy, mean over 4 directions"))

# -- band arithmetic ------------------------------------------------------

_AB = (Param("a", "band", doc="first band name"), Param("b", "band", doc="second band name"))


def _arith(fn):
    return lambda ctx, p, _: [fn(ctx.plane(p["a"]), ctx.plane(p["b"]))]


for _name, _fn, _doc in (
    ("ratio", lambda a, b: F.safe_divide(a, b), "a / b (NaN where b == 0)"),
    ("difference", lambda a, b: (a.astype(np.float64) - b).astype(np.float32), "a - b"),
    ("normalised_difference",
     lambda a, b: F.safe_divide(a.astype(np.float64) - b, a.astype(np.float64) + b),
     "(a - b) / (a + b) (NaN where a + b == 0)"),
):
    register(FeatureKind(_name, _AB, depth=lambda p: 0, labels=_one(), compute=_arith(_fn),
                         per_band=False, doc=_doc))

# -- spectral indices (bands by STAC common name, or named in the spec) ------------------------------

_SCALE = Param("scale", "float", 1.0, minimum=0.0, strict=True,
               doc="the bands' values are divided by it first (e.g. 10000 for reflectance stored as integers)")


def _band_param(common: str) -> Param:
    return Param(common, "band", common, doc=f"the {common} band's name in the stack (default the common name)")


def _index(name: str, bands: tuple[str, ...], formula, doc: str, extra: tuple[Param, ...] = ()):
    def compute(ctx, p, _):
        planes = [ctx.plane(p[b]).astype(np.float64) / p["scale"] for b in bands]
        num, den = formula(*planes, **{q.name: p[q.name] for q in extra})
        return [F.safe_divide(num, den)]

    register(FeatureKind(name, tuple(_band_param(b) for b in bands) + extra + (_SCALE,), depth=lambda p: 0,
                         labels=_one(), compute=compute, per_band=False, doc=doc))


SPECTRAL_INDICES = {
    "ndvi": (("nir", "red"), lambda nir, red: (nir - red, nir + red),
             "NDVI (nir - red) / (nir + red): green vegetation", ()),
    "ndwi": (("green", "nir"), lambda green, nir: (green - nir, green + nir),
             "NDWI (green - nir) / (green + nir), McFeeters 1996: open water", ()),
    "nbr": (("nir", "swir22"), lambda nir, swir22: (nir - swir22, nir + swir22),
            "NBR (nir - swir22) / (nir + swir22): burnt areas", ()),
    "ndbi": (("swir16", "nir"), lambda swir16, nir: (swir16 - nir, swir16 + nir),
             "NDBI (swir16 - nir) / (swir16 + nir): built-up areas", ()),
    "savi": (("nir", "red"), lambda nir, red, L: ((1 + L) * (nir - red), nir + red + L),
             "SAVI (1 + L)(nir - red) / (nir + red + L), Huete 1988: vegetation on bright soil (reflectance 0-1)",
             (Param("L", "float", 0.5, minimum=0.0, doc="soil brightness correction"),)),
    "evi": (("nir", "red", "blue"), lambda nir, red, blue: (2.5 * (nir - red), nir + 6 * red - 7.5 * blue + 1),
            "EVI 2.5 (nir - red) / (nir + 6 red - 7.5 blue + 1): dense vegetation (reflectance 0-1)", ()),
}
"""Named spectral indices: their bands (STAC ``eo:bands`` common names), formula and description."""

for _name, (_bands, _formula, _doc, _extra) in SPECTRAL_INDICES.items():
    _index(_name, _bands, _formula, _doc, _extra)
