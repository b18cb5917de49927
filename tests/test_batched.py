"""Stages that take a batch: several videos stepped together give each video's own results, on every backend."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import dff
from dff.api import step
from dff.cli.demo import MODEL_PATH
from dff.io.sources import open_source
from dff.run import REFERENCE, RunOptions
from tests.conftest import CLIP_PATH, REAL, need
from tests.test_fast_path import _same_detections

POLICY = dff.FixedInterval(3)


def _videos() -> list[list[np.ndarray]]:
    """Four videos of different lengths: two of one frame size, one of another size with the same padded size
    (another img_shape inside the same padding), one of a size that pads differently (a batch of its own)."""
    with open_source(CLIP_PATH) as src:
        clip = [f.image for f in src][:12]
    real = [cv2.imread(str(p)) for p in sorted(need(REAL / "ILSVRC2015_val_00007010").glob("*.JPEG"))[:9]]
    square = [cv2.resize(f, (360, 360), interpolation=cv2.INTER_AREA) for f in clip[3:10]]
    return [clip[:12], clip[5:10], real, square]


def _check_shapes(model: dff.DFFModel, videos: list[list[np.ndarray]]) -> None:
    from dff.data.transforms import image_meta

    metas = [image_meta(*v[0].shape[:2], model.config.preprocess) for v in videos]
    assert metas[0].pad_shape == metas[2].pad_shape and metas[0].img_shape != metas[2].img_shape
    assert metas[3].pad_shape != metas[0].pad_shape


def _compare(model: dff.DFFModel, run: RunOptions) -> None:
    videos = _videos()
    _check_shapes(model, videos)
    alone = [list(model.predict(v, run)) for v in videos]
    together: list[list[dff.FrameResult]] = [[] for _ in videos]
    for i, r in model.predict_many(videos, run):
        together[i].append(r)
    assert [len(v) for v in together] == [len(v) for v in videos] == [12, 5, 9, 7]
    for a_video, b_video in zip(alone, together, strict=True):
        assert [r.frame_index for r in b_video] == list(range(len(b_video)))
        assert [r.key_reason for r in a_video] == [r.key_reason for r in b_video]
        for a, b in zip(a_video, b_video, strict=True):
            _same_detections(a, b)
            assert a.key_index == b.key_index


@pytest.fixture(scope="module")
def bundled() -> dff.DFFModel:
    return dff.load(MODEL_PATH)


@pytest.mark.parametrize(
    "run",
    [REFERENCE.with_options(key_policy=POLICY), RunOptions(device="cpu", key_policy=POLICY)],
    ids=["reference", "fast"],
)
def test_four_videos_batched_equal_four_runs(bundled, run, one_thread):
    _compare(bundled, run)


def test_four_videos_batched_equal_four_runs_onnx(bundled, tmp_path, one_thread):
    pytest.importorskip("onnxruntime")
    from dff.export.onnx import export_onnx

    manifest = export_onnx(bundled, tmp_path / "export")
    _compare(dff.load(manifest), RunOptions(key_policy=POLICY))


def test_step_runs_one_batch_per_stage(bundled, one_thread):
    """Two sessions of one padded size: each stage runs once per step for both (batch of 2), with rows of
    different videos in one key state."""
    run = RunOptions(device="cpu", key_policy=POLICY)
    net = bundled.network(run)
    calls: list[tuple[str, int]] = []
    handles = []
    for name in ("backbone", "motion", "rpn_head"):
        module = net.motion if name == "motion" else getattr(net.detector, name)
        handles.append(module.register_forward_hook(lambda m, i, o, name=name: calls.append((name, i[0].shape[0]))))
    with open_source(CLIP_PATH) as src:
        frames = [f.image for f in src][:4]
    sessions = [bundled.session(run), bundled.session(run)]
    streams = [bundled.inputs(frames, run), bundled.inputs(frames[::-1], run)]
    for _ in range(2):
        results = step(sessions, [next(s) for s in streams])
        assert len(results) == 2
    for h in handles:
        h.remove()
    assert calls == [("backbone", 2), ("rpn_head", 2), ("motion", 2), ("rpn_head", 2)]
    assert len(sessions[0].key) == 1 and sessions[0].key_index == 0
    with pytest.raises(dff.errors.InputError):
        step(sessions, [next(streams[0])])
    other = dff.load(MODEL_PATH).session(run)
    with pytest.raises(dff.errors.InputError):
        step([sessions[0], other], [next(s) for s in streams])
