"""Unit tests of each piece of arithmetic the spec calls out (sections 2.6, 3.2-3.5, 9)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dff
import dff.errors
from dff.config import BackboneConfig, FlowConfig, PreprocessConfig, RPNConfig, preset
from dff.data.transforms import padded_size, preprocess, rescale_size, scale_factor_for
from dff.models import anchors, box_coder
from dff.models.backbone import ResNetBackbone
from dff.models.flownet import FlowNetSimple
from dff.models.network import zero_flow
from dff.models.warp import FlowWarp, warp_grid


@pytest.mark.parametrize(
    "w,h,new,padded,feat",
    [((1280), 720, (1000, 563), (576, 1008), (36, 63)), (500, 375, (800, 600), (608, 800), (38, 50))],
)
def test_resize_pad_and_feature_sizes(w, h, new, padded, feat):
    (nw, nh), _ = rescale_size(w, h, (1000, 600))
    assert (nw, nh) == new
    assert padded_size(nh, nw, 16) == padded
    assert (padded[0] // 16, padded[1] // 16) == feat


def test_scale_factors_per_axis():
    sf = scale_factor_for(1280, 720, 1000, 563)
    assert sf.dtype == np.float32
    np.testing.assert_allclose(sf, [0.78125, 0.78194445, 0.78125, 0.78194445], rtol=1e-6)


def test_preprocess_normalises_rgb_and_zero_pads():
    frame = np.zeros((720, 1280, 3), np.uint8)
    frame[..., 0] = 255  # pure blue in BGR
    img, meta = preprocess(frame, PreprocessConfig())
    assert img.shape == (3, 576, 1008) and meta.img_shape == (563, 1000) and meta.pad_shape == (576, 1008)
    np.testing.assert_allclose(
        img[:, 0, 0].numpy(), [-123.675 / 58.395, -116.28 / 57.12, (255 - 103.53) / 57.375], rtol=1e-6
    )
    assert float(img[:, 563:, :].abs().max()) == 0.0 and float(img[:, :, 1000:].abs().max()) == 0.0


def test_anchors_unrounded_ratio_major():
    base = anchors.base_anchors(16, (4, 8, 16, 32), (0.5, 1.0, 2.0))
    assert base.shape == (12, 4)
    np.testing.assert_allclose(base[0].numpy(), [-45.2548, -22.6274, 45.2548, 22.6274], atol=1e-4)
    np.testing.assert_allclose(base[4].numpy(), [-32, -32, 32, 32])  # ratio 1, scale 4
    np.testing.assert_allclose(base[11].numpy(), [-181.0193, -362.0387, 181.0193, 362.0387], atol=1e-4)
    grid = anchors.grid_anchors(base, 36, 63, 16)
    assert grid.shape == (36 * 63 * 12, 4)
    np.testing.assert_allclose(grid[12].numpy(), base[0].numpy() + [16, 0, 16, 0], atol=1e-5)  # (y=0, x=1)
    np.testing.assert_allclose(grid[63 * 12].numpy(), base[0].numpy() + [0, 16, 0, 16], atol=1e-5)  # (y=1, x=0)


def test_box_decode_clamps_both_sides_and_clips():
    rois = torch.tensor([[100.0, 100.0, 110.0, 120.0]] * 3)
    deltas = torch.tensor([[0.0, 0.0, 10.0, -10.0], [0.0, 0.0, -10.0, 10.0], [0.5, -0.5, 0.0, 0.0]])
    out = box_coder.decode(rois, deltas, (1.0, 1.0, 1.0, 1.0), max_shape=None)
    ratio = 1000 / 16
    np.testing.assert_allclose((out[0, 2] - out[0, 0]).item(), 10 * ratio, rtol=1e-5)
    np.testing.assert_allclose((out[0, 3] - out[0, 1]).item(), 20 / ratio, rtol=1e-4)
    np.testing.assert_allclose((out[1, 2] - out[1, 0]).item(), 10 / ratio, rtol=1e-4)
    np.testing.assert_allclose(out[2].numpy(), [105.0, 90.0, 115.0, 110.0])  # dx=+0.5w, dy=-0.5h
    clipped = box_coder.decode(rois, deltas, (1.0, 1.0, 1.0, 1.0), max_shape=(563, 1000))
    assert clipped[:, 0::2].min() >= 0 and clipped[:, 0::2].max() <= 1000 and clipped[:, 1::2].max() <= 563
    np.testing.assert_allclose(clipped[0, [0, 2]].numpy(), [0.0, 105 + 312.5], rtol=1e-6)  # 625 px wide at x=105


def test_box_encode_decode_roundtrip_with_rcnn_stds():
    rois = torch.tensor([[10.0, 20.0, 50.0, 80.0], [0.0, 0.0, 16.0, 16.0]])
    gt = torch.tensor([[12.0, 18.0, 60.0, 70.0], [2.0, 3.0, 9.0, 30.0]])
    d = box_coder.encode(rois, gt, (0.2, 0.2, 0.2, 0.2))
    np.testing.assert_allclose(box_coder.decode(rois, d, (0.2, 0.2, 0.2, 0.2), None).numpy(), gt.numpy(), atol=1e-4)


def test_warp_grid_zero_flow_shrinks_towards_origin():
    grid = warp_grid(torch.zeros(1, 2, 36, 63))
    # align_corners=True maps g in [-1, 1] to pixel (g + 1) / 2 * (W - 1): the last column reads x = 61.016, not 62
    px = (grid[0, 0, -1, 0] + 1) / 2 * 62
    assert abs(px.item() - 62 * 62 / 63) < 1e-4 and abs(px.item() - 61.016) < 1e-3
    ramp = torch.arange(63, dtype=torch.float32).view(1, 1, 1, 63).expand(1, 1, 36, 63).contiguous()
    warped = FlowWarp()(ramp, torch.zeros(1, 2, 576, 1008))
    np.testing.assert_allclose(warped[0, 0, 0].numpy(), np.arange(63) * 62 / 63, atol=1e-4)


def test_warp_follows_flow_in_feature_pixels():
    feat = torch.arange(63, dtype=torch.float32).view(1, 1, 1, 63).expand(1, 1, 36, 63).contiguous()
    flow = torch.zeros(1, 2, 576, 1008)
    flow[:, 0] = 16 * 3.0  # 3 feature pixels to the right, in image pixels
    warped = FlowWarp()(feat, flow)
    np.testing.assert_allclose(warped[0, 0, 5, 10].item(), 13 * 62 / 63, atol=1e-4)


@pytest.mark.parametrize(
    "cfg,channels,stride",
    [
        (BackboneConfig("resnet50"), 2048, 16),
        (BackboneConfig("resnet18", num_stages=3), 256, 16),
        (BackboneConfig("resnet18", num_stages=3, output_stride=8), 256, 8),
    ],
)
def test_backbone_output_stride(cfg, channels, stride):
    net = ResNetBackbone(cfg).eval()
    with torch.inference_mode():
        out = net(torch.randn(1, 3, 96, 160))
    assert out.shape == (1, channels, 96 // stride, 160 // stride) and cfg.out_channels == channels
    last = getattr(net, net.stages[-1])
    dilations = {m.dilation for m in last.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)}
    # mmdet's dilated stage: every 3x3 conv of it at dilation 2, the first block's included (spec pitfall 4)
    assert dilations == ({(2, 2)} if stride == 8 or cfg.num_stages == 4 else {(1, 1)})


def test_stride_mismatches_are_refused():
    with pytest.raises(dff.errors.DFFError, match="output_stride 8 with num_stages 4"):
        BackboneConfig("resnet50", output_stride=8)
    cfg = preset("tiny_synthetic")
    with pytest.raises(dff.errors.DFFError, match="rpn stride 32 differs"):
        type(cfg)(name="x", backbone=cfg.backbone, rpn=RPNConfig(stride=32))


def test_flownet_shapes_for_576x1008():
    net = FlowNetSimple(FlowConfig(), PreprocessConfig().mean, PreprocessConfig().std).eval()
    sizes = {}
    for i in range(1, 7):
        getattr(net, f"conv{i}").register_forward_hook(lambda m, a, o, i=i: None)
        getattr(net, f"conv{i}")[-1].register_forward_hook(
            lambda m, a, o, i=i: sizes.__setitem__(i, tuple(o.shape[-2:]))
        )
    with torch.inference_mode():
        flow = net(torch.randn(1, 3, 576, 1008), torch.randn(1, 3, 576, 1008), (563, 1000))
    assert flow.shape == (1, 2, 576, 1008)
    assert [sizes[i] for i in range(1, 7)] == [(144, 252), (72, 126), (36, 63), (18, 32), (9, 16), (5, 8)]


def test_flownet_input_normalisation_and_padding_zeroed():
    net = FlowNetSimple(FlowConfig(), PreprocessConfig().mean, PreprocessConfig().std)
    pair = torch.zeros(1, 6, 32, 48)  # normalised zeros = the detector mean colour
    x = net.prepare(pair, (20, 40))
    assert x.shape == (1, 6, 16, 24)
    mean, fmean = PreprocessConfig().mean, FlowConfig().mean
    np.testing.assert_allclose(x[0, :3, 0, 0].numpy(), [m / 255 - f for m, f in zip(mean, fmean)], rtol=1e-5)
    assert float(x[0, :, 10:, :].abs().max()) == 0.0 and float(x[0, :, :, 20:].abs().max()) == 0.0


def test_key_frame_schedule_and_segments():
    model = dff.build("tiny_synthetic")
    frames = [np.full((96, 160, 3), i * 10, np.uint8) for i in range(23)]
    assert [r.is_key_frame for r in model.predict(frames)] == [i % 10 == 0 for i in range(23)]
    keys = [r.frame_index for r in model.predict(frames[:9], key_policy=dff.FixedInterval(4)) if r.is_key_frame]
    assert keys == [0, 4, 8]
    # a size change starts a new segment: its first frame is a key frame and ids restart
    mixed = frames[:3] + [np.zeros((120, 160, 3), np.uint8)] * 6
    assert [r.is_key_frame for r in model.predict(mixed, key_policy=dff.FixedInterval(4))] == [
        True,
        False,
        False,
        True,
        False,
        False,
        False,
        True,
        False,
    ]
    with pytest.raises(dff.errors.DFFError):
        dff.FixedInterval(0)


def test_zero_flow_mode_reuses_key_features():
    model = dff.build("tiny_synthetic")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (96, 160, 3), dtype=np.uint8) for _ in range(3)]
    out = list(model.predict(frames, propagation=zero_flow, return_flow=True))
    assert all(r.flow is None for r in out) and [r.is_key_frame for r in out] == [True, False, False]
    assert [r.key_reason for r in out] == ["first", None, None]
    for r in out[1:]:  # the key frame's features, unwarped, under the same geometry: the key frame's detections
        np.testing.assert_array_equal(r.boxes, out[0].boxes)
        np.testing.assert_array_equal(r.scores, out[0].scores)
    out = list(model.predict(frames, return_flow=True))
    assert out[0].flow is None and out[1].flow.shape == (2, 12, 20)
