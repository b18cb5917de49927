"""Checkpoint loading: mmtracking .pth, our safetensors, and every kind of bad weights file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import dff
from dff.errors import CheckpointError, InputError
from dff.models.detector import DFF


def mmtracking_pth(path: Path, state: dict, classes=None) -> Path:
    torch.save(
        {"state_dict": state, "meta": {"CLASSES": classes or list(dff.preset("tiny_synthetic").class_names)}}, path
    )
    return path


@pytest.fixture()
def tiny_state():
    torch.manual_seed(0)
    return DFF(dff.preset("tiny_synthetic")).state_dict()


def frames(n=3, h=96, w=160):
    rng = np.random.default_rng(1)
    return [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def test_pth_and_safetensors_give_identical_detections(tmp_path, tiny_state):
    a = dff.load(mmtracking_pth(tmp_path / "m.pth", tiny_state), preset="tiny_synthetic")
    a.save(tmp_path / "m.safetensors")
    b = dff.load(tmp_path / "m.safetensors")
    assert b.config == a.config and b.class_names == a.class_names
    for ra, rb in zip(a.predict(frames()), b.predict(frames())):
        np.testing.assert_array_equal(ra.boxes, rb.boxes)
        np.testing.assert_array_equal(ra.scores, rb.scores)
        np.testing.assert_array_equal(ra.labels, rb.labels)
    with pytest.raises(CheckpointError, match="saved for preset 'tiny_synthetic', not 'r50_dc5'"):
        dff.load(tmp_path / "m.safetensors", preset="r50_dc5")


def test_wrong_keys_are_all_named(tmp_path, tiny_state):
    state = dict(tiny_state)
    state.pop("detector.rpn_head.rpn_cls.weight")
    state.pop("motion.conv1.0.conv.bias")
    state["detector.extra.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as e:
        dff.load(mmtracking_pth(tmp_path / "bad.pth", state), preset="tiny_synthetic")
    msg = str(e.value)
    assert "bad.pth" in msg and "2 missing" in msg and "1 unexpected" in msg
    for key in ("detector.rpn_head.rpn_cls.weight", "motion.conv1.0.conv.bias", "detector.extra.weight"):
        assert key in msg
    assert "\n" not in msg


def test_wrong_shapes_are_named(tmp_path, tiny_state):
    state = dict(tiny_state)
    state["detector.roi_head.bbox_head.fc_cls.weight"] = torch.zeros(81, 256)
    with pytest.raises(CheckpointError, match=r"fc_cls.weight \(file \[81, 256\], model \[31, 256\]\)"):
        dff.load(mmtracking_pth(tmp_path / "shape.pth", state), preset="tiny_synthetic")


def test_r50_checkpoint_for_wrong_preset(tmp_path, tiny_state):
    with pytest.raises(CheckpointError, match="missing"):
        dff.load(mmtracking_pth(tmp_path / "tiny.pth", tiny_state), preset="r50_dc5")


def test_non_checkpoint_and_missing_files(tmp_path):
    junk = tmp_path / "notes.pth"
    junk.write_text("this is not a checkpoint\n")
    with pytest.raises(CheckpointError, match="notes.pth: not a PyTorch checkpoint"):
        dff.load(junk)
    with pytest.raises(CheckpointError, match="nothing.pth: no such file"):
        dff.load(tmp_path / "nothing.pth")
    torch.save({"epoch": 3}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        dff.load(tmp_path / "other.pth")


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickle_that_would_run_code_is_refused(tmp_path, tiny_state):
    marker = tmp_path / "pwned"
    torch.save({"state_dict": tiny_state, "meta": {"x": _Exploit(str(marker))}}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="evil.pth: refusing to load"):
        dff.load(tmp_path / "evil.pth", preset="tiny_synthetic")
    assert not marker.exists()


@pytest.mark.parametrize(
    "bad,what",
    [
        (np.zeros((96, 160), np.uint8), r"shape \(96, 160\)"),
        (np.zeros((96, 160, 4), np.uint8), r"shape \(96, 160, 4\)"),
        (np.zeros((96, 160, 3), np.float32), "dtype float32"),
        ("frame.jpg", "got str"),
    ],
)
def test_bad_frames(bad, what):
    model = dff.build("tiny_synthetic")
    with pytest.raises(InputError, match=f"frame 1: expected an HxWx3 uint8 BGR numpy array, .*{what}"):
        list(model.predict([frames(1)[0], bad]))


def test_half_precision_file_is_half_the_size_and_loads_as_float32(tmp_path, tiny_state):
    src = mmtracking_pth(tmp_path / "m.pth", tiny_state)
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    for dst, extra in ((full, []), (half, ["--half"])):
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "dff",
                "convert-checkpoint",
                str(src),
                str(dst),
                "--preset",
                "tiny_synthetic",
                *extra,
            ],
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stderr
    assert 0.49 < half.stat().st_size / full.stat().st_size < 0.51
    a, b = dff.load(full), dff.load(half)
    for (name, x), y in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert y.dtype == x.dtype, name
        assert torch.equal(y, x.half().to(x.dtype) if x.is_floating_point() else x), name
    video = frames(4)
    for ra, rb in zip(a.predict(video), b.predict(video)):
        assert ra.boxes.shape == rb.boxes.shape
        assert np.abs(ra.scores - rb.scores).max(initial=0) < 1e-2


def test_inconsistent_config_in_a_model_file_names_the_file(tmp_path, tiny_state):
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    good, bad = tmp_path / "good.safetensors", tmp_path / "bad.safetensors"
    dff.load(mmtracking_pth(tmp_path / "m.pth", tiny_state), preset="tiny_synthetic").save(good)
    with safe_open(str(good), "pt") as f:
        meta = f.metadata()
    cfg = json.loads(meta["config"])
    cfg["backbone"]["output_stride"] = 8  # the RPN still says 16
    save_file(load_file(str(good)), str(bad), metadata={**meta, "config": json.dumps(cfg)})
    with pytest.raises(CheckpointError, match=r"bad\.safetensors: corrupt config metadata .*rpn stride 16 differs"):
        dff.load(bad)
    clip, out = Path(dff.__file__).parent / "assets" / "demo_clip.mp4", tmp_path / "out.jsonl"
    run = subprocess.run(
        [sys.executable, "-m", "dff", "detect", str(clip), "--weights", str(bad), "--out-json", str(out)],
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0 and len(run.stderr.strip().splitlines()) == 1 and str(bad) in run.stderr
    assert not out.exists()


def test_convert_checkpoint_cli(tmp_path, tiny_state):
    src = mmtracking_pth(tmp_path / "m.pth", tiny_state)
    out = tmp_path / "m.safetensors"
    run = subprocess.run(
        [sys.executable, "-m", "dff", "convert-checkpoint", str(src), str(out), "--preset", "tiny_synthetic"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert dff.load(out).config.name == "tiny_synthetic"
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00garbage")
    run = subprocess.run(
        [sys.executable, "-m", "dff", "convert-checkpoint", str(bad), str(tmp_path / "x.safetensors")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "bad.pth" in run.stderr and "dff: error:" in run.stderr
    assert not (tmp_path / "x.safetensors").exists()
