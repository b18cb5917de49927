"""Frozen convolutions and linear layers with their activation, for inference: a plain kind for any device and a
oneDNN-packed kind for the CPU (models/fast.py's kernel table chooses per device).

`FusedConv` / `FusedLinear`: conv (or FC) + bias + residual + activation with the standard functional ops (cuDNN /
cuBLAS on CUDA, in channels_last).
`PackedConv` / `PackedLinear` (CPU): PyTorch's eager `conv2d` reorders the weight into oneDNN's blocked layout on
every call. For FlowNetSimple's small maps with large weights (conv6: 1024x1024x3x3 on a 5x8 map, deconv5:
1024->512) the reorder costs more than the convolution itself. `PackedConv` reorders once per input shape and runs
the conv together with its ReLU, LeakyReLU or residual add + ReLU in a single oneDNN primitive. The outputs are
channels_last and, in fp32, equal to conv + activation (the same oneDNN kernels run underneath). For an input the
oneDNN operators do not take (fp16, or a build without them) the plain ops of the fused kind run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_ONEDNN = (
    torch.backends.mkldnn.is_available()
    and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
    and hasattr(torch.ops.mkldnn, "_convolution_transpose_pointwise")
    and hasattr(torch.ops.mkldnn, "_linear_pointwise")
)
ACTIVATIONS = ("none", "relu", "leaky_relu")


def _activate(x: torch.Tensor, act: str, slope: float) -> torch.Tensor:
    if act == "relu":
        return F.relu(x)
    if act == "leaky_relu":
        return F.leaky_relu(x, slope)
    return x


class FusedConv(nn.Module):
    """A frozen Conv2d / ConvTranspose2d followed by `act` ("none", "relu", "leaky_relu" with `slope`), with the
    standard functional ops on any device.

    `forward(x, residual)` computes act(conv(x) + residual) when a residual is given (only with "relu" or "none").
    """

    def __init__(self, conv: nn.Conv2d | nn.ConvTranspose2d, act: str = "none", slope: float = 0.0) -> None:
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}")
        self.transposed = isinstance(conv, nn.ConvTranspose2d)
        self.stride, self.padding, self.dilation = list(conv.stride), list(conv.padding), list(conv.dilation)
        self.output_padding = list(getattr(conv, "output_padding", (0, 0)))
        self.groups = conv.groups
        self.act, self.slope = act, float(slope)
        self.register_buffer("weight", conv.weight.detach().clone())
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        weight = self.weight.to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        if self.transposed:
            y = F.conv_transpose2d(
                x, weight, bias, self.stride, self.padding, self.output_padding, self.groups, self.dilation
            )
        else:
            y = F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)
        if residual is not None:
            y = y + residual
        return _activate(y, self.act, self.slope)

    def extra_repr(self) -> str:
        kind = "transposed, " if self.transposed else ""
        return f"{kind}{tuple(self.weight.shape)}, stride={self.stride}, act={self.act}"


class PackedConv(FusedConv):
    """`FusedConv` on the CPU with the weight reordered once per input shape for oneDNN and the activation (or the
    residual add + ReLU) fused into the same primitive."""

    def __init__(self, conv: nn.Conv2d | nn.ConvTranspose2d, act: str = "none", slope: float = 0.0) -> None:
        super().__init__(conv, act, slope)
        self._packed: dict[tuple, torch.Tensor] = {}

    def _use_onednn(self, x: torch.Tensor) -> bool:
        return _ONEDNN and x.device.type == "cpu" and x.dim() == 4 and x.dtype in (torch.float32, torch.bfloat16)

    def _packed_weight(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), x.dtype)
        w = self._packed.get(key)
        if w is None:
            weight = self.weight.to(x.dtype)
            if self.transposed:
                w = torch.ops.mkldnn._reorder_convolution_transpose_weight(
                    weight, self.padding, self.output_padding, self.stride, self.dilation, self.groups, list(x.shape)
                )
            else:
                w = torch._C._nn.mkldnn_reorder_conv2d_weight(
                    weight.to_mkldnn(), self.padding, self.stride, self.dilation, self.groups, list(x.shape)
                )
            if len(self._packed) >= 4:  # a few frame sizes at most; drop the oldest
                self._packed.pop(next(iter(self._packed)))
            self._packed[key] = w
        return w

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        if not self._use_onednn(x) or (residual is not None and (self.transposed or self.act == "leaky_relu")):
            return super().forward(x, residual)
        x = x.contiguous(memory_format=torch.channels_last)
        w = self._packed_weight(x)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        scalars = [self.slope] if self.act == "leaky_relu" else []
        if residual is not None:
            residual = residual.to(x.dtype).contiguous(memory_format=torch.channels_last)
            unary = "relu" if self.act == "relu" else None
            return torch.ops.mkldnn._convolution_pointwise.binary(
                x,
                residual,
                w,
                bias,
                self.padding,
                self.stride,
                self.dilation,
                self.groups,
                "add",
                None,
                unary,
                [],
                None,
            )
        if self.transposed:
            return torch.ops.mkldnn._convolution_transpose_pointwise(
                x,
                w,
                bias,
                self.padding,
                self.output_padding,
                self.stride,
                self.dilation,
                self.groups,
                self.act,
                scalars,
                "",
            )
        return torch.ops.mkldnn._convolution_pointwise(
            x, w, bias, self.padding, self.stride, self.dilation, self.groups, self.act, scalars, ""
        )


class FusedLinear(nn.Module):
    """A frozen Linear followed by "none" or "relu", with the standard functional ops on any device."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, act: str = "none") -> None:
        super().__init__()
        if act not in ("none", "relu"):
            raise ValueError(f"unsupported activation {act!r}")
        self.act = act
        self.register_buffer("weight", weight.detach().clone().contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return _activate(F.linear(x, weight, bias), self.act, 0.0)

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, act={self.act}"


class PackedLinear(FusedLinear):
    """`FusedLinear` on the CPU as one oneDNN linear + activation primitive."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (_ONEDNN and x.device.type == "cpu" and x.dim() == 2 and x.dtype in (torch.float32, torch.bfloat16)):
            return super().forward(x)
        weight = self.weight.to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, self.act, [], "")
