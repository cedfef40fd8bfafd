"""The ``rastercore`` command line.

Every command has ``--help``.  Bad input ends in one line on stderr,
``rastercore: error: ...``, and exit status 2; warnings about the input
print as one-line notices.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from rastercore.errors import RasterCoreError

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
    scheduler: SchedulerOpt = None,
    progress: ProgressOpt = "auto",
) -> None:
    """Ingest co-registered rasters into one zarr-backed stack, tile by tile."""
    from rastercore.cluster import client
    from rastercore.stack import describe
    from rastercore.stack import ingest as ingest_stack

    names = [b.strip() for b in bands.split(",")] if bands else None
    with client(scheduler):
        ingest_stack(inputs, output, bands=names, tile_size=tile_size, band_axis=band_axis, nodata=nodata,
                     overwrite=overwrite, resume=resume, progress=progress)
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
    from rastercore.cluster import client
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
    from rastercore.cluster import client
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
    from rastercore.cluster import client
    from rastercore.demo import run_demo

    with client(scheduler):
        result = run_demo(out, shape=_size(size), seed=seed, overwrite=overwrite, progress=progress)
    _print_result(result)


@app.command()
def run(
    pipeline: Annotated[Path, typer.Argument(help="A pipeline YAML file, e.g. pipelines/demo.yaml.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Output directory (default: the file's output_dir).")] = None,
    overwrite: OverwriteOpt = False,
    scheduler: SchedulerOpt = None,
    progress: ProgressOpt = "auto",
) -> None:
    """Run a YAML pipeline and print where each output went."""
    from rastercore.cluster import client
    from rastercore.pipeline import load_pipeline, run_pipeline

    spec = load_pipeline(pipeline)
    with client(scheduler):
        result = run_pipeline(spec, output_dir=out, overwrite=overwrite, progress=progress)
    _print_result(result)


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
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="rastercore", standalone_mode=False)
    except RasterCoreError as err:
        print(f"rastercore: error: {err}", file=sys.stderr)
        return 2
    except typer.Exit as exit_:
        return exit_.exit_code
    except typer.Abort:
        print("rastercore: aborted", file=sys.stderr)
        return 130
    except typer.TyperException as err:  # usage errors, bad option values
        err.show()
        return err.exit_code
    return 0


def run() -> None:
    """Console-script entry point: exit with :func:`main`'s status."""
    sys.exit(main())


if __name__ == "__main__":
    run()
