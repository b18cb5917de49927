"""Inference-only versions of the backbone, neck, FlowNet and warp: BatchNorm folded into the convs, convs with
fused activations and residual adds (`conv`: oneDNN-packed on CPU, the standard ops elsewhere; models/fast.py
chooses), channels_last throughout, in the network's compute dtype (the image is cast on entry).

FlowNet's input changes shape but not value: instead of undoing the detector normalisation on the stacked
6-channel full-resolution pair and then halving it, each image is halved first (the 0.5 bilinear resize, a 2x2
mean on these even sizes) and mapped to FlowNet's normalisation on the quarter-size map, with the
zeroed padding accounted for by the fraction of valid pixels in each 2x2 cell. conv1 is linear before its
activation, so the key image's half of conv1 (its 3 input channels) is computed once per key frame and added to
the current image's half on every other frame.

Spec pitfalls handled here: 5, 6, 14-17 (docs/pitfalls.md maps each to its code and tests).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from dff.data.transforms import ImageShapes, shapes_tensor
from dff.models.backbone import ResNetBackbone
from dff.models.flownet import FlowNetSimple, _ConvModule, _crop_like
from dff.models.neck import ChannelMapper
from dff.models.packed import FusedConv, PackedConv
from dff.models.precision import to_compute, to_exact
from dff.models.warp import warp_grid

Conv = type[FusedConv]  # FusedConv or PackedConv


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv equal to bn(conv(x)) with eval-mode BatchNorm (running statistics), computed in float64."""
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
    ).to(conv.weight.device)
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    with torch.no_grad():
        fused.weight.copy_((conv.weight.double() * scale[:, None, None, None]).to(conv.weight.dtype))
        fused.bias.copy_(((bias - bn.running_mean.double()) * scale + bn.bias.double()).to(conv.weight.dtype))
    return fused


class FastBottleneck(nn.Module):
    """torchvision Bottleneck with BN folded: relu(conv3(relu(conv2(relu(conv1(x))))) + downsample(x))."""

    def __init__(self, block: Bottleneck, conv: Conv = PackedConv) -> None:
        super().__init__()
        self.conv1 = conv(fold_conv_bn(block.conv1, block.bn1), "relu")
        self.conv2 = conv(fold_conv_bn(block.conv2, block.bn2), "relu")
        self.conv3 = conv(fold_conv_bn(block.conv3, block.bn3), "relu")
        ds = block.downsample
        self.downsample = None if ds is None else conv(fold_conv_bn(ds[0], ds[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.conv3(self.conv2(self.conv1(x)), residual=identity)


class FastBasicBlock(nn.Module):
    """torchvision BasicBlock with BN folded: relu(conv2(relu(conv1(x))) + downsample(x))."""

    def __init__(self, block: BasicBlock, conv: Conv = PackedConv) -> None:
        super().__init__()
        self.conv1 = conv(fold_conv_bn(block.conv1, block.bn1), "relu")
        self.conv2 = conv(fold_conv_bn(block.conv2, block.bn2), "relu")
        ds = block.downsample
        self.downsample = None if ds is None else conv(fold_conv_bn(ds[0], ds[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.conv2(self.conv1(x), residual=identity)


def _fast_block(block: nn.Module, conv: Conv) -> nn.Module:
    if isinstance(block, Bottleneck):
        return FastBottleneck(block, conv)
    if isinstance(block, BasicBlock):
        return FastBasicBlock(block, conv)
    raise TypeError(f"no fast version of {type(block).__name__}")


class FastResNet(nn.Module):
    """ResNetBackbone for inference: (N, 3, H, W) -> (N, C, H/s, W/s) channels_last, in the weights' dtype."""

    def __init__(self, backbone: ResNetBackbone, conv: Conv = PackedConv) -> None:
        super().__init__()
        self.conv1 = conv(fold_conv_bn(backbone.conv1, backbone.bn1), "relu")
        self.maxpool = backbone.maxpool
        self.stages = list(backbone.stages)
        for name in self.stages:
            setattr(self, name, nn.Sequential(*(_fast_block(b, conv) for b in getattr(backbone, name))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(to_compute(x, self.conv1.weight.dtype)))
        for name in self.stages:
            x = getattr(self, name)(x)
        return x


class FastChannelMapper(nn.Module):
    """ChannelMapper for inference: ReLU(conv3x3) as one fused conv."""

    def __init__(self, neck: ChannelMapper, conv: Conv = PackedConv) -> None:
        super().__init__()
        self.conv = conv(neck.convs[0].conv, "relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _fused(module: _ConvModule, conv: Conv) -> FusedConv:
    act = module.act
    if act is None:
        return conv(module.conv)
    return conv(module.conv, "leaky_relu", act.negative_slope)


class FastFlowNet(nn.Module):
    """FlowNetSimple for inference with the same interface, each image prepared on its own (module docstring).

    `encode_key(img, img_shapes)` is the key image's half of conv1 (with the bias), made once per key frame;
    `forward(img, key, img_shapes)` -> flow (N, 2, Hp, Wp) in float32, as FlowNetSimple's.
    """

    def __init__(self, flownet: FlowNetSimple, conv: Conv = PackedConv) -> None:
        super().__init__()
        self.cfg = flownet.cfg
        if self.cfg.img_scale_factor != 0.5:
            raise ValueError("FastFlowNet assumes img_scale_factor 0.5 (a 2x2 mean)")
        # x_flow = x_img * (img_std / flow_std) + (img_mean / flow_std - flow_mean), for the 3 channels of one image
        self.register_buffer("scale", (flownet.img_std / flownet.flow_std)[:, :3].clone())
        self.register_buffer("shift", (flownet.img_mean / flownet.flow_std - flownet.flow_mean)[:, :3].clone())
        conv1 = flownet.conv1[0].conv
        current, key = (
            nn.Conv2d(3, conv1.out_channels, conv1.kernel_size, conv1.stride, conv1.padding, bias=b).to(
                conv1.weight.device
            )
            for b in (False, True)
        )
        with torch.no_grad():
            current.weight.copy_(conv1.weight[:, :3])
            key.weight.copy_(conv1.weight[:, 3:])
            key.bias.copy_(conv1.bias)
        self.conv1_current, self.conv1_key = conv(current), conv(key)
        self.slope1 = flownet.conv1[0].act.negative_slope
        self.encoder = nn.ModuleList(
            [nn.Sequential(*(_fused(m, conv) for m in getattr(flownet, f"conv{i}"))) for i in range(2, 7)]
        )
        self.decoder = nn.ModuleList(
            [
                nn.ModuleList(
                    [
                        _fused(getattr(flownet, f"deconv{k}"), conv),
                        _fused(getattr(flownet, f"predict_flow{k + 1}"), conv),
                        _fused(getattr(flownet, f"upsample_flow{k}"), conv),
                    ]
                )
                for k in (5, 4, 3, 2)
            ]
        )
        self.predict_flow = _fused(flownet.predict_flow, conv)

    def prepare(self, img: torch.Tensor, img_shapes: ImageShapes) -> torch.Tensor:
        """Normalised padded images (N, 3, Hp, Wp), float32 -> FlowNet inputs at half resolution (N, 3, Hp/2, Wp/2)
        in the compute dtype: the 0.5 bilinear resize (the 2x2 mean) in float32, then FlowNet's normalisation."""
        hp, wp = img.shape[-2:]
        half = F.interpolate(img, scale_factor=0.5, mode="bilinear", align_corners=False)
        half = to_compute(half, self.scale.dtype)
        shapes = shapes_tensor(img_shapes, img.device)
        ys = (torch.arange(hp, device=img.device)[None] < shapes[:, :1]).to(half.dtype).view(-1, hp // 2, 2).mean(2)
        xs = (torch.arange(wp, device=img.device)[None] < shapes[:, 1:]).to(half.dtype).view(-1, wp // 2, 2).mean(2)
        valid = (ys[:, :, None] * xs[:, None, :])[:, None]
        return half * self.scale + self.shift * valid

    def encode_key(self, img: torch.Tensor, img_shapes: ImageShapes) -> torch.Tensor:
        """The key images' part of conv1 before its activation (N, c1, Hp/4, Wp/4)."""
        return self.conv1_key(self.prepare(img, img_shapes))

    def forward(self, img: torch.Tensor, key: torch.Tensor, img_shapes: ImageShapes) -> torch.Tensor:
        """Flow (N, 2, Hp, Wp) from img to the key frames whose `encode_key` is `key`."""
        current = self.prepare(img, img_shapes)
        x = F.leaky_relu_(self.conv1_current(current, residual=key), self.slope1)
        outs = []
        for stage in self.encoder:
            x = stage(x)
            outs.append(x)
        c2, c3, c4, c5, c6 = outs
        cat = c6
        for skip, (deconv, predict, upsample) in zip((c5, c4, c3, c2), self.decoder):
            flow = predict(cat)
            cat = torch.cat([skip, _crop_like(deconv(cat), skip), _crop_like(upsample(flow), skip)], dim=1)
        flow = self.predict_flow(cat).contiguous()  # bilinear upsampling of 2 channels is 4x faster in NCHW
        up = 4 / self.cfg.img_scale_factor
        flow = F.interpolate(flow, scale_factor=up, mode="bilinear", align_corners=False)
        return to_exact(flow * (up * self.cfg.flow_scale_factor))


class FastFlowWarp(nn.Module):
    """FlowWarp (mmtracking's flow_warp_feats) as one weighted `embedding_bag` over channels_last key features.

    Same arithmetic as `grid_sample(bilinear, padding_mode="border", align_corners=True)` on warp.py's grid: the
    4 taps of each output pixel index rows of the (N*H*W, C) feature table. Unlike grid_sample on CPU, which runs
    on one thread, it is multi-threaded, and its output is channels_last.
    """

    def forward(self, feats: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        n, c, h, w = feats.shape
        s = float(w) / flow.shape[-1]
        flow = F.interpolate(flow, scale_factor=s, mode="bilinear", align_corners=False) * s
        grid = warp_grid(flow)
        x = ((grid[..., 0] + 1) / 2 * (w - 1)).clamp(0, w - 1)
        y = ((grid[..., 1] + 1) / 2 * (h - 1)).clamp(0, h - 1)
        x0, y0 = x.floor(), y.floor()
        fx, fy = x - x0, y - y0
        x0, y0 = x0.long(), y0.long()
        x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
        base = torch.arange(n, device=feats.device).view(n, 1, 1) * (h * w)
        index = torch.stack([y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1], dim=-1) + base[..., None]
        weight = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], dim=-1)
        table = feats.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).reshape(n * h * w, c)
        out = F.embedding_bag(
            index.view(-1, 4), table, per_sample_weights=weight.view(-1, 4).to(table.dtype), mode="sum"
        )
        return out.view(n, h, w, c).permute(0, 3, 1, 2)
