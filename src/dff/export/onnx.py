"""Export of DFF's three stages to ONNX (`dff export`): key_features.onnx, propagate.onnx, detect.onnx, manifest.json.

Each graph is traced (torch.onnx.export's TorchScript exporter; the dynamo exporter needs onnxscript) from a small
wrapper that calls the network's own stage code: `DFF.key_features`, `DFF.propagate`, and for detect the RPN head,
`RoIHead.forward` (RoIAlign and box head) and the shared box arithmetic (`anchors.grid_anchors`, `box_coder.decode`).
What detect restructures, in `_proposals` and `_detections` below, is only the data-dependent control flow of
`ProposalGenerator.forward` and `RoIHead.detect`, replaced by exact equivalents that a graph can hold:
top-`nms_pre` by a full descending sort and the first `nms_pre`, NMS over every candidate then the first k (what
`nms_top_k` returns), every class decoded then the (RoI, class) pairs over the score threshold gathered (the
reference decodes only those; the arithmetic per pair is the same). NMS is ONNX NonMaxSuppression, RoIAlign is
ONNX RoiAlign with coordinate_transformation_mode "half_pixel" (torchvision's aligned=True) and the same
sampling_ratio (sample points per bin and axis).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from dff.config import DFFConfig
from dff.data.transforms import padded_size
from dff.errors import DFFError
from dff.io.atomic import atomic_path, write_text_atomic
from dff.models import anchors as anchor_ops
from dff.models import box_coder
from dff.models.detector import DFF, KeyState
from dff.models.roi_head import RoIHead
from dff.models.rpn import RPN_STDS, ProposalGenerator

FORMAT = "dff-onnx"
FORMAT_VERSION = 1
DEFAULT_OPSET = 17
MIN_OPSET = 16  # GridSample (the warp) and RoiAlign's half_pixel mode (aligned=True)
STAGES = ("key_features", "propagate", "detect")


class KeyFeaturesGraph(nn.Module):
    """key_features.onnx: image (1, 3, Hp, Wp) -> the key state (backbone features, the motion network's key)."""

    def __init__(self, net: DFF) -> None:
        super().__init__()
        self.net = net

    def forward(self, img: torch.Tensor, img_shape: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = self.net.key_features(img, (img_shape[0], img_shape[1]))
        return key.feats, key.motion


class PropagateGraph(nn.Module):
    """propagate.onnx: image and key state -> warped key features (1, C, h, w), flow (1, 2, Hp, Wp)."""

    def __init__(self, net: DFF) -> None:
        super().__init__()
        self.net = net

    def forward(
        self, img: torch.Tensor, key_feats: torch.Tensor, key_motion: torch.Tensor, img_shape: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.propagate(img, KeyState(key_feats, key_motion), (img_shape[0], img_shape[1]))


class DetectGraph(nn.Module):
    """detect.onnx: features (1, C, h, w), img_shape (h, w), scale_factor (4,) -> boxes, scores, labels."""

    def __init__(self, net: DFF) -> None:
        super().__init__()
        self.detector = net.detector

    def forward(
        self, feats: torch.Tensor, img_shape: torch.Tensor, scale_factor: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        max_shape = img_shape.float()
        logits, deltas = self.detector.rpn_head(feats)
        proposals = _proposals(self.detector.proposal_generator, logits[0], deltas[0], max_shape)
        return _detections(self.detector.roi_head, feats, proposals, max_shape, scale_factor)


def _proposals(
    gen: ProposalGenerator, logits: torch.Tensor, deltas: torch.Tensor, max_shape: torch.Tensor
) -> torch.Tensor:
    """`ProposalGenerator.forward` (test mode) in a traceable form: (n, 5) proposals x1, y1, x2, y2, score."""
    cfg = gen.cfg
    scores = logits.permute(1, 2, 0).reshape(-1).sigmoid()
    deltas = deltas.permute(1, 2, 0).reshape(-1, 4)
    base = anchor_ops.base_anchors(cfg.anchor_base_size, cfg.anchor_scales, cfg.anchor_ratios).to(logits.device)
    anchors = anchor_ops.grid_anchors(base, logits.shape[1], logits.shape[2], cfg.stride)
    if cfg.test_nms_pre > 0:
        scores, order = scores.sort(descending=True)
        scores, order = scores[: cfg.test_nms_pre], order[: cfg.test_nms_pre]
        deltas, anchors = deltas[order], anchors[order]
    boxes = box_coder.decode(anchors, deltas, RPN_STDS, max_shape=max_shape)
    valid = (boxes[:, 2] - boxes[:, 0] > 0) & (boxes[:, 3] - boxes[:, 1] > 0)
    boxes, scores = boxes[valid], scores[valid]
    keep = torchvision.ops.nms(boxes, scores, cfg.nms_iou)[: cfg.test_max_per_img]
    return torch.cat([boxes[keep], scores[keep, None]], dim=1)


def _detections(
    head: RoIHead, feats: torch.Tensor, proposals: torch.Tensor, max_shape: torch.Tensor, scale_factor: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`RoIHead.detect` in a traceable form: boxes (N, 4) in original pixels, scores (N,), labels (N,) int64."""
    cfg = head.cfg
    rois_xyxy = proposals[:, :4]
    rois = torch.cat([torch.zeros_like(rois_xyxy[:, :1]), rois_xyxy], dim=1)
    cls_score, bbox_pred = head(feats, rois)
    scores = F.softmax(cls_score, dim=-1)[:, :-1]
    boxes = box_coder.decode(rois_xyxy, bbox_pred, cfg.target_stds, max_shape=max_shape)
    boxes = boxes.reshape(-1, 4) / scale_factor
    labels = torch.arange(head.num_classes, device=feats.device).repeat(rois.shape[0])
    scores = scores.reshape(-1)
    pairs = (scores > cfg.score_thr).nonzero()[:, 0]
    boxes, scores, labels = boxes[pairs], scores[pairs], labels[pairs]
    top = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()  # boxes.max() (boxes >= 0), 0 if none
    offsets = labels.to(boxes) * (top + 1)
    keep = torchvision.ops.nms(boxes + offsets[:, None], scores, cfg.nms_iou)[: cfg.max_per_img]
    return boxes[keep], scores[keep], labels[keep]


def _io_spec(names: list[str], shapes: list[list], dtypes: list[str]) -> list[dict]:
    return [{"name": n, "shape": s, "dtype": d} for n, s, d in zip(names, shapes, dtypes, strict=True)]


def stage_specs(cfg: DFFConfig, fixed_size: tuple[int, int] | None) -> dict[str, dict]:
    """Input and output names, shapes (a string for a dynamic size) and dtypes of the three graphs."""
    c = cfg.neck.out_channels
    stride = cfg.rpn.stride
    hp, wp = fixed_size or ("height", "width")
    h, w = (hp // stride, wp // stride) if fixed_size else (f"height/{stride}", f"width/{stride}")
    img, shape = [1, 3, hp, wp], [2]
    return {
        "key_features": {
            "inputs": _io_spec(["img", "img_shape"], [img, shape], ["float32", "int64"]),
            "outputs": _io_spec(["key_feats", "key_motion"], [[1, c, h, w], img], ["float32", "float32"]),
        },
        "propagate": {
            "inputs": _io_spec(
                ["img", "key_feats", "key_motion", "img_shape"],
                [img, [1, c, h, w], img, shape],
                ["float32", "float32", "float32", "int64"],
            ),
            "outputs": _io_spec(["feats", "flow"], [[1, c, h, w], [1, 2, hp, wp]], ["float32", "float32"]),
        },
        "detect": {
            "inputs": _io_spec(
                ["feats", "img_shape", "scale_factor"], [[1, c, h, w], shape, [4]], ["float32", "int64", "float32"]
            ),
            "outputs": _io_spec(
                ["boxes", "scores", "labels"],
                [["num_dets", 4], ["num_dets"], ["num_dets"]],
                ["float32"] * 2 + ["int64"],
            ),
        },
    }


def _dynamic_axes(spec: dict) -> dict[str, dict[int, str]]:
    """{tensor name: {axis: name}} for every axis given as a string in the spec."""
    axes = {}
    for io in spec["inputs"] + spec["outputs"]:
        dyn = {i: str(d) for i, d in enumerate(io["shape"]) if isinstance(d, str)}
        if dyn:
            axes[io["name"]] = dyn
    return axes


def _export_one(module: nn.Module, args: tuple, spec: dict, path: Path, opset: int, dynamic: bool) -> dict:
    """Trace `module` on `args` into `path` (checked); returns `spec` less the inputs the graph does not use."""
    import onnx

    with atomic_path(path, suffix=".onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            module,
            args,
            str(tmp),
            dynamo=False,
            input_names=[i["name"] for i in spec["inputs"]],
            output_names=[o["name"] for o in spec["outputs"]],
            opset_version=opset,
            dynamic_axes=_dynamic_axes(spec) if dynamic else None,
            do_constant_folding=True,
        )
        onnx.checker.check_model(str(tmp), full_check=True)
        used = {i.name for i in onnx.load(str(tmp), load_external_data=False).graph.input}
    return {**spec, "inputs": [i for i in spec["inputs"] if i["name"] in used]}


def _network(model_or_net: object) -> DFF:
    net = getattr(model_or_net, "net", model_or_net)
    if not isinstance(net, DFF):
        raise DFFError(f"export_onnx needs a DFF network or a DFFModel, got {type(model_or_net).__name__}")
    return net


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W), positive integers; DFFError otherwise."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise DFFError(f"--fixed-size: expected HxW (e.g. 608x1008), got {text!r}") from None
    if h < 1 or w < 1:
        raise DFFError(f"--fixed-size: sizes must be positive, got {text!r}")
    return h, w


def export_onnx(
    model_or_net: object,
    out_dir: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    fixed_size: tuple[int, int] | None = None,
) -> Path:
    """Write key_features.onnx, propagate.onnx, detect.onnx and manifest.json into `out_dir`; returns the manifest.

    Image sizes are dynamic unless `fixed_size` = (Hp, Wp), the padded network input (multiples of the preset's
    size_divisor), is given. Each graph is checked with onnx.checker. Needs the `onnx` extra.
    """
    from dff.version import __version__

    try:
        import onnx  # noqa: F401
    except ImportError:
        raise DFFError('ONNX export needs onnx: pip install "deep-feature-flow[onnx]"') from None
    net = _network(model_or_net)
    cfg = net.cfg
    if opset < MIN_OPSET:
        raise DFFError(f"opset {opset} is too old: the warp (GridSample) and aligned RoIAlign need >= {MIN_OPSET}")
    div = cfg.preprocess.size_divisor
    if fixed_size is not None and (fixed_size[0] % div or fixed_size[1] % div):
        raise DFFError(f"fixed size {fixed_size[0]}x{fixed_size[1]} is not a multiple of {div} (the padded input)")
    hp, wp = fixed_size or padded_size(min(cfg.preprocess.scale), max(cfg.preprocess.scale), div)
    specs = stage_specs(cfg, fixed_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            gen = torch.Generator().manual_seed(0)
            img = torch.randn((1, 3, hp, wp), generator=gen)
            shape = torch.tensor([hp, wp], dtype=torch.int64)
            key = net.key_features(img, (hp, wp))
            scale_factor = torch.ones(4)
            examples = {
                "key_features": (KeyFeaturesGraph(net), (img, shape)),
                "propagate": (PropagateGraph(net), (img, key.feats, key.motion, shape)),
                "detect": (DetectGraph(net), (key.feats, shape, scale_factor)),
            }
            for name in STAGES:
                module, args = examples[name]
                specs[name] = _export_one(module, args, specs[name], out / f"{name}.onnx", opset, fixed_size is None)
    finally:
        net.train(was_training)

    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "preset": cfg.name,
        "config": cfg.to_dict(),
        "class_names": list(cfg.class_names),
        "preprocess": {
            "scale": list(cfg.preprocess.scale),
            "mean": list(cfg.preprocess.mean),
            "std": list(cfg.preprocess.std),
            "size_divisor": div,
            "color": "RGB",
        },
        "fixed_size": list(fixed_size) if fixed_size else None,
        "opset": opset,
        "stages": {name: {"file": f"{name}.onnx", **specs[name]} for name in STAGES},
        "dff_version": __version__,
        "torch_version": torch.__version__,
        "exporter": "torch.onnx.export(dynamo=False)",
    }
    path = out / "manifest.json"
    write_text_atomic(path, json.dumps(manifest, indent=2) + "\n")
    return path
