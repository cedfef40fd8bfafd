"""The ``rastercore`` command line.

Every command has ``--help``; ``rastercore --version`` prints the version.
Every option is checked before any work starts.  Bad input ends in one
line on stderr, ``rastercore: error: ...``, and exit status 2; an
unexpected error is one line too, with exit status 1; Ctrl-C is one line and
exit status 130.  Warnings about the input print as one-line notices.  With
``--progress json`` every line on stderr is a JSON object (progress,
the cluster, notices, the error).  Path arguments are made absolute before
any work is submitted, so workers on a cluster find them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from rastercore import __version__
from rastercore._deprecated import deprecated, renamed
from rastercore.checks import check_choice, check_int, check_scheduler, check_tile_size
from rastercore.errors import ParameterError, RasterCoreError
from rastercore.progress import Progress, check_progress
from rastercore.store import CODECS, DEFAULT_CODEC

app = typer.Typer(
    help="Out-of-core, tiled raster processing and pixel-wise machine learning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        print(f"rastercore {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Out-of-core, tiled raster processing and pixel-wise machine learning."""


# Options every long command shares are checked as they are parsed, before the command starts.

def _scheduler_option(value: Optional[str]) -> Optional[str]:
    return check_scheduler(value)


def _progress_option(value: str) -> str:
    return check_progress(value)


def _codec_option(value: str) -> str:
    return check_choice(value, "codec (--codec)", CODECS)


SchedulerOpt = Annotated[Optional[str], typer.Option(
    "--scheduler", envvar="RASTERCORE_SCHEDULER", callback=_scheduler_option,
    help="'local' (default: a LocalCluster sized to this machine), a scheduler address "
         "such as tcp://host:8786, 'threads' or 'sync'.")]
ProgressOpt = Annotated[str, typer.Option(
    "--progress", callback=_progress_option,
    help="'bar' (with ETA), 'json' (JSON lines on stderr, for headless runs: then every line on stderr is "
         "JSON), 'none', or 'auto' (bar on a terminal).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace outputs that already exist.")]
CodecOpt = Annotated[str, typer.Option(
    "--codec", callback=_codec_option,
    help=f"Compression of the stored tiles: {', '.join(CODECS)} (lz4 is the fastest, "
         "zstd smaller on 8-bit data, none stores raw bytes).")]
StepProgressOpt = Annotated[str, typer.Option(
    "--progress", callback=_progress_option,
    help="'bar', 'json' (JSON lines on stderr: then every line on stderr is JSON), 'none', or 'auto' (bar on a "
         "terminal).  Reported per step of the command.")]


def _absolute(value):
    """A path argument (or a list of them) made absolute: workers on a cluster do not run in this directory.

    URLs (``s3://...``) and GDAL's ``/vsi...`` paths are kept as given; so is
    the ``:/dataset`` part of ``file.h5:/dataset``.
    """
    if value is None:
        return None
    if isinstance(value, list):
        return [_absolute(v) for v in value]
    text = str(value)
    if "://" in text or text.startswith("/vsi"):
        return value
    return type(value)(os.path.abspath(text))


def _not_a_directory(path, option: str, what: str):
    """``path`` unless it is a directory where a file is expected (a :class:`ParameterError` naming ``option``)."""
    if Path(path).is_dir():
        raise ParameterError(f"{option} {path} is a directory; give {what}.")
    return path


def _raster(spec, option: str):
    """``spec`` unless it is a directory other than a zarr store, where a raster is expected."""
    path = Path(spec)
    if path.is_dir() and path.suffix != ".zarr" and not any(
            (path / name).exists() for name in ("zarr.json", ".zgroup", ".zarray")):
        raise ParameterError(f"{option} {spec} is a directory, not a raster; give a GeoTIFF, JPEG, PNG, HDF5 "
                             "(file.h5:/dataset) or .npy file, or a .zarr store.")
    return spec


@contextlib.contextmanager
def _one_step(stage: str, progress: str):
    """Progress of a command whose work reports none of its own: one step, done when the block ends."""
    with Progress(stage, 1, mode=progress, unit="step") as bar:
        yield
        bar.update()


def _old_option(value, old_value, old: str, new: str, command: str):
    """``old_value`` if the option was given under its old spelling ``old`` (with a notice), else ``value``."""
    if old_value is None:
        return value
    renamed(old, new, f"rastercore {command}")
    return old_value


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ParameterError(f"size (--size) must be HEIGHTxWIDTH, e.g. 2048x3072, not {text!r}.") from None
    return check_int(height, "height (--size)", 1), check_int(width, "width (--size)", 1)


@app.command()
def ingest(
    inputs: Annotated[list[str], typer.Argument(help="Input rasters: GeoTIFF/COG, JPEG, PNG, file.h5:/dataset, .npy, zarr.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The .zarr stack to write.")],
    bands: Annotated[Optional[str], typer.Option(help="Comma-separated band names, e.g. HH,HV.")] = None,
    tile_size: Annotated[Optional[int], typer.Option(help="Tile side in pixels (default: from memory).")] = None,
    band_axis: Annotated[int, typer.Option(help="Band axis of 3-D HDF5/.npy/zarr inputs (0 or -1).")] = 0,
    nodata: Annotated[Optional[float], typer.Option(help="Nodata value (default: from the inputs).")] = None,
    overwrite: OverwriteOpt = False,
    resume: Annotated[bool, typer.Option("--resume", help="Finish an interrupted ingest of the same inputs.")] = False,
    codec: CodecOpt = DEFAULT_CODEC,
    grid: Annotated[Optional[str], typer.Option(
        "--grid", help="Adopt the grid (CRS, transform, size) of this raster or stack.")] = None,
    resolution: Annotated[Optional[float], typer.Option(
        help="Pixel size of the stack in its CRS's units (default: the finest input's, when they differ).")] = None,
    crs: Annotated[Optional[str], typer.Option(
        help="CRS of the stack, e.g. EPSG:32633 (needed with --resolution when the inputs' CRSs differ).")] = None,
    bounds: Annotated[Optional[str], typer.Option(
        help="Extent of the stack in its CRS: LEFT,BOTTOM,RIGHT,TOP.")] = None,
    extent: Annotated[str, typer.Option(
        help="Without --bounds: cover the inputs' 'intersection' or their 'union'.")] = "intersection",
    resampling: Annotated[Optional[list[str]], typer.Option(
        help="BAND=METHOD (repeat, or comma-separate), e.g. QA=nearest; default nearest for categorical bands "
             "(QA, SCL, masks), average when downsampling, bilinear otherwise.")] = None,
    assets: Annotated[Optional[str], typer.Option(
        help="For a STAC item input: comma-separated asset keys or common names, e.g. red,nir,SCL.")] = None,
    scheduler: SchedulerOpt = None,
    progress: ProgressOpt = "auto",
) -> None:
    """Ingest rasters into one zarr-backed stack, tile by tile, resampled onto one grid when they differ.

    Inputs may be local paths, URLs (https://, s3://, gs://, az://), GDAL /vsi paths or STAC item JSON files.
    """
    from rastercore.io.regrid import check_bounds
    from rastercore.scheduler import client
    from rastercore.stack import describe
    from rastercore.stack import ingest as ingest_stack

    check_tile_size(tile_size)
    check_choice(band_axis, "band_axis (--band-axis)", (0, -1, 2))
    check_choice(extent, "extent (--extent)", ("intersection", "union"))
    inputs = [_raster(spec, "input") for spec in _absolute(inputs)]
    output = _absolute(output)
    names = [b.strip() for b in bands.split(",")] if bands else None
    grid_options = {
        "grid": _raster(_absolute(grid), "--grid") if grid else None,
        "resolution": resolution, "crs": crs, "extent": extent, "assets": assets,
        "bounds": check_bounds(bounds) if bounds else None,
        "resampling": ",".join(resampling) if resampling else None,
    }
    with client(scheduler, progress=progress):
        ingest_stack(inputs, output, bands=names, tile_size=tile_size, band_axis=band_axis, nodata=nodata,
                     overwrite=overwrite, resume=resume, progress=progress, codec=codec, **grid_options)
    _print_description(describe(output))


@app.command()
def info(
    path: Annotated[str, typer.Argument(help="A rastercore store, any input raster, or a model file (.skops).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Describe a stack or raster (shape, bands, dtype, tiles, CRS, bounds, nodata) or a model file (family,
    classes and colours, bands, features, validation scores, sample size, feature importance, versions, hash)."""
    from rastercore.stack import describe

    path = _absolute(path)
    model = _is_model_file(path)
    description = _describe_model(path) if model else describe(_raster(path, "PATH"))
    if as_json:
        print(json.dumps(description, indent=2))
    else:
        (_print_model if model else _print_description)(description)


@app.command()
def export(
    stack: Annotated[Path, typer.Argument(help="The .zarr stack or result to export.")],
    output: Annotated[Path, typer.Argument(help="The .tif to write.")],
    compress: Annotated[str, typer.Option(help="GDAL compression: DEFLATE, ZSTD, LZW, LZMA, PACKBITS, LERC, NONE; "
                                               "JPEG and WEBP for 8-bit data.")] = "DEFLATE",
    resampling: Annotated[Optional[str], typer.Option(
        help="Overview resampling: average (default), nearest, mode, ... (rasterio's Resampling names); a class "
             "layer takes mode (default) or nearest.")] = None,
    layers: Annotated[Optional[str], typer.Option(
        help="Comma-separated layers to write, e.g. 'p[water],maxprob' (default: the class layer of a class "
             "mosaic, else every band).")] = None,
    overwrite: OverwriteOpt = False,
    scheduler: SchedulerOpt = None,
    progress: ProgressOpt = "auto",
) -> None:
    """Export a stack or result to a Cloud-Optimized GeoTIFF; a class map with its colours and class names."""
    from rastercore.export import export as export_cog
    from rastercore.scheduler import client
    from rastercore.stack import open_stack

    stack, output = _absolute(stack), _absolute(output)
    data = open_stack(stack)
    with client(scheduler, progress=progress):  # export checks the options before any work
        export_cog(data, output, layers=layers, compress=compress, resampling=resampling, overwrite=overwrite,
                   progress=progress)
    print(f"wrote {output}")


@app.command()
def quicklook(
    stack: Annotated[Path, typer.Argument(help="The .zarr stack or result to draw.")],
    output: Annotated[Path, typer.Argument(help="The .png to write.")],
    max_size: Annotated[int, typer.Option(help="Longer side of the image in pixels (16 or more).")] = 1024,
    rgb: Annotated[Optional[str], typer.Option(
        help="Bands for red, green and blue, by name or 1-based number, e.g. red,green,blue or 5,3,2 (default: the "
             "bands named red, green, blue, if any).")] = None,
    band: Annotated[Optional[str], typer.Option(
        help="Draw this one band or layer (name or 1-based number), e.g. HV, 'p\\[water]', 'component[0]'.")] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Draw a PNG quicklook of a stack or result from a downsampled overview, with a title and a legend or
    colour bar."""
    from rastercore.stack import open_stack
    from rastercore.viz import quicklook as draw

    check_int(max_size, "max_size (--max-size)", 16)
    stack, output = _absolute(stack), _absolute(output)
    draw(open_stack(stack), output, max_size=max_size, rgb=rgb, band=band, title=stack.name, overwrite=overwrite)
    print(f"wrote {output}")


@app.command()
def synth(
    output: Annotated[Path, typer.Argument(help="Directory for HH.tif, HV.tif and target.tif.")],
    size: Annotated[str, typer.Option(help="HEIGHTxWIDTH in pixels.")] = "2048x2048",
    seed: Annotated[int, typer.Option(help="Seed; fixes every pixel.")] = 0,
    looks: Annotated[int, typer.Option(help="Looks of the speckle (1 = single-look).")] = 1,
    overwrite: OverwriteOpt = False,
    scheduler: SchedulerOpt = None,
    progress: ProgressOpt = "auto",
) -> None:
    """Write a deterministic synthetic SAR scene (HH, HV) and its target as GeoTIFFs."""
    from rastercore.datasets import write_synthetic_scene
    from rastercore.scheduler import client

    shape = _size(size)
    check_int(looks, "looks (--looks)", 1)
    output = _absolute(output)
    with client(scheduler, progress=progress):
        paths = write_synthetic_scene(output, shape, seed=seed, looks=looks, overwrite=overwrite, progress=progress)
    for name, path in paths.items():
        print(f"{name}: {path}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("rastercore-demo"),
    size: Annotated[str, typer.Option(help="HEIGHTxWIDTH of the synthetic scene.")] = "2048x3072",
    seed: Annotated[int, typer.Option(help="Seed of the scene.")] = 0,
    overwrite: OverwriteOpt = False,
    scheduler: SchedulerOpt = None,
    progress: ProgressOpt = "auto",
) -> None:
    """Run the demo pipeline on built-in synthetic data and print where everything went."""
    from rastercore.demo import run_demo
    from rastercore.scheduler import client

    shape = _size(size)
    out = _absolute(out)
    with client(scheduler, progress=progress):
        result = run_demo(out, shape=shape, seed=seed, overwrite=overwrite, progress=progress)
    _print_result(result)
    for name in ("metrics.md", "metrics_validation.md"):
        print()
        print((out / name).read_text().strip())


@app.command("run")
def run_pipeline_file(
    pipeline: Annotated[Path, typer.Argument(help="A pipeline YAML file, e.g. pipelines/demo.yaml.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Output directory (default: the file's output_dir).")] = None,
    overwrite: OverwriteOpt = False,
    scheduler: SchedulerOpt = None,
    progress: ProgressOpt = "auto",
) -> None:
    """Run a YAML pipeline and print where each output went."""
    from rastercore.pipeline import load_pipeline, run_pipeline
    from rastercore.scheduler import client

    spec = load_pipeline(_absolute(pipeline))
    with client(scheduler, progress=progress):
        result = run_pipeline(spec, output_dir=_absolute(out), overwrite=overwrite, progress=progress)
    _print_result(result)


@app.command()
def features(
    stack: Annotated[Optional[Path], typer.Argument(help="The .zarr stack to compute features of.")] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="The .zarr feature store to write.")] = None,
    spec: Annotated[Optional[Path], typer.Option(
        "--spec", help="Feature spec, YAML or JSON: a list of features, or a mapping with 'features' "
                       "(and optionally 'normalize').")] = None,
    normalize: Annotated[Optional[str], typer.Option(
        "--normalize", help="Normalise the input bands before the features from global statistics of STACK: "
                            "zscore, minmax, percentile or zca (saved with the spec in the store).")] = None,
    tile_size: Annotated[Optional[int], typer.Option(help="Tile side in pixels (default: the stack's, "
                                                          "smaller if memory needs it).")] = None,
    overwrite: OverwriteOpt = False,
    resume: Annotated[bool, typer.Option("--resume", help="Finish an interrupted run of the same job.")] = False,
    codec: CodecOpt = DEFAULT_CODEC,
    scheduler: SchedulerOpt = None,
    progress: ProgressOpt = "auto",
    list_features: Annotated[bool, typer.Option("--list", help="List the available features and their "
                                                               "parameters, then exit.")] = False,
) -> None:
    """Compute neighbourhood features of a stack into a (feature, y, x) zarr store, tile by tile."""
    if list_features:
        _print_feature_list()
        return
    missing = [name for name, value in (("STACK", stack), ("-o/--output", output), ("--spec", spec))
               if value is None]
    if missing:
        raise ParameterError(f"missing {', '.join(missing)}; e.g. rastercore features stack.zarr "
                             "-o features.zarr --spec spec.yaml (or --list)")
    from rastercore.features import stored_spec, write_features
    from rastercore.scheduler import client
    from rastercore.stack import open_stack

    check_tile_size(tile_size)
    stack, output = _absolute(stack), _absolute(output)
    feature_spec = _load_spec(spec)
    data = open_stack(stack)
    with client(scheduler, progress=progress):
        feats = write_features(data, feature_spec, output, normalize=normalize, tile_size=tile_size,
                               overwrite=overwrite, resume=resume, progress=progress, codec=codec)
    names = [str(f) for f in feats["feature"].values]
    print(f"{output}: {len(names)} features, {feats.shape[1]} x {feats.shape[2]} px, "
          f"tiles {feats.chunks[1][0]} x {feats.chunks[2][0]}")
    norm = stored_spec(output).normalizer
    if norm is not None:
        print(f"  normalised ({norm.method}) from global statistics of {', '.join(norm.band_names)}")
    for name in names:
        print(f"  {name}")


def _print_feature_list() -> None:
    from rastercore.features import available_features

    catalogue = available_features()
    width = max(map(len, catalogue))
    for name, info in catalogue.items():
        print(f"{name:<{width}}  {info['doc']}")
        params = [f"{p}={'(required)' if v == 'required' else ('(derived)' if v is None else v)}"
                  for p, v in info["params"].items()]
        if info["per_band"]:
            params.append("bands=(all)")
        print(f"{'':<{width}}  {', '.join(params) if params else '(no parameters)'}")


@app.command()
def stats(
    stack: Annotated[Path, typer.Argument(help="The .zarr stack (or feature store).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    bins: Annotated[int, typer.Option(help="Histogram bins for the percentiles.")] = 1024,
    scheduler: SchedulerOpt = None,
    progress: StepProgressOpt = "auto",
) -> None:
    """Per-band statistics of a stack, out of core: count, min, max, mean, std, percentiles."""
    from rastercore.preprocess import compute_band_stats
    from rastercore.scheduler import client
    from rastercore.stack import open_stack

    stack = _absolute(stack)
    data = open_stack(stack)
    if "feature" in data.dims:
        data = data.rename(feature="band")
    with client(scheduler, progress=progress), _one_step("stats", progress):
        s = compute_band_stats(data, bins=bins)
    quantiles = (2, 50, 98)
    pct = {q: s.percentile(q) for q in quantiles}
    rows = {b: {"count": int(s.count[i]), "min": float(s.minimum[i]), "max": float(s.maximum[i]),
                "mean": float(s.mean[i]), "std": float(s.std[i]),
                **{f"p{q}": float(pct[q][i]) for q in quantiles}}
            for i, b in enumerate(s.band_names)}
    if as_json:
        print(json.dumps({"path": str(stack), "bands": rows}, indent=2))
        return
    width = max(4, *map(len, rows))
    keys = ["count", "min", "max", "mean", "std", *(f"p{q}" for q in quantiles)]
    print(f"{'band':<{width}}" + "".join(f"{k:>12}" for k in keys))
    for band, row in rows.items():
        print(f"{band:<{width}}" + "".join(f"{row[k]:>12d}" if k == "count" else f"{row[k]:>12.5g}" for k in keys))


def _split_floats(text: Optional[str], option: str) -> Optional[list[float]]:
    if not text:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ParameterError(f"{option} must be numbers separated by commas, e.g. 0.3,0.6, not {text!r}.") from None


def _load_spec(path: Path):
    from rastercore.features import FeatureSpec

    path = _not_a_directory(_absolute(path), "--spec", "a feature spec file (YAML or JSON)")
    return FeatureSpec.from_file(path)


@app.command()
def sample(
    stack: Annotated[Path, typer.Argument(help="The .zarr stack.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Sample table to write (.h5 or .zarr).")],
    spec: Annotated[Path, typer.Option("--spec", help="Feature spec (YAML or JSON).")],
    target: Annotated[Optional[str], typer.Option(help="Target raster (any grid; resampled onto the stack).")] = None,
    polygons: Annotated[Optional[Path], typer.Option(help="Polygons with a class attribute instead of a raster.")] = None,
    attribute: Annotated[str, typer.Option(help="Class attribute of --polygons.")] = "class",
    threshold: Annotated[Optional[str], typer.Option(help="Classes from a continuous target: value >= t (t1,t2 for ordinal).")] = None,
    n: Annotated[int, typer.Option("-n", help="Training rows.")] = 10_000,
    per_class: Annotated[str, typer.Option(help="'balanced' or 'proportional'.")] = "balanced",
    n_validation: Annotated[Optional[int], typer.Option(help="Validation rows (default from the split fraction).")] = None,
    block_size: Annotated[int, typer.Option(help="Side of the spatial-split blocks, pixels.")] = 256,
    validation: Annotated[float, typer.Option(help="Share of blocks held out for validation.")] = 0.2,
    augment: Annotated[bool, typer.Option("--augment", help="Add the 8 flips/rotations of raw window features.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the split and the sample.")] = 0,
    allow_short: Annotated[bool, typer.Option("--allow-short", help="Take all pixels of classes below quota.")] = False,
    overwrite: OverwriteOpt = False,
    scheduler: SchedulerOpt = None,
    progress: StepProgressOpt = "auto",
) -> None:
    """Draw a stratified, spatially split sample of features and targets, out of core."""
    from rastercore.sampling import SpatialSplit, augment_windows, draw_sample, write_table
    from rastercore.scheduler import client
    from rastercore.stack import open_stack
    from rastercore.store import check_output
    from rastercore.targets import rasterize_polygons, target_on_grid

    if (target is None) == (polygons is None):
        raise ParameterError("give exactly one of --target and --polygons")
    check_choice(per_class, "per_class (--per-class)", ("balanced", "proportional"))
    split = SpatialSplit(block_size=block_size, validation_fraction=validation)
    thresholds = _split_floats(threshold, "--threshold")
    stack, output, polygons = map(_absolute, (stack, output, polygons))
    target = None if target is None else _raster(_absolute(target), "--target")
    check_output(output, overwrite=overwrite)
    feature_spec = _load_spec(spec)
    data = open_stack(stack)
    if polygons is not None:
        labels = rasterize_polygons(polygons, data, attribute=attribute)
    else:
        labels = target_on_grid(target, data, kind="continuous" if thresholds else "class")
    with client(scheduler, progress=progress), _one_step("sample", progress):
        table = draw_sample(data, labels, feature_spec, n=n, per_class=per_class, n_validation=n_validation,
                            split=split, thresholds=thresholds, seed=seed, allow_short=allow_short)
    if augment:
        table = augment_windows(table)
    write_table(table, output, overwrite=overwrite)
    counts = {name: int((table.y == i).sum()) for i, name in enumerate(table.class_names or [])}
    print(f"wrote {output}: {len(table)} rows x {len(table.feature_names)} features"
          + (f", classes {counts}" if counts else ""))


@app.command()
def train(
    sample_table: Annotated[Path, typer.Argument(metavar="SAMPLE", help="Sample table from `rastercore sample`.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Model file to write (.skops).")],
    family: Annotated[str, typer.Option("--family", help="Model family: svm, cascade-svm, forest, extra-trees, "
                                                         "sharded-forest, hgb, logistic, sgd, hurdle, "
                                                         "multilabel; lightgbm and xgboost with the boost "
                                                         "extra.")] = "svm",
    params: Annotated[Optional[str], typer.Option(
        help="Estimator parameters as a JSON object, e.g. '{\"C\": 10}' (checked against the family's).")] = None,
    labels: Annotated[Optional[str], typer.Option(help="multilabel: label thresholds t1,t2; hurdle: the threshold.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the estimator.")] = 0,
    colors: Annotated[Optional[str], typer.Option(
        help="Class colours kept in the model for its maps, CLASS=COLOUR: e.g. water=#1f78b4,forest=darkgreen.")] = None,
    search: Annotated[Optional[str], typer.Option(
        help="Spatially cross-validated search first (folds of whole blocks, training rows only): 'default' (the "
             "family's small grid) or a JSON object of lists, e.g. '{\"C\": [1, 10]}'.")] = None,
    n_iter: Annotated[Optional[int], typer.Option(
        "--n-iter", help="With --search: try this many random candidates instead of the whole grid.")] = None,
    importance: Annotated[bool, typer.Option(
        "--importance", help="Permutation importance of the feature groups on the validation rows: kept in the "
                             "model, with a figure and a table beside it (<model>.importance.png, .md).")] = False,
    top_k: Annotated[Optional[int], typer.Option(
        "--top-k", help="Retrain on the K most important feature groups only (implies --importance); the model then "
                        "computes only those features.")] = None,
    importance_groups: Annotated[str, typer.Option(
        "--importance-groups", help="Feature groups: family (a spec entry, all bands), band (an entry on one band) "
                                    "or feature (one column).")] = "family",
    priors: Annotated[Optional[str], typer.Option(
        "--priors", help="Class priors the model predicts for: scene (correct a balanced sample's probabilities "
                         "and decisions to the scene's class frequencies; the default where it applies), balanced "
                         "(the model as trained) or a JSON object, e.g. '{\"water\": 0.3, \"land\": 0.7}'.")] = None,
    overwrite: OverwriteOpt = False,
    scheduler: SchedulerOpt = None,
    progress: StepProgressOpt = "auto",
    model: Annotated[Optional[str], typer.Option("--model", hidden=True)] = None,
) -> None:
    """Fit a model family on a sample table, score it on the validation rows and save it."""
    from rastercore.pipeline import check_train_params
    from rastercore.sampling import read_table
    from rastercore.scheduler import client
    from rastercore.store import check_output
    from rastercore.training import train_from_table

    family = _old_option(family, model, "--model", "--family", "train")
    grid = None if search is None else "default" if search.strip() == "default" else _json_object(search, "--search")
    if n_iter is not None:
        check_int(n_iter, "--n-iter", 1)
    estimator_params = check_train_params(family, _json_object(params, "--params"), search=grid)
    from rastercore.models._priors import parse_priors

    priors = parse_priors(priors, name="--priors")
    thresholds = _split_floats(labels, "--labels")
    sample_table, output = _absolute(sample_table), _absolute(output)
    ranked = importance or top_k is not None
    if ranked:
        from rastercore.importance import GROUPINGS
        from rastercore.training import importance_paths

        check_choice(importance_groups, "--importance-groups", GROUPINGS)
        if top_k is not None:
            check_int(top_k, "--top-k (the number of feature groups to keep)", 1)
    check_output(output, *(importance_paths(output) if ranked else ()), overwrite=overwrite)
    table = read_table(sample_table)
    with client(scheduler, progress=progress), _one_step("train", progress):
        _, meta = train_from_table(table, family, seed=seed, params=estimator_params, labels=thresholds,
                                   path=output, overwrite=overwrite, class_colors=colors, importance=importance,
                                   top_k=top_k, importance_groups=importance_groups, search=grid, n_iter=n_iter,
                                   priors=priors)
    print(f"wrote {output}: {family}, fitted in {meta['fit_seconds']:.2f} s; validation {meta['validation']}")
    if meta.get("priors"):
        _print_priors(meta["priors"])
    if meta.get("search"):
        _print_search(meta["search"])
    if meta.get("support_vector_budget"):
        print(f"support vectors: {_support_vectors_text(meta['support_vectors'], meta['support_vector_budget'])}")
    if ranked:
        _print_importance(meta, importance_paths(output))


def _support_vectors_text(count: int, budget: dict | None) -> str:
    """An SVM's support vectors, and what its budget (``max_support_vectors``) kept and changed."""
    if not budget or not budget["rows"]:
        return str(count)
    return (f"{count} of {budget['support_vectors']} (max_support_vectors; {100 * budget['agreement']:.2f} % of "
            f"{budget['rows']} held-out labels unchanged)")


def _print_priors(record: dict) -> None:
    """The class priors of ``rastercore train``: which were used, and validation with and without correction."""
    def fmt(priors):
        return ", ".join(f"{k} {v:.3f}" for k, v in (priors or {}).items()) or "unknown"

    state = "corrected" if record.get("corrected") else "not corrected"
    print(f"priors: {record['used']} ({state}); train {fmt(record['train'])}; scene {fmt(record.get('scene'))}; "
          f"target {fmt(record['target'])}" + (f" -- {record['note']}" if record.get("note") else ""))
    both = record.get("validation")
    if both:
        for which in ("uncorrected", "corrected"):
            s = both[which]
            print(f"  validation {which} ({both['priors'] if which == 'corrected' else 'as trained'}): accuracy "
                  f"{s['accuracy']:.4f}, balanced accuracy {s['balanced_accuracy']:.4f}, accuracy at the target "
                  f"priors {s['target_accuracy']:.4f}")


def _print_search(report: dict) -> None:
    """The best candidate of the spatial search of ``rastercore train`` (the full report is in the model)."""
    best = report["best"]
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
    print(f"search: best {params}: {report['scoring']} {best['mean']:.4f} ± {best['std']:.4f} over "
          f"{report['folds']} spatial folds ({len(report['candidates'])} candidates; all in the model's metadata)")


def _print_importance(meta: dict, paths) -> None:
    """The importance ranking (and the top-k refit) of ``rastercore train``, and the report files."""
    ranking = meta["importance"]
    groups = ", ".join(f"{g['group']} {g['mean']:.4f}" for g in ranking["groups"])
    print(f"importance (drop in {ranking['scoring']} on {ranking['rows']} validation rows): {groups}")
    top = meta.get("top_k")
    if top:
        print(f"retrained on the top {top['k']} group(s) ({', '.join(top['groups'])}; {len(top['features'])} of "
              f"{top['n_features_all']} features): validation {top['validation']}, with all features "
              f"{top['validation_all_features']}")
    print(f"wrote {paths[0]}, {paths[1]}")


def _json_object(text: Optional[str], option: str):
    """The JSON value of ``text`` ({} if not given), or a :class:`ParameterError` naming ``option``."""
    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError as err:
        raise ParameterError(f"{option} is not valid JSON ({err}); give an object such as '{{\"C\": 10}}'.") from None


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="Model file from `rastercore train`.")],
    stack: Annotated[Path, typer.Argument(help="The .zarr stack to predict.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Mosaic to write (.zarr).")],
    cog: Annotated[Optional[Path], typer.Option(help="Also write a Cloud-Optimized GeoTIFF.")] = None,
    probabilities: Annotated[bool, typer.Option(help="Write per-class probability layers.")] = True,
    layers: Annotated[Optional[str], typer.Option(
        help="Layers to write, in order: class, proba (one p[<class>] per class), maxprob, margin, entropy for a "
             "classifier; value, spread (forests) for a regressor.  Default: class,proba (value).")] = None,
    colors: Annotated[Optional[str], typer.Option(
        help="Class colours, CLASS=COLOUR: e.g. water=#1f78b4,forest=darkgreen (default: the model's, else a "
             "palette).")] = None,
    band_map: Annotated[Optional[str], typer.Option(
        "--band-map", help="Stack bands named otherwise than the model's, STACK=MODEL: e.g. VV=HH,VH=HV.")] = None,
    overwrite: OverwriteOpt = False,
    resume: Annotated[bool, typer.Option("--resume", help="Finish an interrupted prediction (missing tiles only).")] = False,
    codec: CodecOpt = DEFAULT_CODEC,
    scheduler: SchedulerOpt = None,
    progress: ProgressOpt = "auto",
) -> None:
    """Predict every pixel of a stack, tile by tile, into a georeferenced mosaic (and a styled class COG)."""
    from rastercore.contract import parse_band_map
    from rastercore.predict import predict as predict_mosaic
    from rastercore.scheduler import client
    from rastercore.stack import open_stack

    parse_band_map(band_map)
    model, stack, output, cog = map(_absolute, (model, stack, output, cog))
    data = open_stack(stack)
    with client(scheduler, progress=progress):
        mosaic = predict_mosaic(model, data, output, cog=cog, probabilities=probabilities, band_map=band_map,
                                layers=layers, class_colors=colors, overwrite=overwrite, resume=resume,
                                progress=progress, codec=codec)
    print(f"wrote {output}: layers {', '.join(str(b) for b in mosaic['band'].values)}" + (f"; {cog}" if cog else ""))


_SAMPLE_HELP = "Fit on this many randomly drawn valid pixels"
StreamOpt = Annotated[bool, typer.Option("--stream", help="Fit on every valid pixel, tile by tile "
                                                          "(MiniBatchKMeans / IncrementalPCA).")]
UnsupervisedSpecOpt = Annotated[Optional[Path], typer.Option(
    "--spec", help="Feature spec (default: each band smoothed by Gaussians of sigma 1 and 3 pixels); features are "
                   "standardised inside the model.")]
EpochsOpt = Annotated[int, typer.Option(help="Passes over the pixels with --stream.")]
StandardizeOpt = Annotated[bool, typer.Option(
    "--standardize/--no-standardize", help="Standardise the features inside the model (zero mean, unit variance "
                                           "over the sample), so no feature's units decide alone.")]
FittedModelOpt = Annotated[Optional[Path], typer.Option("--model", help="Also save the fitted model (.skops), for "
                                                                        "`rastercore predict` on other stacks.")]


@app.command()
def cluster(
    stack: Annotated[Path, typer.Argument(help="The .zarr stack.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Cluster map to write (.zarr).")],
    n_clusters: Annotated[int, typer.Option("-k", "--n-clusters", help="Number of clusters.")] = 8,
    spec: UnsupervisedSpecOpt = None,
    n: Annotated[int, typer.Option("-n", help=f"{_SAMPLE_HELP}.")] = 100_000,
    stream: StreamOpt = False,
    epochs: EpochsOpt = 1,
    standardize: StandardizeOpt = True,
    model: FittedModelOpt = None,
    cog: Annotated[Optional[Path], typer.Option(help="Also write the cluster map as a Cloud-Optimized GeoTIFF.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sample and of k-means.")] = 0,
    overwrite: OverwriteOpt = False,
    codec: CodecOpt = DEFAULT_CODEC,
    scheduler: SchedulerOpt = None,
    progress: ProgressOpt = "auto",
    clusters: Annotated[Optional[int], typer.Option("--clusters", hidden=True)] = None,
    sample: Annotated[Optional[int], typer.Option("--sample", hidden=True)] = None,
) -> None:
    """Cluster the pixels of a stack (k-means on its features) into a georeferenced cluster map."""
    n_clusters = _old_option(n_clusters, clusters, "--clusters", "--n-clusters", "cluster")
    n = _old_option(n, sample, "--sample", "-n", "cluster")
    check_int(n_clusters, "n_clusters (-k/--n-clusters)", 1)
    stack, output, spec, model, cog = map(_absolute, (stack, output, spec, model, cog))
    fitted = _unsupervised("kmeans", stack, output, spec, scheduler, n_clusters=n_clusters, n=n, stream=stream,
                           epochs=epochs, standardize=standardize, model_path=model, cog=cog, seed=seed,
                           overwrite=overwrite, codec=codec, progress=progress)
    print(f"wrote {output}: {n_clusters} clusters, fitted on {fitted.n_pixels_seen_} pixels"
          + (f"; {cog}" if cog else "") + (f"; model {model}" if model else ""))


@app.command()
def reduce(
    stack: Annotated[Path, typer.Argument(help="The .zarr stack.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Component layers to write (.zarr).")],
    n_components: Annotated[int, typer.Option("--n-components", help="Number of principal components.")] = 3,
    method: Annotated[str, typer.Option(
        "--method", help="pca (principal components) or kpca (RBF kernel PCA, fitted on a sample of at most 20000 "
                         "pixels and mapped tile by tile). t-SNE and UMAP are views of a sample: `rastercore "
                         "view`.")] = "pca",
    gamma: Annotated[Optional[float], typer.Option(
        help="kpca: gamma of the RBF kernel exp(-gamma |a - b|^2) on the standardised features (default: 1 / the "
             "number of features).")] = None,
    spec: UnsupervisedSpecOpt = None,
    sample: Annotated[Optional[int], typer.Option("--sample", help=f"{_SAMPLE_HELP} (default 100000; for kpca 5000, "
                                                                   "at most 20000). The next release calls it -n, "
                                                                   "as `sample` and `cluster` do.")] = None,
    stream: StreamOpt = False,
    epochs: EpochsOpt = 1,
    standardize: StandardizeOpt = True,
    model: FittedModelOpt = None,
    cog: Annotated[Optional[Path], typer.Option(help="Also write the components as a Cloud-Optimized GeoTIFF.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sample.")] = 0,
    overwrite: OverwriteOpt = False,
    codec: CodecOpt = DEFAULT_CODEC,
    scheduler: SchedulerOpt = None,
    progress: ProgressOpt = "auto",
    components: Annotated[Optional[int], typer.Option("--components", hidden=True)] = None,
    n_old: Annotated[Optional[int], typer.Option("-n", hidden=True)] = None,
) -> None:
    """Project the features of every pixel onto their principal components (PCA or kernel PCA), tile by tile."""
    from rastercore.unsupervised import PROJECTION_METHODS, check_method, check_sample_size, final_estimator

    check_method(method, PROJECTION_METHODS)
    check_sample_size(method, sample)
    n_components = _old_option(n_components, components, "--components", "--n-components", "reduce")
    if n_old is not None:
        deprecated("rastercore reduce: -n is the number of components; spell it --n-components; in the next "
                   "release -n will be the sample size, as in `sample` and `cluster`.")
        n_components = n_old
    check_int(n_components, "n_components (--n-components)", 1)
    stack, output, spec, model, cog = map(_absolute, (stack, output, spec, model, cog))
    fitted = _unsupervised(method, stack, output, spec, scheduler, n_components=n_components, n=sample,
                           stream=stream, epochs=epochs, gamma=gamma, standardize=standardize, model_path=model,
                           cog=cog, seed=seed, overwrite=overwrite, codec=codec, progress=progress)
    final = final_estimator(fitted)
    if method == "kpca":
        what = f"kernel PCA, gamma {final.gamma_:.4g}"
    else:
        what = "explained variance ratio " + ", ".join(f"{r:.3f}" for r in final.explained_variance_ratio_)
    print(f"wrote {output}: {n_components} components ({what}), fitted on "
          f"{fitted.n_pixels_seen_} pixels" + (f"; {cog}" if cog else "") + (f"; model {model}" if model else ""))


def _unsupervised(method, stack, output, spec, scheduler, *, n, epochs, progress, **options):
    """Fit ``method`` on ``stack`` and write its map (shared by ``cluster`` and ``reduce``); the fitted model."""
    from rastercore.scheduler import client
    from rastercore.stack import open_stack
    from rastercore.unsupervised import map_unsupervised

    if n is not None:
        check_int(n, "n (-n), the number of pixels to fit on", 1)
    check_int(epochs, "epochs (--epochs)", 1)
    feature_spec = _load_spec(spec) if spec is not None else None
    data = open_stack(stack)
    with client(scheduler, progress=progress):
        _, fitted = map_unsupervised(data, output, feature_spec, method, n=n, epochs=epochs, progress=progress,
                                     **options)
    return fitted


@app.command()
def view(
    stack: Annotated[Path, typer.Argument(help="The .zarr stack.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Scatter figure to write (.png); the coordinates "
                                                                "table goes beside it (.csv).")],
    method: Annotated[str, typer.Option("--method", help="tsne (openTSNE) or umap (umap-learn).")] = "tsne",
    n: Annotated[int, typer.Option("-n", help="Embed this many randomly drawn valid pixels.")] = 5_000,
    spec: UnsupervisedSpecOpt = None,
    target: Annotated[Optional[str], typer.Option(help="Class raster whose classes colour the points (any "
                                                       "grid).")] = None,
    threshold: Annotated[Optional[str], typer.Option(help="Classes from a continuous --target (comma-separated "
                                                          "thresholds).")] = None,
    clusters: Annotated[Optional[Path], typer.Option(help="Cluster map (.zarr from `rastercore cluster`) whose "
                                                          "clusters colour the points.")] = None,
    coordinates: Annotated[Optional[Path], typer.Option(help="Coordinates table to write (default: the figure's "
                                                             "name with .csv).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sample and of the embedding.")] = 0,
    perplexity: Annotated[float, typer.Option(help="tsne: effective number of neighbours.")] = 30.0,
    n_neighbors: Annotated[int, typer.Option(help="umap: neighbourhood size.")] = 15,
    overwrite: OverwriteOpt = False,
    scheduler: SchedulerOpt = None,
    progress: StepProgressOpt = "auto",
) -> None:
    """Draw a t-SNE or UMAP view of a pixel sample's features, coloured by class or cluster (a view, not a map)."""
    from rastercore.scheduler import client
    from rastercore.stack import open_stack
    from rastercore.store import check_output
    from rastercore.views import check_view, embedding_view, write_view

    check_view(method, n, target, clusters)
    thresholds = _split_floats(threshold, "--threshold")
    stack, output, spec, clusters, coordinates = map(_absolute, (stack, output, spec, clusters, coordinates))
    target = None if target is None else _raster(_absolute(target), "--target")
    table = coordinates or output.with_suffix(".csv")
    check_output(output, table, overwrite=overwrite)
    feature_spec = _load_spec(spec) if spec is not None else None
    data = open_stack(stack)
    with client(scheduler, progress=progress), _one_step("view", progress):
        shown = embedding_view(data, feature_spec, method=method, n=n, target=target, thresholds=thresholds,
                               clusters=clusters, seed=seed, perplexity=perplexity, n_neighbors=n_neighbors)
        write_view(shown, output, coordinates=table, overwrite=overwrite)
    coloured = f", coloured by {shown.color_by}" if shown.color_by else ""
    print(f"wrote {output} ({method} view of {len(shown.coordinates)} pixels{coloured}) and {table}")


@app.command()
def autoencoder(
    stack: Annotated[Path, typer.Argument(help="The .zarr stack.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Encoder to write (.onnx); its feature spec "
                                                                "(.yaml) and training report (.json) go beside it.")],
    bands: Annotated[Optional[str], typer.Option(help="Bands the network reads, comma-separated (default "
                                                      "all).")] = None,
    latent: Annotated[int, typer.Option(help="Latent features per 4 x 4 pixels.")] = 8,
    patch: Annotated[int, typer.Option(help="Side of the training patches (a multiple of 4, at least 16).")] = 16,
    n: Annotated[int, typer.Option("-n", help="Patches to draw (an exact random sample).")] = 20_000,
    epochs: Annotated[int, typer.Option(help="At most this many passes over the patches.")] = 30,
    patience: Annotated[int, typer.Option(help="Stop after this many epochs without a better validation "
                                               "loss.")] = 5,
    batch_size: Annotated[int, typer.Option(help="Patches per Adam step.")] = 256,
    learning_rate: Annotated[float, typer.Option(help="Adam's step size.")] = 1e-3,
    block_size: Annotated[int, typer.Option(help="Side of the spatial blocks held out for validation "
                                                 "(pixels).")] = 256,
    seed: Annotated[int, typer.Option(help="Seed of the patches, the split, the weights and the batches.")] = 0,
    overwrite: OverwriteOpt = False,
    scheduler: SchedulerOpt = None,
    progress: StepProgressOpt = "auto",
) -> None:
    """Train a convolutional autoencoder on patches of a stack; its encoder becomes a feature (ONNX + spec).

    Then e.g. `rastercore cluster stack.zarr --spec encoder.yaml -k 6` maps clusters of the latent features.
    Needs PyTorch: pip install 'rastercore[autoencoder]'.
    """
    from rastercore.autoencoder import check_autoencoder, report_path, spec_path, train_autoencoder
    from rastercore.scheduler import client
    from rastercore.stack import open_stack
    from rastercore.store import check_output

    check_autoencoder(latent=latent, patch=patch, n=n, epochs=epochs, patience=patience, batch_size=batch_size,
                      learning_rate=learning_rate, block_size=block_size)
    stack, output = _absolute(stack), _absolute(output)
    check_output(output, spec_path(output), report_path(output), overwrite=overwrite)
    names = None if bands is None else [b.strip() for b in bands.split(",") if b.strip()]
    data = open_stack(stack)
    with client(scheduler, progress=progress):
        result = train_autoencoder(data, output, bands=names, latent=latent, patch=patch, n=n, epochs=epochs,
                                   patience=patience, batch_size=batch_size, learning_rate=learning_rate,
                                   block_size=block_size, seed=seed, overwrite=overwrite, progress=progress)
    print(f"wrote {result.encoder} and {result.spec}: {result.n_train} training and {result.n_validation} "
          f"validation patches; best epoch {result.best_epoch} of {len(result.validation_loss)}, validation "
          f"loss {result.validation_loss[result.best_epoch - 1]:.4f} (predicting the mean: "
          f"{result.baseline_loss:.4f}); report {result.report}")


@app.command()
def clean(
    mosaic: Annotated[Path, typer.Argument(help="Class or cluster map (.zarr) from `rastercore predict` or `cluster`.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Cleaned class map to write (.zarr).")],
    majority: Annotated[Optional[int], typer.Option(
        help="Majority filter over a SIZE x SIZE window (odd, >= 3); ties keep the pixel's class if tied, else "
             "the smallest code.")] = None,
    sieve: Annotated[Optional[int], typer.Option(
        help="Merge regions smaller than this many pixels into their largest neighbour (as GDAL's sieve), after "
             "--majority.")] = None,
    connectivity: Annotated[int, typer.Option(help="4: the sieve's regions join by pixel edges; 8: by corners "
                                                   "too.")] = 4,
    overwrite: OverwriteOpt = False,
    resume: Annotated[bool, typer.Option("--resume", help="Finish an interrupted clean-up (missing tiles only).")] = False,
    codec: CodecOpt = DEFAULT_CODEC,
    scheduler: SchedulerOpt = None,
    progress: ProgressOpt = "auto",
) -> None:
    """Clean a class map, tile by tile and seamlessly: majority filter, then sieve (minimum mapping unit)."""
    from rastercore.maps import check_clean_options
    from rastercore.maps import clean as clean_map
    from rastercore.scheduler import client
    from rastercore.stack import open_stack

    check_clean_options(majority, sieve, connectivity)
    mosaic, output = _absolute(mosaic), _absolute(output)
    open_stack(mosaic)  # a missing or foreign store fails here, before a cluster starts
    with client(scheduler, progress=progress):
        clean_map(mosaic, output, majority=majority, sieve=sieve, connectivity=connectivity, overwrite=overwrite,
                  resume=resume, progress=progress, codec=codec)
    steps = [f"majority {majority}x{majority}"] * (majority is not None) + [
        f"sieve {sieve} px ({connectivity}-connected)"] * (sieve is not None)
    print(f"wrote {output}: {', then '.join(steps)}")


@app.command()
def polygonize(
    mosaic: Annotated[Path, typer.Argument(help="Class or cluster map (.zarr) from `rastercore predict` or `cluster`.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Polygons to write: .gpkg (GeoPackage) or .parquet "
                                                                 "(GeoParquet).")],
    layer: Annotated[Optional[str], typer.Option(help="Layer of class codes (default: class, else cluster).")] = None,
    connectivity: Annotated[int, typer.Option(help="4: pixels of a region join by their edges; 8: by corners "
                                                   "too.")] = 4,
    simplify: Annotated[Optional[float], typer.Option(
        help="Simplify the outlines by this tolerance in CRS units; neighbours keep shared boundaries.")] = None,
    format: Annotated[Optional[str], typer.Option(
        "--format", help="gpkg or parquet (default: from the output's extension).")] = None,
    tile_size: Annotated[Optional[int], typer.Option(help="Tile side in pixels (default: the map's tiles).")] = None,
    overwrite: OverwriteOpt = False,
    scheduler: SchedulerOpt = None,
    progress: ProgressOpt = "auto",
) -> None:
    """Write one polygon per connected region of a class map, with its class name and area, tile by tile."""
    from rastercore.maps import polygonize as polygonize_map
    from rastercore.maps import polygon_format
    from rastercore.scheduler import client
    from rastercore.store import check_output

    check_choice(connectivity, "connectivity (--connectivity)", (4, 8))
    check_tile_size(tile_size)
    if simplify is not None and not simplify >= 0:
        raise ParameterError(f"simplify (--simplify) must be a tolerance of 0 or more in CRS units, not {simplify}.")
    mosaic, output = _absolute(mosaic), _not_a_directory(_absolute(output), "--output", "a .gpkg or .parquet file")
    polygon_format(output, format)
    check_output(output, overwrite=overwrite)
    with client(scheduler, progress=progress):
        result = polygonize_map(mosaic, output, layer=layer, connectivity=connectivity, simplify=simplify,
                                format=format, tile_size=tile_size, overwrite=overwrite, progress=progress)
    classes = ", ".join(f"{name} {n}" for name, n in result.per_class.items())
    print(f"wrote {output}: {result.features} polygons" + (f" ({classes})" if classes else ""))


@app.command()
def evaluate(
    prediction: Annotated[Path, typer.Argument(help="Mosaic from `rastercore predict`.")],
    target: Annotated[str, typer.Argument(help="Target raster (any grid; resampled onto the mosaic).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="metrics.json (metrics.md and figures beside it).")],
    model: Annotated[Optional[Path], typer.Option(help="The model file: thresholds and the spatial split.")] = None,
    region: Annotated[str, typer.Option(help="'all', 'validation' or 'train' pixels.")] = "all",
    threshold: Annotated[Optional[str], typer.Option(help="Classes from a continuous target (default: the model's).")] = None,
    figures: Annotated[bool, typer.Option(help="Write the comparison, confusion and probability figures.")] = True,
    reference: Annotated[Optional[Path], typer.Option(
        help="Reference points or polygons you labelled (.gpkg, .shp, ...): error-adjusted class areas with 95 % "
             "confidence intervals (Olofsson et al. 2014) from them.")] = None,
    reference_field: Annotated[str, typer.Option(
        help="Field of --reference holding each feature's class (name or code).")] = "class",
    overwrite: OverwriteOpt = False,
    scheduler: SchedulerOpt = None,
    progress: StepProgressOpt = "auto",
) -> None:
    """Score a mosaic against a target, out of core: metrics and class areas (JSON, Markdown) and figures."""
    from rastercore.evaluate import evaluate_mosaic, metrics_markdown
    from rastercore.scheduler import client
    from rastercore.store import check_output

    check_choice(region, "region (--region)", ("all", "validation", "train"))
    thresholds = _split_floats(threshold, "--threshold")
    prediction, output, model, reference = map(_absolute, (prediction, output, model, reference))
    target = _raster(_absolute(target), "TARGET")
    check_output(output, output.with_suffix(".md"), overwrite=overwrite)
    with client(scheduler, progress=progress), _one_step("evaluate", progress):
        result = evaluate_mosaic(prediction, target, output, model=model, region=region, thresholds=thresholds,
                                 figures=figures, overwrite=overwrite, reference=reference,
                                 reference_field=reference_field)
    for task in ("clustering", "classification", "regression"):
        if task in result:
            print(metrics_markdown(result[task]))
    print(f"wrote {output} and {output.with_suffix('.md')}")


def _print_result(result: dict) -> None:
    width = max(map(len, [*result["outputs"], *result["seconds"]]))
    for name, path in result["outputs"].items():
        print(f"{name:>{width}}: {path}")
    for stage, seconds in result["seconds"].items():
        print(f"{stage:>{width}}: {seconds:.2f} s")


def _is_model_file(path) -> bool:
    """Whether ``info`` reads ``path`` as a model file: a ``.skops`` name, or any zip archive (no raster is one)."""
    import zipfile

    path = Path(path)
    return path.suffix.lower() == ".skops" or (path.is_file() and zipfile.is_zipfile(path))


def _describe_model(path) -> dict:
    """What ``info`` tells of a model file, from its manifest (the model itself is not loaded)."""
    from rastercore.models import read_manifest

    manifest = read_manifest(path)
    meta = manifest.get("metadata") or {}
    unsupervised = meta.get("unsupervised") or {}
    names = meta.get("class_names") or []
    validation = meta.get("validation") or {}
    sample = meta.get("sample_size") or {"train": unsupervised.get("pixels"), "validation": validation.get("rows")}
    return {
        "path": str(path), "kind": "rastercore model",
        "family": meta.get("family") or (f"{unsupervised['method']} (unsupervised)" if unsupervised else None),
        "estimator": (meta.get("priors") or {}).get("model_type") or manifest.get("model_type"),
        "priors": meta.get("priors"), "task": meta.get("task") or ("unsupervised" if unsupervised else None),
        "classes": _model_classes(names, meta.get("class_colors"), sample),
        "colors_from": ("model file" if meta.get("class_colors") else "default palette") if names else None,
        "bands": meta.get("bands"), "feature_names": meta.get("feature_names"),
        "feature_spec": meta.get("feature_spec"), "params": meta.get("params"), "thresholds": meta.get("thresholds"),
        "validation": meta.get("validation"), "sample_size": sample, "fit_seconds": meta.get("fit_seconds"),
        "support_vectors": meta.get("support_vectors"), "support_vector_budget": meta.get("support_vector_budget"),
        "importance": meta.get("importance"), "top_k": meta.get("top_k"),
        "created_utc": manifest.get("created_utc"), "format_version": manifest.get("format_version"),
        "versions": manifest.get("versions"), "file_sha256": manifest.get("file_sha256"),
    }


def _model_classes(names: list, colors, sample: dict) -> list[dict]:
    """Code, name, colour (``#rrggbb``) and sample rows of each class of a model file."""
    from rastercore.palette import class_colors, hex_color

    rgb = class_colors(names, colors) if names else []
    per_split = {split: sample.get(f"{split}_per_class") or {} for split in ("train", "validation")}
    return [{"code": i, "name": str(name), "color": hex_color(c),
             **{split: counts[str(name)] for split, counts in per_split.items() if str(name) in counts}}
            for i, (name, c) in enumerate(zip(names, rgb))]


def _row(label: str, text) -> None:
    print(f"  {label:<11} {text}")


def _print_model(d: dict) -> None:
    print(f"{d['path']} ({d['kind']})")
    _row("family", f"{d['family'] or 'not recorded'} ({d['estimator']})")
    _row("task", d["task"] or "not recorded")
    for i, c in enumerate(d["classes"]):
        rows = ", ".join(f"{c[k]} {k}" for k in ("train", "validation") if c.get(k) is not None)
        text = f"{c['code']:>2}  {c['color']}  {c['name']}" + (f"  ({rows})" if rows else "")
        _row("classes" if i == 0 else "", text)
    if d["classes"]:
        _row("", f"(colours: {d['colors_from']})")
    _print_model_priors(d.get("priors"))
    _print_model_inputs(d)
    sample = d["sample_size"] or {}
    _row("sample", ", ".join(f"{sample[k]} {k}" for k in ("train", "validation") if sample.get(k) is not None)
         or "not recorded")
    scores = {k: v for k, v in (d["validation"] or {}).items() if k != "rows"}
    _row("validation", ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items())
         or "not recorded")
    if d.get("support_vectors") is not None:
        _row("model", f"{_support_vectors_text(d['support_vectors'], d.get('support_vector_budget'))} support vectors")
    _print_model_importance(d)
    _row("saved", f"{d['created_utc']}, model format {d['format_version']}")
    _row("versions", ", ".join(f"{k} {v}" for k, v in (d["versions"] or {}).items()))
    _row("sha256", d["file_sha256"])


def _print_model_priors(record: dict | None) -> None:
    """The class priors a classifier predicts for (``train --priors``), when the model file records them."""
    if not record:
        return

    def fmt(priors):
        return ", ".join(f"{k} {v:.3f}" for k, v in (priors or {}).items()) or "unknown"

    state = "corrected" if record.get("corrected") else "as trained"
    _row("priors", f"{record.get('used')} ({state}): train {fmt(record.get('train'))}; "
                   f"target {fmt(record.get('target'))}")


def _print_model_importance(d: dict) -> None:
    """The permutation importance table of a model file (and its top-k refit), when it records one."""
    ranking = d.get("importance")
    if not ranking:
        return
    _row("importance", f"drop in {ranking['scoring']} when shuffled, {ranking['rows']} validation rows, "
                       f"{ranking['n_repeats']} repeats (groups: {ranking.get('grouping')})")
    for rank, g in enumerate(ranking["groups"], 1):
        _row("", f"{rank:>2}. {g['mean']:>8.4f} ± {g['std']:.4f}  {g['group']}")
    top = d.get("top_k")
    if top:
        scores = ", ".join(f"{k} {v:.4g}" for k, v in (top.get("validation_all_features") or {}).items()
                           if isinstance(v, float))
        _row("top-k", f"retrained on the top {top['k']} group(s): {', '.join(top['groups'])} "
                      f"({len(top['features'])} of {top['n_features_all']} features; with all: {scores})")


def _print_model_inputs(d: dict) -> None:
    """Bands, features, feature spec (its normaliser by name only) and parameters of a model file."""
    _row("bands", ", ".join(d["bands"] or []) or "not recorded")
    features = d["feature_names"] or []
    _row("features", f"{len(features)}: {', '.join(features)}" if features else "not recorded")
    spec = d["feature_spec"] if isinstance(d["feature_spec"], dict) else {"features": d["feature_spec"]}
    _row("spec", json.dumps(spec.get("features")))
    if isinstance(spec.get("normalize"), dict):
        norm = spec["normalize"]
        _row("normalize", f"{norm.get('method')}" + (" (with its fitted statistics)" if "stats" in norm else ""))
    if d["params"]:
        _row("params", json.dumps(d["params"]))


def _print_description(d: dict) -> None:
    print(f"{d['path']} ({d['kind']})")
    print(f"  shape    {' x '.join(map(str, d['shape']))} (band, y, x)")
    print(f"  bands    {', '.join(d['bands'])}")
    print(f"  dtype    {d['dtype']}")
    if d["tile"]:
        print(f"  tiles    {d['tile'][0]} x {d['tile'][1]}")
    print(f"  crs      {d['crs'] or 'none (pixel grid)'}")
    print(f"  bounds   {', '.join(f'{v:g}' for v in d['bounds'])} (left, bottom, right, top)")
    print(f"  pixel    {d['transform'][0]:g} x {d['transform'][4]:g}")
    print(f"  nodata   {d['nodata']}")


class _Stderr:
    """The command's own lines on stderr: ``rastercore: ...`` lines, or JSON objects with ``--progress json``."""

    def __init__(self, json_lines: bool):
        self.json_lines = json_lines

    def emit(self, event: str, message, prefix: str, **fields) -> None:
        """``prefix`` and ``message`` on one line, or ``{"event": event, **fields, "message": message}``."""
        message = " ".join(str(message).split())
        line = json.dumps({"event": event, **fields, "message": message}) if self.json_lines else prefix + message
        print(line, file=sys.stderr, flush=True)

    def error(self, message, status: int = 2) -> int:
        """One line ``rastercore: error: ...``; returns ``status``."""
        self.emit("error", message, "rastercore: error: ", status=status)
        return status

    def notice(self, message, category=None, filename=None, lineno=None, file=None, line=None) -> None:
        """A warning as one line ``rastercore: notice: ...`` (the signature of :func:`warnings.showwarning`)."""
        self.emit("notice", message, "rastercore: notice: ")


def _asks_json(argv: list[str]) -> bool:
    """Whether the command line asks for ``--progress json`` (known before the options are parsed)."""
    return "--progress=json" in argv or any(a == "--progress" and b == "json" for a, b in zip(argv, argv[1:]))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rastercore`` command; returns the exit status.

    0 on success, 2 for bad input (one line ``rastercore: error: ...``), 1
    for an unexpected error (one line too; ``RASTERCORE_DEBUG=1`` shows the
    traceback), 130 on Ctrl-C.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    stderr = _Stderr(_asks_json(argv))
    warnings.showwarning = stderr.notice
    _quiet_cluster_logs()
    previous = _interrupt_once()
    try:
        return _run(argv, stderr)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _run(argv: list[str], stderr: _Stderr) -> int:
    command = typer.main.get_command(app)
    try:
        status = command.main(args=argv, prog_name="rastercore", standalone_mode=False)
    except RasterCoreError as err:
        return stderr.error(err)
    except typer.Exit as exit_:
        return exit_.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return _interrupted(stderr)
    except typer.TyperException as err:  # usage errors: a missing argument, a value of the wrong type
        message, status = _usage(err), getattr(err, "exit_code", 2)
        return stderr.error(message, status) if message else status
    except Exception as err:  # noqa: BLE001 - the CLI never shows a traceback
        from rastercore.scheduler import cluster_error

        known = cluster_error(err)
        if known is not None:
            return stderr.error(known)
        stderr.error(f"unexpected {type(err).__name__}: {err}. Please report it with the command you ran; rerun "
                     "with RASTERCORE_DEBUG=1 for the traceback.", 1)
        if os.environ.get("RASTERCORE_DEBUG"):
            raise
        return 1
    if status == 130:  # typer's exit status for a KeyboardInterrupt inside the command
        return _interrupted(stderr)
    return status if isinstance(status, int) else 0


def _interrupted(stderr: _Stderr) -> int:
    stderr.emit("interrupted", "interrupted; rerun the same command with --resume to finish", "rastercore: ",
                status=130)
    return 130


def _usage(err) -> str:
    """A usage error in one line, saying where the usage is; empty if the usage was printed instead (no arguments)."""
    message = err.format_message() if hasattr(err, "format_message") else str(err)
    if not message.strip():
        return ""
    context = getattr(err, "ctx", None)
    where = context.command_path if context is not None else "rastercore"
    return f"{message.rstrip('.')}; see `{where} --help`."


def _interrupt_once():
    """Make Ctrl-C raise KeyboardInterrupt once; later ones are ignored while the work shuts down.

    Returns the previous SIGINT handler to restore, or None off the main
    thread (where signal handlers cannot be set).
    """
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    return signal.signal(signal.SIGINT, interrupt)


def _quiet_cluster_logs() -> None:
    """Keep distributed's log lines (and their tracebacks) off stderr: errors are reported here, once.

    distributed sets its loggers' levels when it is first imported, so it is
    imported first (about 0.3 s) and its levels are set after.
    """
    import distributed  # noqa: F401

    for name in ("distributed", "distributed.client", "distributed.batched", "distributed.worker",
                 "distributed.scheduler", "distributed.nanny", "tornado", "tornado.application"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def run() -> None:
    """Console-script entry point: exit with :func:`main`'s status."""
    sys.exit(main())


if __name__ == "__main__":
    run()
