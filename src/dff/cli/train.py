"""`dff train`: the mmtracking DFF recipe on key/reference pairs; `torchrun --nproc-per-node N -m dff train ...`."""

from __future__ import annotations

import argparse
from pathlib import Path

from dff.cli.checks import check_device
from dff.config import PRESETS
from dff.training.options import AMP_DTYPES, FREEZE, LATEST, TrainOptions
from dff.training.run_dir import check_run_dir


def _count(minimum: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `train` subcommand."""
    p = sub.add_parser(
        "train",
        help="train a DFF model on ImageNet VID (+DET) style data",
        description="Train DFF end to end (flow from key and reference, reference features warped to the key, "
        "Faster R-CNN losses on the key's boxes). For several GPUs or hosts launch with "
        "`torchrun --nproc-per-node N -m dff train ...` (nccl on GPU, gloo on CPU).",
    )
    p.add_argument("--preset", required=True, choices=sorted(PRESETS), help="model preset")
    p.add_argument(
        "--data-root",
        type=Path,
        default=Path("."),
        help="ILSVRC root: images under Data/VID and Data/DET (else directly under it)",
    )
    p.add_argument("--ann", type=Path, required=True, help="COCO-VID training JSON (imagenet_vid_train.json)")
    p.add_argument("--det-ann", type=Path, help="optional COCO DET JSON (imagenet_det_30plus1cls.json)")
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, log.jsonl, model)")
    p.add_argument("--epochs", type=_count(1), help="epochs (default: the preset's)")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="CKPT",
        help="continue exactly from CKPT (default: OUT/latest.pth)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="OUT holds an earlier run: delete its checkpoints, log and model (once every check passed and the "
        "weights to start from are read) and start again",
    )
    p.add_argument("--batch-size", type=_count(1), default=1, help="pairs per process and step (default 1)")
    p.add_argument(
        "--workers", type=_count(0), default=2, help="data loader processes per training process (default 2)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--amp", choices=sorted(AMP_DTYPES), help="mixed precision autocast")
    p.add_argument(
        "--checkpoint-every",
        type=_count(0),
        default=0,
        metavar="N",
        help="also write OUT/latest.pth every N iterations (default: epoch ends only)",
    )
    p.add_argument(
        "--log-every", type=_count(1), default=50, metavar="N", help="log interval in iterations (default 50)"
    )
    p.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA when this machine has it, the rank's GPU under torchrun, else the CPU; the default), cpu, "
        "cuda[:N]",
    )
    p.add_argument("--lr", type=float, help="learning rate per 8 pairs (default: the preset's)")
    p.add_argument("--backbone-weights", type=Path, help="local ImageNet ResNet/ResNeXt .pth to start from")
    p.add_argument("--flownet-weights", type=Path, help="local FlowNetSimple .pth to start from")
    p.add_argument(
        "--classes",
        metavar="auto|A,B,C",
        help="the classes to train: 'auto' (the annotation file's categories, in its order) or names separated by "
        "commas, covering every category with boxes (default: the preset's when they name every category, else auto)",
    )
    p.add_argument(
        "--init-from",
        metavar="CKPT",
        help="start from a trained DFF (mmtracking .pth, zoo name or .safetensors of this preset's architecture); "
        "box-head rows of classes it shares by name are kept, others initialised fresh. Not with --resume; "
        "--backbone-weights / --flownet-weights, if given too, then replace those parts",
    )
    p.add_argument(
        "--freeze",
        choices=FREEZE,
        help="keep these weights as initialised (default none; a resumed run keeps its own setting)",
    )
    p.add_argument("--max-iters", type=_count(1), help="stop (with a checkpoint) after this many iterations in total")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def options(args: argparse.Namespace) -> TrainOptions:
    """The TrainOptions of parsed `dff train` arguments."""
    resume = args.out / LATEST if args.resume is True else None if args.resume is None else Path(args.resume)
    return TrainOptions(
        preset=args.preset,
        ann=args.ann,
        out=args.out,
        data_root=args.data_root,
        det_ann=args.det_ann,
        epochs=args.epochs,
        resume=resume,
        batch_size=args.batch_size,
        workers=args.workers,
        seed=args.seed,
        amp=args.amp,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        device=args.device,
        lr=args.lr,
        backbone_weights=args.backbone_weights,
        flownet_weights=args.flownet_weights,
        max_iters=args.max_iters,
        progress_bar=not args.no_progress,
        classes=args.classes,
        init_from=args.init_from,
        freeze=args.freeze,
        overwrite=args.overwrite,
    )


def run(args: argparse.Namespace) -> int:
    """Train; print the final model's path (or the checkpoint's when stopped early)."""
    from dff.io.outputs import Output, check_outputs
    from dff.training.loop import train

    check_device(args.device)
    opts = options(args)  # bad option values and combinations are refused before anything is touched
    init = Path(args.init_from) if args.init_from is not None and Path(args.init_from).is_file() else None
    weights = (args.backbone_weights, args.flownet_weights, init)
    inputs = [p for p in (args.ann, args.det_ann, *weights) if p is not None]
    check_outputs([Output(args.out, "--out", folder=True)], inputs=inputs)
    check_run_dir(args.out, resume=args.resume is not None, overwrite=args.overwrite)
    result = train(opts)  # refuses an --out that is, contains or sits inside an input before any work
    if result.model_path is not None:
        print(result.model_path, flush=True)
    elif result.progress.global_iter:
        print(result.checkpoint_path, flush=True)
    return 0
