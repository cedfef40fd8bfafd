"""A full disk, for real: a small tmpfs is filled, and every writer ends in one line naming its output.

Nothing that looks complete may remain: the output's own name does not
exist, and only ``.partial`` things (resumable, or removed by the next run)
are left beside it.  The tests mount a 4 MiB tmpfs (root only) and always
unmount it; a ballast file leaves as little room as each case needs.
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from sklearn.ensemble import RandomForestClassifier

from rastercore.cli import main
from rastercore.datasets import SYNTHETIC_THRESHOLD, synthetic_scene
from rastercore.errors import OutputNotWritableError
from rastercore.io import write_cog
from rastercore.models import save_model
from rastercore.sampling import TRAIN, SampleTable, draw_sample, write_table
from rastercore.stack import open_stack
from rastercore.store import write_tiles
from tests.conftest import run_cli, write_tif

SPEC = [{"name": "box_mean", "size": 3}]
BALLAST = "ballast"


@pytest.fixture
def disk(tmp_path):
    """A 4 MiB tmpfs at ``tmp_path/disk``, unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("filling a real disk needs a tmpfs, and mounting one needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"mounting a 4 MiB tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)


def leave_free(disk, room: int) -> None:
    """Fill ``disk`` with a ballast file until about ``room`` bytes are free."""
    with open(disk / BALLAST, "wb") as f:
        f.write(b"\xff" * (shutil.disk_usage(disk).free - room))


def assert_one_line_naming(status: int, err: str, path) -> str:
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1, err
    assert lines[0].startswith("rastercore: error: ") and str(path) in lines[0] and "Traceback" not in err
    return lines[0]


def assert_nothing_looks_complete(path) -> None:
    assert not path.exists()
    left = [p.name for p in path.parent.iterdir() if p.name != BALLAST]
    assert all(name.endswith(".partial") for name in left), left


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A stored SAR stack (256 x 256) and a forest model file trained on it."""
    tmp = tmp_path_factory.mktemp("workspace")
    ds = synthetic_scene((256, 256), seed=0, chunks=64)
    sar = np.log(ds["sar"]).astype(np.float32)
    write_tiles(sar, tmp / "s.zarr", progress="none")
    table = draw_sample(sar, ds["target"], SPEC, n=300, thresholds=SYNTHETIC_THRESHOLD, seed=0)
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(*table.subset(TRAIN))
    save_model(model, tmp / "m.skops", metadata={"feature_spec": table.attrs["feature_spec"],
                                                 "class_names": table.class_names})
    return tmp


def test_ingest_onto_a_full_disk(tmp_path, disk, capfd):
    data = np.random.default_rng(0).random((2, 600, 500), dtype=np.float32)  # 2.3 MiB, incompressible
    source = write_tif(tmp_path / "in.tif", data)
    leave_free(disk, 1 << 20)
    status = main(["ingest", source, "-o", str(disk / "s.zarr"), "--tile-size", "128", "--scheduler", "threads",
                   "--progress", "none"])
    line = assert_one_line_naming(status, capfd.readouterr().err, disk / "s.zarr")
    assert f"the disk holding {disk} is full" in line and "--resume" in line
    assert_nothing_looks_complete(disk / "s.zarr")


def test_predict_mosaic_onto_a_full_disk(workspace, disk, capfd):
    leave_free(disk, 200 << 10)
    status = main(["predict", str(workspace / "m.skops"), str(workspace / "s.zarr"), "-o", str(disk / "p.zarr"),
                   "--scheduler", "sync", "--progress", "none"])
    assert f"the disk holding {disk} is full" in assert_one_line_naming(status, capfd.readouterr().err, disk / "p.zarr")
    assert_nothing_looks_complete(disk / "p.zarr")


def test_predict_cog_onto_a_full_disk_then_resume_writes_only_the_cog(workspace, tmp_path, disk, capfd):
    out, cog = tmp_path / "p.zarr", disk / "p.tif"
    argv = ["predict", str(workspace / "m.skops"), str(workspace / "s.zarr"), "-o", str(out), "--cog", str(cog),
            "--scheduler", "sync", "--progress", "none"]
    leave_free(disk, 100 << 10)  # the COG's uncompressed temporary takes 256 kiB
    line = assert_one_line_naming(main(argv), capfd.readouterr().err, cog)
    assert "uncompressed tiles need" in line and "MiB free" in line
    assert_nothing_looks_complete(cog)
    stamp = (out / "zarr.json").stat().st_mtime_ns
    (disk / BALLAST).unlink()
    assert main([*argv, "--resume"]) == 0, capfd.readouterr().err
    assert (out / "zarr.json").stat().st_mtime_ns == stamp  # the mosaic was complete: only the COG was written
    with rasterio.open(cog) as src:
        classes = open_stack(out).sel(band="class").values
        np.testing.assert_array_equal(src.read(1), np.where(np.isnan(classes), 255, classes))


def test_export_onto_a_full_disk(workspace, disk, capfd):
    leave_free(disk, 100 << 10)
    status = main(["export", str(workspace / "s.zarr"), str(disk / "s.tif"), "--scheduler", "sync",
                   "--progress", "none"])
    line = assert_one_line_naming(status, capfd.readouterr().err, disk / "s.tif")
    assert "need 2.0 MiB" in line  # 2 float32 bands of 256 x 256 in one padded 512-px tile
    assert_nothing_looks_complete(disk / "s.tif")


def test_cog_that_fills_the_disk_while_gdal_writes_it(workspace, disk):
    leave_free(disk, (2 << 20) + (300 << 10))  # room for the temporary, not for an uncompressed COG beside it
    with pytest.raises(OutputNotWritableError, match=rf"could not write {disk / 's.tif'} .* MiB free on the disk "
                                                     rf"holding {disk}; if it is full, free some space"):
        write_cog(open_stack(workspace / "s.zarr"), disk / "s.tif", compress="NONE", progress="none")
    assert_nothing_looks_complete(disk / "s.tif")


@pytest.fixture(scope="module")
def big_sample(tmp_path_factory):
    """A 512 x 512 stack and a 0/1 class target: 200,000 rows of 9 window features (13 MiB uncompressed)."""
    tmp = tmp_path_factory.mktemp("big_sample")
    rng = np.random.default_rng(0)
    sar = synthetic_scene((512, 512), seed=1, chunks=256)["sar"]
    write_tiles(sar, tmp / "s.zarr", progress="none")
    write_tif(tmp / "classes.tif", rng.integers(0, 2, (512, 512)).astype(np.uint8), crs=sar.rio.crs,
              transform=sar.rio.transform())
    (tmp / "spec.yaml").write_text("- {name: window, r: 1, bands: [HH]}\n")
    return tmp


def test_sample_table_larger_than_the_disk_is_refused_before_writing(big_sample, disk):
    out = disk / "sample.h5"
    done = run_cli("sample", big_sample / "s.zarr", "-o", out, "--spec", big_sample / "spec.yaml", "--target",
                   big_sample / "classes.tif", "-n", "200000", "--validation", "0", "--scheduler", "sync", check=False)
    line = assert_one_line_naming(done.returncode, done.stderr, out)  # not a segfault in h5py (status -11)
    assert "200000 rows take up to 12.4 MiB" in line and "MiB free; free some space" in line
    assert_nothing_looks_complete(out)


WRITE_ON_A_FULL_DISK = """
import shutil, sys
import numpy as np
from rastercore.errors import OutputNotWritableError
from rastercore.sampling import SampleTable, write_table

measure = shutil.disk_usage
shutil.disk_usage = lambda path: measure(path)._replace(free=2**40)  # the check passes: the write fills the disk
n = 200_000
rng = np.random.default_rng(0)
table = SampleTable(X=rng.random((n, 9), dtype=np.float32), y=np.zeros(n, np.int32), row=np.arange(n),
                    col=np.arange(n), block=np.zeros(n, np.int64), split=np.zeros(n, np.int8),
                    feature_names=[str(i) for i in range(9)], class_names=["0"])
try:
    write_table(table, sys.argv[1])
except OutputNotWritableError as err:
    print(err, file=sys.stderr)
    sys.exit(3)
"""


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_sample_table_that_fills_the_disk_while_written(disk, suffix):
    out = disk / f"sample{suffix}"
    done = subprocess.run([sys.executable, "-c", WRITE_ON_A_FULL_DISK, str(out)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 3, done.stderr  # h5py used to crash the interpreter at exit (status -11)
    assert done.stderr.startswith(f"could not write {out}: No space left on device") and done.stderr.count("\n") == 1
    assert_nothing_looks_complete(out)
    assert shutil.disk_usage(disk).free > 3 << 20  # the partial table is gone


def test_write_table_checks_the_room_in_process(disk):
    n = 100_000
    table = SampleTable(X=np.zeros((n, 9), np.float32), y=np.zeros(n, np.int32), row=np.arange(n), col=np.arange(n),
                        block=np.zeros(n, np.int64), split=np.zeros(n, np.int8),
                        feature_names=[str(i) for i in range(9)], class_names=["0"])
    with pytest.raises(OutputNotWritableError, match=r"sample\.h5: its 100000 rows take up to 6\.2 MiB and the disk "
                                                     r"holding .* has 4\.0 MiB free"):
        write_table(table, disk / "sample.h5")
    assert list(disk.iterdir()) == []
