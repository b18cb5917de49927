"""`dff.evaluate`: run a model over a COCO-VID val set under one or more key-frame policies, resumably, and score it.

What `dff test` does, as a Python API: per policy it streams `results_{tag}.jsonl` (resumable), then writes
`coco_results_{tag}.json` (COCO results format) and `summary_{tag}.json`, the tag naming the policy (`k10` for
`FixedInterval(10)`, `adaptive10` for `Adaptive(budget=10)`); a sweep also writes `sweep.json` and `sweep.png`.
With `seq_nms`, each video's results are rescored by Seq-NMS before AP is computed (the results file keeps the
detector's own); with `tracker`, each video's results get track ids (kept through Seq-NMS by its `keep`) and
HOTA / MOTA / IDF1 join the summary. Call it on every rank of a torchrun launch (inside
`dff.distributed.distributed`): whole videos are split across the ranks and rank 0 merges, evaluates and writes;
the other ranks get None.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from itertools import groupby
from pathlib import Path

from dff.api import DFFModel
from dff.data.cocovid import CocoVID
from dff.distributed import current
from dff.errors import InputError
from dff.evaluation.ap import APResult
from dff.evaluation.evaluate import METRICS, PROTOCOLS, coco_results, parse_metrics
from dff.evaluation.evaluate import evaluate as evaluate_records
from dff.evaluation.results import make_header, read_records, remove_results
from dff.evaluation.runner import RunStats, run_dataset
from dff.evaluation.sweep import SweepPoint, plot_sweep, sweep_table
from dff.io.atomic import write_json_atomic
from dff.io.result import FrameResult
from dff.keyframes import Adaptive, FixedInterval, KeyFramePolicy
from dff.run import RunOptions
from dff.tracking.metrics import PROTOCOLS as TRACKING_PROTOCOLS
from dff.tracking.metrics import FrameTracks, TrackingMetrics, evaluate_tracking, require_trackeval
from dff.tracking.online import TrackerConfig, require_track_extra, track
from dff.tracking.seq_nms import SeqNMSConfig, seq_nms_results


def schedule(policy: KeyFramePolicy) -> tuple[str, float, str]:
    """(kind, number, file tag) of a policy: ("fixed", k, "k{k}"), ("adaptive", budget, "adaptive{budget}"), or for
    another policy its class name, 0 and a tag from its name and settings."""
    if isinstance(policy, FixedInterval):
        return "fixed", policy.interval, f"k{policy.interval}"
    if isinstance(policy, Adaptive):
        default = Adaptive(budget=policy.budget)
        tag = f"adaptive{policy.budget:g}"
        if repr(policy) != repr(default):  # other settings than the budget's defaults get their own files
            tag += "-" + hashlib.sha1(repr(policy).encode()).hexdigest()[:8]
        return "adaptive", policy.budget, tag
    name = type(policy).__name__.lower()
    return name, 0.0, f"{name}-{hashlib.sha1(repr(policy).encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class IntervalResult:
    """One policy's run (a fixed key interval, an adaptive budget in `key_interval`, ...): AP50 per protocol (keys
    of `PROTOCOLS`), the share of key frames, this session's timing and the files."""

    key_interval: float
    ap50: dict[str, APResult]
    stats: RunStats
    results_path: Path
    coco_results_path: Path
    summary_path: Path
    policy: str = "fixed"
    key_share: float | None = None
    tracking: TrackingMetrics | None = None  # HOTA / MOTA / IDF1 when a tracker was given
    key_policy: str = ""  # the policy run, as its repr (every setting)

    @property
    def fps(self) -> float | None:
        """Frames per second of this session (model time per process); None if every video was already done."""
        return self.stats.fps if self.stats.frames else None

    def sweep_point(self) -> SweepPoint:
        """This interval as a point of the speed / accuracy sweep (mean AP50 per protocol)."""
        ap = {k: v.mean for k, v in self.ap50.items()}
        return SweepPoint(self.key_interval, self.fps, ap, self.policy, self.key_share)


@dataclass(frozen=True)
class EvaluationResult:
    """Every key interval evaluated, in the order asked, and the sweep files when a sweep was written."""

    dataset: CocoVID
    class_names: tuple[str, ...]
    intervals: list[IntervalResult]
    sweep_json: Path | None = None
    sweep_png: Path | None = None

    def sweep_table(self) -> str:
        """The speed / accuracy table: key interval, fps and mean AP50 (%) per protocol."""
        return sweep_table([r.sweep_point() for r in self.intervals])


def evaluate(
    model: DFFModel,
    ann: Path | str | CocoVID,
    img_root: Path | str,
    out: Path | str,
    policies: Sequence[KeyFramePolicy] | None = None,
    run: RunOptions | None = None,
    metrics: Sequence[str] = METRICS,
    weights: str | Path | None = None,
    sweep: bool | None = None,
    overwrite: bool = False,
    progress: bool = True,
    on_interval: Callable[[IntervalResult], None] | None = None,
    seq_nms: SeqNMSConfig | None = None,
    tracker: TrackerConfig | None = None,
) -> EvaluationResult | None:
    """Run `model` over every video of the COCO-VID file `ann` (or a loaded CocoVID; images under `img_root`) and
    score it, into `out`.

    `policies` (key-frame policies: `dff.FixedInterval(k)`, `dff.Adaptive(budget=b)`, ...) are run (or resumed from
    `out`) in turn; default: the run's own (`run.policy(model.config)`, the preset's interval unless `run` says
    otherwise). `run` gives the backend, precision and device; AP is computed over every detection, so its
    `score_thr` and `classes` do not apply here. `metrics` are names from `METRICS` (or one comma-separated string).
    `weights` (a path or zoo name) is recorded in every results header, so resuming with other weights is refused,
    and in each summary. `sweep` (default: more than one policy) also writes `sweep.json` and `sweep.png`.
    `overwrite` starts again instead of resuming. `on_interval` is called on rank 0 with each policy's result as
    soon as it is written. `seq_nms` rescores each video by Seq-NMS before AP; `tracker` tracks each video (one
    tracker per video, over every detection of the results) and scores HOTA / MOTA / IDF1 against the annotations'
    instance_ids (the tracker and the metrics need the 'track' extra; Seq-NMS needs nothing more). Returns None
    on ranks other than 0. Raises DFFError subclasses on bad input.
    """
    img_root, out = Path(img_root), Path(out)
    run = replace(run or RunOptions(), score_thr=0.0, classes=None, keep_frames=False, return_flow=False)
    try:
        metrics = parse_metrics(metrics if isinstance(metrics, str) else ",".join(metrics))
    except ValueError as e:
        raise InputError(str(e)) from None
    policies = list(policies) if policies is not None else [run.policy(model.config)]
    if not policies:
        raise InputError("nothing to evaluate: give at least one key-frame policy")
    tags = [schedule(p)[2] for p in policies]
    if len(set(tags)) != len(tags):
        raise InputError(f"a key-frame policy is listed twice: {', '.join(t for t in tags if tags.count(t) > 1)}")
    if not img_root.is_dir():
        raise InputError(f"{img_root}: the image root is not a folder")
    if tracker is not None:
        require_track_extra()
        require_trackeval()
    dataset = ann if isinstance(ann, CocoVID) else CocoVID.load(ann)
    dataset.category_ids(model.class_names)  # fail early on a class / category mismatch
    rank, _ = current()
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    results = []
    for policy in policies:
        r = _evaluate_one(
            model,
            dataset,
            img_root,
            out,
            replace(run, key_policy=policy),
            metrics,
            weights,
            overwrite,
            progress,
            seq_nms,
            tracker,
        )
        if r is not None:
            results.append(r)
            if on_interval is not None:
                on_interval(r)
    if rank != 0:
        return None
    if not (sweep if sweep is not None else len(policies) > 1):
        return EvaluationResult(dataset, tuple(model.class_names), results)
    points = [r.sweep_point() for r in results]
    write_json_atomic(
        [
            {"key_interval": p.key_interval, "policy": p.policy, "key_share": p.key_share, "fps": p.fps, "ap50": p.ap50}
            for p in points
        ],
        out / "sweep.json",
    )
    plot_sweep(points, out / "sweep.png")
    return EvaluationResult(dataset, tuple(model.class_names), results, out / "sweep.json", out / "sweep.png")


def _evaluate_one(
    model: DFFModel,
    dataset: CocoVID,
    img_root: Path,
    out: Path,
    run: RunOptions,
    metrics: tuple[str, ...],
    weights: str | Path | None,
    overwrite: bool,
    progress: bool,
    seq_nms: SeqNMSConfig | None = None,
    tracker: TrackerConfig | None = None,
) -> IntervalResult | None:
    """Run (or resume) one policy (`run.key_policy`); rank 0 evaluates and writes the files, the other ranks
    return None."""
    kind, number, tag = schedule(run.key_policy)
    results_path = out / f"results_{tag}.jsonl"
    resolved = None if weights is None else str(Path(weights).resolve() if Path(weights).exists() else weights)
    header = make_header(
        key_interval=number,
        key_policy=repr(run.key_policy),
        weights=resolved,
        ann=str(dataset.path.resolve()),
        preset=model.config.name,
    )
    rank, _ = current()
    if rank == 0 and overwrite:
        remove_results(results_path)
    stats = run_dataset(model, dataset, img_root, results_path, header, run, progress=progress)
    if rank != 0:
        return None
    records = _over_time(read_records(results_path, model.class_names), seq_nms, tracker)
    ap = evaluate_records(dataset, records, model.class_names, metrics)
    tracking = None
    if tracker is not None:
        tracks = {r.image_id: FrameTracks(r.boxes, r.labels, r.track_ids) for r in records}
        tracking = evaluate_tracking(dataset, tracks, model.class_names)
    result = IntervalResult(
        number,
        ap,
        stats,
        results_path,
        out / f"coco_results_{tag}.json",
        out / f"summary_{tag}.json",
        kind,
        sum(r.is_key_frame for r in records) / max(len(records), 1),
        tracking,
        repr(run.key_policy),
    )
    write_json_atomic(coco_results(records, dataset.category_ids(model.class_names)), result.coco_results_path)
    summary = {
        "weights": None if weights is None else str(weights),
        "ann": str(dataset.path),
        "preset": model.config.name,
        "key_interval": number,
        "key_policy": repr(run.key_policy),
        "key_share": result.key_share,
        "backend": run.backend,
        "dtype": run.dtype,
        "videos": len(dataset.videos),
        "frames": len(dataset.images),
        "fps": result.fps,
        "frames_run_this_session": stats.frames,
        "model_seconds_this_session": stats.seconds,
        "protocols": {k: PROTOCOLS[k] for k in ap},
        "ap50": {k: v.to_dict(model.class_names) for k, v in ap.items()},
        "seq_nms": None if seq_nms is None else dataclasses.asdict(seq_nms),
    }
    if tracking is not None:
        summary["tracker"] = dataclasses.asdict(tracker)
        summary["tracking_protocols"] = TRACKING_PROTOCOLS
        summary["tracking"] = {
            "overall": dataclasses.asdict(tracking.overall),
            "class_mean": None if tracking.class_mean is None else dataclasses.asdict(tracking.class_mean),
            "per_class": {c: dataclasses.asdict(s) for c, s in tracking.per_class.items()},
        }
    write_json_atomic(summary, result.summary_path)
    return result


def _over_time(
    records: list[FrameResult], seq_nms: SeqNMSConfig | None, tracker: TrackerConfig | None
) -> list[FrameResult]:
    """Each video's records (in dataset order) with track ids (over all its detections), then Seq-NMS."""
    out: list[FrameResult] = []
    for _, video in groupby(records, key=lambda r: r.video_id):
        video = list(video)
        if tracker is not None:
            video = list(track(video, tracker))
        out += seq_nms_results(video, seq_nms) if seq_nms is not None else video
    return out
