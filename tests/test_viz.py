import matplotlib.image
import numpy as np
import pytest

from rastercore import ingest
from rastercore.errors import StoreExistsError
from rastercore.viz import overview, quicklook


def test_overview_is_the_block_mean(tmp_path, hh_hv):
    (hh, hv), expected = hh_hv
    stack = ingest([hh, hv], tmp_path / "s.zarr", tile_size=128, progress="none")
    small = overview(stack, max_size=100)  # 300 x 200 -> factor 3 -> 100 x 66
    reference = expected[:, :, :198].reshape(2, 100, 3, 66, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(small.values, reference, rtol=1e-5)


def test_quicklook_png_sizes_and_refusal(tmp_path, hh_hv):
    (hh, hv), _ = hh_hv
    stack = ingest([hh, hv], tmp_path / "s.zarr", tile_size=128, progress="none")
    rgb = matplotlib.image.imread(quicklook(stack, tmp_path / "q.png", max_size=100))
    assert rgb.shape[:2] == (100, 66) and rgb.shape[2] in (3, 4)
    assert rgb[..., :3].std() > 0.05  # stretched, not blank
    grey = matplotlib.image.imread(quicklook(stack.sel(band="HV"), tmp_path / "hv.png"))
    assert grey.shape[:2] == (300, 200)
    assert np.allclose(grey[..., 0], grey[..., 1])
    with pytest.raises(StoreExistsError, match=r"q\.png"):
        quicklook(stack, tmp_path / "q.png")
