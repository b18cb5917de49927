"""mmdet ChannelMapper with one input: ReLU(conv3x3(C5)), keys `convs.0.conv.*`.

Spec pitfalls handled here: 6 (docs/pitfalls.md maps each to its code and tests).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _ConvModule(nn.Module):
    """A conv held as `.conv` so that state-dict keys match mmcv's ConvModule."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.conv = conv


class ChannelMapper(nn.Module):
    """(N, in_channels, H, W) -> (N, out_channels, H, W) with a 3x3 conv + bias and ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList([_ConvModule(nn.Conv2d(in_channels, out_channels, 3, padding=1))])
        nn.init.xavier_uniform_(self.convs[0].conv.weight)
        nn.init.zeros_(self.convs[0].conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.convs[0].conv(x))
