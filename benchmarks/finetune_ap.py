"""What `dff train --init-from` buys on a new class set: the bundled `tiny_synthetic` model fine-tuned against the
same recipe from random initialisation, COCO AP50 on the val split, per generator seed.

    python benchmarks/finetune_ap.py --work runs/finetune --seeds 20 21 22 --threads 1   # the BENCHMARKS.md run

Per seed: `make_synthetic` draws a training and a val split (480x272, the generator's standard style) from that
seed; three of the generator's classes (`--classes`, default airplane, car, zebra) are renamed (`--new-names`,
default glider, sedan, okapi) and every box of the other classes is dropped, in both splits, so the model learns
three classes the bundled model has no rows for (their box-head rows start fresh; everything else is the bundled
model's under `--init-from`). The same recipe (`--max-iters`, `--lr`, `--freeze`, seed 0, batch 1, one process)
is trained twice, with `--init-from` the bundled model and without it (random ResNet-18, FlowNet and heads), and
each result is scored with `dff.evaluate` (mmtracking's COCO AP50, DFF with key interval 10). Prints a JSON line
per seed and a Markdown table, and writes both to --work (finetune_ap.json, finetune_ap.md). Seeds already
reported on are listed in ARCHITECTURE.md ("Spent val seeds"): use fresh ones.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

import torch

import dff
from dff.api import DFFModel
from dff.data.convert import convert_dataset
from dff.data.synthetic import SYNTHETIC_CLASSES, make_synthetic
from dff.evaluation.model_eval import evaluate
from dff.models.detector import DFF
from dff.training.loop import train
from dff.training.options import FREEZE, TrainOptions
from dff.training.state import load_state

MODEL = Path(dff.__file__).resolve().parent / "assets" / "tiny_synthetic.safetensors"
PRESET = "tiny_synthetic"


def renamed(src: Path, dst: Path, mapping: dict[str, str]) -> Path:
    """`src` COCO-VID with only the boxes of `mapping`'s classes, those categories renamed (ids 1..3)."""
    data = json.loads(src.read_text())
    old = {c["id"]: c["name"] for c in data["categories"]}
    new_id = {name: i for i, name in enumerate(mapping, 1)}
    data["categories"] = [{"id": new_id[n], "name": mapping[n]} for n in mapping]
    data["annotations"] = [
        {**a, "category_id": new_id[old[a["category_id"]]]}
        for a in data["annotations"]
        if old[a["category_id"]] in new_id
    ]
    dst.write_text(json.dumps(data))
    return dst


def make_split(root: Path, seed: int, args: argparse.Namespace, mapping: dict[str, str]) -> tuple[Path, Path]:
    """The seed's training and val JSONs with the renamed classes (made once; kept when already there)."""
    train_ann, val_ann = root / "train_renamed.json", root / "val_renamed.json"
    if not (train_ann.is_file() and val_ann.is_file()):
        make_synthetic(
            root,
            videos=args.train_videos,
            frames=args.frames,
            val_videos=args.val_videos,
            det_images=0,
            seed=seed,
            overwrite=True,
            progress=False,
        )
        convert_dataset(root, parts=("vid_train", "vid_val"), progress=False)
        renamed(root / "annotations" / "imagenet_vid_train.json", train_ann, mapping)
        renamed(root / "annotations" / "imagenet_vid_val.json", val_ann, mapping)
    return train_ann, val_ann


def train_and_score(
    root: Path, train_ann: Path, val_ann: Path, out: Path, init: Path | None, args: argparse.Namespace
) -> dict:
    """Train the recipe (from `init` or random) and score its last checkpoint on the val split."""
    start = time.perf_counter()
    opts = TrainOptions(
        preset=PRESET,
        ann=train_ann,
        out=out,
        data_root=root,
        workers=args.workers,
        lr=args.lr,
        max_iters=args.max_iters,
        log_every=50,
        progress_bar=False,
        init_from=init,
        freeze=args.freeze,
    )
    if (out / "latest.pth").is_file():  # an earlier run of this benchmark got this far: reuse it
        train_s = None
    else:
        train(opts)
        train_s = time.perf_counter() - start
    state = load_state(out / "latest.pth", PRESET)
    net = DFF(state["config"])
    net.load_state_dict(state["model"])
    start = time.perf_counter()
    result = evaluate(
        DFFModel(net),
        val_ann,
        root / "Data" / "VID",
        out / "eval",
        policies=[dff.FixedInterval(10)],
        run=dff.RunOptions(device="cpu"),
        metrics=("coco",),
        overwrite=True,
        progress=False,
    )
    ap = result.intervals[0].ap50["coco_ap50"]
    return {
        "ap50": None if ap.mean is None else 100 * ap.mean,  # None: no val box of the three classes
        "per_class": dict(zip(result.class_names, [None if v is None else 100 * v for v in ap.per_class])),
        "train_s": train_s,
        "eval_s": time.perf_counter() - start,
        "iters": state["progress"].global_iter,
    }


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(rows: list[dict], args: argparse.Namespace, command: str) -> str:
    lines = [
        "| seed | init-from AP50 | random-init AP50 | difference | train s (init / random) | classes |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        f, s = r["init_from"], r["random"]
        times = " / ".join("-" if t is None else f"{t:.0f}" for t in (f["train_s"], s["train_s"]))
        ap = [_number(f["ap50"], ".1f"), _number(s["ap50"], ".1f"), _number(r["difference"], "+.1f")]
        lines.append(f"| {r['seed']} | {' | '.join(ap)} | {times} | {', '.join(r['classes'])} |")
    lines += [
        "",
        f"Recipe: {args.max_iters} iterations, lr {args.lr} per 8 pairs, batch 1, freeze {args.freeze}; "
        f"{args.train_videos} training and {args.val_videos} val videos of {args.frames} frames; COCO AP50 at key "
        f"interval 10. `{command}`; torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.threads} thread(s), {date.today().isoformat()}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="working folder (data, runs, results)")
    p.add_argument("--seeds", type=int, nargs="+", required=True, help="generator seeds (fresh ones: ARCHITECTURE.md)")
    p.add_argument("--classes", default="airplane,car,zebra", help="three of the generator's classes")
    p.add_argument("--new-names", default="glider,sedan,okapi", help="their new names")
    p.add_argument("--max-iters", type=int, default=600, help="training iterations of each run (default 600)")
    p.add_argument("--lr", type=float, default=0.02, help="learning rate per 8 pairs (default 0.02)")
    p.add_argument("--freeze", choices=FREEZE, default="none", help="frozen part, both runs (default none)")
    p.add_argument("--train-videos", type=int, default=12, help="training videos per seed (default 12)")
    p.add_argument("--val-videos", type=int, default=6, help="val videos per seed (default 6)")
    p.add_argument("--frames", type=int, default=40, help="frames per video (default 40)")
    p.add_argument("--workers", type=int, default=0, help="data loader processes (default 0)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = p.parse_args(argv)
    old, new = args.classes.split(","), args.new_names.split(",")
    unknown = [c for c in old if c not in SYNTHETIC_CLASSES]
    if len(old) != len(new) or unknown:
        p.error(f"--classes: names of {', '.join(SYNTHETIC_CLASSES)}, as many as --new-names")
    mapping = dict(zip(old, new))
    torch.set_num_threads(args.threads)
    rows = []
    for seed in args.seeds:
        root = args.work / f"seed{seed}"
        train_ann, val_ann = make_split(root, seed, args, mapping)
        fine = train_and_score(root, train_ann, val_ann, root / "init_from", MODEL, args)
        scratch = train_and_score(root, train_ann, val_ann, root / "random", None, args)
        row = {
            "seed": seed,
            "classes": new,
            "init_from": fine,
            "random": scratch,
            "difference": None if None in (fine["ap50"], scratch["ap50"]) else fine["ap50"] - scratch["ap50"],
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    command = " ".join([Path(sys.executable).name, *sys.argv])
    table = markdown(rows, args, command)
    (args.work / "finetune_ap.json").write_text(
        json.dumps({"args": vars(args) | {"work": str(args.work)}, "rows": rows})
    )
    (args.work / "finetune_ap.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
