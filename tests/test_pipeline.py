from pathlib import Path

import numpy as np
import pytest

from rastercore import open_stack
from rastercore.cli import main
from rastercore.errors import PipelineError
from rastercore.pipeline import demo_pipeline, load_pipeline, run_pipeline

DEMO_YAML = Path(__file__).parents[1] / "pipelines" / "demo.yaml"


def test_demo_yaml_is_the_built_in_demo():
    assert load_pipeline(DEMO_YAML) == demo_pipeline()


def test_every_pipeline_file_validates():
    for path in DEMO_YAML.parent.glob("*.yaml"):
        load_pipeline(path)


def test_run_a_small_pipeline(tmp_path):
    pipeline = demo_pipeline((128, 192), tile=64, output_dir=str(tmp_path / "out"))
    result = run_pipeline(pipeline, progress="none")
    assert set(result["outputs"]) == {"scene", "stack.zarr", "target.zarr", "quicklook.png", "target.png", "stack.tif"}
    stack = open_stack(tmp_path / "out" / "stack.zarr")
    assert stack.shape == (2, 128, 192) and stack.chunks[1] == (64, 64)


@pytest.mark.parametrize(
    "text,message",
    [
        ("name: x\noutput_dir: o\nsteps:\n  - {kind: transmogrify, output: a}\n", "steps.0"),
        ("name: x\noutput_dir: o\nsteps:\n  - {kind: synth, output: a, shape: [0, 5]}\n", r"steps\.0\.synth\.shape\.0"),
        ("name: x\noutput_dir: o\nsteps:\n  - {kind: export, input: a, output: b, colour: red}\n", "colour"),
        ("name: x\nsteps: [\n", "not valid YAML"),
    ],
)
def test_bad_pipeline_names_the_field(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PipelineError, match=message):
        load_pipeline(path)


def test_cli_run(tmp_path, capsys):
    yaml_text = DEMO_YAML.read_text().replace("[2048, 3072]", "[96, 64]").replace("1024", "64")
    (tmp_path / "p.yaml").write_text(yaml_text)
    code = main(["run", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "o"), "--scheduler", "sync",
                 "--progress", "none"])
    assert code == 0, capsys.readouterr().err
    assert np.isfinite(open_stack(tmp_path / "o" / "stack.zarr").values).all()
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
