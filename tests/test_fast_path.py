"""The fast inference path gives the reference path's results: golden comparison of both, and each fast piece."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import dff
from dff.data.fast_preprocess import as_channels_last, preprocess_hwc
from dff.data.transforms import preprocess
from dff.models.detector import DFF
from dff.models.fast import KERNELS, fast_network
from dff.models.fast_heads import ChannelsLastRoIAlign, FastBBoxHead, roi_align_channels_last
from dff.models.fast_trunks import FastFlowWarp, fold_conv_bn
from dff.models.network import zero_flow
from dff.models.nms import nms_top_k
from dff.models.packed import FusedConv, FusedLinear, PackedConv, PackedLinear
from dff.models.roi_head import BBoxHead
from dff.models.warp import FlowWarp
from dff.run import REFERENCE, RunOptions
from tests.conftest import REAL, need
from tests.test_golden import (
    Recorder,
    close,
    detections_match,
    load_golden,
    summary_matches,
)

# Frames 0-3 as one video and 10-11 as another reproduce the golden run's frames 0-3 and 10-11 (keys at 0 and 10).
GOLDEN_SEGMENTS = ((0, 4), (10, 12))


@pytest.fixture(scope="module")
def golden_model(tmp_path_factory):
    return load_golden(tmp_path_factory.mktemp("golden_fast"))


@pytest.mark.parametrize("run", [RunOptions(device="cpu"), REFERENCE], ids=["fast", "reference"])
def test_path_matches_golden(golden_model, run):
    z, frames, model = golden_model
    rec = Recorder(model.net)
    assert (model.network(run) is not model.net) == (run.backend != "reference")
    results = {}
    for start, stop in GOLDEN_SEGMENTS:
        for r in model.predict(frames[start:stop], run):
            results[start + r.frame_index] = (r, rec.current)
            rec.next_frame()
    for i, (r, seen) in results.items():
        assert r.is_key_frame == (i % 10 == 0)
        if r.is_key_frame:
            summary_matches(seen["backbone"].contiguous(), z, f"f{i}/backbone")
            summary_matches(seen["neck"].contiguous(), z, f"f{i}/neck")
        else:
            close(seen["flow_full"][0, :, ::8, ::8].numpy(), z[f"f{i}/flow_full"], f"f{i}/flow_full")
            summary_matches(seen["warped"].contiguous(), z, f"f{i}/warped")
        props = seen["proposals"].numpy()
        assert len(props) == int(z[f"f{i}/num_proposals"])
        np.testing.assert_allclose(props[:20], z[f"f{i}/proposals"][:20], atol=0.05, rtol=0, err_msg=f"f{i}")
        np.testing.assert_allclose(props[:20, 4], z[f"f{i}/proposals"][:20, 4], atol=1e-4, rtol=0)
        detections_match(r, z[f"f{i}/detections"], f"{run.backend} frame {i}")


def _real_frames(n: int, size: tuple[int, int] = (640, 360)) -> list[np.ndarray]:
    files = sorted(need(REAL / "ILSVRC2015_val_00007010").glob("*.JPEG"))[:n]
    return [cv2.resize(cv2.imread(str(f)), size, interpolation=cv2.INTER_AREA) for f in files]


def _same_detections(a: dff.FrameResult, b: dff.FrameResult) -> None:
    """Same detections up to the order of equal scores: each of b has its own counterpart in a (label, box within
    0.05 px, score within 1e-5)."""
    assert a.is_key_frame == b.is_key_frame
    assert len(a.scores) == len(b.scores)
    np.testing.assert_allclose(b.scores, a.scores, atol=1e-5, rtol=0)
    unmatched = set(range(len(a.scores)))
    for i in range(len(b.scores)):
        j = next(
            (
                j
                for j in sorted(unmatched)
                if a.labels[j] == b.labels[i]
                and abs(a.scores[j] - b.scores[i]) <= 1e-5
                and np.abs(a.boxes[j] - b.boxes[i]).max() <= 0.05
            ),
            None,
        )
        assert j is not None, f"detection {i} ({b.labels[i]}, {b.boxes[i]}, {b.scores[i]}) has no counterpart"
        unmatched.remove(j)


def _tiny_at_stride(stride: int) -> dff.DFFConfig:
    cfg = dff.preset("tiny_synthetic")
    return dataclasses.replace(
        cfg,
        backbone=dataclasses.replace(cfg.backbone, output_stride=stride),
        rpn=dataclasses.replace(cfg.rpn, stride=stride),
    )


@pytest.mark.parametrize(
    "use_flow,stride,kernels", [(True, 16, "cpu"), (False, 16, "cpu"), (True, 8, "cpu"), (True, 16, "cuda")]
)
def test_tiny_fast_equals_reference(use_flow, stride, kernels):
    """The fast network equals the reference, with the CPU kernels and with the CUDA table's (run on CPU tensors)."""
    torch.manual_seed(0)
    model = dff.build(_tiny_at_stride(stride))
    policy = dff.FixedInterval(3)
    propagation = None if use_flow else zero_flow
    frames = _real_frames(7)
    ref = list(model.predict(frames, REFERENCE, key_policy=policy, propagation=propagation, return_flow=True))
    run = RunOptions(device="cpu", key_policy=policy, propagation=propagation, return_flow=True)
    session = dff.VideoSession(fast_network(model.net, "cpu", kernels=KERNELS[kernels]), run, model.class_names)
    fast = [session.step(inp) for inp in model.inputs(frames, run)]
    assert [r.is_key_frame for r in fast] == [True, False, False] * 2 + [True]
    for a, b in zip(ref, fast):
        _same_detections(a, b)
        if a.flow is not None:
            np.testing.assert_allclose(b.flow, a.flow, atol=1e-3, rtol=0)
        else:
            assert b.flow is None


def test_fast_copy_follows_weights_and_hooks():
    torch.manual_seed(0)
    model = dff.build("tiny_synthetic")
    frames = _real_frames(2)
    run = RunOptions(device="cpu")
    first = model.network(run)
    assert isinstance(first, DFF) and first is not model.net and model.network(run) is first
    before = list(model.predict(frames, run))
    with torch.no_grad():
        model.net.detector.roi_head.bbox_head.fc_cls.bias[0] += 5.0  # in place: class 0 wins everywhere
    assert model.network(run) is not first
    after = list(model.predict(frames, run))
    assert (after[0].labels[:5] == 0).all() and not (before[0].labels[:5] == 0).all()
    # A hook on a module the fast network does not have sends predict to the reference network, which runs it.
    seen = []
    handle = model.net.detector.backbone.layer1.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    assert model.network(run) is model.net
    list(model.predict(frames, run))
    assert len(seen) == 1
    handle.remove()
    assert model.network(run) is not model.net


def test_optimize_leaves_the_training_network_alone():
    net = DFF(dff.preset("tiny_synthetic"))
    keys = list(net.state_dict())
    bns = sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    fast = fast_network(net)
    assert list(net.state_dict()) == keys
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == bns > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())


def test_low_precision_is_opt_in():
    torch.manual_seed(0)
    model = dff.build("tiny_synthetic")
    assert RunOptions().dtype == "fp32"
    with pytest.raises(dff.errors.DFFError):
        RunOptions(backend="reference", dtype="bf16")
    results = list(model.predict(_real_frames(2), device="cpu", dtype="bf16"))
    assert results[0].boxes.dtype == np.float32 and results[0].scores.dtype == np.float32
    assert all(np.all(np.diff(r.scores) <= 0) for r in results)


def test_fused_preprocessing_is_bit_identical():
    cfg = dff.preset("r50_dc5").preprocess
    frame = _real_frames(1, size=(1280, 720))[0]
    ref, meta = preprocess(frame, cfg)
    hwc, meta2 = preprocess_hwc(frame, cfg)
    img = as_channels_last(hwc)
    assert img.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(img[0], ref)
    assert (meta.img_shape, meta.pad_shape) == (meta2.img_shape, meta2.pad_shape) == ((563, 1000), (576, 1008))
    np.testing.assert_array_equal(meta.scale_factor, meta2.scale_factor)


def test_nms_top_k_equals_truncated_nms():
    g = torch.Generator().manual_seed(0)
    for n, k, iou in ((6000, 300, 0.7), (9000, 100, 0.5), (50, 100, 0.5), (2000, 1000, 0.3)):
        xy = torch.rand(n, 2, generator=g) * 800
        boxes = torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=g) * 200], dim=1)
        scores = torch.rand(n, generator=g)
        expected = torchvision.ops.nms(boxes, scores, iou)[:k]
        assert torch.equal(nms_top_k(boxes, scores, iou, k), expected)


def test_embedding_bag_roi_align_equals_torchvision():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 16, 36, 63, generator=g)
    xy = torch.rand(200, 2, generator=g) * torch.tensor([1100.0, 650.0]) - 50
    boxes = torch.cat([xy, xy + torch.rand(200, 2, generator=g) * 400], dim=1)
    boxes[:4] = torch.tensor([[0, 0, 1008, 576], [990, 560, 1007, 575], [-40, -40, 5, 5], [500, 200, 500, 200.0]])
    rois = torch.cat([torch.randint(0, 2, (200, 1), generator=g).float(), boxes], dim=1)
    expected = torchvision.ops.roi_align(feats, rois, 7, 1 / 16, 2, aligned=True)
    for f in (feats, feats.contiguous(memory_format=torch.channels_last)):
        out = roi_align_channels_last(f, rois, 7, 1 / 16, 2)
        torch.testing.assert_close(out.transpose(1, 2).reshape(expected.shape), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ChannelsLastRoIAlign(7, 1 / 16, 2)(f, rois), expected, atol=1e-5, rtol=1e-5)


def test_fast_box_head_equals_the_box_head():
    """FastBBoxHead on bin-major RoI features (ChannelsLastRoIAlign's) and on plain ones equals BBoxHead."""
    torch.manual_seed(0)
    cfg = dff.preset("tiny_synthetic").roi
    head = BBoxHead(16, 5, cfg).eval()
    feats = torch.randn(1, 16, 20, 30)
    rois = torch.tensor([[0, 10.0, 20, 200, 150], [0, 0, 0, 479, 319], [0, 100, 50, 110, 60]])
    fast = FastBBoxHead(head, cfg.output_size)
    with torch.inference_mode():
        plain = torchvision.ops.roi_align(feats, rois, cfg.output_size, 1 / 16, cfg.sampling_ratio, aligned=True)
        binned = ChannelsLastRoIAlign(cfg.output_size, 1 / 16, cfg.sampling_ratio)(feats, rois)
        for x in (plain, binned):
            for a, b in zip(fast(x), head(plain)):
                torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_embedding_bag_warp_equals_grid_sample():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 16, 36, 63, generator=g)
    flow = torch.randn(2, 2, 576, 1008, generator=g) * 30  # far out of the map too: border padding
    flow[0, :, :64] = 0
    out = FastFlowWarp()(feats.contiguous(memory_format=torch.channels_last), flow)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, FlowWarp()(feats, flow), atol=1e-5, rtol=1e-5)


def test_folded_and_packed_convs_equal_the_originals():
    g = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, padding=2, dilation=2)
    bn = nn.BatchNorm2d(16).eval()
    with torch.no_grad():
        for t in (bn.weight, bn.bias, bn.running_mean):
            t.copy_(torch.randn(16, generator=g))
        bn.running_var.copy_(torch.rand(16, generator=g) + 0.5)
    x = torch.randn(1, 8, 20, 30, generator=g)
    residual = torch.randn(1, 16, 20, 30, generator=g)
    with torch.inference_mode():
        expected = torch.relu(bn(conv(x)) + residual)
        folded = fold_conv_bn(conv, bn)
        torch.testing.assert_close(torch.relu(folded(x) + residual), expected, atol=1e-5, rtol=1e-5)
        out = PackedConv(folded, "relu")(x, residual=residual)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
        deconv = nn.ConvTranspose2d(16, 4, 4, 2, 1, bias=False)
        y = PackedConv(deconv, "leaky_relu", 0.1)(expected)
        torch.testing.assert_close(y, torch.nn.functional.leaky_relu(deconv(expected), 0.1), atol=1e-5, rtol=1e-5)
        for kind in (PackedConv, FusedConv):
            torch.testing.assert_close(kind(folded, "relu")(x, residual=residual), expected, atol=1e-5, rtol=1e-5)
            y = kind(deconv, "leaky_relu", 0.1)(expected)
            torch.testing.assert_close(y, torch.nn.functional.leaky_relu(deconv(expected), 0.1), atol=1e-5, rtol=1e-5)
        lin = nn.Linear(30, 5)
        v = torch.randn(7, 30, generator=g)
        for kind in (PackedLinear, FusedLinear):
            torch.testing.assert_close(kind(lin.weight, lin.bias, "relu")(v), torch.relu(lin(v)))
