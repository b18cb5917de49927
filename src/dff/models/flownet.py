"""FlowNetSimple as mmtracking builds it (docs/mmtracking_spec.md §3.3): encoder c1..c6, refinement decoder, flow at
1/8 of the
padded image, returned upsampled to full resolution in pixels. Keys match mmtracking (`conv3.1.conv.weight`, ...).

Spec pitfalls handled here: 14, 15, 16, 22 (docs/pitfalls.md maps each to its code and tests).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dff.config import FlowConfig
from dff.data.transforms import ImageShapes, shapes_tensor


class _ConvModule(nn.Module):
    """mmcv ConvModule without norm: `.conv` (Conv2d or ConvTranspose2d) + optional LeakyReLU(0.1)."""

    def __init__(self, conv: nn.Module, act: bool) -> None:
        super().__init__()
        self.conv = conv
        self.act = nn.LeakyReLU(0.1) if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.act(x) if self.act is not None else x


def _conv(cin: int, cout: int, k: int, stride: int) -> _ConvModule:
    return _ConvModule(nn.Conv2d(cin, cout, k, stride, padding=(k - 1) // 2, bias=True), act=True)


def _deconv(cin: int, cout: int, act: bool) -> _ConvModule:
    return _ConvModule(nn.ConvTranspose2d(cin, cout, 4, 2, padding=1, bias=False), act=act)


def _predict(cin: int) -> _ConvModule:
    return _ConvModule(nn.Conv2d(cin, 2, 3, 1, padding=1, bias=False), act=False)


def _crop_like(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Keep the top-left part of x with target's spatial size (a view; sliced unconditionally, so that a traced
    graph crops at every input size)."""
    h, w = target.shape[-2:]
    return x[:, :, :h, :w]


class FlowNetSimple(nn.Module):
    """(N, 6, Hp, Wp) normalised [current, key] pair -> flow (N, 2, Hp, Wp) in padded-image pixels."""

    def __init__(self, cfg: FlowConfig, img_mean: tuple[float, ...], img_std: tuple[float, ...]) -> None:
        super().__init__()
        self.cfg = cfg
        c1, c2, c3, c4, c5, c6 = (max(2, int(round(c * cfg.width_mult))) for c in (64, 128, 256, 512, 512, 1024))
        d5, d4, d3, d2 = (max(2, int(round(c * cfg.width_mult))) for c in (512, 256, 128, 64))
        self.conv1 = nn.ModuleList([_conv(6, c1, 7, 2)])
        self.conv2 = nn.ModuleList([_conv(c1, c2, 5, 2)])
        self.conv3 = nn.ModuleList([_conv(c2, c3, 5, 2), _conv(c3, c3, 3, 1)])
        self.conv4 = nn.ModuleList([_conv(c3, c4, 3, 2), _conv(c4, c4, 3, 1)])
        self.conv5 = nn.ModuleList([_conv(c4, c5, 3, 2), _conv(c5, c5, 3, 1)])
        self.conv6 = nn.ModuleList([_conv(c5, c6, 3, 2), _conv(c6, c6, 3, 1)])
        cat5, cat4, cat3, cat2 = c5 + d5 + 2, c4 + d4 + 2, c3 + d3 + 2, c2 + d2 + 2
        self.deconv5, self.predict_flow6, self.upsample_flow5 = (
            _deconv(c6, d5, True),
            _predict(c6),
            _deconv(2, 2, False),
        )
        self.deconv4, self.predict_flow5, self.upsample_flow4 = (
            _deconv(cat5, d4, True),
            _predict(cat5),
            _deconv(2, 2, False),
        )
        self.deconv3, self.predict_flow4, self.upsample_flow3 = (
            _deconv(cat4, d3, True),
            _predict(cat4),
            _deconv(2, 2, False),
        )
        self.deconv2, self.predict_flow3, self.upsample_flow2 = (
            _deconv(cat3, d2, True),
            _predict(cat3),
            _deconv(2, 2, False),
        )
        self.predict_flow = _predict(cat2)
        # Not in the state dict (mmtracking keeps them as plain attributes): detector and FlowNet normalisation.
        self.register_buffer(
            "img_mean", torch.tensor(img_mean, dtype=torch.float32).repeat(2).view(1, 6, 1, 1), persistent=False
        )
        self.register_buffer(
            "img_std", torch.tensor(img_std, dtype=torch.float32).repeat(2).view(1, 6, 1, 1), persistent=False
        )
        self.register_buffer(
            "flow_mean", torch.tensor(cfg.mean, dtype=torch.float32).repeat(2).view(1, 6, 1, 1), persistent=False
        )
        self.register_buffer(
            "flow_std", torch.tensor(cfg.std, dtype=torch.float32).repeat(2).view(1, 6, 1, 1), persistent=False
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, a=0.1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def prepare(self, pair: torch.Tensor, img_shapes: ImageShapes) -> torch.Tensor:
        """Undo detector normalisation, apply FlowNet's (RGB x/255 - mean), zero each pair's padding (outside its
        img_shape), downsample x0.5."""
        x = pair * self.img_std + self.img_mean
        x = x / self.flow_std - self.flow_mean
        shapes = shapes_tensor(img_shapes, x.device)  # a tensor input when dff.export traces it
        rows = torch.arange(x.shape[-2], device=x.device)[None, :, None] < shapes[:, 0, None, None]
        cols = torch.arange(x.shape[-1], device=x.device)[None, None, :] < shapes[:, 1, None, None]
        x = torch.where((rows & cols)[:, None], x, 0.0)
        return F.interpolate(x, scale_factor=self.cfg.img_scale_factor, mode="bilinear", align_corners=False)

    def predictions(self, pair: torch.Tensor, img_shapes: ImageShapes) -> list[torch.Tensor]:
        """The decoder's raw flow predictions, coarse to fine (flow6 ... flow2, strides 128 ... 8 of the padded
        image), all in one unit: pixels / (8 * flow_scale_factor), as FlowNet's multi-scale training loss uses them."""
        x = self.prepare(pair, img_shapes)
        outs = []
        for stage in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5, self.conv6):
            for layer in stage:
                x = layer(x)
            outs.append(x)
        c2, c3, c4, c5, c6 = outs[1:]
        cat, flows = c6, []
        for skip, deconv, predict, upsample in (
            (c5, self.deconv5, self.predict_flow6, self.upsample_flow5),
            (c4, self.deconv4, self.predict_flow5, self.upsample_flow4),
            (c3, self.deconv3, self.predict_flow4, self.upsample_flow3),
            (c2, self.deconv2, self.predict_flow3, self.upsample_flow2),
        ):
            flows.append(predict(cat))
            up = _crop_like(upsample(flows[-1]), skip)
            cat = torch.cat([skip, _crop_like(deconv(cat), skip), up], dim=1)
        flows.append(self.predict_flow(cat))
        return flows

    @property
    def unit(self) -> float:
        """Pixels of the padded image per unit of the raw predictions: 8 x flow_scale_factor."""
        return 4 / self.cfg.img_scale_factor * self.cfg.flow_scale_factor

    def upsample(self, flow: torch.Tensor) -> torch.Tensor:
        """The finest raw prediction (N, 2, Hp/8, Wp/8) -> flow in pixels of the padded image (N, 2, Hp, Wp)."""
        up = 4 / self.cfg.img_scale_factor
        return F.interpolate(flow, scale_factor=up, mode="bilinear", align_corners=False) * self.unit

    def encode_key(self, img: torch.Tensor, img_shapes: ImageShapes) -> torch.Tensor:
        """What `forward` needs of the key frame: here the normalised key image itself (N, 3, Hp, Wp), stacked
        behind each current image."""
        return img

    def forward(self, img: torch.Tensor, key: torch.Tensor, img_shapes: ImageShapes) -> torch.Tensor:
        """Flow (N, 2, Hp, Wp) from the current images (N, 3, Hp, Wp) to their key frames (`encode_key`'s output),
        in padded-image pixels; channel 0 = x, 1 = y."""
        return self.upsample(self.predictions(torch.cat([img, key], dim=1), img_shapes)[-1])
