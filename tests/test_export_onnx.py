"""ONNX export of the three stages and the onnxruntime runner, against the PyTorch reference path (issues #18, #24)."""

from __future__ import annotations

import copy
import json
import shutil
import sys
from importlib.resources import files

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx  # noqa: E402

import dff  # noqa: E402
from dff.cli.main import main  # noqa: E402
from dff.errors import CheckpointError, DFFError, InputError  # noqa: E402
from dff.export.manifest import FORMAT_VERSION, STAGES  # noqa: E402
from dff.export.onnx import export_onnx  # noqa: E402
from dff.export.runtime import ONNXNetwork, load_onnx  # noqa: E402
from dff.io.sources import open_source  # noqa: E402
from dff.keyframes import Adaptive, FixedInterval  # noqa: E402
from dff.run import REFERENCE  # noqa: E402
from tests.test_golden import detections_match, load_golden  # noqa: E402

TINY = files("dff") / "assets" / "tiny_synthetic.safetensors"
CLIP = files("dff") / "assets" / "demo_clip.mp4"


@pytest.fixture(scope="module")
def tiny():
    return dff.load(str(TINY))


@pytest.fixture(scope="module")
def export_dir(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx_tiny")
    export_onnx(tiny, out)
    return out


@pytest.fixture(scope="module")
def clip_frames():
    with open_source(str(CLIP)) as src:
        return [f.image for f in src][:12]


def same_results(ref: list[dff.FrameResult], onx: list[dff.FrameResult]) -> None:
    """Same key frames and reasons; every frame's detections within the golden tolerances (0.05 px, 1e-4 score),
    in the same order with the same labels; the flow within 1e-4 px."""
    assert len(ref) == len(onx)
    for a, b in zip(ref, onx, strict=True):
        where = f"frame {a.frame_index}"
        assert (a.is_key_frame, a.key_reason) == (b.is_key_frame, b.key_reason), where
        assert len(a.scores) == len(b.scores) > 0, where
        assert b.boxes.dtype == np.float32 and b.scores.dtype == np.float32 and b.labels.dtype == np.int64
        np.testing.assert_array_equal(a.labels, b.labels, err_msg=where)
        np.testing.assert_allclose(b.boxes, a.boxes, atol=0.05, rtol=0, err_msg=where)
        np.testing.assert_allclose(b.scores, a.scores, atol=1e-4, rtol=0, err_msg=where)
        assert (a.flow is None) == (b.flow is None), where
        if a.flow is not None:
            np.testing.assert_allclose(b.flow, a.flow, atol=1e-4, rtol=0, err_msg=where)


def test_manifest_describes_the_graphs(export_dir, tiny):
    manifest = json.loads((export_dir / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION and manifest["preset"] == "tiny_synthetic"
    assert manifest["class_names"] == list(tiny.class_names)
    assert dff.DFFConfig.from_dict(manifest["config"]) == tiny.config
    assert manifest["preprocess"]["mean"] == list(tiny.config.preprocess.mean)
    assert manifest["opset"] == 17 and manifest["fixed_size"] is None
    for name in STAGES:
        stage = manifest["stages"][name]
        model = onnx.load(str(export_dir / stage["file"]))
        onnx.checker.check_model(model)
        assert [i.name for i in model.graph.input] == [i["name"] for i in stage["inputs"]]
        assert [o.name for o in model.graph.output] == [o["name"] for o in stage["outputs"]]
        assert model.opset_import[0].version == 17
        assert {p.key: p.value for p in model.metadata_props}["dff.stage"] == name
        assert len(stage["sha256"]) == 64
    img = manifest["stages"]["propagate"]["inputs"][0]
    assert img == {"name": "img", "shape": ["batch", 3, "height", "width"], "dtype": "float32"}
    outputs = manifest["stages"]["detect"]["outputs"]
    assert [(o["name"], o["shape"]) for o in outputs] == [
        ("boxes", ["num_dets", 4]),
        ("scores", ["num_dets"]),
        ("labels", ["num_dets"]),
        ("batch_index", ["num_dets"]),
    ]
    detect_ops = {n.op_type for n in onnx.load(str(export_dir / "detect.onnx")).graph.node}
    assert {"NonMaxSuppression", "RoiAlign", "TopK", "Softmax"} <= detect_ops


def test_clip_through_onnxruntime_matches_the_reference(tiny, export_dir, clip_frames, one_thread):
    """12 frames of the bundled clip, DFF@10 (two key frames): onnxruntime vs PyTorch, the flow included."""
    model = dff.load(export_dir / "manifest.json")
    assert isinstance(model.net, ONNXNetwork) and model.class_names == tiny.class_names
    ref = list(tiny.predict(clip_frames, REFERENCE, return_flow=True))
    onx = list(model.predict(clip_frames, return_flow=True))
    assert [r.is_key_frame for r in onx] == [i % 10 == 0 for i in range(12)]
    same_results(ref, onx)


def test_any_key_frame_policy_and_zero_flow(tiny, export_dir, clip_frames, one_thread):
    model = dff.load(export_dir / "manifest.json")
    for policy in (FixedInterval(4), Adaptive(budget=4)):
        ref = list(tiny.predict(clip_frames, REFERENCE, key_policy=policy))
        same_results(ref, list(model.predict(clip_frames, key_policy=policy)))
    ref = list(tiny.predict(clip_frames[:3], REFERENCE, propagation=dff.zero_flow))
    same_results(ref, list(model.predict(clip_frames[:3], propagation=dff.zero_flow)))


def test_dynamic_size_and_fast_preprocessing(tiny, export_dir, clip_frames, one_thread):
    """Another frame size (a new segment, other padded shape) through the same graphs, fed by the fast
    preprocessing (channels_last, same values as the reference's)."""
    frames = [cv2.resize(f, (300, 260)) for f in clip_frames[:3]] + clip_frames[:2]
    model = dff.load(export_dir / "manifest.json")
    ref = list(tiny.predict(frames, REFERENCE, return_flow=True))
    same_results(ref, list(model.predict(frames, return_flow=True, prefetch=False)))
    with pytest.raises(DFFError, match="ONNX graphs run in fp32, not bf16"):
        list(model.predict(frames[:1], dtype="bf16"))


def test_fixed_size_export(tiny, clip_frames, tmp_path, one_thread):
    img, meta = dff.data.transforms.preprocess(clip_frames[0], tiny.config.preprocess)
    size = tuple(img.shape[-2:])
    manifest = export_onnx(tiny, tmp_path / "fixed", fixed_size=size)
    graph = onnx.load(str(tmp_path / "fixed" / "propagate.onnx")).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, *size]
    model = dff.load(manifest)
    same_results(list(tiny.predict(clip_frames[:2], REFERENCE)), list(model.predict(clip_frames[:2])))
    with pytest.raises(InputError, match=f"fixed {size[0]}x{size[1]} input"):
        list(model.predict([cv2.resize(clip_frames[0], (200, 400))]))
    with pytest.raises(DFFError, match="not a multiple of 16"):
        export_onnx(tiny, tmp_path / "bad", fixed_size=(100, 320))


@pytest.mark.parametrize("empty", ["no_proposals", "no_class_scores"])
def test_frames_without_detections(tiny, clip_frames, tmp_path, empty, one_thread):
    """No proposal survives (every box pushed off the image) or no class scores over 1e-4: empty, as PyTorch."""
    net = copy.deepcopy(tiny.net)
    with torch.no_grad():
        if empty == "no_proposals":
            net.detector.rpn_head.rpn_reg.bias[0::4] = 1000.0
        else:
            net.detector.roi_head.bbox_head.fc_cls.bias[-1] = 100.0
    ref = list(dff.DFFModel(net).predict(clip_frames[:2], REFERENCE))
    onx = list(dff.load(export_onnx(net, tmp_path / "export")).predict(clip_frames[:2]))
    assert [len(r.scores) for r in ref] == [len(r.scores) for r in onx] == [0, 0]
    assert onx[0].boxes.shape == (0, 4) and onx[0].labels.dtype == np.int64


def test_cli_export_then_detect(export_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["export", "--weights", str(TINY), "--out", str(out)]) == 0
    assert all((out / f"{s}.onnx").is_file() for s in STAGES)
    capsys.readouterr()
    jsonl = tmp_path / "d.jsonl"
    args = ["detect", str(CLIP), "--weights", str(out / "manifest.json"), "--max-frames", "3", "--no-progress"]
    assert main([*args, "--out-json", str(jsonl)]) == 0
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(lines) == 3 and lines[0]["key"] and not lines[1]["key"]


def bad_export(export_dir, tmp_path, edit):
    bad = tmp_path / "bad"
    shutil.copytree(export_dir, bad)
    edit(bad)
    return bad / "manifest.json"


def test_bad_exports_are_one_line_errors_with_exit_2(export_dir, tmp_path, capsys):
    def version(d):
        m = json.loads((d / "manifest.json").read_text())
        (d / "manifest.json").write_text(json.dumps({**m, "format_version": FORMAT_VERSION + 1}))

    cases = [
        (bad_export(export_dir, tmp_path / "v", version), [], "manifest format version 3; this dff reads version 2"),
        (
            bad_export(export_dir, tmp_path / "m", lambda d: (d / "detect.onnx").unlink()),
            [],
            "stages.detect.file: missing detect.onnx",
        ),
        (export_dir / "manifest.json", ["--preset", "r50_dc5"], "exported from preset 'tiny_synthetic', not 'r50_dc5'"),
        (tmp_path / "nowhere" / "manifest.json", [], "no such file"),
    ]
    for manifest, extra, message in cases:
        capsys.readouterr()
        code = main(["detect", str(CLIP), "--weights", str(manifest), *extra, "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("dff: error: ") and message in err and "\n" not in err, err
    with pytest.raises(CheckpointError, match="not a dff ONNX manifest"):
        dff.load(bad_export(export_dir, tmp_path / "j", lambda d: (d / "manifest.json").write_text("[1, 2]")))


def test_missing_onnxruntime_is_a_one_line_error(export_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(DFFError, match=r'pip install "deep-feature-flow\[onnx\]"'):
        load_onnx(export_dir / "manifest.json")


def test_golden_frames_through_onnxruntime(tmp_path, one_thread):
    """R-50 seed-0 weights exported, the 12 golden frames on onnxruntime within the golden tolerances."""
    z, frames, model = load_golden(tmp_path)
    export_onnx(model, tmp_path / "onnx")
    del model
    onx = dff.load(tmp_path / "onnx" / "manifest.json", preset="r50_dc5")
    results = list(onx.predict(frames))
    assert [r.is_key_frame for r in results] == [i % 10 == 0 for i in range(12)]
    for i, r in enumerate(results):
        assert len(r.scores) <= 100 and np.all(np.diff(r.scores) <= 0) and np.all(r.scores > 1e-4)
        detections_match(r, z[f"f{i}/detections"], f"frame {i}")
