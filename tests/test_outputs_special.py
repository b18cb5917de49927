"""Outputs that are not regular files (a character device made with mknod, a FIFO, /dev/stdout through a symlink)
are written to as streams, never replaced: the library's writers one by one, and the commands' output options."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import load_file

import dff
from dff import checkpoint
from dff.cli.main import main
from dff.config import preset
from dff.io.atomic import atomic_path, is_stream, write_json_atomic, write_text_atomic
from dff.io.writers import CocoResultsWriter, JsonlWriter, VideoWriter
from dff.training.state import atomic_torch_save
from tests.conftest import frame_result

ASSETS = Path(dff.__file__).resolve().parent / "assets"
CLIP = ASSETS / "demo_clip.mp4"
TINY = ASSETS / "tiny_synthetic.safetensors"

pytestmark = pytest.mark.usefixtures("one_thread")


def char_device(path: Path) -> Path:
    """A character device like /dev/null (major 1, minor 3) at `path`; skip where this process may not make one."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs root")
    return path


def is_char_device(path: Path) -> bool:
    return stat.S_ISCHR(os.lstat(path).st_mode)


class FifoReader:
    """A FIFO at `path` and a thread reading it to its end (as `cat fifo > file` would)."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self.data = bytearray()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with open(self.path, "rb") as f:
            self.data.extend(f.read())

    def result(self) -> bytes:
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "the writer never closed the FIFO"
        assert stat.S_ISFIFO(os.lstat(self.path).st_mode), "the FIFO was replaced"
        return bytes(self.data)


def only(folder: Path, *names: str) -> None:
    """`folder` holds exactly `names`: no temporary file left behind, nothing renamed in."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


# -- what counts as a stream --------------------------------------------------------------------------------------


def test_is_stream(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "to_stdout").symlink_to("/dev/stdout")
    (tmp_path / "to_file").symlink_to(tmp_path / "file")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "to_fifo").symlink_to("fifo")
    streams = ["/dev/null", "/dev/stdout", "/dev/stderr", "/dev/fd/1", "/proc/self/fd/1"]
    streams += [tmp_path / "fifo", tmp_path / "to_fifo", tmp_path / "to_stdout"]
    assert all(is_stream(p) for p in streams)
    assert not any(is_stream(p) for p in (tmp_path / "file", tmp_path / "to_file", tmp_path / "new", tmp_path))


# -- every writer of the library ----------------------------------------------------------------------------------


def _jsonl(path: Path) -> None:
    with JsonlWriter(path) as w:
        w.write_record({"frame": 0})
        w.write_record({"frame": 1})


def _coco(path: Path) -> None:
    with CocoResultsWriter(path) as w:
        w.write(frame_result(None, None, 0, True, [[1.0, 2.0, 11.0, 22.0]], [0.5], [2]))


def _video(path: Path) -> None:
    with VideoWriter(path, fps=10) as w:
        for i in range(3):
            w.write(np.full((48, 64, 3), 40 * i, np.uint8))


def _text(path: Path) -> None:
    write_text_atomic(path, "one\ntwo\n")


def _json(path: Path) -> None:
    write_json_atomic({"a": [1, 2]}, path)


def _by_name(path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"\x00\x01binary")


def _torch(path: Path) -> None:
    atomic_torch_save({"w": torch.arange(4.0)}, path)


def _checkpoint(path: Path) -> None:
    checkpoint.save(torch.nn.Linear(2, 1), preset("tiny_synthetic"), path, "test")


WRITERS = {
    "jsonl": _jsonl,
    "coco": _coco,
    "video.mp4": _video,
    "text": _text,
    "json": _json,
    "by-name": _by_name,
    "torch.pth": _torch,
    "checkpoint.safetensors": _checkpoint,
}


@pytest.mark.parametrize("name", WRITERS)
def test_every_writer_streams_into_a_fifo_what_it_writes_to_a_file(tmp_path, name):
    write = WRITERS[name]
    regular = tmp_path / "regular" / name
    regular.parent.mkdir()
    write(regular)
    fifo = FifoReader(tmp_path / name)
    write(tmp_path / name)
    got = fifo.result()
    if name == "video.mp4":  # the muxer writes its creation time: compare what it holds
        (tmp_path / "copy.mp4").write_bytes(got)
        with av.open(str(tmp_path / "copy.mp4")) as c, av.open(str(regular)) as r:
            assert [f.to_ndarray().sum() for f in c.decode(video=0)] == [
                f.to_ndarray().sum() for f in r.decode(video=0)
            ]
    elif name == "checkpoint.safetensors":
        assert load_safetensors(got).keys() == load_file(regular).keys() == {"weight", "bias"}
    elif name == "torch.pth":
        (tmp_path / "copy.pth").write_bytes(got)
        assert torch.equal(torch.load(tmp_path / "copy.pth", weights_only=True)["w"], torch.arange(4.0))
    else:
        assert got == regular.read_bytes() and got
    only(tmp_path, name, "regular", *(["copy" + Path(name).suffix] if name in ("video.mp4", "torch.pth") else []))


@pytest.mark.parametrize("name", WRITERS)
def test_every_writer_leaves_a_device_a_device(tmp_path, name):
    device = char_device(tmp_path / name)
    WRITERS[name](device)
    assert is_char_device(device)
    only(tmp_path, name)


def test_a_fifo_reader_sees_each_jsonl_line_as_it_is_written(tmp_path):
    os.mkfifo(tmp_path / "d.jsonl")
    fd = os.open(tmp_path / "d.jsonl", os.O_RDONLY | os.O_NONBLOCK)  # a reader first, so the writer can open it
    lines: list[str] = []
    with JsonlWriter(tmp_path / "d.jsonl") as w, open(fd) as reader:
        os.set_blocking(fd, True)
        for i in range(3):
            w.write_record({"frame": i})
            lines.append(reader.readline())  # blocks until the line is there: streamed, not held to the end
    assert [json.loads(line) for line in lines] == [{"frame": 0}, {"frame": 1}, {"frame": 2}]


def test_a_symlink_to_stdout_appends_to_stdout(tmp_path, capfd):
    link = tmp_path / "d.jsonl"
    link.symlink_to("/dev/stdout")
    print("before", flush=True)
    _jsonl(link)
    assert capfd.readouterr().out == 'before\n{"frame":0}\n{"frame":1}\n'
    assert link.is_symlink() and os.readlink(link) == "/dev/stdout"
    only(tmp_path, "d.jsonl")


# -- the commands -------------------------------------------------------------------------------------------------


def detect(*args: object) -> int:
    argv = ["detect", CLIP, "--weights", TINY, "--no-progress", "--max-frames", 3, *args]
    return main([str(a) for a in argv])


def test_detect_writes_into_devices_and_leaves_them_devices(tmp_path, capsys):
    null, coco, video = (char_device(tmp_path / n) for n in ("null", "coco.json", "null.mp4"))
    assert detect("--out-json", null, "--out-coco", coco, "--out-video", video) == 0, capsys.readouterr().err
    assert all(is_char_device(p) for p in (null, coco, video))
    only(tmp_path, "null", "coco.json", "null.mp4")


def test_detect_streams_into_fifos_what_it_writes_to_files(tmp_path, capsys):
    files = tmp_path / "files"
    files.mkdir()
    names = ("d.jsonl", "c.json", "v.mp4")
    options = ("--out-json", "--out-coco", "--out-video")
    assert detect(*[a for o, n in zip(options, names) for a in (o, files / n)]) == 0
    fifos = [FifoReader(tmp_path / n) for n in names]
    assert detect(*[a for o, n in zip(options, names) for a in (o, tmp_path / n)]) == 0, capsys.readouterr().err
    jsonl, coco, video = (f.result() for f in fifos)
    assert jsonl == (files / "d.jsonl").read_bytes() and len(jsonl.splitlines()) == 3
    assert coco == (files / "c.json").read_bytes() and json.loads(coco)
    (tmp_path / "files" / "copy.mp4").write_bytes(video)
    with av.open(str(files / "copy.mp4")) as c:
        assert c.streams.video[0].frames == 3
    only(tmp_path, "files", *names)


def test_detect_out_json_through_a_symlink_to_stdout(tmp_path, capfd):
    link = tmp_path / "out.jsonl"
    link.symlink_to("/dev/stdout")
    assert detect("--out-json", link) == 0
    out = capfd.readouterr().out.splitlines()
    assert [json.loads(line)["frame"] for line in out] == [0, 1, 2]
    assert link.is_symlink()


CVAT = (
    "<annotations><meta><task><size>2</size><labels><label><name>car</name></label></labels>"
    "<original_size><width>64</width><height>48</height></original_size></task></meta>"
    '<track id="0" label="car"><box frame="0" keyframe="1" outside="0" occluded="0" '
    'xtl="1" ytl="2" xbr="10" ybr="20"/></track></annotations>'
)


def test_convert_annotations_into_a_device_and_a_fifo(tmp_path, capsys):
    xml = tmp_path / "v.xml"
    xml.write_text(CVAT)
    regular = tmp_path / "regular.json"
    assert main(["convert-annotations", "--from", "cvat-video", str(xml), "--out", str(regular)]) == 0
    device = char_device(tmp_path / "null.json")
    assert main(["convert-annotations", "--from", "cvat-video", str(xml), "--out", str(device)]) == 0
    assert is_char_device(device)
    fifo = FifoReader(tmp_path / "fifo.json")
    assert main(["convert-annotations", "--from", "cvat-video", str(xml), "--out", str(fifo.path)]) == 0
    assert fifo.result() == regular.read_bytes()
    only(tmp_path, "v.xml", "regular.json", "null.json", "fifo.json")
    capsys.readouterr()


def test_convert_checkpoint_into_a_fifo(tmp_path, capsys):
    fifo = FifoReader(tmp_path / "out.safetensors")
    assert main(["convert-checkpoint", str(TINY), str(fifo.path), "--preset", "tiny_synthetic"]) == 0, (
        capsys.readouterr().err
    )
    tensors = load_safetensors(fifo.result())
    assert all(torch.equal(tensors[k], v) for k, v in load_file(TINY).items())
    only(tmp_path, "out.safetensors")


def test_convert_annotations_to_stdout_gives_json_only_on_stdout(tmp_path, capfd):
    (tmp_path / "v.xml").write_text(CVAT)
    link = tmp_path / "stdout.json"
    link.symlink_to("/dev/stdout")  # as `--out /dev/stdout`, without touching the machine's /dev on old code
    assert main(["convert-annotations", "--from", "cvat-video", str(tmp_path / "v.xml"), "--out", str(link)]) == 0
    out, err = capfd.readouterr()
    assert [a["bbox"] for a in json.loads(out)["annotations"]] == [[1.0, 2.0, 9.0, 18.0], [1.0, 2.0, 9.0, 18.0]]
    assert err.startswith(f"{link}: 1 videos, 2 frames, 2 boxes, classes car")
