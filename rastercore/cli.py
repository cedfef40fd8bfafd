"""The ``rastercore`` command line.

Every command has ``--help``.  Bad input ends in one line on stderr,
``rastercore: error: ...``, and exit status 2; warnings about the input
print as one-line notices.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from rastercore._deprecated import deprecated, renamed
from rastercore.errors import RasterCoreError
from rastercore.store import CODECS, DEFAULT_CODEC

app = typer.Typer(
    help="Out-of-core, tiled raster processing and pixel-wise machine learning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

SchedulerOpt = Annotated[Optional[str], typer.Option(
    "--scheduler", envvar="RASTERCORE_SCHEDULER",
    help="'local' (default: a LocalCluster sized to this machine), a scheduler address "
         "such as tcp://host:8786, 'threads' or 'sync'.")]
ProgressOpt = Annotated[str, typer.Option(
    "--progress", help="'bar' (with ETA), 'json' (JSON lines on stderr, for headless runs), "
                       "'none', or 'auto' (bar on a terminal).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace outputs that already exist.")]
CodecOpt = Annotated[str, typer.Option(
    "--codec", help=f"Compression of the stored tiles: {', '.join(CODECS)} (lz4 is the fastest, "
                    "zstd smaller on 8-bit data, none stores raw bytes).")]


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
        raise typer.BadParameter(f"give the size as HEIGHTxWIDTH, e.g. 2048x3072, not {text!r}") from None
    return height, width


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
    scheduler: SchedulerOpt = None,
    progress: ProgressOpt = "auto",
) -> None:
    """Ingest co-registered rasters into one zarr-backed stack, tile by tile."""
    from rastercore.scheduler import client
    from rastercore.stack import describe
    from rastercore.stack import ingest as ingest_stack

    names = [b.strip() for b in bands.split(",")] if bands else None
    with client(scheduler):
        ingest_stack(inputs, output, bands=names, tile_size=tile_size, band_axis=band_axis, nodata=nodata,
                     overwrite=overwrite, resume=resume, progress=progress, codec=codec)
    _print_description(describe(output))


@app.command()
def info(
    path: Annotated[str, typer.Argument(help="A rastercore store or any input raster.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Describe a stack or raster: shape, bands, dtype, tiles, CRS, bounds, nodata."""
    from rastercore.stack import describe

    description = describe(path)
    if as_json:
        print(json.dumps(description, indent=2))
    else:
        _print_description(description)


@app.command()
def export(
    stack: Annotated[Path, typer.Argument(help="The .zarr stack or result to export.")],
    output: Annotated[Path, typer.Argument(help="The .tif to write.")],
    compress: Annotated[str, typer.Option(help="DEFLATE, ZSTD, LZW or NONE.")] = "DEFLATE",
    resampling: Annotated[str, typer.Option(help="Overview resampling: average, nearest, ...")] = "average",
    overwrite: OverwriteOpt = False,
    scheduler: SchedulerOpt = None,
    progress: ProgressOpt = "auto",
) -> None:
    """Export a stack or result to a Cloud-Optimized GeoTIFF."""
    from rastercore.scheduler import client
    from rastercore.io import write_cog
    from rastercore.stack import open_stack

    data = open_stack(stack)
    with client(scheduler):
        write_cog(data, output, compress=compress, resampling=resampling, overwrite=overwrite, progress=progress)
    print(f"wrote {output}")


@app.command()
def quicklook(
    stack: Annotated[Path, typer.Argument(help="The .zarr stack or result to draw.")],
    output: Annotated[Path, typer.Argument(help="The .png to write.")],
    max_size: Annotated[int, typer.Option(help="Longer side of the image in pixels.")] = 1024,
    overwrite: OverwriteOpt = False,
) -> None:
    """Draw a PNG quicklook of a stack from a downsampled overview."""
    from rastercore.stack import open_stack
    from rastercore.viz import quicklook as draw

    draw(open_stack(stack), output, max_size=max_size, overwrite=overwrite)
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
    from rastercore.scheduler import client
    from rastercore.datasets import write_synthetic_scene

    with client(scheduler):
        paths = write_synthetic_scene(output, _size(size), seed=seed, looks=looks, overwrite=overwrite,
                                      progress=progress)
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
    from rastercore.scheduler import client
    from rastercore.demo import run_demo

    with client(scheduler):
        result = run_demo(out, shape=_size(size), seed=seed, overwrite=overwrite, progress=progress)
    _print_result(result)
    for name in ("metrics.md", "metrics_validation.md"):
        print()
        print((Path(out) / name).read_text().strip())


@app.command("run")
def run_pipeline_file(
    pipeline: Annotated[Path, typer.Argument(help="A pipeline YAML file, e.g. pipelines/demo.yaml.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Output directory (default: the file's output_dir).")] = None,
    overwrite: OverwriteOpt = False,
    scheduler: SchedulerOpt = None,
    progress: ProgressOpt = "auto",
) -> None:
    """Run a YAML pipeline and print where each output went."""
    from rastercore.scheduler import client
    from rastercore.pipeline import load_pipeline, run_pipeline

    spec = load_pipeline(pipeline)
    with client(scheduler):
        result = run_pipeline(spec, output_dir=out, overwrite=overwrite, progress=progress)
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
        raise typer.BadParameter(f"missing {', '.join(missing)}; e.g. rastercore features stack.zarr "
                                 "-o features.zarr --spec spec.yaml (or --list)")
    from rastercore.scheduler import client
    from rastercore.features import FeatureSpec, write_features
    from rastercore.stack import open_stack

    feature_spec = FeatureSpec.from_file(spec)
    data = open_stack(stack)
    with client(scheduler):
        feats = write_features(data, feature_spec, output, normalize=normalize, tile_size=tile_size,
                               overwrite=overwrite, resume=resume, progress=progress, codec=codec)
    names = [str(f) for f in feats["feature"].values]
    print(f"{output}: {len(names)} features, {feats.shape[1]} x {feats.shape[2]} px, "
          f"tiles {feats.chunks[1][0]} x {feats.chunks[2][0]}")
    from rastercore.features import stored_spec

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
) -> None:
    """Per-band statistics of a stack, out of core: count, min, max, mean, std, percentiles."""
    from rastercore.scheduler import client
    from rastercore.preprocess import compute_band_stats
    from rastercore.stack import open_stack

    data = open_stack(stack)
    if "feature" in data.dims:
        data = data.rename(feature="band")
    with client(scheduler):
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


def _split_floats(text: Optional[str]) -> Optional[list[float]]:
    if not text:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"give numbers separated by commas, e.g. 0.3,0.6, not {text!r}") from None


def _load_spec(path: Path):
    from rastercore.features import FeatureSpec

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
) -> None:
    """Draw a stratified, spatially split sample of features and targets, out of core."""
    from rastercore.scheduler import client
    from rastercore.sampling import SpatialSplit, augment_windows, draw_sample, write_table
    from rastercore.stack import open_stack
    from rastercore.targets import rasterize_polygons, target_on_grid

    if (target is None) == (polygons is None):
        raise typer.BadParameter("give exactly one of --target and --polygons")
    if output.exists() and not overwrite:
        from rastercore.errors import StoreExistsError

        raise StoreExistsError(f"{output} already exists; pass --overwrite to replace it.")
    data = open_stack(stack)
    thresholds = _split_floats(threshold)
    if polygons is not None:
        labels = rasterize_polygons(polygons, data, attribute=attribute)
    else:
        labels = target_on_grid(target, data, kind="continuous" if thresholds else "class")
    with client(scheduler):
        table = draw_sample(data, labels, _load_spec(spec), n=n, per_class=per_class, n_validation=n_validation,
                            split=SpatialSplit(block_size=block_size, validation_fraction=validation),
                            thresholds=thresholds, seed=seed, allow_short=allow_short)
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
    family: Annotated[str, typer.Option("--family", help="Model family: svm, cascade-svm, forest, sharded-forest, hgb, "
                                                         "sgd, hurdle, multilabel.")] = "svm",
    params: Annotated[Optional[str], typer.Option(help="Estimator parameters as JSON, e.g. '{\"C\": 10}'.")] = None,
    labels: Annotated[Optional[str], typer.Option(help="multilabel: label thresholds t1,t2; hurdle: the threshold.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the estimator.")] = 0,
    overwrite: OverwriteOpt = False,
    scheduler: SchedulerOpt = None,
    model: Annotated[Optional[str], typer.Option("--model", hidden=True)] = None,
) -> None:
    """Fit a model family on a sample table, score it on the validation rows and save it."""
    from rastercore.scheduler import client
    from rastercore.sampling import read_table
    from rastercore.training import MODEL_FAMILIES, train_from_table

    family = _old_option(family, model, "--model", "--family", "train")
    if family not in MODEL_FAMILIES:
        raise typer.BadParameter(f"unknown model family {family!r}; choose one of {', '.join(MODEL_FAMILIES)}",
                                 param_hint="--family")
    try:
        estimator_params = json.loads(params) if params else {}
    except json.JSONDecodeError as err:
        raise typer.BadParameter(f"--params is not valid JSON: {err}") from None
    with client(scheduler):
        _, meta = train_from_table(read_table(sample_table), family, seed=seed, params=estimator_params,
                                   labels=_split_floats(labels), path=output, overwrite=overwrite)
    print(f"wrote {output}: {family}, fitted in {meta['fit_seconds']:.2f} s; validation {meta['validation']}")


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="Model file from `rastercore train`.")],
    stack: Annotated[Path, typer.Argument(help="The .zarr stack to predict.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Mosaic to write (.zarr).")],
    cog: Annotated[Optional[Path], typer.Option(help="Also write a Cloud-Optimized GeoTIFF.")] = None,
    probabilities: Annotated[bool, typer.Option(help="Write per-class probability layers.")] = True,
    overwrite: OverwriteOpt = False,
    resume: Annotated[bool, typer.Option("--resume", help="Finish an interrupted prediction (missing tiles only).")] = False,
    codec: CodecOpt = DEFAULT_CODEC,
    scheduler: SchedulerOpt = None,
    progress: ProgressOpt = "auto",
) -> None:
    """Predict every pixel of a stack, tile by tile, into a georeferenced mosaic."""
    from rastercore.scheduler import client
    from rastercore.predict import predict as predict_mosaic
    from rastercore.stack import open_stack

    with client(scheduler):
        mosaic = predict_mosaic(model, open_stack(stack), output, cog=cog, probabilities=probabilities,
                                overwrite=overwrite, resume=resume, progress=progress, codec=codec)
    print(f"wrote {output}: layers {', '.join(str(b) for b in mosaic['band'].values)}" + (f"; {cog}" if cog else ""))


_SAMPLE_HELP = "Fit on this many randomly drawn valid pixels"
StreamOpt = Annotated[bool, typer.Option("--stream", help="Fit on every valid pixel, tile by tile "
                                                          "(MiniBatchKMeans / IncrementalPCA).")]
UnsupervisedSpecOpt = Annotated[Optional[Path], typer.Option("--spec", help="Feature spec (default: the band values).")]
EpochsOpt = Annotated[int, typer.Option(help="Passes over the pixels with --stream.")]
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
    fitted = _unsupervised("kmeans", stack, output, spec, scheduler, n_clusters=n_clusters, n=n, stream=stream,
                           epochs=epochs, model_path=model, cog=cog, seed=seed, overwrite=overwrite, codec=codec,
                           progress=progress)
    print(f"wrote {output}: {n_clusters} clusters, fitted on {fitted.n_pixels_seen_} pixels"
          + (f"; {cog}" if cog else "") + (f"; model {model}" if model else ""))


@app.command()
def reduce(
    stack: Annotated[Path, typer.Argument(help="The .zarr stack.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Component layers to write (.zarr).")],
    n_components: Annotated[int, typer.Option("--n-components", help="Number of principal components.")] = 3,
    spec: UnsupervisedSpecOpt = None,
    sample: Annotated[int, typer.Option("--sample", help=f"{_SAMPLE_HELP} (deprecated spelling: the next release "
                                                         "calls it -n, as `sample` and `cluster` do).")] = 100_000,
    stream: StreamOpt = False,
    epochs: EpochsOpt = 1,
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
    """Project the features of every pixel onto their principal components (PCA), tile by tile."""
    n_components = _old_option(n_components, components, "--components", "--n-components", "reduce")
    if n_old is not None:
        deprecated("rastercore reduce: -n is the number of components; spell it --n-components; in the next "
                   "release -n will be the sample size, as in `sample` and `cluster`.")
        n_components = n_old
    fitted = _unsupervised("pca", stack, output, spec, scheduler, n_components=n_components, n=sample, stream=stream,
                           epochs=epochs, model_path=model, cog=cog, seed=seed, overwrite=overwrite, codec=codec,
                           progress=progress)
    ratios = ", ".join(f"{r:.3f}" for r in fitted.explained_variance_ratio_)
    print(f"wrote {output}: {n_components} components (explained variance ratio {ratios}), fitted on "
          f"{fitted.n_pixels_seen_} pixels" + (f"; {cog}" if cog else "") + (f"; model {model}" if model else ""))


def _unsupervised(method, stack, output, spec, scheduler, **options):
    """Fit ``method`` on ``stack`` and write its map (shared by ``cluster`` and ``reduce``); the fitted model."""
    from rastercore.scheduler import client
    from rastercore.stack import open_stack
    from rastercore.unsupervised import map_unsupervised

    data = open_stack(stack)
    with client(scheduler):
        _, fitted = map_unsupervised(data, output, _load_spec(spec) if spec is not None else None, method, **options)
    return fitted


@app.command()
def evaluate(
    prediction: Annotated[Path, typer.Argument(help="Mosaic from `rastercore predict`.")],
    target: Annotated[str, typer.Argument(help="Target raster (any grid; resampled onto the mosaic).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="metrics.json (metrics.md and figures beside it).")],
    model: Annotated[Optional[Path], typer.Option(help="The model file: thresholds and the spatial split.")] = None,
    region: Annotated[str, typer.Option(help="'all', 'validation' or 'train' pixels.")] = "all",
    threshold: Annotated[Optional[str], typer.Option(help="Classes from a continuous target (default: the model's).")] = None,
    figures: Annotated[bool, typer.Option(help="Write the comparison, confusion and probability figures.")] = True,
    overwrite: OverwriteOpt = False,
    scheduler: SchedulerOpt = None,
) -> None:
    """Score a mosaic against a target, out of core: metrics (JSON, Markdown) and figures."""
    from rastercore.scheduler import client
    from rastercore.evaluate import evaluate_mosaic, metrics_markdown

    if region not in ("all", "validation", "train"):
        raise typer.BadParameter("choose 'all', 'validation' or 'train'", param_hint="--region")
    with client(scheduler):
        result = evaluate_mosaic(prediction, target, output, model=model, region=region,
                                 thresholds=_split_floats(threshold), figures=figures, overwrite=overwrite)
    for task in ("classification", "regression"):
        if task in result:
            print(metrics_markdown(result[task]))
    print(f"wrote {output} and {output.with_suffix('.md')}")


def _print_result(result: dict) -> None:
    width = max(map(len, [*result["outputs"], *result["seconds"]]))
    for name, path in result["outputs"].items():
        print(f"{name:>{width}}: {path}")
    for stage, seconds in result["seconds"].items():
        print(f"{stage:>{width}}: {seconds:.2f} s")


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


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"rastercore: notice: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rastercore`` command; returns the exit status."""
    warnings.showwarning = _one_line_warning
    _quiet_cluster_logs()
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="rastercore", standalone_mode=False)
    except RasterCoreError as err:
        return _fail(err)
    except typer.Exit as exit_:
        return exit_.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("rastercore: interrupted; rerun the same command with --resume to finish", file=sys.stderr)
        return 130
    except typer.TyperException as err:  # usage errors, bad option values
        err.show()
        return err.exit_code
    except Exception as err:  # noqa: BLE001 - the CLI never shows a traceback
        from rastercore.scheduler import cluster_error

        known = cluster_error(err)
        if known is not None:
            return _fail(known)
        print(f"rastercore: error: unexpected {type(err).__name__}: {err}. Please report it with the command "
              "you ran; rerun with RASTERCORE_DEBUG=1 for the traceback.", file=sys.stderr)
        if os.environ.get("RASTERCORE_DEBUG"):
            raise
        return 1
    return 0


def _quiet_cluster_logs() -> None:
    """Keep distributed's log lines (and their tracebacks) off stderr: errors are reported here, once.

    distributed sets its loggers' levels when it is first imported, so it is
    imported first (about 0.3 s) and its levels are set after.
    """
    import distributed  # noqa: F401

    for name in ("distributed", "distributed.client", "distributed.batched", "distributed.worker",
                 "distributed.scheduler", "distributed.nanny", "tornado", "tornado.application"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _fail(err: Exception) -> int:
    print(f"rastercore: error: {' '.join(str(err).split())}", file=sys.stderr)
    return 2


def run() -> None:
    """Console-script entry point: exit with :func:`main`'s status."""
    sys.exit(main())


if __name__ == "__main__":
    run()
