import matplotlib.image
import numpy as np
import pytest
import xarray as xr

from rastercore import ingest
from rastercore.errors import ParameterError, RasterCoreDeprecationWarning, StoreExistsError
from rastercore.palette import DEFAULT_COLORS
from rastercore.viz import is_backscatter, layer_role, overview, quicklook, quicklook_figure


def test_overview_is_the_block_mean(tmp_path, hh_hv):
    (hh, hv), expected = hh_hv
    stack = ingest([hh, hv], tmp_path / "s.zarr", tile_size=128, progress="none")
    small = overview(stack, max_size=100)  # 300 x 200 -> factor 3 -> 100 x 66
    reference = expected[:, :, :198].reshape(2, 100, 3, 66, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(small.values, reference, rtol=1e-5)


def _png(path) -> np.ndarray:
    """A PNG as RGBA bytes."""
    image = matplotlib.image.imread(path)
    if image.shape[-1] == 3:
        image = np.concatenate([image, np.ones(image.shape[:2] + (1,), image.dtype)], axis=-1)
    return np.round(image * 255).astype(np.uint8)


def _drawn(fig, png: np.ndarray, index: int = 0) -> np.ndarray:
    """The pixels of ``fig.images[index]`` as saved in ``png`` (figure images are placed from the bottom left)."""
    image = fig.images[index]
    h, w = image.get_array().shape[:2]
    top = png.shape[0] - image.oy - h
    return png[top: top + h, image.ox: image.ox + w]


def _rgba(colour) -> tuple:
    return tuple(int(round(v * 255)) for v in matplotlib.colors.to_rgba(colour))


def test_quicklook_png_sizes_and_refusal(tmp_path, hh_hv):
    (hh, hv), expected = hh_hv
    stack = ingest([hh, hv], tmp_path / "s.zarr", tile_size=128, progress="none")
    png = _png(quicklook(stack, tmp_path / "q.png", max_size=100))
    fig = quicklook_figure(stack, max_size=100)
    assert fig.images[0].get_array().shape[:2] == (100, 66)  # max_size is the image's size, drawn pixel for pixel
    assert png.shape[0] > 100 and png.shape[1] > 66  # ... in a figure with a title and a key
    drawn = _drawn(fig, png)
    assert drawn[..., :3].std() > 0.05 * 255  # stretched, not blank
    np.testing.assert_array_equal(drawn, fig.images[0].get_array())
    title = " ".join(t.get_text() for t in fig.texts)
    assert "s.zarr" in title and "HH" in title and "HV" in title and "dB" in title
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["R: HH", "G: HV", "B: HH/HV"]
    grey_fig = quicklook_figure(stack.sel(band="HV"))
    grey = _drawn(grey_fig, _png(quicklook(stack.sel(band="HV"), tmp_path / "hv.png")))
    assert grey.shape[:2] == (300, 200)
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
    bar = grey_fig.axes[0]  # the colour bar, in dB: SAR backscatter keeps its decibels
    assert bar.get_ylabel() == "HV (dB)"
    low, high = np.percentile(10 * np.log10(expected[1][expected[1] > 0]), [2, 98])
    assert bar.get_ylim() == pytest.approx((low, high), rel=1e-4)
    with pytest.raises(StoreExistsError, match=r"q\.png"):
        quicklook(stack, tmp_path / "q.png")


def test_evaluation_figures(tmp_path):
    import xarray as xr

    from rastercore.evaluate import evaluate_classes
    from rastercore.viz import class_overview, comparison_figure, confusion_figure, probability_figure

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, (300, 200)).astype(np.int32)
    pred = np.where(rng.random(truth.shape) < 0.9, truth, 0).astype(np.float32)
    prediction = xr.DataArray(pred, dims=("y", "x")).chunk(64)
    target = xr.DataArray(truth, dims=("y", "x")).chunk(64)
    small = class_overview(prediction, max_size=100)
    assert small.shape == (100, 67) and set(np.unique(small)) <= {0.0, 1.0, 2.0}  # codes, never averages
    metrics = evaluate_classes(prediction, target, class_names=["water", "field", "forest"])
    for path in (comparison_figure(prediction, target, tmp_path / "cmp.png", class_names=["water", "field", "forest"]),
                 confusion_figure(metrics, tmp_path / "cm.png")):
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image[..., :3].std() > 0.05
    proba = xr.DataArray(rng.random((3, 60, 40)).astype(np.float32), dims=("band", "y", "x"),
                         coords={"band": ["class", "p[a]", "p[b]"]}).chunk({"y": 30})
    assert matplotlib.image.imread(probability_figure(proba, tmp_path / "p.png")).shape[1] > 400
    with pytest.raises(ValueError, match="no probability layers"):
        probability_figure(proba.sel(band=["class"]), tmp_path / "q.png")
    with pytest.raises(StoreExistsError):
        confusion_figure(metrics, tmp_path / "cm.png")


def test_quicklook_of_a_cluster_map_has_one_colour_per_cluster(tmp_path):
    codes = np.zeros((60, 90), np.float32)
    codes[:, 30:60], codes[:, 60:] = 1, 2
    codes[:5, :5] = np.nan
    mosaic = xr.DataArray(codes[None], dims=("band", "y", "x"), coords={"band": ["cluster"]})
    fig = quicklook_figure(mosaic, max_size=45)
    image = fig.images[0].get_array()
    assert image.shape[:2] == (30, 45)
    colours = {tuple(px) for px in image.reshape(-1, 4)}
    assert len(colours) == 4  # three clusters and transparent nodata: no blended codes at the edges
    assert image[0, 0, 3] == 0 and image[-1, -1, 3] == 255
    palette = [_rgba(c) for c in DEFAULT_COLORS[:3]]
    assert colours == set(palette) | {(0, 0, 0, 0)}
    legend = fig.legends[0]
    assert legend.get_title().get_text() == "clusters"
    assert [t.get_text() for t in legend.get_texts()] == ["0", "1", "2", "no data"]
    assert [_rgba(h.get_facecolor()) for h in legend.legend_handles[:3]] == palette
    drawn = _drawn(fig, _png(quicklook(mosaic, tmp_path / "c.png", max_size=45)))
    assert tuple(drawn[0, 0]) == (255, 255, 255, 255)  # no data shows the white background
    assert tuple(drawn[-1, -1]) == palette[2] and tuple(drawn[0, 40]) == palette[2]


def test_class_map_in_the_mosaic_colours_with_a_legend_of_class_names(tmp_path):
    codes = np.repeat(np.arange(3, dtype=np.float32), 20)[None, :].repeat(40, axis=0)
    colours = [[31, 120, 180], [0, 100, 0], [230, 230, 20]]
    mosaic = xr.DataArray(np.stack([codes, np.full_like(codes, 0.5)]), dims=("band", "y", "x"),
                          coords={"band": ["class", "p[water]"]},
                          attrs={"class_names": ["water", "forest", "fields"], "class_colors": colours})
    fig = quicklook_figure(mosaic, title="prediction.zarr")
    legend = fig.legends[0]
    assert legend.get_title().get_text() == "classes"
    assert [t.get_text() for t in legend.get_texts()] == ["water", "forest", "fields"]  # no "no data": there is none
    assert [_rgba(h.get_facecolor())[:3] for h in legend.legend_handles] == [tuple(c) for c in colours]
    drawn = _drawn(fig, _png(quicklook(mosaic, tmp_path / "m.png", title="prediction.zarr")))
    for code, colour in enumerate(colours):
        assert (drawn[:, codes[0] == code, :3] == colour).all()
    assert fig.texts[0].get_text() == "prediction.zarr: class map"
    probability = quicklook_figure(mosaic, band="p[water]")  # another layer, on its fixed 0-1 scale
    assert probability.axes[0].get_ylim() == (0.0, 1.0) and not probability.legends
    with pytest.raises(ParameterError, match=r"band \(--band\): 'p\[land\]' is not a layer.*class, p\[water\]"):
        quicklook_figure(mosaic, band="p[land]")


def test_pca_components_get_a_percentile_stretch_and_colour_bars_not_decibels(tmp_path, hh_hv):
    from rastercore.stack import open_stack
    from rastercore.unsupervised import map_unsupervised

    (hh, hv), _ = hh_hv
    stack = ingest([hh, hv], tmp_path / "s.zarr", tile_size=128, progress="none")
    map_unsupervised(stack, tmp_path / "pca.zarr", None, "pca", n_components=2, n=5000, progress="none")
    pca = open_stack(tmp_path / "pca.zarr")
    values = pca.values
    assert (values < 0).mean() > 0.3  # what dB drew black before
    assert layer_role(pca) == "mosaic" and not is_backscatter(pca["band"].values, layer_role(pca))
    fig = quicklook_figure(pca)
    assert len(fig.images) == 2 and len(fig.axes) == 2  # a panel per component, each with its colour bar
    viridis = matplotlib.colormaps["viridis"]
    for image, bar, layer in zip(fig.images, fig.axes, values):  # 300 x 200: drawn at full resolution
        pixels = image.get_array()
        assert (pixels[..., 3] == 255).all()  # nothing transparent (no NaN from logarithms of negatives)
        low, high = bar.get_ylim()
        assert (low, high) == pytest.approx(tuple(np.percentile(layer, [2, 98])), rel=1e-4, abs=1e-6)
        expected = viridis(np.clip((layer - low) / (high - low), 0, 1), bytes=True)
        assert (pixels == expected).all(axis=-1).mean() > 0.999  # the image is the layer on that colour bar
        saturated = (layer < low).mean() + (layer > high).mean()
        assert saturated <= 0.041 and (layer < low).mean() <= 0.021  # ~2 % clipped at each end, no more
    assert [b.get_ylabel() for b in fig.axes] == ["component[0]", "component[1]"]
    assert "dB" not in " ".join(t.get_text() for t in fig.texts)


def _composite(bands: np.ndarray, factor: int) -> np.ndarray:
    """An RGB composite computed here: block means, each channel stretched between its 2nd and 98th percentiles."""
    _, h, w = bands.shape
    h, w = h // factor * factor, w // factor * factor
    small = bands[:, :h, :w].astype(np.float64).reshape(3, h // factor, factor, w // factor, factor).mean(axis=(2, 4))
    channels = []
    for band in small:
        low, high = np.percentile(band, [2, 98])
        channels.append(np.round(np.clip((band - low) / (high - low), 0, 1) * 255))
    return np.stack(channels, axis=-1).astype(np.uint8)


def test_rgb_bands_by_common_name_or_choice(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.gamma(2.0, 100.0, (4, 90, 120)).astype(np.float32)
    names = ["coastal", "blue", "green", "red"]
    stack = xr.DataArray(values, dims=("band", "y", "x"), coords={"band": names}).chunk({"y": 32, "x": 32})
    fig = quicklook_figure(stack, max_size=60)  # 90 x 120 -> factor 2
    rgb = _composite(values[[3, 2, 1]], 2)
    drawn = _drawn(fig, _png(quicklook(stack, tmp_path / "auto.png", max_size=60)))[..., :3].astype(int)
    assert np.abs(drawn - rgb).max() <= 1 and (drawn == rgb).mean() > 0.99
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["R: red", "G: green", "B: blue"]
    assert "dB" not in fig.texts[1].get_text()  # optical bands are linear
    chosen = quicklook_figure(stack, max_size=60, rgb="green,red,2").images[0].get_array()[..., :3].astype(int)
    assert np.abs(chosen - _composite(values[[2, 3, 1]], 2)).max() <= 1
    assert np.array_equal(quicklook_figure(stack, max_size=60, rgb=(4, 3, 2)).images[0].get_array(),
                          fig.images[0].get_array())
    with pytest.raises(ParameterError, match=r"rgb \(--rgb\) needs three bands"):
        quicklook_figure(stack, rgb="red,green")
    with pytest.raises(ParameterError, match=r"'nir' is not a layer of the stack; give one of coastal, blue"):
        quicklook_figure(stack, rgb="nir,red,green")
    with pytest.raises(ParameterError, match="not both"):
        quicklook_figure(stack, rgb="red,green,blue", band="red")


def test_layer_roles_decide_decibels():
    def array(names, dim="band", **attrs):
        return xr.DataArray(np.ones((len(names), 2, 2)), dims=(dim, "y", "x"), coords={dim: names}, attrs=attrs)

    assert layer_role(array(["HH", "HV"])) == "stack" and is_backscatter(["HH", "HV"])
    assert is_backscatter(["sigma0_VV", "sigma0_VH"]) and not is_backscatter(["VV_dB"])
    assert not is_backscatter(["red", "green", "blue"]) and not is_backscatter(["HH", "red"])
    assert layer_role(array(["class", "p[a]"])) == "mosaic"
    assert layer_role(array(["component[0]", "component[1]"])) == "mosaic"
    assert layer_role(array(["HH", "HV"], class_names=["a"])) == "mosaic"
    assert layer_role(array(["box_mean(size=9)[HH]"], dim="feature")) == "features"
    assert not is_backscatter(["box_mean(size=9)[HH]"], "features") and not is_backscatter(["HH"], "mosaic")
    assert layer_role(array(["HH", "HV"]).sel(band="HV")) == "stack"


def test_data_is_the_old_name_of_stack(tmp_path, hh_hv):
    (hh, hv), _ = hh_hv
    stack = ingest([hh, hv], tmp_path / "s.zarr", tile_size=128, progress="none")
    with pytest.warns(RasterCoreDeprecationWarning, match=r"overview\(\): data is now called stack"):
        small = overview(data=stack, max_size=100)
    np.testing.assert_array_equal(small.values, overview(stack, max_size=100).values)
    with pytest.warns(RasterCoreDeprecationWarning, match=r"quicklook\(\): data is now called stack"):
        old = quicklook(data=stack, path=tmp_path / "old.png", max_size=100)
    new = quicklook(stack=stack, path=tmp_path / "new.png", max_size=100)
    np.testing.assert_array_equal(matplotlib.image.imread(old), matplotlib.image.imread(new))


def test_evaluation_figures_in_class_colours_and_for_the_region(tmp_path):
    from rastercore.evaluate import evaluate_classes
    from rastercore.viz import comparison_figure, confusion_figure, probability_figure

    truth = np.repeat(np.arange(2), 50)[None, :].repeat(80, axis=0).astype(np.int32)
    colours = [[0, 0, 255], [255, 128, 0]]
    prediction = xr.DataArray(truth.astype(np.float32), dims=("y", "x"),
                              attrs={"class_names": ["water", "land"], "class_colors": colours}).chunk(40)
    target = xr.DataArray(truth, dims=("y", "x")).chunk(40)
    inside = np.zeros(truth.shape, bool)
    inside[:40] = True  # the region: the top half
    png = _png(comparison_figure(prediction, target, tmp_path / "cmp.png", mask=inside, region="validation"))
    def share(image, colour):  # of the figure's pixels within 1 of a colour
        return (np.abs(image[..., :3].astype(int) - colour).max(axis=-1) <= 1).mean()

    faded = [0.3 * np.array(c) + 0.7 * 255 for c in colours]
    assert all(share(png, c) > 0.05 for c in colours)  # the map's own colours, not the default palette
    assert all(share(png, f) > 0.05 for f in faded)  # outside the region: faded
    plain = _png(comparison_figure(prediction, target, tmp_path / "all.png"))
    assert all(share(plain, c) > 0.1 for c in colours) and all(share(plain, f) == 0 for f in faded)
    metrics = evaluate_classes(prediction, target, class_names=["water", "land"], mask=inside)
    assert metrics["pixels"] == inside.sum()
    confusion_figure(metrics, tmp_path / "cm.png", region="validation")
    proba = xr.DataArray(np.stack([truth, 1 - truth]).astype(np.float32), dims=("band", "y", "x"),
                         coords={"band": ["p[water]", "p[land]"]})
    image = _png(probability_figure(proba, tmp_path / "p.png", mask=inside, region="validation"))
    assert image.shape[1] > 400 and image[..., :3].std() > 10


def test_cli_quicklook_of_worldview_draws_red_green_blue_or_the_bands_asked_for(tmp_path, capsys):
    import dgsamples

    from rastercore.cli import main
    from rastercore.stack import open_stack

    names = "coastal,blue,green,yellow,red,rededge,nir1,nir2"
    assert main(["ingest", dgsamples.wv2_longmont_1k.ms, "-o", str(tmp_path / "wv.zarr"), "--bands", names,
                 "--scheduler", "sync", "--progress", "none"]) == 0
    stack = open_stack(tmp_path / "wv.zarr")
    values = stack.values.astype(np.float64)  # 8 x 501 x 500; --max-size 250 -> factor 3
    cases = [([], [4, 2, 1], "R: red"), (["--rgb", "nir1,red,green"], [6, 4, 2], "R: nir1"),
             (["--rgb", "5,3,2"], [4, 2, 1], "R: red")]
    for i, (options, bands, first) in enumerate(cases):
        out = tmp_path / f"q{i}.png"
        assert main(["quicklook", str(tmp_path / "wv.zarr"), str(out), "--max-size", "250", *options]) == 0
        fig = quicklook_figure(stack, max_size=250, rgb=options[1] if options else None, title="wv.zarr")
        assert fig.legends[0].get_texts()[0].get_text() == first and fig.texts[0].get_text().startswith("wv.zarr: RGB")
        drawn = _drawn(fig, _png(out))[..., :3].astype(int)
        expected = _composite(values[bands], 3)
        assert drawn.shape == expected.shape == (167, 166, 3)
        assert np.abs(drawn - expected).max() <= 1 and (drawn == expected).mean() > 0.99
    assert main(["quicklook", str(tmp_path / "wv.zarr"), str(tmp_path / "x.png"), "--rgb", "red,green,purple"]) == 2
    assert "'purple' is not a layer of the stack" in capsys.readouterr().err
