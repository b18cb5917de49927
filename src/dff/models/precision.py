"""The reduced-precision policy of the fast backend (`RunOptions(dtype="bf16" | "fp16")`), in one place.

In the compute dtype: the image entering the network (`to_compute`), and from it every convolution and matrix
product of the backbone, neck, RPN head, FlowNet and box head, the warp's and RoIAlign's feature tables.
In float32 (`to_exact`, applied where each of these begins): the flow leaving FlowNet (and so the warp grid and its
weights), the RPN scores and deltas entering proposal generation (anchors, decoding, NMS), RoIAlign's sample
positions and weights, the box head's logits and deltas (softmax, decoding, rescaling, NMS) and every detection.
In float32 the two functions change nothing, so the reference path runs through the same code.
"""

from __future__ import annotations

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def to_compute(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The network's input image (N, 3, Hp, Wp) in the compute dtype, channels_last for the fast kernels."""
    return x.to(dtype=dtype, memory_format=torch.channels_last)


def to_exact(x: torch.Tensor) -> torch.Tensor:
    """A tensor entering one of the float32 stages listed above."""
    return x.float()
