"""The README's tour, run as written: its bash blocks in order, then its Python blocks as one session.

Run in a temporary directory holding a copy of the repository's
``pipelines/`` (the tour is run from the repository root), its synthetic
scene and the scenes of the two pipelines it runs shrunk to 512 x 768 (the
same shrinking as ``test_pipeline``), with
the ``rastercore`` command of this environment first on the PATH.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rastercore import open_stack

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _tour_blocks(language: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    tour = text[text.index("## A tour"):text.index("## Inputs")]
    return re.findall(rf"^```{language}\n(.*?)^```$", tour, flags=re.S | re.M)


def test_the_readme_code_fences_are_balanced():
    fences = [line for line in (ROOT / "README.md").read_text().splitlines() if line.lstrip().startswith("```")]
    assert len(fences) % 2 == 0
    assert all(line.strip() == "```" for line in fences[1::2]), "a closing fence carries text"


def test_the_tour_runs_as_written(tmp_path):
    bash, python = _tour_blocks("bash"), _tour_blocks("python")
    assert bash and len(python) == 2
    assert "--size 1024x1536" in bash[0]
    bash[0] = bash[0].replace("--size 1024x1536", "--size 512x768")  # as the pipelines below: run, not size
    shutil.copytree(ROOT / "pipelines", tmp_path / "pipelines")
    for name in ("demo.yaml", "unsupervised.yaml"):  # the tour's point is that its commands run, not their size
        pipeline = tmp_path / "pipelines" / name
        text = pipeline.read_text()
        assert "[2048, 3072]" in text and "tile_size: 1024" in text
        pipeline.write_text(text.replace("[2048, 3072]", "[512, 768]").replace("tile_size: 1024", "tile_size: 256"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "RASTERCORE_SCHEDULER": "threads"}  # the default local cluster is tested elsewhere; this is the tour
    for block in bash:
        script = tmp_path / "tour.sh"
        script.write_text("set -euo pipefail\n" + block)
        done = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, f"{block}\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["classification"]["overall_accuracy"] > 0.9
    assert open_stack(tmp_path / "prediction.zarr").sizes["y"] == 512
    for run in ("demo-run", "unsupervised-run"):
        assert (tmp_path / run).is_dir() and any((tmp_path / run).iterdir())

    session = tmp_path / "tour.py"
    session.write_text("\n".join(python))
    done = subprocess.run([sys.executable, str(session)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "metrics.json").read_text())["classification"]["overall_accuracy"] > 0.9
    assert (tmp_path / "scene_cog.tif").exists()
