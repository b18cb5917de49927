"""Frame sources: real videos and the real ILSVRC frame folder, globs, an HTTP stream, and damaged inputs."""

from __future__ import annotations

import functools
import http.server
import re
import threading
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from dff.errors import InputError
from dff.io.sources import natural_key, open_source

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
BIKES = REAL / "videos" / "bikes.mp4"
MMTRACK_DEMO = REAL / "videos" / "mmtracking_demo.mp4"
ILSVRC = REAL / "ILSVRC2015_val_00007010"
needs_real = pytest.mark.usefixtures("real_data")  # skips, or fails under DFF_REQUIRE_SHARED=1

BIKES_CUTS = [30, 76, 137, 187, 242]  # first frame of each new shot (README of the real data)


def remux(src: Path, dst: Path, fmt: str, options: dict | None = None) -> None:
    """Copy the video packets of `src` into a new container (no re-encoding)."""
    with av.open(str(src)) as i, av.open(str(dst), "w", format=fmt, options=options or {}) as o:
        s = i.streams.video[0]
        out = o.add_stream_from_template(s)
        for p in i.demux(s):
            if p.dts is not None:
                p.stream = out
                o.mux(p)


@needs_real
def test_bikes_all_frames_in_shot_order():
    src = open_source(BIKES)
    assert (src.fps, src.num_frames) == (25.0, 250)
    prev, diffs, n = None, [], 0
    for f in src:
        assert f.index == n and f.image.shape == (272, 640, 3) and f.image.dtype == np.uint8
        assert f.time_s == pytest.approx(n / 25.0, abs=1e-6)
        small = cv2.resize(f.image, (64, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
        if prev is not None:
            diffs.append(float(np.abs(small - prev).mean()))
        prev, n = small, n + 1
    assert n == 250
    # The five largest frame-to-frame changes are exactly the documented shot cuts: order was kept.
    assert sorted(int(i) + 1 for i in np.argsort(diffs)[-5:]) == BIKES_CUTS


@needs_real
def test_mmtracking_demo_video():
    src = open_source(MMTRACK_DEMO)
    frames = list(src)
    assert (src.fps, src.num_frames, len(frames)) == (3.0, 8, 8)
    assert {f.image.shape for f in frames} == {(1080, 1920, 3)}
    assert [round(f.time_s, 4) for f in frames] == [round(i / 3, 4) for i in range(8)]


@needs_real
def test_ilsvrc_folder_uppercase_jpeg_in_order():
    src = open_source(ILSVRC)
    assert src.num_frames == 144
    for f in src:
        if f.index in (0, 9, 10, 143):
            assert np.array_equal(f.image, cv2.imread(str(ILSVRC / f"{f.index:06d}.JPEG")))
    assert f.index == 143 and f.image.shape == (720, 1280, 3)


@needs_real
def test_glob_source_and_fps_override():
    src = open_source(str(ILSVRC / "00001*.JPEG"), fps=10)
    frames = list(src)
    assert src.num_frames == 10 and len(frames) == 10
    assert frames[3].time_s == pytest.approx(0.3)
    assert np.array_equal(frames[0].image, cv2.imread(str(ILSVRC / "000010.JPEG")))


def test_natural_sort_any_case_and_conversions(tmp_path):
    base = np.full((24, 32, 3), 50, np.uint8)
    cv2.imwrite(str(tmp_path / "img10.PNG"), base)
    cv2.imwrite(str(tmp_path / "img2.jpeg"), base)
    cv2.imwrite(str(tmp_path / "img1.png"), np.full((24, 32), 200, np.uint8))  # grayscale
    rgba = np.zeros((24, 32, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = (10, 20, 30), 128
    cv2.imwrite(str(tmp_path / "img3.Png"), rgba)  # BGRA with alpha
    (tmp_path / "notes.txt").write_text("not an image")
    frames = list(open_source(tmp_path))
    assert [f.image.shape for f in frames] == [(24, 32, 3)] * 4
    assert [int(f.image[0, 0, 0]) for f in frames] == [200, 50, 10, 50]  # img1, img2, img3, img10
    assert frames[2].image[0, 0].tolist() == [10, 20, 30]
    assert sorted([Path("a10"), Path("A2"), Path("a1")], key=natural_key) == [Path("a1"), Path("A2"), Path("a10")]


def test_frames_of_changing_size_are_passed_through(tmp_path):
    for i, (h, w) in enumerate([(20, 30), (20, 30), (40, 24)]):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.zeros((h, w, 3), np.uint8))
    assert [f.image.shape[:2] for f in open_source(tmp_path)] == [(20, 30), (20, 30), (40, 24)]


def test_missing_empty_and_unreadable_inputs(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        open_source(tmp_path / "nope.mp4")
    with pytest.raises(InputError, match="folder has no images"):
        open_source(tmp_path)
    with pytest.raises(InputError, match="pattern matches no images"):
        open_source(str(tmp_path / "*.jpg"))
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match=r"bad\.jpg: not a decodable image"):
        list(open_source(tmp_path))
    (tmp_path / "text.mp4").write_text("hello")
    with pytest.raises(InputError, match="cannot open video"):
        open_source(tmp_path / "text.mp4")


def _stopped_at(err: InputError) -> int:
    m = re.search(r"(?:stopped at|ended at) frame (\d+)", str(err))
    assert m, str(err)
    return int(m.group(1))


@needs_real
def test_corrupted_video_keeps_good_frames_and_says_where(tmp_path):
    data = bytearray(BIKES.read_bytes())
    data[200_000:260_000] = np.random.default_rng(0).integers(0, 256, 60_000, dtype=np.uint8).tobytes()
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(bytes(data))
    seen = []
    with pytest.raises(InputError, match="corrupt.mp4") as e:
        for f in open_source(bad):
            seen.append(f.index)
    assert 10 < len(seen) < 250 and seen == list(range(len(seen)))
    assert _stopped_at(e.value) == len(seen)


@needs_real
@pytest.mark.parametrize("fmt,name", [("mp4", "fs.mp4"), ("matroska", "b.mkv")])
def test_truncated_video_keeps_good_frames_and_says_where(tmp_path, fmt, name):
    full = tmp_path / name
    remux(BIKES, full, fmt, {"movflags": "faststart"} if fmt == "mp4" else None)
    cut = tmp_path / f"cut_{name}"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    seen = []
    with pytest.raises(InputError, match="truncated or damaged|damaged") as e:
        for f in open_source(cut):
            seen.append(f.index)
    assert 50 < len(seen) < 250
    assert _stopped_at(e.value) == len(seen)


@needs_real
def test_truncated_mp4_without_index_is_a_clear_error(tmp_path):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(BIKES.read_bytes()[:250_000])  # bikes.mp4 has its index (moov) at the end
    with pytest.raises(InputError, match=r"cut\.mp4: cannot open video.*truncated"):
        open_source(cut)


@pytest.fixture
def http_folder(tmp_path):
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@needs_real
def test_http_stream(http_folder):
    folder, url = http_folder
    remux(BIKES, folder / "bikes.ts", "mpegts")  # a streaming container: no index, no frame count
    src = open_source(f"{url}/bikes.ts")
    assert src.num_frames is None and src.fps == 25.0
    assert [f.index for f in src] == list(range(250))


@needs_real
def test_stopping_early_ends_the_decoder_thread():
    before = threading.active_count()
    with open_source(BIKES) as src:
        it = iter(src)
        assert [next(it).index for _ in range(3)] == [0, 1, 2]
    assert threading.active_count() == before
    assert [f.index for f, _ in zip(src, range(2))] == [0, 1]  # a source can be iterated again
