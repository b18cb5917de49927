"""`dff demo` on a random-weights tiny model and a generated clip (the bundled assets are monkeypatched)."""

from __future__ import annotations

import json
import re
from collections import Counter

import av
import numpy as np
import pytest
import torch

import dff
from dff.cli import demo
from dff.cli.main import main
from dff.io.writers import VideoWriter


@pytest.fixture
def assets(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model_path, clip_path = tmp_path / "tiny_synthetic.safetensors", tmp_path / "demo_clip.mp4"
    dff.build(preset="tiny_synthetic").save(model_path)
    with VideoWriter(clip_path, fps=12) as w:
        for i in range(14):
            frame = np.full((96, 160, 3), 90, np.uint8)
            frame[30:70, 10 + 5 * i : 50 + 5 * i] = (20, 200, 240)  # a box moving right
            w.write(frame)
    monkeypatch.setattr(demo, "MODEL_PATH", model_path)
    monkeypatch.setattr(demo, "CLIP_PATH", clip_path)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_demo_writes_video_and_jsonl_and_prints_counts(assets, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--no-progress", "--score-thr", "0.0"]) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "dff_demo_out"  # the default output folder
    lines = [json.loads(x) for x in (folder / "detections.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in lines] == list(range(14)) and [r["frame"] for r in lines if r["key"]] == [0, 10]
    with av.open(str(folder / "demo.mp4")) as c:
        s = c.streams.video[0]
        assert (sum(1 for _ in c.decode(s)), s.width, s.height, float(s.average_rate)) == (14, 160, 96, 12.0)
    assert re.search(r"14 frames \(2 key frames\) in [\d.]+ s: [\d.]+ fps", out)
    printed = {m[1]: int(m[2]) for m in re.finditer(r"^  (\w+)\s+(\d+) detections in\s+\d+ frames$", out, re.M)}
    assert printed and printed == Counter(d["label"] for r in lines for d in r["detections"])


def test_demo_missing_asset_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "MODEL_PATH", tmp_path / "gone.safetensors")
    assert main(["demo", "--out", str(tmp_path / "o")]) == 2
    assert "gone.safetensors: bundled demo file is missing" in capsys.readouterr().err


def test_demo_with_the_bundled_model_and_clip(tmp_path):
    """README's first command on the shipped assets: every clip frame written, synthetic classes found."""
    assert demo.MODEL_PATH.stat().st_size <= 20 * 1024 * 1024
    assert dff.load(demo.MODEL_PATH).config.name == "tiny_synthetic"
    with av.open(str(demo.CLIP_PATH)) as c:
        clip_frames = sum(1 for _ in c.decode(c.streams.video[0]))
    out = tmp_path / "demo"
    assert main(["demo", "--no-progress", "--out", str(out)]) == 0
    lines = [json.loads(x) for x in (out / "detections.jsonl").read_text().splitlines()]
    assert len(lines) == clip_frames and [r["frame"] for r in lines if r["key"]] == list(range(0, clip_frames, 10))
    labels = Counter(d["label"] for r in lines for d in r["detections"])
    synthetic = {"airplane", "bus", "car", "zebra", "turtle", "watercraft", "bird", "giant_panda"}
    assert sum(1 for r in lines if r["detections"]) >= 0.9 * clip_frames
    assert set(labels) <= synthetic, labels
    with av.open(str(out / "demo.mp4")) as c:
        assert sum(1 for _ in c.decode(c.streams.video[0])) == clip_frames
