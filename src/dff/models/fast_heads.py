"""Inference-only kernels for the RPN head, RoIAlign and the box head, with the same outputs as the originals.

- `ChannelsLastRoIAlign`: mmcv/torchvision RoIAlign (aligned, fixed sampling ratio) as one weighted
  `embedding_bag` over (H*W, C) rows of a channels_last map. Each output bin is a weighted sum of at most
  (2 samples x 2 neighbours) per axis = 16 feature rows; the weights factor into a y part and an x part, so they are
  built per axis. Multi-threaded and about ten times faster than torchvision's single-threaded CPU kernel. Its
  (R, C, 7, 7) output is a view of bin-major (R, 49, C) memory.
- `FastBBoxHead`: the box head's first FC takes the RoI features bin-major (its weight is permuted once), which is
  that memory read without a copy; FC + ReLU fused, fc_cls and fc_reg as one matrix product.
- `FastRPNHead`: the RPN head's convs fused, rpn_cls and rpn_reg as one 1x1 conv.
The convs and FCs are of the kind models/fast.py chooses for the device (oneDNN-packed on CPU, standard elsewhere).

Spec pitfalls handled here: 10 (docs/pitfalls.md maps each to its code and tests).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dff.models.packed import FusedConv, FusedLinear, PackedConv, PackedLinear
from dff.models.precision import to_exact
from dff.models.roi_head import BBoxHead
from dff.models.rpn import RPNHead


def _axis_samples(
    start: torch.Tensor, length: torch.Tensor, bins: int, grid: int, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-axis bilinear taps of RoIAlign: (R,) roi start/length in feature pixels -> index, weight (R, bins, 2*grid).

    torchvision's rules: a sample outside [-1, size] contributes 0; otherwise it is clamped to >= 0, and one at or
    beyond size-1 reads row size-1 with full weight.
    """
    step = length / bins
    p = torch.arange(bins, dtype=start.dtype, device=start.device)[None, :, None]
    i = torch.arange(grid, dtype=start.dtype, device=start.device)[None, None, :]
    c = start[:, None, None] + p * step[:, None, None] + (i + 0.5) * step[:, None, None] / grid
    inside = ((c >= -1.0) & (c <= size)).to(c.dtype)
    c = c.clamp(min=0)
    low = c.floor().long()
    last = low >= size - 1
    low = low.clamp(max=size - 1)
    high = torch.where(last, low, low + 1)
    frac = torch.where(last, torch.zeros_like(c), c - low.to(c.dtype))
    index = torch.stack([low, high], dim=-1).flatten(-2)
    weight = (torch.stack([1 - frac, frac], dim=-1) * inside[..., None]).flatten(-2)
    return index, weight


def roi_align_channels_last(
    feats: torch.Tensor, rois: torch.Tensor, output_size: int, spatial_scale: float, sampling_ratio: int
) -> torch.Tensor:
    """`torchvision.ops.roi_align(feats, rois, output_size, spatial_scale, sampling_ratio, aligned=True)` returned
    bin-major as (R, output_size**2, C) instead of (R, C, output_size, output_size)."""
    n, c, h, w = feats.shape
    if sampling_ratio <= 0:
        raise ValueError("roi_align_channels_last needs a fixed sampling_ratio > 0")
    table = feats.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).reshape(n * h * w, c)
    r = rois.shape[0]
    x1, y1 = rois[:, 1] * spatial_scale - 0.5, rois[:, 2] * spatial_scale - 0.5
    x2, y2 = rois[:, 3] * spatial_scale - 0.5, rois[:, 4] * spatial_scale - 0.5
    iy, wy = _axis_samples(y1, y2 - y1, output_size, sampling_ratio, h)
    ix, wx = _axis_samples(x1, x2 - x1, output_size, sampling_ratio, w)
    base = rois[:, 0].long()[:, None, None, None, None] * (h * w)
    index = base + iy[:, :, None, :, None] * w + ix[:, None, :, None, :]
    weight = wy[:, :, None, :, None] * wx[:, None, :, None, :] * (1.0 / (sampling_ratio * sampling_ratio))
    bins = r * output_size * output_size
    out = F.embedding_bag(
        index.reshape(bins, -1), table, per_sample_weights=weight.reshape(bins, -1).to(table.dtype), mode="sum"
    )
    return out.view(r, output_size * output_size, c)


class FastRPNHead(nn.Module):
    """RPNHead with fused convs; rpn_cls and rpn_reg run as one 1x1 conv whose output is split."""

    def __init__(self, head: RPNHead, conv: type[FusedConv] = PackedConv) -> None:
        super().__init__()
        self.num_anchors = head.rpn_cls.out_channels
        self.rpn_conv = conv(head.rpn_conv, "relu")
        both = nn.Conv2d(head.rpn_cls.in_channels, self.num_anchors * 5, 1)
        with torch.no_grad():
            both.weight.copy_(torch.cat([head.rpn_cls.weight, head.rpn_reg.weight]))
            both.bias.copy_(torch.cat([head.rpn_cls.bias, head.rpn_reg.bias]))
        self.rpn_cls_reg = conv(both.to(head.rpn_cls.weight.device))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, H, W) -> logits (N, A, H, W), deltas (N, 4A, H, W) (channels_last views)."""
        out = self.rpn_cls_reg(self.rpn_conv(x))
        return out[:, : self.num_anchors], out[:, self.num_anchors :]


class ChannelsLastRoIAlign(nn.Module):
    """`torchvision.ops.RoIAlign(output_size, spatial_scale, sampling_ratio, aligned=True)` as an embedding bag;
    output (R, C, S, S) with bin-major memory."""

    def __init__(self, output_size: int, spatial_scale: float, sampling_ratio: int) -> None:
        super().__init__()
        self.output_size, self.spatial_scale, self.sampling_ratio = output_size, spatial_scale, sampling_ratio

    def forward(self, feats: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        s = self.output_size
        x = roi_align_channels_last(feats, to_exact(rois), s, self.spatial_scale, self.sampling_ratio)
        return x.view(x.shape[0], s, s, x.shape[2]).permute(0, 3, 1, 2)


class FastBBoxHead(nn.Module):
    """BBoxHead for inference: (R, C, S, S) RoI features read bin-major, fused FC+ReLU, fc_cls and fc_reg as one."""

    def __init__(self, bbox: BBoxHead, output_size: int, linear: type[FusedLinear] = PackedLinear) -> None:
        super().__init__()
        fc1 = bbox.shared_fcs[0]
        s2 = output_size * output_size
        weight = fc1.weight.detach().view(fc1.out_features, -1, s2).transpose(1, 2).reshape(fc1.out_features, -1)
        self.fc1 = linear(weight, fc1.bias, "relu")
        self.fc2 = linear(bbox.shared_fcs[1].weight, bbox.shared_fcs[1].bias, "relu")
        self.num_logits = bbox.fc_cls.out_features
        self.cls_reg = linear(
            torch.cat([bbox.fc_cls.weight, bbox.fc_reg.weight]), torch.cat([bbox.fc_cls.bias, bbox.fc_reg.bias])
        )

    def forward(self, roi_feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(R, C, S, S) -> class logits (R, C+1), deltas (R, 4C), as BBoxHead."""
        x = roi_feats.permute(0, 2, 3, 1).reshape(roi_feats.shape[0], -1)
        x = self.cls_reg(self.fc2(self.fc1(x)))
        return x[:, : self.num_logits], x[:, self.num_logits :]
