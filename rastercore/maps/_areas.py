"""Class areas of a map, and error-adjusted area estimates from a reference sample.

:func:`pixel_areas` gives the ground area of a pixel in each row (constant on
a projected CRS, shrinking towards the poles on a geographic one);
:func:`map_areas` adds them up per class tile by tile; :func:`area_estimates`
turns a sample error matrix and the mapped areas into the stratified
estimates of Olofsson et al. (2014), "Good practices for estimating area and
assessing accuracy of land change", Remote Sensing of Environment 148, 42-57.
"""

from __future__ import annotations

import math

import dask
import dask.array as da
import numpy as np
import xarray as xr

from rastercore.errors import ParameterError

__all__ = ["pixel_areas", "map_areas", "area_estimates", "Z95"]

#: Normal quantile of the 95 % confidence intervals (the paper's 1.96).
Z95 = 1.96

_MAX_EDGE_DEGREES = 0.1  # a pixel edge along a parallel is densified to points this far apart


def pixel_areas(grid) -> np.ndarray:
    """Ground area of one pixel of each row, in m².

    Parameters
    ----------
    grid : rastercore.grid.Grid
        The map's grid; it needs a CRS.

    Returns
    -------
    numpy.ndarray
        float64 ``(height,)``. On a projected CRS every row holds
        ``|a·e - b·d|`` of the transform times the square of the CRS's linear
        unit in metres. On a geographic CRS each row holds the geodesic area
        (:class:`pyproj.Geod` on the CRS's ellipsoid) of one of its pixels,
        whose edges along the parallels are densified every 0.1°.

    Raises
    ------
    ParameterError
        The grid has no CRS; or it is geographic and rotated, or reaches
        beyond ±90° latitude.
    """
    import pyproj

    if grid.crs is None:
        raise ParameterError("the map has no CRS, so its pixels have no ground area; give the map a CRS "
                             "(e.g. ingest it with --crs) to get areas in hectares.")
    crs = pyproj.CRS.from_user_input(grid.crs.to_wkt() if hasattr(grid.crs, "to_wkt") else grid.crs)
    t = grid.transform
    if crs.is_geographic:
        return _geodesic_rows(grid, crs)
    metres = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    return np.full(grid.height, abs(t.a * t.e - t.b * t.d) * metres**2, dtype=np.float64)


def _geodesic_rows(grid, crs) -> np.ndarray:
    t = grid.transform
    if t.b or t.d:
        raise ParameterError(f"the map's geographic grid is rotated ({grid.describe()}); pixel areas need a "
                             "north-up grid: warp the map to a north-up or projected grid first.")
    degrees = math.degrees(crs.axis_info[0].unit_conversion_factor) if crs.axis_info else 1.0
    width = abs(t.a) * degrees
    edges = (t.f + t.e * np.arange(grid.height + 1)) * degrees
    if np.abs(edges).max() > 90 + 1e-9:
        raise ParameterError(f"the map's grid reaches latitude {edges[np.argmax(np.abs(edges))]:g}° "
                             f"({grid.describe()}); check its transform (latitudes lie within ±90°).")
    edges = np.clip(edges, -90.0, 90.0)
    geod = crs.get_geod()
    points = max(2, math.ceil(width / _MAX_EDGE_DEGREES) + 1)
    lons = np.r_[np.linspace(0.0, width, points), np.linspace(width, 0.0, points)]
    out = np.empty(grid.height, dtype=np.float64)
    for row in range(grid.height):
        lats = np.r_[np.full(points, edges[row]), np.full(points, edges[row + 1])]
        out[row] = abs(geod.polygon_area_perimeter(lons, lats)[0])
    return out


def map_areas(classes: xr.DataArray, class_names=None, *, mask=None) -> dict:
    """Pixels and hectares of each class of a class map, tile by tile.

    One pass over the dask blocks: each block adds up its pixels per class,
    weighted by its rows' pixel areas (:func:`pixel_areas`), so memory does
    not depend on the size of the map.

    Parameters
    ----------
    classes : xarray.DataArray
        ``(y, x)`` class codes carrying the map's grid (NaN or negative for
        nodata), e.g. ``mosaic.sel(band="class")``.
    class_names : list of str, optional
        Names of classes 0, 1, ...
    mask : dask or numpy bool array, optional
        Only these pixels (e.g. :func:`rastercore.evaluate.region_mask`).

    Returns
    -------
    dict
        ``classes`` (names), ``pixels`` and ``hectares`` (totals) and
        ``per_class``: ``{name: {"pixels", "hectares"}}``. A map without a
        CRS gets pixel counts only (every ``hectares`` is None).
    """
    from rastercore.grid import grid_of

    grid = grid_of(classes)
    weights = pixel_areas(grid) if grid.crs is not None else np.zeros(grid.height)
    counts, square_metres = _class_sums(classes, weights, mask)
    hectares = square_metres / 10_000
    size = max(len(counts), len(class_names or []))
    counts, hectares = np.pad(counts, (0, size - len(counts))), np.pad(hectares, (0, size - len(hectares)))
    names = _names(class_names, size)
    known = grid.crs is not None
    return {
        "classes": names,
        "pixels": int(counts.sum()),
        "hectares": float(hectares.sum()) if known else None,
        "per_class": {name: {"pixels": int(counts[i]), "hectares": float(hectares[i]) if known else None}
                      for i, name in enumerate(names)},
    }


def _class_sums(classes: xr.DataArray, row_weights: np.ndarray, mask) -> tuple[np.ndarray, np.ndarray]:
    """Pixel count and summed row weight per class code, one task per block."""
    data = da.asarray(classes.data)
    if mask is None:
        mask = da.ones(data.shape, dtype=bool, chunks=data.chunks)
    mask = da.asarray(mask).rechunk(data.chunks)
    starts = np.cumsum((0,) + data.chunks[0])
    masks = mask.to_delayed()
    parts = [dask.delayed(_block_sums)(block, masks[i, j], row_weights[starts[i]:starts[i + 1]])
             for (i, j), block in np.ndenumerate(data.to_delayed())]
    blocks = dask.compute(*parts)
    size = max([len(c) for c, _ in blocks] + [0])
    counts, weights = np.zeros(size, np.int64), np.zeros(size, np.float64)
    for c, w in blocks:
        counts[: len(c)] += c
        weights[: len(w)] += w
    return counts, weights


def _block_sums(block: np.ndarray, mask: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes = np.where(np.isfinite(block), block, -1) if block.dtype.kind == "f" else block
    codes = codes.astype(np.int64)
    valid = np.asarray(mask, dtype=bool) & (codes >= 0)
    picked = codes[valid]
    weights = np.broadcast_to(rows[:, None], codes.shape)[valid]
    return np.bincount(picked), np.bincount(picked, weights=weights)


def _names(class_names, size: int) -> list[str]:
    names = [str(n) for n in (class_names or [])][:size]
    return names + [str(i) for i in range(len(names), size)]


def area_estimates(counts, map_areas, class_names=None) -> dict:
    """Error-adjusted areas and accuracies with 95 % confidence intervals (Olofsson et al. 2014).

    The stratified estimator of Olofsson et al. (2014), "Good practices for
    estimating area and assessing accuracy of land change" (Remote Sensing
    of Environment 148, 42-57), with the map classes as strata. With
    ``n_ij`` the sample count of map class ``i`` and reference class ``j``,
    ``n_i.`` its row sum, ``A_i`` the mapped area of class ``i``,
    ``A = Σ A_i`` and ``W_i = A_i / A``:

    - area proportions ``p_ij = W_i n_ij / n_i.``; ``p_.j = Σ_i p_ij``;
    - overall accuracy ``O = Σ_j p_jj``, ``V(O) = Σ_i W_i² U_i (1 - U_i) / (n_i. - 1)``;
    - user's accuracy ``U_i = p_ii / p_i.``, ``V(U_i) = U_i (1 - U_i) / (n_i. - 1)``;
    - producer's accuracy ``P_j = p_jj / p_.j``, with ``N_.j = Σ_i A_i n_ij / n_i.``:
      ``V(P_j) = [A_j² (1 - P_j)² U_j (1 - U_j) / (n_j. - 1)
      + P_j² Σ_{i≠j} A_i² (n_ij / n_i.) (1 - n_ij / n_i.) / (n_i. - 1)] / N_.j²``;
    - error-adjusted area ``Â_j = A p_.j``, ``SE(p_.j)² = Σ_i W_i² (n_ij / n_i.) (1 - n_ij / n_i.) / (n_i. - 1)``,
      ``SE(Â_j) = A SE(p_.j)``;
    - every 95 % confidence interval is ``± 1.96 SE`` (:data:`Z95`).

    Parameters
    ----------
    counts : array-like
        ``(q, q)`` sample error matrix: rows are the map class (the
        stratum), columns the reference class.
    map_areas : array-like
        ``(q,)`` mapped area of each class, in any unit (hectares,
        pixels, ...); the estimated areas come out in the same unit.
    class_names : list of str, optional
        Names of classes 0, 1, ...

    Returns
    -------
    dict
        ``classes``, ``sample_counts``, ``sample_size``, ``area_proportions``
        (the ``p_ij``), ``overall_accuracy`` / ``_se`` / ``_ci95``, and per
        class: ``mapped_area``, ``weight``, ``sample_size``, ``proportion`` /
        ``_se``, ``area`` / ``area_se`` / ``area_ci95``, ``users_accuracy`` /
        ``_se`` / ``_ci95`` and ``producers_accuracy`` / ``_se`` / ``_ci95``
        (``*_ci95`` is the half-width ``1.96 SE``). Values that the sample
        cannot give are NaN: every estimate when a class with mapped area
        has no sample (``unsampled_strata`` names them), a standard error
        when its stratum has a single sample, an accuracy over zero area.

    Raises
    ------
    ParameterError
        ``counts`` is not square, ``map_areas`` does not match it, or either
        holds negative values.
    """
    n, mapped = _checked(counts, map_areas)
    names = _names(class_names, len(mapped))
    total = mapped.sum()
    weights = mapped / total if total > 0 else np.zeros_like(mapped)
    stratum = n.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(weights[:, None] > 0, n / stratum[:, None], 0.0)  # n_ij / n_i.; NaN if unsampled
        p = weights[:, None] * share
        users, producers, overall = _accuracies(p)
        denominator = np.where(stratum > 1, stratum - 1.0, np.nan)
        variance_rows = weights[:, None] ** 2 * share * (1 - share) / denominator[:, None]
        variance_rows = np.where(weights[:, None] > 0, variance_rows, 0.0)
        proportion_se = np.sqrt(variance_rows.sum(axis=0))
        users_var = np.where(weights > 0, users * (1 - users) / denominator, np.nan)
        overall_se = math.sqrt(np.sum(np.where(weights > 0, weights**2 * users_var, 0.0)))
        producers_se = _producers_se(n, mapped, share, users, producers, denominator)
    proportions = p.sum(axis=0)
    result = {
        "method": "stratified estimator of Olofsson et al. (2014), strata = map classes; 95 % CI = ±1.96 SE",
        "classes": names,
        "sample_counts": n.astype(np.int64).tolist(),
        "sample_size": int(n.sum()),
        "area_proportions": p.tolist(),
        "overall_accuracy": float(overall),
        "overall_accuracy_se": overall_se,
        "overall_accuracy_ci95": Z95 * overall_se,
        "unsampled_strata": [names[i] for i in np.flatnonzero((weights > 0) & (stratum == 0))],
        "per_class": {},
    }
    for j, name in enumerate(names):
        result["per_class"][name] = {
            "mapped_area": float(mapped[j]), "weight": float(weights[j]), "sample_size": int(stratum[j]),
            "proportion": float(proportions[j]), "proportion_se": float(proportion_se[j]),
            "area": float(total * proportions[j]), "area_se": float(total * proportion_se[j]),
            "area_ci95": float(Z95 * total * proportion_se[j]),
            **_with_ci("users_accuracy", users[j], math.sqrt(users_var[j]) if users_var[j] >= 0 else math.nan),
            **_with_ci("producers_accuracy", producers[j], producers_se[j]),
        }
    return result


def _checked(counts, map_areas) -> tuple[np.ndarray, np.ndarray]:
    n = np.asarray(counts, dtype=np.float64)
    mapped = np.asarray(map_areas, dtype=np.float64).ravel()
    if n.ndim != 2 or n.shape[0] != n.shape[1]:
        raise ParameterError(f"counts must be a square (map class x reference class) matrix, not of shape {n.shape}.")
    if mapped.shape != (n.shape[0],):
        raise ParameterError(f"map_areas has {mapped.size} values but counts has {n.shape[0]} classes; give one "
                             "mapped area per class, in the order of the matrix's rows.")
    if (n < 0).any() or (mapped < 0).any() or not np.isfinite(mapped).all():
        raise ParameterError("counts and map_areas must be finite and >= 0.")
    return n, mapped


def _accuracies(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    diagonal = np.diag(p)
    rows, columns = p.sum(axis=1), p.sum(axis=0)
    users = np.where(rows > 0, diagonal / rows, np.nan)
    producers = np.where(columns > 0, diagonal / columns, np.nan)
    return users, producers, float(diagonal.sum())


def _producers_se(n, mapped, share, users, producers, denominator) -> np.ndarray:
    """Standard error of each producer's accuracy (the paper's long formula, strata i ≠ j in the second term)."""
    sampled = mapped > 0
    reference_total = np.sum(np.where(sampled[:, None], mapped[:, None] * share, 0.0), axis=0)  # N_.j
    terms = np.where(sampled[:, None], mapped[:, None] ** 2 * share * (1 - share) / denominator[:, None], 0.0)
    q = len(mapped)
    out = np.empty(q)
    for j in range(q):
        own = (mapped[j] ** 2 * (1 - producers[j]) ** 2 * users[j] * (1 - users[j]) / denominator[j]
               if sampled[j] else 0.0)
        others = terms[np.arange(q) != j, j].sum()
        out[j] = math.sqrt((own + producers[j] ** 2 * others) / reference_total[j] ** 2) \
            if reference_total[j] > 0 else math.nan
    return out


def _with_ci(name: str, value: float, se: float) -> dict:
    return {name: float(value), f"{name}_se": float(se), f"{name}_ci95": float(Z95 * se)}
