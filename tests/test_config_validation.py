"""Issue 26: a config read from a file (safetensors metadata, a `dff train` checkpoint) is checked against the schema
of `DFFConfig.from_dict`, and a damaged `.pth` state dict is named: one line naming the file and the field, exit 2,
instead of a KeyError, a ZeroDivisionError, a cv2 error or an allocation error later on."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, safe_open, save_file

from dff import checkpoint
from dff.cli.main import main
from dff.config import PRESETS, DFFConfig, preset
from dff.errors import DFFError

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "dff" / "assets" / "tiny_synthetic.safetensors"

pytestmark = pytest.mark.usefixtures("one_thread")


def _drop(d: dict, key: str) -> None:
    del d[key]


TAMPERINGS = [  # (what is done to the config dict, the field's problem as the error names it)
    (
        "key missing",
        lambda c: _drop(c["preprocess"], "size_divisor"),
        "config field preprocess.size_divisor is missing",
    ),
    ("section missing", lambda c: _drop(c, "roi"), "config field roi is missing"),
    ("unknown key", lambda c: c["roi"].update(fc_channel=256), "config has an unknown field roi.fc_channel"),
    ("scale not a list", lambda c: c["preprocess"].update(scale="320x192"), "preprocess.scale: must be a list"),
    ("scale of 3", lambda c: c["preprocess"].update(scale=[320, 192, 1]), "preprocess.scale: must be a list of 2"),
    ("int as string", lambda c: c["neck"].update(out_channels="64"), "neck.out_channels: must be an integer"),
    ("int as float", lambda c: c["rpn"].update(test_nms_pre=6000.5), "rpn.test_nms_pre: must be an integer"),
    ("bool as number", lambda c: c["roi"].update(score_thr=True), "roi.score_thr: must be a finite number"),
    ("NaN", lambda c: c["preprocess"].update(std=[float("nan")] * 3), "preprocess.std: must be a finite number"),
    ("size_divisor 0", lambda c: c["preprocess"].update(size_divisor=0), "preprocess.size_divisor: must be in [1,"),
    ("negative scale", lambda c: c["preprocess"].update(scale=[-320, 192]), "preprocess.scale: must be in [1, 8192]"),
    ("zero std", lambda c: c["preprocess"].update(std=[58.4, 0.0, 57.4]), "preprocess.std: must be in (0,"),
    ("10^7 channels", lambda c: c["neck"].update(out_channels=10**7), "neck.out_channels: must be in [1, 2048]"),
    ("huge anchors", lambda c: c["rpn"].update(anchor_scales=[2.0] * 1000), "rpn.anchor_scales: must hold 1 to 16"),
    ("unknown arch", lambda c: c["backbone"].update(arch="resnet9000"), "backbone.arch: must be one of resnet18,"),
    ("stride 12", lambda c: c["backbone"].update(output_stride=12), "backbone.output_stride: must be one of 8, 16"),
    ("iou above 1", lambda c: c["roi"].update(nms_iou=1.5), "roi.nms_iou: must be in (0, 1]"),
    ("key interval 0", lambda c: c.update(key_interval=0), "config field key_interval: must be in [1,"),
    ("no classes", lambda c: c.update(class_names=[]), "class_names: must hold 1 to 10000 values, got 0"),
    ("a class twice", lambda c: c["class_names"].__setitem__(1, "airplane"), "class_names: names a class twice"),
    ("a class not a name", lambda c: c["class_names"].__setitem__(0, 3), "class_names: must be a non-empty string"),
    ("fewer class names", lambda c: c.update(class_names=c["class_names"][:29]), "names 29 classes, but the weights"),
    ("config a list", lambda c: list(c), "config: must be a JSON object, got ['name'"),
    ("section a number", lambda c: c.update(rpn=16), "config field rpn: must be a JSON object, got 16"),
]


def _tampered(change) -> object:
    """The tiny preset's config as JSON would give it, changed in place or replaced by what `change` returns."""
    cfg = json.loads(json.dumps(preset("tiny_synthetic").to_dict()))
    replaced = change(cfg)
    return cfg if replaced is None else replaced


def _write(kind: str, cfg_text: str, path: Path) -> Path:
    """The bundled weights saved as `kind` (our safetensors, or a `dff train` checkpoint) with `cfg_text` as config."""
    state = load_file(str(BUNDLED))
    if kind == "safetensors":
        with safe_open(str(BUNDLED), "pt") as f:
            meta = f.metadata()
        save_file(state, str(path), metadata={**meta, "config": cfg_text})
    else:
        torch.save(
            {"format": checkpoint.TRAIN_FORMAT, "preset": "tiny_synthetic", "config": cfg_text, "model": state}, path
        )
    return path


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("frame") / "frame.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (192, 320, 3), dtype=np.uint8))
    return path


def _detect(capsys, frame: Path, weights: Path, out: Path) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["detect", str(frame), "--weights", str(weights), "--out-json", str(out), "--no-progress"])
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("kind", ["safetensors", "pth"])
@pytest.mark.parametrize(("case", "change", "message"), TAMPERINGS, ids=[t[0] for t in TAMPERINGS])
def test_a_tampered_config_is_one_line_naming_the_file_and_field(kind, case, change, message, frame, tmp_path, capsys):
    weights = _write(kind, json.dumps(_tampered(change)), tmp_path / f"tampered.{kind}")
    out = tmp_path / "det.jsonl"
    code, err = _detect(capsys, frame, weights, out)
    assert code == 2 and "\n" not in err, err
    assert err.startswith(f"dff: error: {weights}: ") and message in err
    assert not out.exists()


@pytest.mark.parametrize("kind", ["safetensors", "pth"])
def test_config_text_that_is_not_json(kind, frame, tmp_path, capsys):
    weights = _write(kind, '{"name": "tiny_synthetic", ', tmp_path / f"cut.{kind}")
    code, err = _detect(capsys, frame, weights, tmp_path / "det.jsonl")
    assert code == 2 and "\n" not in err and err.startswith(f"dff: error: {weights}: corrupt ")


def test_the_untampered_files_load_and_every_preset_round_trips(frame, tmp_path, capsys):
    for name in PRESETS:
        cfg = preset(name)
        assert DFFConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    text = json.dumps(preset("tiny_synthetic").to_dict())
    for kind in ("safetensors", "pth"):
        code, err = _detect(capsys, frame, _write(kind, text, tmp_path / f"ok.{kind}"), tmp_path / f"{kind}.jsonl")
        assert code == 0, err


def test_files_saved_before_a_field_existed_take_its_default():
    old = preset("tiny_synthetic").to_dict()
    del old["backbone"]["output_stride"], old["train"]["flow_lr_mult"]
    cfg = DFFConfig.from_dict(old)
    assert cfg.backbone.output_stride == 16 and cfg.train.flow_lr_mult == 1.0
    del old["backbone"]["frozen_stages"]
    with pytest.raises(DFFError, match="config field backbone.frozen_stages is missing"):
        DFFConfig.from_dict(old)


@pytest.mark.parametrize(
    ("saved", "message"),
    [
        (
            {"state_dict": {"detector.neck.conv.weight": 1}},
            "state_dict entry 'detector.neck.conv.weight' is int, not a tensor",
        ),
        ({"state_dict": {"a": torch.zeros(1), "b": [1.0, 2.0]}}, "state_dict entry 'b' is list, not a tensor"),
        ({"state_dict": {"a": torch.zeros(1)}, "meta": {"CLASSES": 3}}, "meta CLASSES is int, not a list"),
        (
            {
                "format": checkpoint.TRAIN_FORMAT,
                "config": json.dumps(preset("tiny_synthetic").to_dict()),
                "model": {"w": "x"},
            },
            "model entry 'w' is str, not a tensor",
        ),
        (
            {"format": checkpoint.TRAIN_FORMAT, "config": json.dumps(preset("tiny_synthetic").to_dict())},
            "a 'dff train' checkpoint without the model's weights",
        ),
    ],
)
def test_a_pth_whose_state_dict_holds_non_tensors(saved, message, frame, tmp_path, capsys):
    weights = tmp_path / "odd.pth"
    torch.save(saved, weights)
    code, err = _detect(capsys, frame, weights, tmp_path / "det.jsonl")
    assert code == 2 and "\n" not in err and err.startswith(f"dff: error: {weights}: ") and message in err, err


@pytest.mark.parametrize("kind", ["safetensors", "pth"])
def test_init_from_reads_through_the_same_checks(kind, tmp_path):
    from dff.training.init_from import read_source

    cfg = _tampered(lambda c: c.update(class_names=c["class_names"][:29]))
    weights = _write(kind, json.dumps(cfg), tmp_path / f"fewer.{kind}")
    with pytest.raises(DFFError, match=r"config field class_names names 29 classes, but the weights have 30"):
        read_source(weights, "tiny_synthetic")
