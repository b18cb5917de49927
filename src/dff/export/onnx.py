"""Export of DFF's three stages to ONNX (`dff export`): key_features.onnx, propagate.onnx, detect.onnx, manifest.json.

Each graph is traced (torch.onnx.export's TorchScript exporter; the dynamo exporter needs onnxscript) from a small
wrapper that calls the network's own stage code: `DFF.key_features`, `DFF.propagate`, and for detect the RPN head,
`RoIHead.forward` (RoIAlign and box head) and the shared box arithmetic (`anchors.grid_anchors`, `box_coder.decode`).
Every graph takes a batch of N frames of one padded size, each with its own `img_shape` (and `scale_factor`).
What detect restructures, in `_proposals` and `_detections` below, is only the data-dependent control flow of
`ProposalGenerator.forward` and `RoIHead.detect`, replaced by exact equivalents that a graph can hold, for all N
images at once:
- top-`nms_pre` per image: a full descending sort of each row, then its first `nms_pre` columns;
- clipping to each image's own size: the decoded boxes bounded by that image's row of `img_shape`;
- NMS per image: ONNX NonMaxSuppression, whose batch axis runs each image's NMS alone (no offsets between images),
  empty boxes and non-candidates given score -1 under its score threshold, `max_output_boxes_per_class` = k
  (= `nms_top_k`: greedy NMS stopped after k survivors); it returns (image, 0, box) triples, each image's in
  descending score;
- RoIAlign and the box head once over every image's proposals (the RoIs carry their image index), then each
  (RoI, class) pair placed at (image, rank of the RoI in its image, class): the rank is the cumulative count of
  that image's proposals, so each image's pairs are in the reference's order in a (N, max_per_img x classes) layout;
- class-aware NMS per image: mmcv's offset trick with each image's own offset (its largest box coordinate + 1, as
  `batched_nms` computes it on that image's pairs over the threshold; the same float32 arithmetic), then the same
  batched NonMaxSuppression with k = max_per_img.
NMS is ONNX NonMaxSuppression (a static `symbolic`), RoIAlign is ONNX RoiAlign with coordinate_transformation_mode
"half_pixel" (torchvision's aligned=True) and the same sampling_ratio.

The export is written into a new folder beside `out_dir` and swapped in whole (`_swap_in`), so that a killed export
leaves the previous one as it was; the manifest records each graph's SHA-256 (checked when it is loaded).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from dff.config import DFFConfig, PreprocessConfig
from dff.errors import DFFError, OutputError
from dff.export.manifest import (
    DEFAULT_OPSET,
    FORMAT,
    FORMAT_VERSION,
    META_CLASSES,
    META_STAGE,
    MIN_OPSET,
    STAGES,
    sha256,
    stage_specs,
)
from dff.models import anchors as anchor_ops
from dff.models import box_coder
from dff.models.detector import DFF, KeyState
from dff.models.roi_head import RoIHead
from dff.models.rpn import RPN_STDS, ProposalGenerator

EXPORT_FILES = ("manifest.json", *(f"{name}.onnx" for name in STAGES))
"""What an export folder holds (earlier exports: the same names)."""


def max_opset() -> int:
    """The newest opset the installed torch's TorchScript exporter writes."""
    from torch.onnx import _constants

    return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", _constants.ONNX_MAX_OPSET))


class KeyFeaturesGraph(nn.Module):
    """key_features.onnx: images (N, 3, Hp, Wp) -> their key states (backbone features, the motion network's key)."""

    def __init__(self, net: DFF) -> None:
        super().__init__()
        self.net = net

    def forward(self, img: torch.Tensor, img_shape: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = self.net.key_features(img, img_shape)
        return key.feats, key.motion


class PropagateGraph(nn.Module):
    """propagate.onnx: images and their key states -> warped key features (N, C, h, w), flow (N, 2, Hp, Wp)."""

    def __init__(self, net: DFF) -> None:
        super().__init__()
        self.net = net

    def forward(
        self, img: torch.Tensor, key_feats: torch.Tensor, key_motion: torch.Tensor, img_shape: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.propagate(img, KeyState(key_feats, key_motion), img_shape)


class DetectGraph(nn.Module):
    """detect.onnx: features (N, C, h, w), img_shape (N, 2), scale_factor (N, 4) -> every image's detections:
    boxes (M, 4), scores (M,), labels (M,), batch_index (M,), by image, each image's by descending score."""

    def __init__(self, net: DFF) -> None:
        super().__init__()
        self.detector = net.detector

    def forward(
        self, feats: torch.Tensor, img_shape: torch.Tensor, scale_factor: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        bounds = img_shape[:, [1, 0, 1, 0]].to(feats)  # each image's (w, h, w, h): the clip of its boxes
        logits, deltas = self.detector.rpn_head(feats)
        image, rois = _proposals(self.detector.proposal_generator, logits, deltas, bounds)
        cap = self.detector.proposal_generator.cfg.test_max_per_img
        return _detections(self.detector.roi_head, feats, image, rois, bounds, scale_factor, cap)


class _BatchedNMS(torch.autograd.Function):
    """ONNX NonMaxSuppression over boxes (N, B, 4) and scores (N, 1, B): each image's greedy NMS (IoU > `iou`
    suppresses), of the boxes scoring over `score_thr`, stopped after `k` survivors -> (S, 3) int64 triples
    (image, 0, box), each image's in descending score. `forward` is the same in PyTorch (it runs while tracing)."""

    @staticmethod
    def forward(ctx, boxes: torch.Tensor, scores: torch.Tensor, k: int, iou: float, score_thr: float) -> torch.Tensor:
        kept = []
        for i in range(boxes.shape[0]):
            cand = (scores[i, 0] > score_thr).nonzero()[:, 0]
            keep = cand[torchvision.ops.nms(boxes[i, cand], scores[i, 0, cand], iou)[:k]]
            kept.append(torch.stack([torch.full_like(keep, i), torch.zeros_like(keep), keep], dim=1))
        return torch.cat(kept) if kept else boxes.new_zeros((0, 3), dtype=torch.int64)

    @staticmethod
    def symbolic(g, boxes, scores, k: int, iou: float, score_thr: float):
        def const(value: float, dtype: torch.dtype):
            return g.op("Constant", value_t=torch.tensor([value], dtype=dtype))

        return g.op(
            "NonMaxSuppression",
            boxes,
            scores,
            const(k, torch.int64),
            const(iou, torch.float32),
            const(score_thr, torch.float32),
        )


NOT_A_CANDIDATE = -1.0  # the score of an empty box, a padding slot or a pair under the threshold
_NMS_SCORE_THR = -0.5  # NonMaxSuppression keeps scores > this: every real score (>= 0), never NOT_A_CANDIDATE


def _nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(image index, box index) of each image's first k boxes kept by greedy NMS, by image then descending score."""
    kept = _BatchedNMS.apply(boxes, scores[:, None], k, iou, _NMS_SCORE_THR)
    return kept[:, 0], kept[:, 2]


def _clip(boxes: torch.Tensor, bounds: torch.Tensor) -> torch.Tensor:
    """`box_coder.decode`'s clip (clamp to [0, w] / [0, h]) with each box's own image bounds (..., 4)."""
    return torch.min(boxes.clamp(min=0), bounds)


def _proposals(
    gen: ProposalGenerator, logits: torch.Tensor, deltas: torch.Tensor, bounds: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`ProposalGenerator.forward` (test mode) on N images in a traceable form: each proposal's image index (S,)
    and box (S, 4), by image, each image's by descending score."""
    cfg = gen.cfg
    n = logits.shape[0]
    scores = logits.permute(0, 2, 3, 1).reshape(n, -1).sigmoid()
    deltas = deltas.permute(0, 2, 3, 1).reshape(n, -1, 4)
    base = anchor_ops.base_anchors(cfg.anchor_base_size, cfg.anchor_scales, cfg.anchor_ratios).to(logits.device)
    anchors = anchor_ops.grid_anchors(base, logits.shape[2], logits.shape[3], cfg.stride)
    if cfg.test_nms_pre > 0:
        scores, order = scores.sort(dim=1, descending=True)
        scores, order = scores[:, : cfg.test_nms_pre], order[:, : cfg.test_nms_pre]
        deltas = deltas.gather(1, order[:, :, None].expand(-1, -1, 4))
        anchors = anchors[order]
    else:
        anchors = anchors.expand(n, -1, -1)
    boxes = box_coder.decode(anchors.reshape(-1, 4), deltas.reshape(-1, 4), RPN_STDS, max_shape=None)
    boxes = _clip(boxes.reshape(n, -1, 4), bounds[:, None])
    nonempty = (boxes[..., 2] - boxes[..., 0] > 0) & (boxes[..., 3] - boxes[..., 1] > 0)
    image, index = _nms(boxes, torch.where(nonempty, scores, NOT_A_CANDIDATE), cfg.nms_iou, cfg.test_max_per_img)
    return image, boxes[image, index]


def _rank(image: torch.Tensor, n: torch.Tensor | int) -> torch.Tensor:
    """Each row's position among the rows of its image (0, 1, ... in order): the cumulative count of the image's
    rows (exact int64 arithmetic, whatever the order of the images)."""
    same = (image[:, None] == torch.arange(n, device=image.device)[None]).long()
    return same.cumsum(0).gather(1, image[:, None])[:, 0] - 1


def _detections(
    head: RoIHead,
    feats: torch.Tensor,
    image: torch.Tensor,
    rois_xyxy: torch.Tensor,
    bounds: torch.Tensor,
    scale_factor: torch.Tensor,
    cap: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`RoIHead.detect` on N images' proposals in a traceable form: boxes (M, 4) in original pixels, scores (M,),
    labels (M,) int64, image index (M,) int64; `cap` bounds the proposals of one image (`test_max_per_img`)."""
    cfg = head.cfg
    n, c = feats.shape[0], head.num_classes
    rois = torch.cat([image[:, None].to(rois_xyxy), rois_xyxy], dim=1)
    cls_score, bbox_pred = head(feats, rois)
    scores = F.softmax(cls_score, dim=-1)[:, :-1]
    boxes = box_coder.decode(rois_xyxy, bbox_pred, cfg.target_stds, max_shape=None).reshape(-1, c, 4)
    boxes = _clip(boxes, bounds[image][:, None]) / scale_factor[image][:, None]
    scores = torch.where(scores > cfg.score_thr, scores, NOT_A_CANDIDATE)
    # every image's pairs at (image, rank of the RoI in its image, class); padding slots are not candidates
    slot = (image * cap + _rank(image, n))[:, None]
    grid_scores = scores.new_full((n * cap, c), NOT_A_CANDIDATE).scatter(0, slot.expand(-1, c), scores)
    grid_boxes = boxes.new_zeros((n * cap, c * 4)).scatter(0, slot.expand(-1, c * 4), boxes.reshape(-1, c * 4))
    grid_scores, grid_boxes = grid_scores.reshape(n, cap * c), grid_boxes.reshape(n, cap * c, 4)
    # mmcv's batched_nms per image: offsets label * (the image's largest coordinate of its candidates + 1)
    candidate = grid_scores > NOT_A_CANDIDATE
    top = torch.where(candidate[..., None], grid_boxes, 0.0).amax(dim=(1, 2))  # boxes >= 0; 0 for no candidate
    labels = torch.arange(c, device=feats.device).repeat(cap)
    offsets = labels.to(grid_boxes)[None] * (top[:, None] + 1)
    keep_image, keep = _nms(grid_boxes + offsets[..., None], grid_scores, cfg.nms_iou, cfg.max_per_img)
    return grid_boxes[keep_image, keep], grid_scores[keep_image, keep], labels[keep], keep_image


def _export_one(module: nn.Module, args: tuple, spec: dict, path: Path, opset: int, stage: str, classes: int) -> dict:
    """Trace `module` on `args` into `path`, with the stage name and class count in its metadata, checked; returns
    `spec` less the inputs the graph does not use, plus the file's name and SHA-256."""
    import onnx

    dynamic = {}
    for io in spec["inputs"] + spec["outputs"]:
        axes = {i: d for i, d in enumerate(io["shape"]) if isinstance(d, str)}
        if axes:
            dynamic[io["name"]] = axes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            input_names=[i["name"] for i in spec["inputs"]],
            output_names=[o["name"] for o in spec["outputs"]],
            opset_version=opset,
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {META_STAGE: stage, META_CLASSES: str(classes)})
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path), full_check=True)
    used = {i.name for i in model.graph.input}
    inputs = [i for i in spec["inputs"] if i["name"] in used]
    return {"file": path.name, "sha256": sha256(path), "inputs": inputs, "outputs": spec["outputs"]}


def _network(model_or_net: object) -> DFF:
    net = getattr(model_or_net, "net", model_or_net)
    if not isinstance(net, DFF):
        raise DFFError(f"export_onnx needs a DFF network or a DFFModel, got {type(model_or_net).__name__}")
    return net


def check_opset(opset: int) -> None:
    """DFFError unless `opset` is one the graphs need (>= MIN_OPSET) and the installed exporter writes."""
    newest = max_opset()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise DFFError(
            f"opset {opset}: choose {MIN_OPSET} to {newest} (the warp's GridSample and aligned RoIAlign need "
            f">= {MIN_OPSET}; torch {torch.__version__}'s exporter writes up to {newest})"
        )


def largest_input(pre: PreprocessConfig) -> tuple[int, int]:
    """The largest padded input preprocessing makes: (long, short) edges, each at most the scale's, padded."""
    div = pre.size_divisor
    return tuple(-(-s // div) * div for s in (max(pre.scale), min(pre.scale)))


def check_fixed_size(fixed_size: tuple[int, int], cfg: DFFConfig) -> None:
    """DFFError unless (Hp, Wp) is a padded input the preset's preprocessing makes, so that frames can run on the
    export. The keep-ratio resize brings a frame's long side to the scale's long edge or its short side to the
    short edge (whichever comes first), so a padded input has its long side `long` and its short side at most
    `short`, or its short side `short` and its long side at most `long` (both edges padded to the size divisor)."""
    h, w = fixed_size
    div = cfg.preprocess.size_divisor
    long, short = largest_input(cfg.preprocess)
    if h % div or w % div:
        raise DFFError(f"fixed size {h}x{w} is not a multiple of {div} (the padded input)")
    if max(h, w) > long or min(h, w) > short or (max(h, w) != long and min(h, w) != short):
        raise DFFError(
            f"fixed size {h}x{w}: {cfg.name} preprocesses every frame to a long side of {long} (short side at most "
            f"{short}) or a short side of {short} (long side at most {long}) (scale {max(cfg.preprocess.scale)}x"
            f"{min(cfg.preprocess.scale)}, padded to /{div}), so no frame would ever have this size"
        )


def _is_export_file(name: str) -> bool:
    """A file of an export, or an atomic-write temporary of one (`.detect.onnx.XXXX.onnx` of earlier versions)."""
    return name in EXPORT_FILES or any(name.startswith(f".{f}.") for f in EXPORT_FILES)


def check_out_dir(out: Path) -> None:
    """OutputError unless `out` is absent, an empty folder or a folder of an earlier export (nothing else in it:
    the export replaces the folder whole)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputError(f"{out}: --out needs a folder, but this is a file")
    foreign = sorted(p.name for p in out.iterdir() if not _is_export_file(p.name))
    if foreign:
        raise OutputError(
            f"{out}: holds {foreign[0]!r}{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}, which is "
            "not part of a dff export; the export replaces the folder whole, so choose a new or empty --out"
        )


def _swap_in(new: Path, out: Path) -> None:
    """Put the finished folder `new` at `out`, replacing a previous export there whole: two renames in one folder
    (a reader sees the old export or the new one, never a mix), then the old one removed."""
    if not out.exists():
        os.rename(new, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rename(out, old)  # onto the empty placeholder
    try:
        os.rename(new, out)
    except OSError:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def export_onnx(
    model_or_net: object,
    out_dir: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    fixed_size: tuple[int, int] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write key_features.onnx, propagate.onnx, detect.onnx and manifest.json into `out_dir`; returns the manifest.

    The batch axis is dynamic; image sizes too, unless `fixed_size` = (Hp, Wp), a padded network input of the
    preset (`check_fixed_size`), is given. Each graph is checked with onnx.checker. The folder is written beside
    `out_dir` and then swapped in whole (`out_dir` must be absent, empty or an earlier export). `progress`, when
    given, is called with one line as each graph starts. Needs the `onnx` extra.
    """
    from dff.version import __version__

    try:
        import onnx  # noqa: F401
    except ImportError:
        raise DFFError('ONNX export needs onnx: pip install "deep-feature-flow[onnx]"') from None
    net = _network(model_or_net)
    cfg = net.cfg
    check_opset(opset)
    if fixed_size is not None:
        check_fixed_size(fixed_size, cfg)
    out = Path(out_dir).expanduser().resolve()
    check_out_dir(out)
    specs = stage_specs(cfg, fixed_size)
    hp, wp = fixed_size or largest_input(cfg.preprocess)[::-1]  # a landscape frame of the largest size
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            # two images of different content sizes, so that nothing is traced for a batch of one or one size
            gen = torch.Generator().manual_seed(0)
            img = torch.randn((2, 3, hp, wp), generator=gen)
            div = cfg.preprocess.size_divisor
            shape = torch.tensor([[hp, wp], [max(hp - div, 1), max(wp - 2 * div, 1)]], dtype=torch.int64)
            key = net.key_features(img, shape)
            scale_factor = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.5, 0.5, 0.5, 0.5]])
            examples = {
                "key_features": (KeyFeaturesGraph(net), (img, shape)),
                "propagate": (PropagateGraph(net), (img, key.feats, key.motion, shape)),
                "detect": (DetectGraph(net), (key.feats, shape, scale_factor)),
            }
            for i, name in enumerate(STAGES):
                if progress is not None:
                    progress(f"{name}.onnx ({i + 1}/{len(STAGES)})")
                module, args = examples[name]
                specs[name] = _export_one(
                    module, args, specs[name], work / f"{name}.onnx", opset, name, cfg.num_classes
                )
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
                "size_divisor": cfg.preprocess.size_divisor,
                "color": "RGB",
            },
            "fixed_size": list(fixed_size) if fixed_size else None,
            "opset": opset,
            "stages": specs,
            "dff_version": __version__,
            "torch_version": torch.__version__,
            "exporter": "torch.onnx.export(dynamo=False)",
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        for file in work.iterdir():
            file.chmod(0o644)
        work.chmod(0o755)
        _swap_in(work, out)
    finally:
        net.train(was_training)
        shutil.rmtree(work, ignore_errors=True)
    return out / "manifest.json"
