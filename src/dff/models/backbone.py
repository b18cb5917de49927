"""ResNet / ResNeXt backbones from torchvision's builders, truncated at stride 16 ("DC5" or C4) or 8.

mmdet's DC5 ResNet dilates *every* block of layer4, the first included; torchvision's
`replace_stride_with_dilation` leaves `layer4[0].conv2` at dilation 1 (docs/pitfalls.md, pitfall 4) and refuses
BasicBlocks,
so the last stage is dilated here: every 3x3 conv gets stride 1 and dilation 2, the downsample stride 1.

Spec pitfalls handled here: 4, 5, 19 (docs/pitfalls.md maps each to its code and tests).
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from dff.config import BackboneConfig

_BUILDERS = {
    "resnet18": torchvision.models.resnet18,
    "resnet50": torchvision.models.resnet50,
    "resnet101": torchvision.models.resnet101,
    "resnext101_64x4d": torchvision.models.resnext101_64x4d,
}


def dilate_stage(stage: nn.Sequential) -> None:
    """Replace a stage's stride 2 by dilation 2 in every 3x3 conv, as mmdet's `dilations=2, strides=1`."""
    for m in stage.modules():
        if isinstance(m, nn.Conv2d):
            m.stride = (1, 1)
            if m.kernel_size == (3, 3):
                m.dilation, m.padding = (2, 2), (2, 2)


class ResNetBackbone(nn.Module):
    """Stem + layer1..layer{num_stages}; output (N, C, H/s, W/s), s = cfg.output_stride. BN always in eval mode
    (mmdet norm_eval)."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        net = _BUILDERS[cfg.arch](weights=None)
        if cfg.num_stages == 4 or cfg.output_stride == 8:
            dilate_stage(getattr(net, f"layer{cfg.num_stages}"))
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.stages = [f"layer{i}" for i in range(1, cfg.num_stages + 1)]
        for name in self.stages:
            setattr(self, name, getattr(net, name))
        self.frozen_stages = cfg.frozen_stages
        self._freeze()

    def _freeze(self) -> None:
        frozen = [self.conv1, self.bn1] + [getattr(self, f"layer{i}") for i in range(1, self.frozen_stages + 1)]
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNetBackbone:
        """Train mode for convs, but every BatchNorm stays in eval mode (running statistics)."""
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, C, H/s, W/s)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stages:
            x = getattr(self, name)(x)
        return x
