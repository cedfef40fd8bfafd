"""YAML pipelines: a validated list of steps, run in order into one output directory.

A pipeline file looks like ``pipelines/demo.yaml``::

    name: demo
    output_dir: rastercore-demo
    steps:
      - {kind: synth, output: scene, shape: [2048, 3072], seed: 0, tile_size: 1024}
      - {kind: ingest, inputs: [scene/HH.tif, scene/HV.tif], output: stack.zarr, bands: [HH, HV]}
      - {kind: quicklook, input: stack.zarr, output: quicklook.png}
      - {kind: export, input: stack.zarr, output: stack.tif}

Step kinds: ``synth``, ``ingest``, ``quicklook``, ``export``, ``features``,
``cluster``, ``reduce``, ``view``, ``sample``, ``train``, ``predict``, ``evaluate``,
``clean``, ``polygonize`` (one class below each, with its fields).  Relative paths are taken inside
``output_dir``.  Unknown keys, unknown step kinds and bad values are errors
that name the file and the field.  A field's old name (each step class's
``old_names``) still works for one release, with a
:class:`~rastercore.errors.RasterCoreDeprecationWarning` naming the file.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Annotated, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from rastercore._deprecated import renamed, renamed_keywords
from rastercore.checks import TILE_SIZE_RANGE, check_choice, check_compression
from rastercore.errors import ParameterError, PipelineError, SamplingError, StoreExistsError
from rastercore.io.sources import is_remote
from rastercore.progress import ProgressMode, check_progress
from rastercore.store import DEFAULT_CODEC

__all__ = ["Pipeline", "load_pipeline", "run_pipeline", "demo_pipeline", "check_train_params", "RESERVED_PARAMS"]

TileSize = Annotated[int, Field(ge=TILE_SIZE_RANGE[0], le=TILE_SIZE_RANGE[1])]


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    old_names: ClassVar[dict[str, str]] = {}
    """Fields renamed in this release, old name -> new name."""

    @model_validator(mode="before")
    @classmethod
    def _rename_old_fields(cls, data, info: ValidationInfo):
        if not isinstance(data, dict) or not data.keys() & cls.old_names.keys():
            return data
        data = dict(data)
        source = (info.context or {}).get("source")
        where = f"{data.get('kind', cls.__name__)} step"
        where = f"{source}: {where}" if source else where
        for old, new in cls.old_names.items():
            if old in data:
                if new in data:
                    raise ValueError(f"give {new} only; {old} is its old name")
                renamed(old, new, where)
                data[new] = data.pop(old)
        return data


class SynthStep(_Step):
    """Write a synthetic scene (HH.tif, HV.tif, target.tif) into ``output``."""

    kind: Literal["synth"]
    output: str
    shape: tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]]
    seed: int = 0
    looks: Annotated[int, Field(ge=1)] = 1
    tile_size: TileSize = 1024
    old_names: ClassVar[dict[str, str]] = {"tile": "tile_size"}


class IngestStep(_Step):
    """Ingest ``inputs`` into the stack ``output``."""

    kind: Literal["ingest"]
    inputs: list[str] = Field(min_length=1)
    output: str
    bands: list[str] | None = None
    tile_size: TileSize | None = None
    band_axis: int = 0
    nodata: float | None = None
    codec: Literal["lz4", "zstd", "none"] = DEFAULT_CODEC
    grid: str | None = None
    resolution: Annotated[float, Field(gt=0)] | None = None
    crs: str | None = None
    bounds: tuple[float, float, float, float] | None = None
    extent: Literal["intersection", "union"] = "intersection"
    resampling: dict[str, str] | None = None
    assets: list[str] | None = None


class QuicklookStep(_Step):
    """Draw a PNG of a stack (or of one of its bands)."""

    kind: Literal["quicklook"]
    input: str
    output: str
    band: str | None = None
    rgb: list[str] | None = None
    max_size: Annotated[int, Field(ge=16)] = 1024


class ExportStep(_Step):
    """Export a stack or mosaic to a Cloud-Optimized GeoTIFF (see :func:`rastercore.export.export`)."""

    kind: Literal["export"]
    input: str
    output: str
    compress: str = "DEFLATE"
    resampling: str | None = None
    layers: list[str] | None = None

    @field_validator("compress")
    @classmethod
    def _known_compression(cls, value: str) -> str:
        return check_compression(value, "compress")


Features = list[dict] | dict | str
"""A step's feature spec: inline (a list of features or a spec mapping), or a YAML/JSON spec file's path.

A relative spec file name is taken inside the output directory, like every
other path of a pipeline; relative network paths (``onnx``) in the file are
relative to the file, in an inline spec to the working directory.
"""


class FeaturesStep(_Step):
    """Write a feature store ``(feature, y, x)`` of a stack."""

    kind: Literal["features"]
    stack: str
    output: str
    features: Features
    normalize: Literal["zscore", "minmax", "percentile", "zca"] | None = None
    tile_size: TileSize | None = None
    codec: Literal["lz4", "zstd", "none"] = DEFAULT_CODEC


class UnsupervisedStep(_Step):
    """What cluster and reduce steps share: fitted on ``n`` sampled pixels (or streamed), into a map (and a COG)."""

    stack: str
    output: str
    features: Features | None = None
    n: Annotated[int, Field(ge=1)] | None = None  # default: 100 000 (kernel PCA: 5 000)
    stream: bool = False
    epochs: Annotated[int, Field(ge=1)] = 1
    standardize: bool = True
    model: str | None = None
    cog: str | None = None
    seed: int = 0
    old_names: ClassVar[dict[str, str]] = {"sample": "n"}


class ClusterStep(UnsupervisedStep):
    """Cluster the pixels of a stack without labels (k-means) into a cluster map."""

    kind: Literal["cluster"]
    n_clusters: Annotated[int, Field(ge=1)] = 8
    old_names: ClassVar[dict[str, str]] = {"sample": "n", "n_components": "n_clusters"}


class ReduceStep(UnsupervisedStep):
    """Project the features of every pixel onto their principal components (PCA, or RBF kernel PCA)."""

    kind: Literal["reduce"]
    n_components: Annotated[int, Field(ge=1)] = 8
    method: str = "pca"
    gamma: Annotated[float, Field(gt=0)] | None = None

    @field_validator("method")
    @classmethod
    def _a_projection(cls, method: str) -> str:
        from rastercore.unsupervised import PROJECTION_METHODS, check_method

        return check_method(method, PROJECTION_METHODS)

    @model_validator(mode="after")
    def _sample_fits_the_method(self):
        from rastercore.unsupervised import check_sample_size

        check_sample_size(self.method, self.n)
        return self


class AutoencoderStep(_Step):
    """Train a scene autoencoder on patches of a stack (:func:`~rastercore.autoencoder.train_autoencoder`).

    Writes the encoder (``output``, ``.onnx``) with its feature spec beside it
    (``.yaml``), which later steps name as ``features: <name>.yaml``.
    """

    kind: Literal["autoencoder"]
    stack: str
    output: str
    bands: list[str] | None = None
    latent: Annotated[int, Field(ge=1)] = 8
    patch: Annotated[int, Field(ge=16, multiple_of=4)] = 16
    n: Annotated[int, Field(ge=20)] = 20_000
    epochs: Annotated[int, Field(ge=1)] = 30
    patience: Annotated[int, Field(ge=1)] = 5
    batch_size: Annotated[int, Field(ge=1)] = 256
    learning_rate: Annotated[float, Field(gt=0, lt=1)] = 1e-3
    block_size: Annotated[int, Field(ge=1)] = 256
    seed: int = 0


class ViewStep(_Step):
    """A t-SNE or UMAP view of a pixel sample, coloured by class or cluster (:func:`~rastercore.views.embedding_view`).

    Writes the figure (``output``) and the coordinates table (``coordinates``, default beside it, ``.csv``).
    """

    kind: Literal["view"]
    stack: str
    output: str
    method: Literal["tsne", "umap"] = "tsne"
    n: Annotated[int, Field(ge=10)] = 5_000
    features: Features | None = None
    target: str | None = None
    thresholds: list[float] | float | None = None
    clusters: str | None = None
    coordinates: str | None = None
    seed: int = 0
    perplexity: Annotated[float, Field(gt=0)] = 30.0
    n_neighbors: Annotated[int, Field(ge=2)] = 15


class SampleStep(_Step):
    """Draw a stratified, spatially split sample table (``.h5`` or ``.zarr``)."""

    kind: Literal["sample"]
    stack: str
    target: str
    output: str
    features: Features
    thresholds: list[float] | float | None = None
    n: Annotated[int, Field(ge=0)] = 10_000
    per_class: str | dict[int, int] = "balanced"
    n_validation: Annotated[int, Field(ge=0)] | None = None
    block_size: Annotated[int, Field(ge=8)] = 256
    validation_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.2
    seed: int = 0


class TrainStep(_Step):
    """Fit a model family on a sample table and save it (``.skops``)."""

    kind: Literal["train"]
    sample: str
    output: str
    family: str = "svm"
    params: dict = Field(default_factory=dict)
    labels: list[float] | None = None
    seed: int = 0
    colors: dict[str, str] | None = None
    search: dict | str | None = None
    n_iter: Annotated[int, Field(ge=1)] | None = None
    importance: bool = False
    top_k: Annotated[int, Field(ge=1)] | None = None
    importance_groups: Literal["family", "band", "feature"] = "family"
    priors: str | dict[str, float] | None = None

    @model_validator(mode="after")
    def _known_params(self):
        check_train_params(self.family, self.params, family_name="family", params_name="params",
                           search=self.search, search_name="search")
        from rastercore.models._priors import parse_priors

        parse_priors(self.priors, name="priors")
        return self


class PredictStep(_Step):
    """Predict every pixel of a stack into a zarr mosaic (and a COG)."""

    kind: Literal["predict"]
    model: str
    stack: str
    output: str
    cog: str | None = None
    probabilities: bool = True
    layers: list[str] | None = None
    colors: dict[str, str] | None = None
    codec: Literal["lz4", "zstd", "none"] = DEFAULT_CODEC


class EvaluateStep(_Step):
    """Score a mosaic against a target (whole scene or the validation split); metrics and figures."""

    kind: Literal["evaluate"]
    prediction: str
    target: str
    output: str
    model: str | None = None
    region: Literal["all", "validation", "train"] = "all"
    figures: bool = True
    reference: str | None = None
    reference_field: str = "class"


class CleanStep(_Step):
    """Clean a class mosaic: a majority filter, then a sieve (see :func:`rastercore.maps.clean`)."""

    kind: Literal["clean"]
    mosaic: str
    output: str
    majority: int | None = None
    sieve: int | None = None
    connectivity: Literal[4, 8] = 4
    codec: Literal["lz4", "zstd", "none"] = DEFAULT_CODEC


class PolygonizeStep(_Step):
    """One polygon per connected region of a class mosaic (see :func:`rastercore.maps.polygonize`)."""

    kind: Literal["polygonize"]
    mosaic: str
    output: str
    layer: str | None = None
    connectivity: Literal[4, 8] = 4
    simplify: Annotated[float, Field(ge=0)] | None = None
    format: Literal["gpkg", "parquet"] | None = None


Step = Annotated[Union[SynthStep, IngestStep, QuicklookStep, ExportStep, FeaturesStep, ClusterStep, ReduceStep,
                       AutoencoderStep, ViewStep, SampleStep, TrainStep, PredictStep, EvaluateStep, CleanStep, PolygonizeStep],
                 Field(discriminator="kind")]


class Pipeline(BaseModel):
    """A named list of steps writing into ``output_dir``."""

    model_config = ConfigDict(extra="forbid")

    name: str
    output_dir: str
    steps: list[Step] = Field(min_length=1)


def load_pipeline(path: str | os.PathLike) -> Pipeline:
    """Read and validate a pipeline YAML file.

    Raises
    ------
    PipelineError
        The file is missing, is not YAML, or a field is wrong (named in the message).
    """
    import yaml

    path = Path(path)
    if not path.exists():
        raise PipelineError(f"pipeline file {path} does not exist.")
    if path.is_dir():
        raise PipelineError(f"pipeline file {path} is a directory; give a pipeline YAML file such as "
                            "pipelines/demo.yaml.")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise PipelineError(f"{path} is not valid YAML: {err}") from err
    try:
        return Pipeline.model_validate(raw, context={"source": path})
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise PipelineError(f"{path}: {problems}") from err


def run_pipeline(
    pipeline: Pipeline,
    *,
    output_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: ProgressMode = "auto",
) -> dict[str, object]:
    """Run every step in order.

    Parameters
    ----------
    pipeline : Pipeline
        What to run.
    output_dir : path-like, optional
        Overrides ``pipeline.output_dir``.
    overwrite : bool, default False
        Replace the outputs of an earlier run (the whole output directory).
    progress : {"auto", "bar", "json", "none"}
        Progress reporting.

    Returns
    -------
    dict
        ``outputs`` (step output name -> path, absolute) and ``seconds`` (step -> wall time).

    Raises
    ------
    rastercore.errors.ParameterError
        ``progress`` is not a progress mode (before any step runs).
    StoreExistsError
        The output directory holds outputs and ``overwrite`` is false.
    """
    check_progress(progress)
    out = Path(output_dir or pipeline.output_dir).absolute()  # workers on a cluster do not share our directory
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise StoreExistsError(f"{out} already holds outputs; pass --overwrite to replace them.")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for number, step in enumerate(pipeline.steps, start=1):
        label = f"{number} {step.kind} {step.output}"
        start = time.perf_counter()
        _RUNNERS[step.kind](step, out, progress)
        seconds[label] = round(time.perf_counter() - start, 3)
        outputs[step.output] = str(out / step.output)
    return {"outputs": outputs, "seconds": seconds}


def _run_synth(step: SynthStep, out: Path, progress: ProgressMode) -> None:
    from rastercore.datasets import write_synthetic_scene

    write_synthetic_scene(out / step.output, step.shape, seed=step.seed, tile_size=step.tile_size, looks=step.looks,
                          progress=progress)


def _run_ingest(step: IngestStep, out: Path, progress: ProgressMode) -> None:
    from rastercore.stack import ingest

    ingest([_inside(out, p) for p in step.inputs], out / step.output, bands=step.bands,
           tile_size=step.tile_size, band_axis=step.band_axis, nodata=step.nodata, progress=progress,
           codec=step.codec, grid=step.grid and _inside(out, step.grid), resolution=step.resolution, crs=step.crs,
           bounds=step.bounds, extent=step.extent, resampling=step.resampling, assets=step.assets)


def _run_quicklook(step: QuicklookStep, out: Path, progress: ProgressMode) -> None:
    from rastercore.stack import open_stack
    from rastercore.viz import quicklook

    stack = open_stack(out / step.input)
    quicklook(stack, out / step.output, band=step.band, rgb=step.rgb, max_size=step.max_size)


def _run_export(step: ExportStep, out: Path, progress: ProgressMode) -> None:
    from rastercore.export import export
    from rastercore.stack import open_stack

    export(open_stack(out / step.input), out / step.output, layers=step.layers, compress=step.compress,
           resampling=step.resampling, progress=progress)


def _run_features(step: FeaturesStep, out: Path, progress: ProgressMode) -> None:
    from rastercore.features import write_features
    from rastercore.stack import open_stack

    write_features(open_stack(out / step.stack), _feature_spec(step.features, out), out / step.output, normalize=step.normalize,
                   tile_size=step.tile_size, codec=step.codec, progress=progress)


def _run_unsupervised(step: ClusterStep | ReduceStep, out: Path, progress: ProgressMode) -> None:
    from rastercore.stack import open_stack
    from rastercore.unsupervised import map_unsupervised

    method, options = (("kmeans", {"n_clusters": step.n_clusters}) if isinstance(step, ClusterStep)
                       else (step.method, {"n_components": step.n_components, "gamma": step.gamma}))
    map_unsupervised(open_stack(out / step.stack), out / step.output, _feature_spec(step.features, out), method,
                     **options,
                     n=step.n, stream=step.stream, epochs=step.epochs, seed=step.seed, standardize=step.standardize,
                     model_path=None if step.model is None else out / step.model,
                     cog=None if step.cog is None else out / step.cog, progress=progress)


def _run_autoencoder(step: AutoencoderStep, out: Path, progress: ProgressMode) -> None:
    from rastercore.autoencoder import train_autoencoder
    from rastercore.stack import open_stack

    train_autoencoder(open_stack(out / step.stack), out / step.output, bands=step.bands, latent=step.latent,
                      patch=step.patch, n=step.n, epochs=step.epochs, patience=step.patience,
                      batch_size=step.batch_size, learning_rate=step.learning_rate, block_size=step.block_size,
                      seed=step.seed, progress=progress)


def _feature_spec(features: Features | None, out: Path):
    """The spec a step names: inline, or read from its file (a relative file name is inside ``out``)."""
    from rastercore.features import FeatureSpec

    if isinstance(features, str):
        return FeatureSpec.from_file(_inside(out, features))
    return features


def _run_view(step: ViewStep, out: Path, progress: ProgressMode) -> None:
    from rastercore.stack import open_stack
    from rastercore.views import embedding_view, write_view

    shown = embedding_view(open_stack(out / step.stack), _feature_spec(step.features, out), method=step.method,
                           n=step.n,
                           target=step.target and _inside(out, step.target), thresholds=step.thresholds,
                           clusters=step.clusters and _inside(out, step.clusters), seed=step.seed,
                           perplexity=step.perplexity, n_neighbors=step.n_neighbors)
    write_view(shown, out / step.output, coordinates=step.coordinates and out / step.coordinates)


def _run_sample(step: SampleStep, out: Path, progress: ProgressMode) -> None:
    from rastercore.sampling import SpatialSplit, draw_sample, write_table
    from rastercore.stack import open_stack
    from rastercore.targets import target_on_grid

    stack = open_stack(out / step.stack)
    kind = "continuous" if step.thresholds is not None else "class"
    target = target_on_grid(_inside(out, step.target), stack, kind=kind)
    split = SpatialSplit(block_size=step.block_size, validation_fraction=step.validation_fraction)
    table = draw_sample(stack, target, _feature_spec(step.features, out), n=step.n, per_class=step.per_class,
                        n_validation=step.n_validation, split=split, thresholds=step.thresholds, seed=step.seed)
    write_table(table, out / step.output)


def _run_train(step: TrainStep, out: Path, progress: ProgressMode) -> None:
    from rastercore.sampling import read_table
    from rastercore.training import train_from_table

    train_from_table(read_table(out / step.sample), step.family, seed=step.seed, params=step.params,
                     labels=step.labels, path=out / step.output, class_colors=step.colors, search=step.search,
                     n_iter=step.n_iter, importance=step.importance, top_k=step.top_k,
                     importance_groups=step.importance_groups, priors=step.priors)


def _run_predict(step: PredictStep, out: Path, progress: ProgressMode) -> None:
    from rastercore.predict import predict
    from rastercore.stack import open_stack

    predict(str(out / step.model), open_stack(out / step.stack), out / step.output,
            cog=None if step.cog is None else out / step.cog, probabilities=step.probabilities, progress=progress,
            codec=step.codec, layers=step.layers, class_colors=step.colors)


def _run_evaluate(step: EvaluateStep, out: Path, progress: ProgressMode) -> None:
    from rastercore.evaluate import evaluate_mosaic

    evaluate_mosaic(out / step.prediction, _inside(out, step.target), out / step.output,
                    model=None if step.model is None else out / step.model, region=step.region,
                    figures=step.figures, reference=step.reference and _inside(out, step.reference),
                    reference_field=step.reference_field)


def _run_clean(step: CleanStep, out: Path, progress: ProgressMode) -> None:
    from rastercore.maps import clean

    clean(out / step.mosaic, out / step.output, majority=step.majority, sieve=step.sieve,
          connectivity=step.connectivity, progress=progress, codec=step.codec)


def _run_polygonize(step: PolygonizeStep, out: Path, progress: ProgressMode) -> None:
    from rastercore.maps import polygonize

    polygonize(out / step.mosaic, out / step.output, layer=step.layer, connectivity=step.connectivity,
               simplify=step.simplify, format=step.format, progress=progress)


def _inside(out: Path, path: str) -> str:
    """A relative input path is taken inside the output directory; an absolute one or a URL as given."""
    return path if Path(path).is_absolute() or is_remote(path) else str(out / path)


_RUNNERS = {"synth": _run_synth, "ingest": _run_ingest, "quicklook": _run_quicklook, "export": _run_export,
            "features": _run_features, "cluster": _run_unsupervised, "reduce": _run_unsupervised,
            "autoencoder": _run_autoencoder, "view": _run_view,
            "sample": _run_sample, "train": _run_train, "predict": _run_predict, "evaluate": _run_evaluate,
            "clean": _run_clean, "polygonize": _run_polygonize}


DEMO_FEATURES = [
    {"name": "box_mean", "size": 9},
    {"name": "gaussian", "sigma": 3.0},
    {"name": "cv", "size": 9},
]


@renamed_keywords({"tile": "tile_size"})
def demo_pipeline(shape: tuple[int, int] = (2048, 3072), *, seed: int = 0, tile_size: int = 1024,
                  output_dir: str = "rastercore-demo") -> Pipeline:
    """The demo, end to end (``pipelines/demo.yaml``).

    A synthetic SAR scene is ingested, a balanced sample of neighbourhood
    features is drawn with a spatial split, an RBF SVM is trained with a
    small search over C and gamma, every pixel is predicted into a zarr
    mosaic and a COG, and the mosaic is scored on the whole scene and on the
    validation blocks, with figures.

    Parameters
    ----------
    shape : (int, int), default (2048, 3072)
        Size of the synthetic scene.
    seed : int, default 0
        Seed of the scene, the sample and the model.
    tile_size : int, default 1024
        Tile side of the scene's generation and of the stack (``tile``, its
        old name, still works for one release).
    output_dir : str, default "rastercore-demo"
    """
    return Pipeline.model_validate({
        "name": "demo",
        "output_dir": output_dir,
        "steps": [
            {"kind": "synth", "output": "scene", "shape": list(shape), "seed": seed, "tile_size": tile_size},
            {"kind": "ingest", "inputs": ["scene/HH.tif", "scene/HV.tif"], "output": "stack.zarr",
             "bands": ["HH", "HV"], "tile_size": tile_size},
            {"kind": "quicklook", "input": "stack.zarr", "output": "quicklook.png"},
            {"kind": "sample", "stack": "stack.zarr", "target": "scene/target.tif", "output": "sample.h5",
             "features": DEMO_FEATURES, "thresholds": [0.6], "n": 2000, "seed": seed,
             # blocks small enough that a small demo scene still holds validation blocks
             "block_size": max(8, min(256, min(shape) // 6))},
            {"kind": "train", "sample": "sample.h5", "output": "model.skops", "family": "svm",
             "params": {"probability": True}, "seed": seed},
            {"kind": "predict", "model": "model.skops", "stack": "stack.zarr", "output": "prediction.zarr",
             "cog": "prediction.tif"},
            {"kind": "evaluate", "prediction": "prediction.zarr", "target": "scene/target.tif",
             "output": "metrics.json", "model": "model.skops"},
            {"kind": "evaluate", "prediction": "prediction.zarr", "target": "scene/target.tif",
             "output": "metrics_validation.json", "model": "model.skops", "region": "validation",
             "figures": False},
        ],
    })


RESERVED_PARAMS = {"random_state": "seed (--seed)", "threshold": "labels (--labels)"}
"""Estimator parameters set by their own option, not through ``params``."""


def check_train_params(family: str, params, *, family_name: str = "family (--family)",
                       params_name: str = "params (--params)", search=None,
                       search_name: str = "search (--search)") -> dict:
    """``params`` if ``build_model(family, **params)`` takes them: checked before any work.

    Keys must be parameters of the family's estimator (classifier or
    regressor, see :func:`rastercore.training.build_model`), other than
    :data:`RESERVED_PARAMS`; values must pass the checks of one of them
    where it declares them (scikit-learn's parameter constraints).
    ``search`` (``"default"`` or a dict of lists, see
    :func:`rastercore.training.train_from_table`) is checked the same way,
    every value of every list in turn.

    Raises
    ------
    rastercore.errors.ParameterError
        An unknown family, ``params`` not a mapping, an unknown or reserved key, or a value out of range.
    """
    from rastercore.training import MODEL_FAMILIES

    check_choice(family, family_name, tuple(MODEL_FAMILIES))
    if not isinstance(params, dict):
        raise ParameterError(f"{params_name} must be a JSON object of estimator parameters, e.g. "
                             f"'{{\"C\": 10}}', not {params!r}.")
    reserved = sorted(params.keys() & RESERVED_PARAMS.keys())
    if reserved:
        raise ParameterError(f"{params_name} sets {reserved[0]}; set it with {RESERVED_PARAMS[reserved[0]]} instead.")
    estimators = _family_estimators(family)
    allowed = set().union(*(e.get_params(deep=False) for e in estimators)) - RESERVED_PARAMS.keys()
    unknown = sorted(map(str, params.keys() - allowed))
    if unknown:
        verb = "is not a parameter" if len(unknown) == 1 else "are not parameters"
        raise ParameterError(f"{params_name}: {', '.join(map(repr, unknown))} {verb} of the {family} model; its "
                             f"parameters are {', '.join(sorted(allowed))}.")
    candidates = [e for e in estimators if params.keys() <= e.get_params(deep=False).keys()]
    if not candidates:
        raise ParameterError(f"{params_name} mixes parameters of the {family} classifier and regressor "
                             f"({', '.join(sorted(params))}); give those of one of them.")
    problems = [_param_problem(e, params) for e in candidates]
    if all(problems):  # no estimator of the family takes these values
        raise ParameterError(f"{params_name}: {problems[0]}")
    if search is not None:  # every name and value of the grid, as if given in params
        from rastercore.search import check_grid

        check_grid(family, search, name=search_name)
        for key, values in (search.items() if isinstance(search, dict) else ()):
            for value in values:
                check_train_params(family, {**params, key: value}, family_name=family_name, params_name=search_name)
    return params


def _family_estimators(family: str) -> list:
    """The unfitted estimators of ``family``: its classifier and, if it has one, its regressor."""
    from rastercore.training import build_model

    estimators = []
    for task in ("classification", "regression"):
        try:
            estimator = build_model(family, task=task, threshold=0.0)
        except SamplingError:  # a classifier-only family
            continue
        # a scikit-learn Pipeline (logistic): params are those of its last step
        estimators.append(estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator)
    return estimators


def _param_problem(estimator, params: dict) -> str | None:
    """What the estimator's own checks (scikit-learn's parameter constraints, where declared) say of ``params``."""
    try:
        estimator.set_params(**params)
        if hasattr(type(estimator), "_parameter_constraints"):
            estimator._validate_params()
    except (TypeError, ValueError) as err:
        return " ".join(str(err).split())
    return None
