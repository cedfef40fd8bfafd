"""Remote rasters: read by window over HTTP range requests from a server on 127.0.0.1 that counts its bytes."""

from __future__ import annotations

import http.server
import re
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio

from rastercore import ingest, open_stack
from rastercore.errors import SourceNotFoundError, SourceReadError
from rastercore.io.sources import gdal_path, is_remote, open_source
from rastercore.targets import target_on_grid
from tests.conftest import TRANSFORM, UTM, write_tif


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves the files of ``server.root``, honouring ``Range: bytes=a-b``; counts the body bytes it sends.

    ``server.drop_after`` (bytes) makes it close connections once that many body bytes went out.
    """

    def log_message(self, *args):  # keep the test output clean
        pass

    def _file(self) -> Path | None:
        path = self.server.root / self.path.lstrip("/").split("?")[0]
        return path if path.is_file() else None

    def do_HEAD(self):
        self._respond(body=False)

    def do_GET(self):
        self._respond(body=True)

    def _respond(self, body: bool) -> None:
        path = self._file()
        if path is None:
            self.send_error(404)
            return
        data = path.read_bytes()
        start, stop = 0, len(data)
        match = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match:
            start = int(match[1])
            stop = min(int(match[2]) + 1 if match[2] else len(data), len(data))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(stop - start))
        self.end_headers()
        if not body:
            return
        chunk = data[start:stop]
        if self.server.drop_after is not None and self.server.sent + len(chunk) > self.server.drop_after:
            self.wfile.write(chunk[: max(0, self.server.drop_after - self.server.sent) // 2])
            self.server.sent += len(chunk) // 2
            self.close_connection = True
            return
        self.wfile.write(chunk)
        with self.server.lock:
            self.server.sent += len(chunk)
            self.server.requests += 1


@pytest.fixture
def server(tmp_path):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.root, httpd.sent, httpd.requests, httpd.drop_after = tmp_path, 0, 0, None
    httpd.lock = threading.Lock()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def cog(tmp_path):
    """A tiled 1024 x 1024 float32 GeoTIFF (256-px internal tiles), 4 MiB of pixels."""
    values = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
    write_tif(tmp_path / "scene.tif", values, tiled=True, blockxsize=256, blockysize=256)
    return values


def test_remote_specs_are_recognised():
    assert is_remote("https://example.org/a.tif") and is_remote("/vsicurl/https://x/a.tif") and is_remote("s3://b/k")
    assert not is_remote("scene.tif") and not is_remote("cube.h5:/data")
    assert gdal_path("https://x/a.tif") == "/vsicurl/https://x/a.tif"
    assert gdal_path("s3://bucket/key.tif") == "/vsis3/bucket/key.tif"
    assert gdal_path("gs://b/k.tif") == "/vsigs/b/k.tif" and gdal_path("az://c/k.tif") == "/vsiaz/c/k.tif"


def test_a_window_costs_its_own_bytes_not_the_file(server, cog, tmp_path):
    source = open_source(f"{server.url}/scene.tif")
    assert source.shape == (1, 1024, 1024) and source.grid.crs == rasterio.crs.CRS.from_user_input(UTM)
    opened = server.sent
    window = source.read((slice(256, 512), slice(512, 768)))  # one internal tile
    np.testing.assert_array_equal(window[0], cog[256:512, 512:768])
    size = (tmp_path / "scene.tif").stat().st_size
    per_tile = server.sent - opened
    assert per_tile < size / 8, (per_tile, size)  # a 256 x 256 tile is 1/16 of the file


def test_ingest_and_targets_from_a_url_equal_the_local_file(server, cog, tmp_path):
    remote = ingest([f"{server.url}/scene.tif"], tmp_path / "remote.zarr", bands=["HH"], tile_size=256,
                    progress="none")
    local = ingest([str(tmp_path / "scene.tif")], tmp_path / "local.zarr", bands=["HH"], tile_size=256,
                   progress="none")
    np.testing.assert_array_equal(remote.values, local.values)
    assert remote.rio.transform() == TRANSFORM
    target = target_on_grid(f"{server.url}/scene.tif", open_stack(tmp_path / "local.zarr"), kind="continuous")
    np.testing.assert_array_equal(target.values, cog)


def test_missing_files_and_unreachable_servers_are_one_clear_error(server, cog):
    with pytest.raises(SourceNotFoundError, match=r"http://127\.0\.0\.1:\d+/nothing\.tif does not exist .*404"):
        open_source(f"{server.url}/nothing.tif")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SourceReadError, match=rf"could not read http://127\.0\.0\.1:{port}/scene\.tif: .*Check the URL"):
        open_source(f"http://127.0.0.1:{port}/scene.tif")


def test_a_dropped_transfer_is_one_error_and_nothing_is_written(server, cog, tmp_path):
    source = open_source(f"{server.url}/scene.tif")
    server.drop_after = server.sent + 1000  # every further transfer is cut short
    with pytest.raises(SourceReadError, match=r"could not read rows 0-1024.*dropped the connection"):
        source.read((slice(0, 1024), slice(0, 1024)))
    with pytest.raises(SourceReadError):
        ingest([f"{server.url}/scene.tif"], tmp_path / "cut.zarr", tile_size=256, progress="none")
    assert not (tmp_path / "cut.zarr").exists()
