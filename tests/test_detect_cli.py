"""`dff detect` end to end with a random-weights tiny model on the real videos and the ILSVRC frame folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

import dff
from dff.cli.main import main

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
BIKES = REAL / "videos" / "bikes.mp4"
MMTRACK_DEMO = REAL / "videos" / "mmtracking_demo.mp4"
ILSVRC = REAL / "ILSVRC2015_val_00007010"
needs_real = pytest.mark.usefixtures("real_data")  # skips, or fails under DFF_REQUIRE_SHARED=1


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    dff.build(preset="tiny_synthetic").save(path)
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def video_info(path: Path) -> tuple[int, int, int, float]:
    """(decoded frames, width, height, frame rate)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        return n, s.width, s.height, float(s.average_rate)


def detect(*args: object) -> int:
    return main(["detect", *map(str, args), "--no-progress"])


@needs_real
def test_bikes_all_outputs(weights, tmp_path):
    j, v, coco, flow = tmp_path / "d.jsonl", tmp_path / "d.mp4", tmp_path / "coco.json", tmp_path / "flow"
    rc = detect(
        BIKES,
        "--weights",
        weights,
        "--preset",
        "tiny_synthetic",
        "--max-frames",
        25,
        "--score-thr",
        0.0,
        "--out-json",
        j,
        "--out-video",
        v,
        "--out-coco",
        coco,
        "--show-flow",
        flow,
    )
    assert rc == 0
    lines = read_jsonl(j)
    assert [r["frame"] for r in lines] == list(range(25))
    assert [r["frame"] for r in lines if r["key"]] == [0, 10, 20]
    assert lines[5]["time_s"] == pytest.approx(0.2)
    dets = [d for r in lines for d in r["detections"]]
    assert dets and all(set(d) == {"bbox", "score", "label", "class_id"} for d in dets)
    assert all(0 <= d["bbox"][0] <= d["bbox"][2] <= 640 and 0 <= d["bbox"][1] <= d["bbox"][3] <= 272 for d in dets)
    assert all(d["label"] == dff.classes.VID_CLASSES[d["class_id"]] for d in dets)
    assert video_info(v) == (25, 640, 272, 25.0)
    results = json.loads(coco.read_text())
    assert len(results) == len(dets) and {r["image_id"] for r in results} <= set(range(1, 26))  # 1-based
    pictures = sorted(flow.iterdir())
    assert len(pictures) == 22 and pictures[0].name == "flow_000001.png"
    assert cv2.imread(str(pictures[0])).shape == (272, 640, 3)


@needs_real
def test_mmtracking_demo_video_whole(weights, tmp_path):
    j, v = tmp_path / "d.jsonl", tmp_path / "d.mp4"
    assert detect(MMTRACK_DEMO, "--weights", weights, "--out-json", j, "--out-video", v) == 0
    lines = read_jsonl(j)
    assert [r["frame"] for r in lines] == list(range(8)) and [r["key"] for r in lines] == [True] + [False] * 7
    assert [r["time_s"] for r in lines] == pytest.approx([i / 3 for i in range(8)], abs=1e-4)
    assert video_info(v) == (8, 1920, 1080, 3.0)


@needs_real
def test_ilsvrc_folder_of_uppercase_jpeg(weights, tmp_path):
    j, v = tmp_path / "d.jsonl", tmp_path / "d.mp4"
    rc = detect(
        ILSVRC,
        "--weights",
        weights,
        "--key-interval",
        5,
        "--fps",
        30,
        "--max-frames",
        12,
        "--out-json",
        j,
        "--out-video",
        v,
    )
    assert rc == 0
    lines = read_jsonl(j)
    assert [r["frame"] for r in lines if r["key"]] == [0, 5, 10] and len(lines) == 12
    assert video_info(v) == (12, 1280, 720, 30.0)


@needs_real
def test_jsonl_to_stdout_by_default_and_class_filter(weights, capsys):
    assert detect(BIKES, "--weights", weights, "--max-frames", 3, "--score-thr", 0.0) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["frame"] for r in lines] == [0, 1, 2]
    labels = sorted({d["label"] for r in lines for d in r["detections"]})
    assert len(labels) >= 2
    assert detect(BIKES, "--weights", weights, "--max-frames", 3, "--score-thr", 0.0, "--classes", labels[0]) == 0
    kept = [d for x in capsys.readouterr().out.splitlines() for d in json.loads(x)["detections"]]
    assert kept and {d["label"] for d in kept} == {labels[0]}
    assert detect(BIKES, "--weights", weights, "--classes", "car,unicorn") == 2
    assert "unknown class 'unicorn'" in capsys.readouterr().err


def test_size_change_in_folder_starts_a_new_segment(weights, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(120, 160)] * 3 + [(90, 200)] * 2):
        cv2.imwrite(str(frames / f"f{i}.png"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    j, v = tmp_path / "d.jsonl", tmp_path / "d.mp4"
    assert detect(frames, "--weights", weights, "--out-json", j, "--out-video", v) == 0
    assert [r["key"] for r in read_jsonl(j)] == [True, False, False, True, False]
    assert video_info(v)[:3] == (5, 160, 120)  # later sizes are letterboxed into the first one


@needs_real
def test_damaged_video_keeps_frames_and_reports_where(weights, tmp_path, capsys):
    data = bytearray(BIKES.read_bytes())
    data[20_000:80_000] = bytes(60_000)  # damage after about a dozen frames
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    j, v = tmp_path / "d.jsonl", tmp_path / "d.mp4"
    assert detect(bad, "--weights", weights, "--out-json", j, "--out-video", v) == 2
    err = capsys.readouterr().err
    n = len(read_jsonl(j))
    assert 0 < n < 250 and f"stopped at frame {n}" in err and err.strip().splitlines()[-1].startswith("dff: error: ")
    assert video_info(v)[0] == n


def test_bad_arguments(weights, tmp_path, capsys):
    assert detect(tmp_path / "none.mp4", "--weights", weights) == 2
    assert "none.mp4: no such file or folder" in capsys.readouterr().err
    assert detect(tmp_path, "--weights", weights) == 2
    assert "folder has no images" in capsys.readouterr().err
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((32, 32, 3), np.uint8))
    assert detect(tmp_path, "--weights", tmp_path / "w.pth") == 2
    assert "not a zoo name" in capsys.readouterr().err
    assert detect(tmp_path, "--weights", "dff_r50_dc5_imagenetvid", "--preset", "r101_dc5") == 2
    assert "is a r50_dc5 checkpoint" in capsys.readouterr().err


@needs_real
def test_python_api_accepts_a_path(weights):
    model = dff.load(weights)
    results = list(model.predict(str(MMTRACK_DEMO)))
    assert [r.frame_index for r in results] == list(range(8)) and results[0].is_key_frame


@needs_real
def test_sigint_leaves_valid_jsonl_and_playable_video(weights, tmp_path):
    j, v = tmp_path / "d.jsonl", tmp_path / "d.mp4"
    cmd = [
        sys.executable,
        "-m",
        "dff",
        "detect",
        str(BIKES),
        "--weights",
        str(weights),
        "--no-progress",
        "--out-json",
        str(j),
        "--out-video",
        str(v),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120
        while not any(len(t.read_text().splitlines()) >= 3 for t in tmp_path.glob(".d.*.tmp.jsonl")):
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "no JSONL lines appeared"
            time.sleep(0.05)
        assert not j.exists()  # renamed into place when the run ends
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err.decode()
    lines = read_jsonl(j)
    assert 3 <= len(lines) < 250 and [r["frame"] for r in lines] == list(range(len(lines)))
    assert video_info(v)[:3] == (len(lines), 640, 272)
    assert "(interrupted)" in err.decode() and "Traceback" not in err.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl", "d.mp4"]


def test_adaptive_key_policy_writes_its_reasons(weights, tmp_path, capsys):
    """`--key-policy adaptive --key-budget 4` on the bundled clip: every line says why it is (or is not) a key
    frame, and the run keeps its budget (60 frames: 15 key frames within the controller's band)."""
    clip = Path(dff.__file__).parent / "assets" / "demo_clip.mp4"
    j = tmp_path / "a.jsonl"
    assert detect(clip, "--weights", weights, "--key-policy", "adaptive", "--key-budget", 4, "--out-json", j) == 0
    lines = read_jsonl(j)
    assert lines[0]["key_reason"] == "first" and all((r["key_reason"] is None) == (not r["key"]) for r in lines)
    assert {r["key_reason"] for r in lines if r["key"]} <= {"first", "cut", "residual", "budget", "max_interval"}
    assert 12 <= sum(r["key"] for r in lines) <= 18
    fixed = tmp_path / "f.jsonl"
    assert detect(clip, "--weights", weights, "--key-interval", 4, "--out-json", fixed) == 0
    assert [r["key_reason"] for r in read_jsonl(fixed)][:5] == ["first", None, None, None, "interval"]
    for bad, message in (
        (["--key-policy", "often"], "--key-policy must be one of"),
        (["--key-policy", "adaptive", "--key-budget", "0"], "--key-budget must be a number of frames in [1, 1000000]"),
        (["--key-max-interval", "3"], "needs --key-policy adaptive"),
    ):
        capsys.readouterr()
        assert detect(clip, "--weights", weights, *bad, "--out-json", tmp_path / "x.jsonl") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not (tmp_path / "x.jsonl").exists()
