"""The ONNX graphs' batch axis (issue #24): each stage on N frames of one padded size, each with its own content size
and scale, equals the reference stage on each frame alone (golden tolerances), and equals the graph on that frame
alone; images without proposals or without detections among others; detect.onnx's output layout."""

from __future__ import annotations

import copy
import dataclasses
from importlib.resources import files

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import dff  # noqa: E402
from dff.data.transforms import ImageMeta, preprocess  # noqa: E402
from dff.export.onnx import export_onnx  # noqa: E402
from dff.export.runtime import ONNXNetwork  # noqa: E402
from dff.io.sources import open_source  # noqa: E402
from dff.models.detector import DFF, KeyState  # noqa: E402
from dff.models.roi_head import Detections  # noqa: E402

TINY = files("dff") / "assets" / "tiny_synthetic.safetensors"
CLIP = files("dff") / "assets" / "demo_clip.mp4"


@pytest.fixture(scope="module")
def net() -> DFF:
    return dff.load(str(TINY)).net


@pytest.fixture(scope="module")
def onx(net, tmp_path_factory) -> ONNXNetwork:
    return dff.load(export_onnx(net, tmp_path_factory.mktemp("batch") / "export")).net


@pytest.fixture(scope="module")
def batch(net) -> tuple[torch.Tensor, list[ImageMeta]]:
    """Four frames of four sizes (content 181x320, 192x222, 192x192, 100x320) zero-padded to one 192x320 batch."""
    with open_source(str(CLIP)) as src:
        clip = [f.image for f in src][:4]
    frames = [
        clip[0],
        cv2.resize(clip[1], (300, 260)),
        cv2.resize(clip[2], (200, 200)),
        cv2.resize(clip[3], (320, 100)),
    ]
    pre = [preprocess(f, net.cfg.preprocess) for f in frames]
    hp, wp = max(i.shape[1] for i, _ in pre), max(i.shape[2] for i, _ in pre)
    img = torch.stack([F.pad(i, (0, wp - i.shape[2], 0, hp - i.shape[1])) for i, _ in pre])
    metas = [m for _, m in pre]
    assert len({m.img_shape for m in metas}) == 4 and len({tuple(m.scale_factor) for m in metas}) == 4
    return img, metas


def same_detections(ref: Detections, onx: Detections, what: str) -> None:
    """The same detections in the same order with the same labels, boxes within 0.05 px and scores within 1e-4."""
    assert len(ref.scores) == len(onx.scores), what
    assert onx.boxes.dtype == torch.float32 and onx.labels.dtype == torch.int64, what
    np.testing.assert_array_equal(onx.labels.numpy(), ref.labels.numpy(), err_msg=what)
    np.testing.assert_allclose(onx.boxes.numpy(), ref.boxes.numpy(), atol=0.05, rtol=0, err_msg=what)
    np.testing.assert_allclose(onx.scores.numpy(), ref.scores.numpy(), atol=1e-4, rtol=0, err_msg=what)
    assert np.all(np.diff(onx.scores.numpy()) <= 0), what


def identical(a: Detections, b: Detections) -> bool:
    return all(torch.equal(x, y) for x, y in zip((a.boxes, a.scores, a.labels), (b.boxes, b.scores, b.labels)))


def test_key_features_and_propagate_rows_equal_each_frame_alone(net, onx, batch, one_thread):
    """Rows of different content sizes in one call (the FlowNet's padding mask per row), key states of other
    frames stacked in another order (rows of different videos)."""
    img, metas = batch
    shapes = [m.img_shape for m in metas]
    with torch.no_grad():
        alone = [net.key_features(img[i : i + 1], [shapes[i]]) for i in range(4)]
        key = onx.key_features(img, shapes)
        for i in range(4):
            torch.testing.assert_close(key[i].feats, alone[i].feats, atol=1e-4, rtol=0)
            torch.testing.assert_close(key[i].motion, alone[i].motion, atol=0, rtol=0)
        others = KeyState.cat([alone[j] for j in (2, 0, 3, 1)])
        feats, flow = onx.propagate(img, others, shapes)
        assert feats.shape[0] == flow.shape[0] == 4
        for i in range(4):
            ref_feats, ref_flow = net.propagate(img[i : i + 1], others[i], [shapes[i]])
            torch.testing.assert_close(feats[i : i + 1], ref_feats, atol=1e-4, rtol=0)
            torch.testing.assert_close(flow[i : i + 1], ref_flow, atol=1e-3, rtol=0)  # pixels of the padded image


def test_detect_rows_equal_the_reference_and_the_graph_on_each_frame_alone(net, onx, batch, one_thread):
    img, metas = batch
    with torch.no_grad():
        feats = net.key_features(img, [m.img_shape for m in metas]).feats
        together = onx.detect(feats, metas)
        assert len(together) == 4
        for i, meta in enumerate(metas):
            (ref,) = net.detect(feats[i : i + 1], [meta])
            assert len(ref.scores) == 100, f"image {i}"
            same_detections(ref, together[i], f"image {i}")
            (alone,) = onx.detect(feats[i : i + 1], [meta])
            assert identical(alone, together[i]), f"image {i}: batch of 1 and batch of 4 differ"
        # the same frame twice with two scales: the same detections, each in its own original pixels
        twice = onx.detect(
            feats[:1].expand(2, -1, -1, -1),
            [metas[0], dataclasses.replace(metas[0], scale_factor=metas[0].scale_factor / 2)],
        )
        torch.testing.assert_close(twice[1].boxes, twice[0].boxes * 2, atol=1e-4, rtol=0)
        torch.testing.assert_close(twice[1].scores, twice[0].scores, atol=0, rtol=0)


def test_an_image_without_proposals_among_others(net, onx, batch, one_thread):
    """Image 1 with an empty content width (every box clipped to zero width: no proposal survives) between two
    ordinary images: it gets no detections, the others their own."""
    img, metas = batch
    metas = [metas[0], dataclasses.replace(metas[1], img_shape=(metas[1].img_shape[0], 0)), metas[2]]
    with torch.no_grad():
        feats = net.key_features(img[:3], [m.img_shape for m in metas]).feats
        logits, deltas = net.detector.rpn_head(feats[1:2])
        assert len(net.detector.proposal_generator(logits[0], deltas[0], metas[1].img_shape)) == 0
        together = onx.detect(feats, metas)
        for i, meta in enumerate(metas):
            (ref,) = net.detect(feats[i : i + 1], [meta])
            same_detections(ref, together[i], f"image {i}")
    assert [len(d.scores) for d in together] == [100, 0, 100]
    assert together[1].boxes.shape == (0, 4) and together[1].labels.dtype == torch.int64


def test_an_image_without_detections_among_others(net, batch, tmp_path, one_thread):
    """Zero features for image 1 with a box head whose background wins on a zero input: it has 300 proposals but no
    class score over 1e-4; images 0 and 2 keep some detections."""
    quiet = copy.deepcopy(net)
    head = quiet.detector.roi_head.bbox_head
    with torch.no_grad():
        for fc in head.shared_fcs:
            fc.bias.zero_()
        head.fc_cls.bias.zero_()
        head.fc_cls.bias[-1] = 10.0  # a zero input: every class scores 1 / (30 + e^10) < 1e-4
    onx = dff.load(export_onnx(quiet, tmp_path / "quiet")).net
    img, metas = batch
    metas = metas[:3]
    with torch.no_grad():
        feats = quiet.key_features(img[:3], [m.img_shape for m in metas]).feats.clone()
        feats[1] = 0
        logits, deltas = quiet.detector.rpn_head(feats[1:2])
        assert len(quiet.detector.proposal_generator(logits[0], deltas[0], metas[1].img_shape)) == 300
        together = onx.detect(feats, metas)
        refs = [quiet.detect(feats[i : i + 1], [m])[0] for i, m in enumerate(metas)]
    assert len(refs[0].scores) > 0 and len(refs[1].scores) == 0 and len(refs[2].scores) > 0
    for i, (ref, got) in enumerate(zip(refs, together, strict=True)):
        same_detections(ref, got, f"image {i}")


def test_detect_graph_output_layout(net, onx, batch, one_thread):
    """detect.onnx's own outputs: all images' detections by image (batch_index non-decreasing), each image's by
    descending score, at most 100 per image, labels in [0, classes)."""
    img, metas = batch
    with torch.no_grad():
        feats = net.key_features(img, [m.img_shape for m in metas]).feats.numpy()
    feed = {
        "feats": feats,
        "img_shape": np.asarray([m.img_shape for m in metas], dtype=np.int64),
        "scale_factor": np.stack([m.scale_factor for m in metas]),
    }
    boxes, scores, labels, image = onx.sessions["detect"].run(None, feed)
    assert boxes.shape == (len(scores), 4) and image.dtype == labels.dtype == np.int64
    assert np.all(np.diff(image) >= 0) and set(image.tolist()) == {0, 1, 2, 3}
    assert np.bincount(image).max() <= 100 and labels.min() >= 0 and labels.max() < net.cfg.num_classes
    for i in range(4):
        assert np.all(np.diff(scores[image == i]) <= 0)
        w, h = metas[i].img_shape[::-1] / metas[i].scale_factor[:2]
        assert boxes[image == i].min() >= 0
        assert np.all(boxes[image == i][:, 2] <= w + 1e-3) and np.all(boxes[image == i][:, 3] <= h + 1e-3)


class _Counted:
    """An onnxruntime session that records the batch size of each run (and runs it)."""

    def __init__(self, session, calls: list, stage: str) -> None:
        self.session, self.calls, self.stage = session, calls, stage

    def run(self, outputs, feed):
        self.calls.append((self.stage, len(next(iter(feed.values())))))
        return self.session.run(outputs, feed)


def test_each_stage_runs_once_per_batch(tmp_path, one_thread):
    """Two videos stepped together (dff.api.step through predict_many): one run of each stage graph per step,
    with both frames in it."""
    model = dff.load(export_onnx(dff.load(str(TINY)), tmp_path / "export"))
    calls: list[tuple[str, int]] = []
    sessions = model.net.sessions
    model.net.sessions = {name: _Counted(s, calls, name) for name, s in sessions.items()}
    with open_source(str(CLIP)) as src:
        clip = [f.image for f in src][:3]
    results = list(model.predict_many([clip, clip[::-1]], key_policy=dff.FixedInterval(2), prefetch=False))
    assert len(results) == 6
    assert calls == [
        ("key_features", 2),
        ("detect", 2),
        ("propagate", 2),
        ("detect", 2),
        ("key_features", 2),
        ("detect", 2),
    ]
