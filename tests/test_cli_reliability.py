"""Issue 15: no command destroys what the user has, and every failure is one line with the right exit status.

Read-only places are simulated with a path under a regular file, full disks with writes raising ENOSPC; signals are
sent to a real `python -m dff` process on the bundled clip.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import dff
from dff import checkpoint
from dff.cli.main import describe_os_error, main
from dff.errors import CheckpointError, DatasetError, InputError
from dff.io import sources
from dff.io.writers import VideoWriter
from dff.training.loop import _Step
from dff.training.losses import LOSS_NAMES
from dff.training.run_dir import prepare_run_dir, run_files, trim_log
from dff.training.state import Progress, atomic_torch_save
from tests.test_data_bad_input import CAR, _obj, _tree, _xml

ASSETS = Path(dff.__file__).resolve().parent / "assets"
CLIP = ASSETS / "demo_clip.mp4"
TINY = ASSETS / "tiny_synthetic.safetensors"
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(dff.__file__).resolve().parents[1]))

pytestmark = pytest.mark.usefixtures("one_thread")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_cli(capsys, *argv: object) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip()


def one_error_line(err: str) -> str:
    """The `dff: error:` line of stderr (the progress bar and log lines may precede it); no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("dff: error: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def clip(tmp_path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(CLIP.read_bytes())
    return path


def detect(capsys, *args: object) -> tuple[int, str]:
    return run_cli(capsys, "detect", *args, "--weights", TINY, "--no-progress", "--max-frames", 3)


# -- outputs checked before any work ---------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["--out-json", "--out-video", "--out-coco"])
def test_an_output_on_the_input_is_refused_and_the_input_kept(clip, capsys, option):
    before = digest(clip)
    code, err = detect(capsys, clip, option, clip)
    assert code == 2 and "is the input" in one_error_line(err) and option in err
    assert digest(clip) == before
    assert [p.name for p in clip.parent.iterdir()] == ["clip.mp4"]


def test_an_output_on_the_weights_is_refused(clip, tmp_path, capsys):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(TINY.read_bytes())
    code, err = run_cli(capsys, "detect", clip, "--weights", weights, "--out-coco", weights, "--no-progress")
    assert code == 2 and "is the input" in one_error_line(err)
    assert digest(weights) == digest(TINY)


def test_two_outputs_on_one_path_are_refused(clip, tmp_path, capsys):
    x = tmp_path / "x"
    x.write_text("keep me")
    code, err = detect(capsys, clip, "--out-json", x, "--out-coco", x)
    assert code == 2 and "--out-coco and --out-json name the same file" in one_error_line(err)
    assert x.read_text() == "keep me"


def test_folder_for_a_file_and_file_for_a_folder_are_refused(clip, tmp_path, capsys):
    folder = tmp_path / "dir"
    folder.mkdir()
    code, err = detect(capsys, clip, "--out-video", folder / "..")
    assert code == 2 and "is a folder" in one_error_line(err)
    code, err = detect(capsys, clip, "--out-video", folder)
    assert code == 2 and f"{folder}: --out-video is a folder, not a file" in one_error_line(err)
    (tmp_path / "notes.txt").write_text("mine")
    code, err = detect(capsys, clip, "--show-flow", tmp_path / "notes.txt")
    assert code == 2 and "--show-flow needs a folder, but this is a file" in one_error_line(err)
    code, err = detect(capsys, clip, "--show-flow", clip)
    assert code == 2 and "is the input" in one_error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "dir", "notes.txt"] and not any(folder.iterdir())
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_existing_jsonl_survives_a_run_that_fails_at_the_first_frame(tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "000.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "d.jsonl"
    out.write_text('{"frame":0}\n')
    code, err = detect(capsys, frames, "--out-json", out, "--out-coco", tmp_path / "c.json")
    assert code == 2 and "000.jpg: not a decodable image" in one_error_line(err)
    assert out.read_text() == '{"frame":0}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl", "frames"]


def test_existing_jsonl_survives_an_unwritable_video(clip, tmp_path, capsys):
    out = tmp_path / "d.jsonl"
    out.write_text("old\n")
    code, err = detect(capsys, clip, "--out-json", out, "--out-video", clip / "out.mp4")  # under a regular file
    assert code == 2 and f"{clip} is a file, not a folder" in one_error_line(err)
    assert out.read_text() == "old\n"


def test_existing_outputs_are_replaced_by_complete_ones(clip, tmp_path, capsys):
    j, v = tmp_path / "d.jsonl", tmp_path / "d.mp4"
    j.write_text("old\n")
    v.write_bytes(b"old")
    code, _ = detect(capsys, clip, "--out-json", j, "--out-video", v)
    assert code == 0
    assert [json.loads(line)["frame"] for line in j.read_text().splitlines()] == [0, 1, 2]
    with av.open(str(v)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "d.jsonl", "d.mp4"]


@pytest.mark.parametrize(
    "argv",
    [
        ["convert-checkpoint", TINY, "{bad}/x.safetensors"],
        ["convert-dataset", "{tmp}", "-o", "{bad}/ann"],
        ["make-synthetic", "{bad}/syn", "--videos", "1"],
        ["train", "--preset", "tiny_synthetic", "--ann", "{tmp}/a.json", "--out", "{bad}/run"],
        ["test", "--weights", TINY, "--ann", "{tmp}/a.json", "--img-root", "{tmp}/img", "--out", "{bad}/t"],
        ["demo", "--out", "{bad}/demo"],
        ["detect", CLIP, "--weights", TINY, "--show-flow", "{bad}/flow"],
    ],
    ids=lambda a: a[0],
)
def test_every_command_refuses_an_unwritable_output_before_working(tmp_path, capsys, argv):
    bad = tmp_path / "file"
    bad.write_text("a regular file, so nothing can be created under it")
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "img").mkdir()
    code, err = run_cli(capsys, *(str(a).format(bad=bad, tmp=tmp_path) for a in argv))
    assert code == 2 and f"{bad} is a file, not a folder" in one_error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "file", "img"]


def test_a_read_only_folder_is_refused(clip, tmp_path, capsys, monkeypatch):
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path and real_access(path, mode))
    code, err = detect(capsys, clip, "--out-json", tmp_path / "d.jsonl")  # root may write anywhere: simulated
    assert code == 2 and f"cannot write there, {tmp_path} is not writable" in one_error_line(err)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_convert_checkpoint_refuses_its_input_as_output(tmp_path, capsys):
    src = tmp_path / "m.safetensors"
    src.write_bytes(TINY.read_bytes())
    code, err = run_cli(capsys, "convert-checkpoint", src, src, "--preset", "tiny_synthetic")
    assert code == 2 and "is the input" in one_error_line(err) and digest(src) == digest(TINY)


# -- full disks ----------------------------------------------------------------------------------------------


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _FullDiskFile:
    """A file on a full disk: every write raises ENOSPC."""

    closed = False

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def flush(self) -> None:
        pass

    def __enter__(self) -> _FullDiskFile:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_full_disk_while_detecting_is_one_line_and_keeps_the_old_file(clip, tmp_path, capsys, monkeypatch):
    out = tmp_path / "d.jsonl"
    out.write_text("old\n")
    monkeypatch.setattr("dff.io.atomic.open", _FullDiskFile, raising=False)
    code, err = detect(capsys, clip, "--out-json", out)
    assert code == 2 and one_error_line(err) == f"dff: error: {out}: disk full (no space left on the device)"
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "d.jsonl"]


def test_full_disk_while_converting_a_checkpoint(tmp_path, capsys, monkeypatch):
    dst = tmp_path / "out.safetensors"
    dst.write_bytes(b"old")
    monkeypatch.setattr(Path, "write_bytes", _no_space)
    code, err = run_cli(capsys, "convert-checkpoint", TINY, dst, "--preset", "tiny_synthetic")
    assert code == 2 and one_error_line(err) == f"dff: error: {dst}: disk full (no space left on the device)"
    assert dst.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.safetensors"]


def test_full_disk_while_saving_a_training_checkpoint(tmp_path, monkeypatch):
    latest = tmp_path / "latest.pth"
    latest.write_bytes(b"last good checkpoint")
    monkeypatch.setattr("dff.training.state.open", _FullDiskFile, raising=False)
    with pytest.raises(OSError) as e:
        atomic_torch_save({"w": torch.zeros(1000)}, latest)  # the real torch.save, writing to a full disk
    assert describe_os_error(e.value) == f"{latest}: disk full (no space left on the device)"
    assert latest.read_bytes() == b"last good checkpoint" and [p.name for p in tmp_path.iterdir()] == ["latest.pth"]


# -- pipes and signals ---------------------------------------------------------------------------------------


def _dff(*args: object, **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "dff", *map(str, args)]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_closed_stdout_ends_the_run_quietly(long_source):
    proc = _dff("detect", long_source, "--weights", TINY, "--no-progress", "--score-thr", "0")
    first = proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert json.loads(first)["frame"] == 0
    assert proc.returncode == 141 and "Traceback" not in err and "Error" not in err, err


def _wait_for_lines(folder: Path, pattern: str, n: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not any(len(p.read_text().splitlines()) >= n for p in folder.glob(pattern)):
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() < deadline, "no JSONL lines appeared"
        time.sleep(0.02)


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_finalises_every_output_under_its_name(long_source, tmp_path, signum, code):
    j, v, c = tmp_path / "d.jsonl", tmp_path / "d.mp4", tmp_path / "c.json"
    proc = _dff(
        "detect", long_source, "--weights", TINY, "--no-progress", "--score-thr", "0", "--out-json", j,
        "--out-video", v, "--out-coco", c, "--key-interval", "1",
    )  # fmt: skip
    try:
        _wait_for_lines(tmp_path, ".d.*.tmp.jsonl", 2, proc)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == code, err.decode()
    assert "Traceback" not in err.decode() and "(interrupted)" in err.decode()
    frames = [json.loads(line)["frame"] for line in j.read_text().splitlines()]
    assert 2 <= len(frames) < 300 and frames == list(range(len(frames)))
    with av.open(str(v)) as container:
        assert sum(1 for _ in container.decode(video=0)) == len(frames)
    assert {r["image_id"] for r in json.loads(c.read_text())} <= {f + 1 for f in frames}  # 1-based
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "d.jsonl", "d.mp4"]  # no temporary files


def _wait_until_importing_torch(proc: subprocess.Popen) -> None:
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + 60
    while "libtorch" not in maps.read_text():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs /proc to see the start-up")
@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_start_up_prints_no_traceback(tmp_path, signum, code):
    out = tmp_path / "d.jsonl"
    proc = _dff("detect", CLIP, "--weights", TINY, "--no-progress", "--out-json", out)
    _wait_until_importing_torch(proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code and "Traceback" not in err.decode(), err.decode()
    assert list(tmp_path.iterdir()) == []


# -- options and devices -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option,value,message",
    [
        ("--score-thr", "2", "--score-thr must be a number in [0, 1], got 2.0"),
        ("--score-thr", "-1", "--score-thr must be a number in [0, 1], got -1.0"),
        ("--score-thr", "nan", "--score-thr must be a number in [0, 1], got nan"),
        ("--key-interval", "0", "--key-interval must be an integer in [1, 1000000], got 0"),
        ("--device", "tpu", "--device 'tpu' is not a device name"),
        ("--device", "xla", "--device 'xla': only cpu and cuda devices are supported"),
        ("--device", "gpu0", "--device 'gpu0' is not a device name"),
        ("--fps", "inf", "--fps must be in (0, 1000], got inf"),
    ],
)
def test_bad_options_are_refused_up_front(clip, capsys, option, value, message):
    code, err = detect(capsys, clip, option, value, "--out-json", clip.parent / "d.jsonl")
    assert code == 2 and message in one_error_line(err)
    assert [p.name for p in clip.parent.iterdir()] == ["clip.mp4"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_train_on_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    (tmp_path / "a.json").write_text("{}")
    code, err = run_cli(
        capsys, "train", "--preset", "tiny_synthetic", "--ann", tmp_path / "a.json", "--out", tmp_path / "run",
        "--device", "cuda",
    )  # fmt: skip
    assert code == 2 and "CUDA is not available" in one_error_line(err) and not (tmp_path / "run").exists()


def test_weights_folder_says_it_is_a_folder(clip, tmp_path, capsys):
    code, err = run_cli(capsys, "detect", clip, "--weights", tmp_path, "--no-progress")
    assert code == 2 and f"{tmp_path}: --weights is a folder" in one_error_line(err)


def test_webm_output_and_unknown_extension(clip, tmp_path, capsys):
    out = tmp_path / "d.webm"
    code, _ = detect(capsys, clip, "--out-video", out)
    assert code == 0
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name in ("vp9", "av1", "libdav1d") and c.format.name.count("webm")
    code, err = detect(capsys, clip, "--out-video", tmp_path / "d.gif", "--out-json", tmp_path / "d.jsonl")
    assert code == 2 and "unknown video extension '.gif'" in one_error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "d.webm"]


# -- checkpoints ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_weights_are_refused_with_the_tensor_name(tmp_path, capsys, value):
    state = load_file(str(TINY))
    name = sorted(k for k, v in state.items() if v.is_floating_point())[3]
    state[name].view(-1)[0] = value
    bad = tmp_path / "bad.safetensors"
    with safe_open(str(TINY), framework="pt") as f:
        meta = f.metadata()
    save_file(state, str(bad), metadata=meta)
    out = tmp_path / "d.jsonl"
    code, err = run_cli(capsys, "detect", CLIP, "--weights", bad, "--out-json", out, "--no-progress")
    kind = "NaN" if math.isnan(value) else "Inf"
    assert code == 2 and f"({kind} in {name})" in one_error_line(err) and not out.exists()
    torch.save({"state_dict": state}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=f"{kind} in {name}"):
        checkpoint.read_pth(tmp_path / "bad.pth")


def test_key_lists_in_errors_are_short(tmp_path):
    net = dff.build(preset="r50_dc5").net
    with pytest.raises(CheckpointError) as e:
        checkpoint.check_state_dict(net, load_file(str(TINY)), tmp_path / "tiny.pth")
    msg = str(e.value)
    assert len(msg) < 2000 and "more" in msg and "missing: " in msg
    missing = len(set(net.state_dict()) - set(load_file(str(TINY))))
    assert f"{missing} missing: " in msg and f"and {missing - checkpoint.SHOWN_KEYS} more" in msg


# -- the converter -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "box,size,message",
    [
        ((30, 5, 10, 20), (64, 48), "impossible box, xmin 30 > xmax 10"),
        ((5, 30, 10, 20), (64, 48), "impossible box, ymin 30 > ymax 20"),
        ((-4, 5, 10, 20), (64, 48), "negative coordinate"),
        ((5, 5, 90, 20), (64, 48), "lies outside the 64x48 image"),
        ((5, 5, 10, 20), (0, 48), "impossible image size 0x48"),
    ],
)
def test_converter_stops_on_impossible_boxes_naming_the_xml_and_object(tmp_path, capsys, box, size, message):
    vid = _tree(tmp_path / "root", [[_obj(CAR, (1, 1, 20, 20), 0)], [_obj(CAR, (1, 1, 20, 20), 0)]])
    xml = vid / "000001.xml"
    objects = [_obj(CAR, (1, 1, 20, 20), 0), _obj(CAR, box, 1)]
    xml.write_text(_xml(objects, *size))
    code, err = run_cli(capsys, "convert-dataset", tmp_path / "root", "--parts", "vid_val", "--no-progress")
    line = one_error_line(err)
    assert code == 2 and str(xml) in line and message in line
    if size[0] > 0:
        assert "<object> #1 (n02958343)" in line
    assert not (tmp_path / "root" / "annotations").exists()


def test_converter_keeps_boxes_at_the_border(tmp_path):
    from dff.data.convert import convert_vid

    _tree(tmp_path, [[_obj(CAR, (0, 0, 64, 48), 0), _obj(CAR, (3, 3, 3, 3), 1)]])  # xmax == width, a zero box
    data = convert_vid(tmp_path, "val", progress=False)
    assert [a["bbox"] for a in data["annotations"]] == [[0, 0, 64, 48], [3, 3, 0, 0]]
    with pytest.raises(DatasetError, match="000000.xml: <object> #0"):
        _tree(tmp_path, [[_obj(CAR, (0, 0, 66, 48), 0)]])
        convert_vid(tmp_path, "val", progress=False)


# -- training runs -------------------------------------------------------------------------------------------


def _fake_run(out: Path) -> dict[str, bytes]:
    out.mkdir(parents=True, exist_ok=True)
    files = {"epoch_1.pth": b"e1", "epoch_2.pth": b"e2", "latest.pth": b"l", "log.jsonl": b"{}\n"}
    for name, data in files.items():
        (out / name).write_bytes(data)
    return files


def test_train_refuses_a_folder_holding_a_run(tmp_path, capsys):
    run = tmp_path / "run"
    files = _fake_run(run)
    (tmp_path / "a.json").write_text("{}")
    code, err = run_cli(capsys, "train", "--preset", "tiny_synthetic", "--ann", tmp_path / "a.json", "--out", run)
    assert code == 2 and "already holds a training run" in one_error_line(err) and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == files


def test_overwrite_removes_the_old_run_and_says_so(tmp_path, caplog):
    run = tmp_path / "run"
    _fake_run(run)
    (run / "notes.txt").write_text("mine")
    prepare_run_dir(run, resume=True, overwrite=False)  # resuming keeps everything
    assert len(run_files(run)) == 4
    with caplog.at_level("INFO"):
        prepare_run_dir(run, resume=False, overwrite=True)
    assert [p.name for p in run.iterdir()] == ["notes.txt"] and "removed the previous run" in caplog.text


def test_trim_log_drops_replayed_and_cut_lines(tmp_path):
    lines = [json.dumps({"global_iter": i, "loss": 1.0 / i}) for i in range(1, 8)]
    (tmp_path / "log.jsonl").write_text("\n".join(lines) + '\n{"global_it')
    trim_log(tmp_path, 5)
    assert [json.loads(line)["global_iter"] for line in (tmp_path / "log.jsonl").read_text().splitlines()] == [
        1,
        2,
        3,
        4,
        5,
    ]


def test_non_finite_loss_names_only_a_checkpoint_that_exists(tmp_path):
    param = torch.nn.Parameter(torch.zeros(1))
    latest = tmp_path / "latest.pth"
    step = _Step([param], torch.optim.SGD([param], lr=0.1), None, 10.0, "cpu", None, latest, Progress())

    def nan_losses(batch: list) -> dict[str, torch.Tensor]:
        return {k: param.sum() * math.nan for k in LOSS_NAMES}

    with pytest.raises(Exception, match="no checkpoint was written yet") as e:
        step(nan_losses, [])
    assert str(latest) not in str(e.value)
    latest.write_bytes(b"x")
    with pytest.raises(Exception, match=f"the last good checkpoint \\({latest}\\) is untouched"):
        step(nan_losses, [])


# -- sources -------------------------------------------------------------------------------------------------


def test_a_stream_that_never_answers_times_out(monkeypatch):
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)  # accepts connections (the kernel does) but never answers
    monkeypatch.setattr(sources, "STREAM_TIMEOUT_S", 1.0)
    url = f"http://127.0.0.1:{server.getsockname()[1]}/live"
    try:
        with pytest.raises(InputError, match=f"{url}: timed out: the stream sent nothing for 1 s"):
            sources.open_source(url)
    finally:
        server.close()


def test_a_video_cut_short_warns(tmp_path, caplog):
    full = tmp_path / "full.mkv"
    with VideoWriter(full, fps=25) as w:
        for i in range(100):
            w.write(np.full((48, 64, 3), (i * 7) % 255, np.uint8))
    with caplog.at_level("WARNING"):
        assert sum(1 for _ in sources.open_source(full)) == 100
    assert "declares" not in caplog.text
    cut = tmp_path / "cut.mkv"
    data = full.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.9)])
    with caplog.at_level("WARNING"):
        n = sum(1 for _ in sources.open_source(cut))
    assert 50 < n < 100 and f"video ended at frame {n}" in caplog.text and "cut short" in caplog.text
