"""Each feature against scipy.ndimage / scikit-image on small images."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
from numpy.testing import assert_allclose, assert_array_equal
from skimage.feature import graycomatrix, graycoprops, hessian_matrix_eigvals
from skimage.feature import multiscale_basic_features

from rastercore.features import features_for_block

RTOL, ATOL = 1e-5, 1e-6  # float32 outputs vs scipy's float32/float64 paths


@pytest.fixture(scope="module")
def img():
    return np.random.default_rng(0).random((40, 50)).astype(np.float32)


def run(img, **feature):
    """Outputs of one feature on a single-band image named 'A'."""
    return features_for_block(img[None], [dict(feature)], ["A"])


@pytest.mark.parametrize("sigma", [0.6, 2.0])
def test_gaussian_family_matches_scipy(img, sigma):
    assert_allclose(run(img, name="gaussian", sigma=sigma)[0],
                    ndi.gaussian_filter(img, sigma, mode="reflect"), rtol=RTOL, atol=ATOL)
    assert_allclose(run(img, name="gradient_magnitude", sigma=sigma)[0],
                    ndi.gaussian_gradient_magnitude(img, sigma), rtol=RTOL, atol=ATOL)
    assert_allclose(run(img, name="laplacian", sigma=sigma)[0],
                    ndi.gaussian_laplace(img, sigma), rtol=RTOL, atol=ATOL)
    dog = ndi.gaussian_filter(img, sigma) - ndi.gaussian_filter(img, 1.6 * sigma)
    assert_allclose(run(img, name="dog", sigma=sigma)[0], dog, rtol=RTOL, atol=ATOL)


def test_gaussian_wider_than_image_matches_scipy():
    small = np.random.default_rng(0).random((5, 3)).astype(np.float32)
    assert_allclose(run(small, name="gaussian", sigma=3)[0], ndi.gaussian_filter(small, 3),
                    rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("sigma", [0.8, 1.5])
def test_hessian_eigenvalues_match_scipy_derivatives(img, sigma):
    h = [ndi.gaussian_filter(img, sigma, order=o) for o in ((2, 0), (1, 1), (0, 2))]
    expected = hessian_matrix_eigvals(h)
    got = run(img, name="hessian_eig", sigma=sigma)
    assert_allclose(got, expected, rtol=RTOL, atol=1e-5)
    assert np.all(got[0] >= got[1])


def test_structure_tensor_eigenvalues_match_scipy(img):
    sigma, rho = 1.0, 1.5
    gy = ndi.gaussian_filter(img, sigma, order=(1, 0))
    gx = ndi.gaussian_filter(img, sigma, order=(0, 1))
    parts = [ndi.gaussian_filter(u * v, rho) for u, v in ((gy, gy), (gy, gx), (gx, gx))]
    got = run(img, name="structure_eig", sigma=sigma, rho=rho)
    assert_allclose(got, hessian_matrix_eigvals(parts), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("size", [1, 3, 5])
def test_box_filters_match_scipy(img, size):
    assert_allclose(run(img, name="box_mean", size=size)[0], ndi.uniform_filter(img, size),
                    rtol=RTOL, atol=ATOL)
    assert_array_equal(run(img, name="box_min", size=size)[0], ndi.minimum_filter(img, size))
    assert_array_equal(run(img, name="box_max", size=size)[0], ndi.maximum_filter(img, size))
    x = img.astype(np.float64)
    std = ndi.generic_filter(x, np.std, size=size, mode="reflect")
    assert_allclose(run(img, name="box_std", size=size)[0], std, rtol=1e-4, atol=1e-5)
    mean = ndi.generic_filter(x, np.mean, size=size, mode="reflect")
    assert_allclose(run(img, name="cv", size=size)[0], std / mean, rtol=1e-4, atol=1e-5)


def test_window_is_reflect_padded_neighbourhood(img):
    r = 2
    got = run(img, name="window", r=r)
    padded = np.pad(img, r, mode="symmetric")  # == scipy mode 'reflect'
    ny, nx = img.shape
    expected = [padded[r + dy:r + dy + ny, r + dx:r + dx + nx]
                for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
    assert_array_equal(got, np.stack(expected))


def test_glcm_matches_skimage_per_window():
    rng = np.random.default_rng(0)
    small = rng.random((9, 11)).astype(np.float32)
    size, levels = 5, 6
    got = run(small, name="glcm", size=size, levels=levels, vmin=0.0, vmax=1.0)
    q = np.clip(np.floor(small.astype(np.float64) * levels), 0, levels - 1).astype(np.uint8)
    r = size // 2
    padded = np.pad(q, r, mode="symmetric")
    angles = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
    for i in range(small.shape[0]):
        for j in range(small.shape[1]):
            win = padded[i:i + size, j:j + size]
            p = graycomatrix(win, [1], angles, levels=levels, symmetric=True, normed=True)
            for k, prop in enumerate(("contrast", "homogeneity", "entropy")):
                assert_allclose(got[k, i, j], graycoprops(p, prop).mean(), rtol=1e-5, atol=1e-6)


def test_band_arithmetic_and_zero_denominators():
    rng = np.random.default_rng(0)
    a = rng.random((6, 7)).astype(np.float32)
    b = rng.random((6, 7)).astype(np.float32)
    b[0, 0] = 0.0
    a[1, 1], b[1, 1] = 0.5, -0.5
    block = np.stack([a, b])
    spec = [{"name": n, "a": "HH", "b": "HV"} for n in ("ratio", "difference", "normalised_difference")]
    ratio, diff, nd = features_for_block(block, spec, ["HH", "HV"])
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        assert_allclose(ratio[b != 0], (a64 / b64)[b != 0], rtol=1e-6)
        assert_allclose(nd[a + b != 0], ((a64 - b64) / (a64 + b64))[a + b != 0], rtol=1e-5)
    assert np.isnan(ratio[0, 0]) and np.isnan(nd[1, 1])
    assert_allclose(diff, a64 - b64, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [dict(sigma_max=4), dict(sigma_min=1, sigma_max=8, num_sigma=3),
     dict(intensity=False, sigma_max=2), dict(texture=False, edges=False, sigma_max=2)],
)
def test_multiscale_preset_reproduces_skimage(kwargs):
    rng = np.random.default_rng(0)
    stack = rng.random((2, 40, 50)).astype(np.float32)
    expected = multiscale_basic_features(np.moveaxis(stack, 0, -1), channel_axis=-1, **kwargs)
    got = features_for_block(stack, [{"name": "multiscale_basic", **kwargs}], ["HH", "HV"])
    assert got.shape == np.moveaxis(expected, -1, 0).shape
    assert_allclose(got, np.moveaxis(expected, -1, 0), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def holey(img):
    out = img.copy()
    out[10, 12] = np.nan
    out[30:32, 0:3] = np.nan  # touching the scene edge
    return out


@pytest.mark.parametrize("name,reference", [
    ("gaussian", lambda x: ndi.gaussian_filter(x, 1.2)),
    ("gradient_magnitude", lambda x: ndi.gaussian_gradient_magnitude(x, 1.2)),
    ("laplacian", lambda x: ndi.gaussian_laplace(x, 1.2)),
])
def test_nan_propagates_like_scipy_linear_filters(holey, name, reference):
    got = run(holey, name=name, sigma=1.2)[0]
    expected = reference(holey)
    assert_array_equal(np.isnan(got), np.isnan(expected))
    assert_allclose(got, expected, rtol=RTOL, atol=ATOL)  # NaNs compare equal


@pytest.mark.parametrize("name", ["box_mean", "box_std", "box_min", "box_max", "cv"])
def test_nan_reaches_exactly_the_windows_that_touch_it(holey, name):
    size = 5
    got = run(holey, name=name, size=size)[0]
    touched = ndi.maximum_filter(np.isnan(holey), size, mode="reflect")
    assert_array_equal(np.isnan(got), touched)
    if name == "box_max":
        assert_array_equal(got[~touched], ndi.maximum_filter(holey, size)[~touched])


def test_nan_in_multiscale_matches_skimage(holey):
    expected = multiscale_basic_features(holey, sigma_max=2)
    got = features_for_block(holey[None], [{"name": "multiscale_basic", "sigma_max": 2}], ["A"])
    assert_allclose(got, np.moveaxis(expected, -1, 0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("weights", [[0.2, 0.5, 0.3], [1.0, -2.0, 0.5, 0.25, 3.0], [0.5, 0.5], [1.0]])
@pytest.mark.parametrize("mode,scipy_mode", [(0, "reflect"), (1, "nearest")])
def test_correlation_kernels_match_scipy_for_any_weights(img, weights, mode, scipy_mode):
    """Generic (asymmetric, even-length) weights take the unfolded path."""
    from rastercore.features import _kernels as K

    w = np.asarray(weights, np.float64)
    for kernel, axis in ((K.correlate_cols, 0), (K.correlate_rows, 1)):
        out = np.empty_like(img)
        kernel(img, w, mode, out)
        expected = ndi.correlate1d(img, w, axis=axis, mode=scipy_mode)
        assert_allclose(out, expected, rtol=RTOL, atol=ATOL)
    out = np.empty_like(img)
    K.separable(img, w, w[::-1].copy(), mode, True, out)
    tmp = ndi.correlate1d(img, w, axis=0, mode=scipy_mode)
    assert_allclose(out, ndi.correlate1d(tmp, w[::-1], axis=1, mode=scipy_mode), rtol=RTOL, atol=ATOL)


def test_block_cleaning_and_nodata():
    rng = np.random.default_rng(1)
    raw = rng.integers(1, 50, (2, 9, 8)).astype(np.uint16)
    raw[1, 4, 4] = 0
    spec = [{"name": "box_mean", "size": 3, "bands": ["B"]}]
    got = features_for_block(raw, spec, ["A", "B"], nodata=0)[0]
    masked = np.where(raw[1] == 0, np.nan, raw[1]).astype(np.float32)
    expected = ndi.correlate(masked, np.full((3, 3), 1 / 9), mode="reflect")  # NaN stays in its windows
    assert_array_equal(np.isnan(got), np.isnan(expected))
    assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    floats = rng.random((1, 12, 14)).astype(np.float32)
    floats[0, 2, 3] = -np.inf
    got = features_for_block(floats, [{"name": "gaussian", "sigma": 0.7}], ["A"])[0]
    reference = ndi.gaussian_filter(np.where(np.isinf(floats[0]), np.nan, floats[0]), 0.7)
    assert np.isnan(got[2, 3]) and np.isfinite(got[11, 0])
    assert_array_equal(np.isnan(got), np.isnan(reference))
    assert np.isinf(floats[0, 2, 3])  # the caller's block is never modified
