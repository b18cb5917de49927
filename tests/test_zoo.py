"""Model zoo: official names and URLs, and the verified, atomic download against a server on 127.0.0.1."""

from __future__ import annotations

import fcntl
import hashlib
import http.server
import os
import pty
import socket
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

from dff import zoo
from dff.errors import CheckpointError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
GOOD_HASH = hashlib.sha256(PAYLOAD).hexdigest()[:8]


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD under /good/, a corrupted copy under /corrupt/, and half of it under /cut/."""

    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        _Handler.requests.append(self.path)
        if self.path.startswith("/missing/"):
            self.send_error(404, "Not Found")
            return
        body = PAYLOAD
        if self.path.startswith("/corrupt/"):
            body = b"\xff" + PAYLOAD[1:]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path.startswith("/cut/"):
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Handler.requests.clear()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("DFF_CACHE", str(folder))
    return folder


def test_official_names_urls_and_hash_prefixes():
    base = "https://download.openmmlab.com/mmtracking/vid/dff"
    assert zoo.ZOO["dff_r50_dc5_imagenetvid"].url == (
        f"{base}/dff_faster_rcnn_r50_dc5_1x_imagenetvid/"
        "dff_faster_rcnn_r50_dc5_1x_imagenetvid_20201227_213250-548911a4.pth"
    )
    assert zoo.ZOO["dff_r101_dc5_imagenetvid"].url == (
        f"{base}/dff_faster_rcnn_r101_dc5_1x_imagenetvid/"
        "dff_faster_rcnn_r101_dc5_1x_imagenetvid_20201218_172720-ad732e17.pth"
    )
    assert zoo.ZOO["dff_x101_dc5_imagenetvid"].url == (
        f"{base}/dff_faster_rcnn_x101_dc5_1x_imagenetvid/"
        "dff_faster_rcnn_x101_dc5_1x_imagenetvid_20210819_095932-0a9e6cb5.pth"
    )
    assert [zoo.hash_prefix(e.filename) for e in zoo.ZOO.values()] == ["548911a4", "ad732e17", "0a9e6cb5"]
    assert [e.preset for e in zoo.ZOO.values()] == ["r50_dc5", "r101_dc5", "x101_dc5"]
    with pytest.raises(CheckpointError, match="no SHA-256 prefix"):
        zoo.hash_prefix("model_final.pth")


def test_cache_dir_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DFF_CACHE", str(tmp_path / "c"))
    assert zoo.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("DFF_CACHE")
    assert zoo.cache_dir().parts[-2:] == (".cache", "dff")


def test_good_file_is_verified_cached_and_not_downloaded_again(server, cache):
    url = f"{server}/good/model_20200101_000000-{GOOD_HASH}.pth"
    path = zoo.download(url, progress=False)
    assert path == cache / f"model_20200101_000000-{GOOD_HASH}.pth" and path.read_bytes() == PAYLOAD
    assert zoo.download(url, progress=False) == path
    assert len(_Handler.requests) == 1
    assert [p.name for p in cache.iterdir()] == [path.name]


def test_corrupted_file_is_rejected_and_not_cached(server, cache):
    with pytest.raises(CheckpointError, match=f"corrupted.*expected {GOOD_HASH}"):
        zoo.download(f"{server}/corrupt/model-{GOOD_HASH}.pth", progress=False)
    assert list(cache.iterdir()) == []


def test_interrupted_download_leaves_no_partial_file(server, cache):
    with pytest.raises(CheckpointError, match="interrupted"):
        zoo.download(f"{server}/cut/model-{GOOD_HASH}.pth", progress=False)
    assert list(cache.iterdir()) == []


def test_keyboard_interrupt_during_download_leaves_no_partial_file(server, cache, monkeypatch):
    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(zoo.hashlib, "sha256", lambda: type("H", (), {"update": stop})())
    with pytest.raises(KeyboardInterrupt):
        zoo.download(f"{server}/good/model-{GOOD_HASH}.pth", progress=False)
    assert list(cache.iterdir()) == []


def test_http_error_and_offline_messages(server, cache):
    with pytest.raises(CheckpointError, match="HTTP 404"):
        zoo.download(f"{server}/missing/model-{GOOD_HASH}.pth", progress=False)
    with socket.socket() as s:  # a port with nobody listening: what being offline looks like to urllib
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(CheckpointError, match=f"are you offline.*pass its path to --weights.*{cache.name}"):
        zoo.download(f"http://127.0.0.1:{port}/model-{GOOD_HASH}.pth", progress=False)
    assert list(cache.iterdir()) == []


def test_resolve_zoo_name_file_and_unknown(server, cache, monkeypatch, tmp_path):
    entry = zoo.ZooEntry("r50_dc5", f"{server}/good/dff_test-{GOOD_HASH}.pth", 70.3)
    monkeypatch.setitem(zoo.ZOO, "dff_test", entry)
    path, preset = zoo.resolve("dff_test")
    assert preset == "r50_dc5" and path.parent == cache and path.read_bytes() == PAYLOAD
    local = tmp_path / "mine.safetensors"
    local.write_bytes(b"x")
    assert zoo.resolve(str(local)) == (local, None)
    with pytest.raises(CheckpointError, match="not a zoo name.*dff_r50_dc5_imagenetvid"):
        zoo.resolve("dff_r51_dc5")


def test_load_by_zoo_name_downloads_verifies_and_loads(cache, monkeypatch, tmp_path):
    """dff.load('<zoo name>') fetches the official-style file from a local server and loads it as mmtracking's."""
    import functools

    import torch

    import dff
    from dff.models.detector import DFF

    torch.manual_seed(0)
    served = tmp_path / "served"
    served.mkdir()
    tmp = served / "tmp.pth"
    torch.save({"state_dict": DFF(dff.preset("tiny_synthetic")).state_dict(), "meta": {}}, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    name = f"dff_tiny_20261126-{digest}.pth"
    tmp.rename(served / name)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/{name}"
        monkeypatch.setitem(zoo.ZOO, "dff_tiny_test", zoo.ZooEntry("tiny_synthetic", url, 0.0))
        model = dff.load("dff_tiny_test")
        assert model.config.name == "tiny_synthetic" and (cache / name).is_file()
        with pytest.raises(CheckpointError, match="dff_tiny_test is a tiny_synthetic checkpoint, not r50_dc5"):
            dff.load("dff_tiny_test", preset="r50_dc5")
    finally:
        httpd.shutdown()
        httpd.server_close()


# Downloads URL into CACHE in a fresh interpreter, progress "auto" (None), "on" or "off", and prints the path.
_DOWNLOAD = """
import sys
from pathlib import Path
from dff import zoo
print(zoo.download(sys.argv[1], Path(sys.argv[2]), progress={"auto": None, "on": True, "off": False}[sys.argv[3]]))
"""


def _download_with_stderr_on_a_terminal(url: str, cache: Path, progress: str) -> tuple[int, str, str]:
    """Run `_DOWNLOAD` with stderr on a 120-column pseudo-terminal: (exit code, stdout, what the terminal showed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-c", _DOWNLOAD, url, str(cache), progress], stdout=subprocess.PIPE, stderr=slave
    )
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    out = proc.communicate(timeout=60)[0].decode()
    return proc.returncode, out, shown.decode(errors="replace")


def test_progress_bar_on_a_terminal_and_none_on_a_pipe(server, tmp_path):
    name = f"model-{GOOD_HASH}.pth"
    code, out, shown = _download_with_stderr_on_a_terminal(f"{server}/good/{name}", tmp_path / "tty", "auto")
    assert code == 0 and out.strip() == str(tmp_path / "tty" / name)
    assert "100%" in shown and "1.00M/1.00M" in shown and name in shown  # the finished bar stays
    assert (tmp_path / "tty" / name).read_bytes() == PAYLOAD

    piped = subprocess.run(
        [sys.executable, "-c", _DOWNLOAD, f"{server}/good/{name}", str(tmp_path / "pipe"), "auto"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.returncode == 0 and piped.stderr == ""
    assert (tmp_path / "pipe" / name).read_bytes() == PAYLOAD


def test_progress_can_be_forced_on_a_pipe_and_off_on_a_terminal(server, tmp_path):
    name = f"model-{GOOD_HASH}.pth"
    forced = subprocess.run(
        [sys.executable, "-c", _DOWNLOAD, f"{server}/good/{name}", str(tmp_path / "on"), "on"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert forced.returncode == 0 and "100%" in forced.stderr and "1.00M/1.00M" in forced.stderr
    code, _, shown = _download_with_stderr_on_a_terminal(f"{server}/good/{name}", tmp_path / "off", "off")
    assert code == 0 and shown == ""


def test_a_corrupted_download_on_a_terminal_shows_the_bar_and_the_error_and_caches_nothing(server, tmp_path):
    code, _, shown = _download_with_stderr_on_a_terminal(
        f"{server}/corrupt/model-{GOOD_HASH}.pth", tmp_path / "c", "auto"
    )
    assert code == 1 and "1.00M/1.00M" in shown and "downloaded file is corrupted" in shown
    assert list((tmp_path / "c").iterdir()) == []
