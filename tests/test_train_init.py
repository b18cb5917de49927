"""Initialisation files (ImageNet ResNet, FlowNetSimple) and the flying-patches FlowNet pre-training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from dff.config import preset
from dff.errors import CheckpointError
from dff.models.detector import DFF
from dff.training import pretrained
from dff.training.flow_pretrain import (
    FlowPretrainConfig,
    FlyingPatches,
    PatchMotion,
    PatchSource,
    end_point_error,
    pretrain_flownet,
    save_flownet,
    shift_image,
    warp_target,
)


def test_backbone_from_a_torchvision_imagenet_file(tmp_path):
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(resnet.state_dict(), path)  # the layout of download.pytorch.org's resnet18-f37072fd.pth
    net = DFF(preset("tiny_synthetic"))
    pretrained.load_backbone(net, path)
    assert torch.equal(net.detector.backbone.layer3[1].conv2.weight, resnet.layer3[1].conv2.weight)
    assert torch.equal(net.detector.backbone.bn1.running_var, resnet.bn1.running_var)
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "r50.pth")
    with pytest.raises(CheckpointError, match="r50.pth: not an ImageNet ResNet weights for this preset"):
        pretrained.load_backbone(net, tmp_path / "r50.pth")


def test_flownet_file_round_trip(tmp_path):
    torch.manual_seed(1)
    a, b = DFF(preset("tiny_synthetic")), DFF(preset("tiny_synthetic"))
    save_flownet(a.motion, tmp_path / "flow.pth")
    pretrained.load_flownet(b, tmp_path / "flow.pth")
    assert all(torch.equal(x, y) for x, y in zip(a.motion.state_dict().values(), b.motion.state_dict().values()))
    torch.save({"state_dict": {f"motion.{k}": v for k, v in a.motion.state_dict().items()}}, tmp_path / "dff.pth")
    pretrained.load_flownet(b, tmp_path / "dff.pth")  # keys of a DFF checkpoint's motion part work too


def test_flying_patches_flow_is_the_true_displacement():
    torch.manual_seed(0)
    boxes = np.array([[10.0, 10.0, 60.0, 50.0]], np.float32)
    frames = [PatchSource(torch.randn(3, 96, 160), (90, 150), boxes) for _ in range(3)]
    data = FlyingPatches(frames, seed=0, motion=PatchMotion(max_camera_shift=5, max_shift=20, relative_shift=0.0))
    img, ref, flow, valid, shape = data.batch(4)
    assert shape == (90, 150) and img.shape == (4, 3, 96, 160) and flow.shape == (4, 2, 96, 160)
    assert not valid[:, 90:].any() and not valid[:, :, 150:].any()
    assert (flow.abs() > 0).any() and flow.abs().max() <= 20
    n, _, h, w = img.shape
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    agree = total = 0
    for i in range(n):
        qx, qy = xs + flow[i, 0].long(), ys + flow[i, 1].long()
        inside = valid[i] & (qx >= 0) & (qx < 150) & (qy >= 0) & (qy < 90)
        same = (img[i][:, ys[inside], xs[inside]] == ref[i][:, qy[inside], qx[inside]]).all(dim=0)
        agree, total = agree + int(same.sum()), total + int(inside.sum())
    assert agree / total > 0.75  # the rest: pixels hidden in ref by another patch
    assert torch.equal(shift_image(torch.arange(6.0).view(1, 2, 3), 1, 0), torch.tensor([[[0.0, 0, 1], [3, 3, 4]]]))


def test_uncovered_background_reads_background_not_the_patch():
    """A patch 10 px wide moved 6 px right under a (2, 1) camera shift: in img it covers x 10..19; in ref it hides
    ref x 16..25, i.e. img x 14..23 after the camera. The uncovered strip x 20..23 (what the patch left behind) takes
    the patch's displacement, so it reads ref x 26..29, just behind the patch: background, never the patch."""
    h, w = 40, 60
    flow = torch.zeros(2, h, w)
    flow[0], flow[1] = 2.0, 1.0
    flow[:, 5:15, 10:20] = torch.tensor([6.0, 1.0])[:, None, None]
    in_img = torch.zeros(h, w, dtype=torch.bool)
    in_img[5:15, 10:20] = True
    ref_owner = torch.full((1, h, w), -1.0)
    ref_owner[:, 6:16, 16:26] = 0.0
    FlyingPatches._fill_uncovered(flow, in_img, ref_owner, [(6, 1)], (2, 1), (h, w))
    hidden = torch.zeros(h, w, dtype=torch.bool)
    hidden[5:15, 14:24] = True  # p + camera inside the ref patch
    hidden &= ~in_img
    assert hidden.sum() == 40
    assert torch.equal(flow[0][hidden], torch.full((40,), 6.0)) and torch.equal(flow[1][hidden], torch.full((40,), 1.0))
    assert torch.equal(flow[0][~hidden & ~in_img], torch.full((h * w - 140,), 2.0))  # the rest: camera
    ys, xs = hidden.nonzero().T
    assert (ref_owner[0, ys + 1, xs + 6] < 0).all()  # every uncovered pixel now reads background


def test_flow_pretraining_reduces_the_end_point_error():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    frames = [
        PatchSource(
            torch.nn.functional.avg_pool2d(torch.randn(3, 192, 320, generator=g)[None], 5, 1, 2)[0] * 3,
            (192, 320),
            np.zeros((0, 4), np.float32),
        )
        for _ in range(4)
    ]
    data = FlyingPatches(
        frames, seed=0, motion=PatchMotion(max_camera_shift=0, max_shift=16, small_fraction=0.0, relative_shift=0.0)
    )
    held_out = FlyingPatches(frames, seed=1, motion=data.motion).batch(8)
    motion = DFF(preset("tiny_synthetic")).motion

    def epe() -> float:
        img, ref, target, valid, shape = held_out
        with torch.no_grad():
            return float(end_point_error(motion(img, ref, shape), warp_target(target, 16), valid, 4))

    before = epe()
    history = pretrain_flownet(motion, data, FlowPretrainConfig(iters=60, batch_size=2, lr=2e-3), 16, progress=False)
    assert history[-1]["iter"] == 60
    assert epe() < 0.8 * before, (before, epe())


def test_warp_target_makes_the_mmtracking_warp_exact():
    """The pre-training target undoes the warp's (W-1)/W grid shrink: zero motion -> identity, 2 cells -> shift."""
    from dff.models.warp import FlowWarp

    feats = torch.randn(1, 4, 12, 20)
    motion = torch.zeros(1, 2, 192, 320)
    plain = FlowWarp()(feats, motion)
    assert (plain - feats).abs().max() > 0.1  # the raw warp of zero flow is not the identity (spec pitfall 17)
    assert torch.allclose(FlowWarp()(feats, warp_target(motion, 16)), feats, atol=1e-4)
    motion[:, 0] = 32.0  # read the features 2 cells to the right
    shifted = FlowWarp()(feats, warp_target(motion, 16))
    assert torch.allclose(shifted[..., :18], feats[..., 2:], atol=1e-4)
