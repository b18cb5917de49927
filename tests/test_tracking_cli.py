"""Issue 17 on the command line: `dff detect --track / --seq-nms`, `dff test --track / --seq-nms`, on the bundled
tiny model and clip (or a small synthetic val set), against the Python pieces they are built on."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

import dff
from dff.cli.demo import CLIP_PATH as CLIP
from dff.cli.demo import MODEL_PATH as TINY
from dff.cli.main import main
from dff.data.cocovid import CocoVID
from dff.data.convert import convert_dataset
from dff.data.synthetic.ilsvrc import make_synthetic
from dff.errors import InputError
from dff.evaluation.evaluate import evaluate
from dff.evaluation.results import read_records
from dff.io.draw import TrackTrails, class_color, draw_detections, label_layout, track_color
from dff.io.sources import FrameSource, open_source
from dff.io.writers import Outputs
from dff.pipeline import DetectOptions, detect_source
from dff.tracking import BENCHMARKED, FrameTracks, SeqNMSConfig, TrackerConfig, evaluate_tracking, seq_nms, track

pytest.importorskip("trackers", reason="the 'track' extra is not installed")
pytest.importorskip("trackeval", reason="the 'track' extra is not installed")

pytestmark = pytest.mark.usefixtures("one_thread")

ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(dff.__file__).resolve().parents[1]))
SCORE_THR = 0.3  # what --seq-nms tests write
TRACK_THR = 0.5  # what --track tests write (dff detect's default)


@pytest.fixture(scope="module")
def model() -> dff.DFFModel:
    return dff.load(TINY, preset="tiny_synthetic")


@pytest.fixture(scope="module")
def plain(model) -> list[dff.FrameResult]:
    """The model's own results on the bundled clip (every detection, float32)."""
    return list(model.predict(str(CLIP)))


def detect(capsys, *args: object) -> tuple[int, str]:
    code = main(["detect", *map(str, args), "--weights", str(TINY), "--preset", "tiny_synthetic", "--no-progress"])
    return code, capsys.readouterr().err.strip()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("dff: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union


def above(boxes, scores, labels, thr):
    keep = scores >= thr
    return boxes[keep], scores[keep], labels[keep], keep


def run_dff(*args: object) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "dff", *map(str, args)]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(condition, proc: subprocess.Popen) -> None:
    """Until `condition()` holds (the run is part-way); the run must not have ended before."""
    deadline = time.monotonic() + 120
    while not condition():
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.02)


# -- dff detect --track --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tracked(tmp_path_factory) -> tuple[list[dict], list[dict], Path]:
    out = tmp_path_factory.mktemp("tracked")
    j, c, v = out / "d.jsonl", out / "c.json", out / "d.mp4"
    code = main(
        [
            *("detect", str(CLIP), "--weights", str(TINY), "--preset", "tiny_synthetic", "--no-progress"),
            *("--track", "--score-thr", str(TRACK_THR), "--out-json", str(j), "--out-coco", str(c)),
            *("--out-video", str(v)),
        ]
    )
    assert code == 0
    return read_jsonl(j), json.loads(c.read_text()), v


def test_detect_track_gives_every_detection_a_stable_id(tracked):
    lines, _, _ = tracked
    assert [line["frame"] for line in lines] == list(range(60))
    dets = [d for line in lines for d in line["detections"]]
    assert dets and all(isinstance(d["track_id"], int) and d["track_id"] >= -1 for d in dets)
    frames_of: dict[int, list[int]] = {}
    boxes_of: dict[int, dict[int, list[float]]] = {}
    for line in lines:
        ids = [d["track_id"] for d in line["detections"] if d["track_id"] >= 0]
        assert len(ids) == len(set(ids)), line  # one box per id per frame
        for d in line["detections"]:
            if d["track_id"] >= 0:
                frames_of.setdefault(d["track_id"], []).append(line["frame"])
                boxes_of.setdefault(d["track_id"], {})[line["frame"]] = d["bbox"]
    assert len(frames_of) >= 3
    assert sum(d["track_id"] >= 0 for d in dets) >= 0.75 * len(dets)
    longest = {}
    for k, frames in frames_of.items():
        run = best = 1
        for a, b in zip(frames, frames[1:]):
            run = run + 1 if b == a + 1 else 1
            best = max(best, run)
        longest[k] = best
    assert sum(n >= 5 for n in longest.values()) >= 0.75 * len(longest), longest
    # the same object keeps its id: a tracked box overlaps its own box of the frame before
    steps = [iou(b[t - 1], b[t]) for b in boxes_of.values() for t in b if t - 1 in b]
    assert len(steps) >= 100 and np.mean(np.array(steps) > 0.5) >= 0.95
    # and every id stays with one class
    classes = {}
    for line in lines:
        for d in line["detections"]:
            if d["track_id"] >= 0:
                assert classes.setdefault(d["track_id"], d["label"]) == d["label"]


def test_detect_track_equals_the_python_api(tracked, plain):
    lines, coco, _ = tracked
    for line, r in zip(lines, track(plain, TrackerConfig()), strict=True):
        boxes, scores, _, keep = above(r.boxes, r.scores, r.labels, TRACK_THR)
        assert [d["track_id"] for d in line["detections"]] == r.track_ids[keep].tolist()
        assert np.allclose([d["bbox"] for d in line["detections"]], boxes.reshape(-1, 4), atol=0.006)
    by_frame = {}
    for item in coco:
        by_frame.setdefault(item["image_id"], []).append(item["track_id"])
    assert by_frame == {  # image ids: the frames' 1-based numbers
        line["frame"] + 1: [d["track_id"] for d in line["detections"]] for line in lines if line["detections"]
    }


def test_detect_track_writes_a_video_of_every_frame(tracked):
    _, _, video = tracked
    with av.open(str(video)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 60


def test_track_ids_are_drawn_in_the_label():
    image = np.full((120, 200, 3), 90, np.uint8)
    box, score, label = np.array([[60.0, 50, 120, 110]]), np.array([0.9]), np.array([1])
    names = ("cat", "dog")
    plain = draw_detections(image, box, score, label, names)
    assert np.array_equal(draw_detections(image, box, score, label, names, np.array([-1])), plain)
    with_id = draw_detections(image, box, score, label, names, np.array([7]))
    plain_texts, (plain_rect,) = label_layout(image.shape, box, score, label, names)
    id_texts, (id_rect,) = label_layout(image.shape, box, score, label, names, np.array([7]))
    assert plain_texts == ["dog 0.90"] and id_texts == ["#7 dog 0.90"]
    assert id_rect[2] - id_rect[0] > plain_rect[2] - plain_rect[0]  # the label above the box got longer
    x1, y1, x2, _ = id_rect.tolist()
    assert with_id[y1, x1:x2].tolist() == [list(track_color(7))] * (x2 - x1)  # in the track's colour
    assert plain[y1, x1 + 1].tolist() == list(class_color(1))  # untracked: the class's


def test_trails_follow_a_moving_track():
    trails = TrackTrails(length=5)
    image = np.zeros((100, 200, 3), np.uint8)
    for t in range(8):
        trails.update(np.array([[10 + 10 * t, 40, 30 + 10 * t, 60]]), np.array([3]))
    trails.update(np.array([[90, 40, 110, 60], [0, 0, 5, 5]]), np.array([3, -1]))
    trails.draw(image, np.array([3, -1]))
    drawn = np.flatnonzero(image[50].any(axis=1))
    assert drawn.min() >= 55 and 95 <= drawn.max() <= 105  # the last 5 centres: x 60..100, older ones dropped
    assert not image[:40].any() and not image[61:].any()


def test_collection_runs_one_tracker_per_video(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a", "b"):
        (videos / f"{name}.mp4").write_bytes(CLIP.read_bytes())
    out = tmp_path / "out"
    code, err = detect(capsys, "--inputs", videos, "--out-dir", out, "--track", "--max-frames", 12)
    assert code == 0, err
    per_video = [read_jsonl(p) for p in sorted(out.glob("*/detections.jsonl"))]
    assert len(per_video) == 2
    ids = [[d["track_id"] for line in lines for d in line["detections"]] for lines in per_video]
    assert ids[0] == ids[1] and min(i for i in ids[0] if i >= 0) == 1  # the second video starts afresh


def test_missing_extra_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "trackers", None)
    code, err = detect(capsys, CLIP, "--track", "--out-json", tmp_path / "d.jsonl")
    assert code == 2 and "'track' extra" in one_error_line(err)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_detect_track_leaves_valid_jsonl(long_source, tmp_path):
    j = tmp_path / "d.jsonl"
    proc = run_dff("detect", long_source, "--weights", TINY, "--no-progress", "--track", "--out-json", j)
    try:
        wait_for(lambda: any(len(p.read_text().splitlines()) >= 3 for p in tmp_path.glob(".d.*.tmp.jsonl")), proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err.decode(), err.decode()
    lines = read_jsonl(j)
    assert 3 <= len(lines) < 300 and [line["frame"] for line in lines] == list(range(len(lines)))
    assert all("track_id" in d for line in lines for d in line["detections"])
    assert any(d["track_id"] >= 1 for d in lines[-1]["detections"])  # a still picture: its objects are tracked
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl"]


# -- dff detect --seq-nms ------------------------------------------------------------------------------------------


def test_min_score_sets_low_boxes_aside():
    rng = np.random.default_rng(3)
    frames = []
    for _ in range(12):
        n = int(rng.integers(0, 15))
        xy = rng.uniform(0, 60, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(10, 30, (n, 2))], axis=1)
        frames.append((boxes, rng.uniform(0, 0.2, n) ** 2 * 20, rng.integers(0, 2, n)))
    config = SeqNMSConfig(suppress_iou=0.3, min_score=0.2)
    got = seq_nms(frames, config)
    part = [s >= 0.2 for _, s, _ in frames]
    ref = seq_nms([(b[m], s[m], lab[m]) for (b, s, lab), m in zip(frames, part)], SeqNMSConfig(suppress_iou=0.3))
    for (b, s, _), m, g, r in zip(frames, part, got, ref):
        want = {(tuple(x), float(v)) for x, v in zip(r.boxes.tolist(), r.scores.tolist())}
        want |= {(tuple(x), float(np.float32(v))) for x, v in zip(b[~m].astype(np.float32).tolist(), s[~m])}
        assert {(tuple(x), float(v)) for x, v in zip(g.boxes.tolist(), g.scores.tolist())} == want
    assert sum(len(r.boxes) for r in ref) < sum(m.sum() for m in part)  # something was suppressed


def test_detect_seq_nms_equals_seq_nms_on_the_plain_output(plain, tmp_path, capsys):
    j, c = tmp_path / "s.jsonl", tmp_path / "s.json"
    code, err = detect(capsys, CLIP, "--seq-nms", "--track", "--score-thr", SCORE_THR, "--out-json", j, "--out-coco", c)
    assert code == 0, err
    lines, coco = read_jsonl(j), json.loads(c.read_text())
    kept = seq_nms([(r.boxes, r.scores, r.labels) for r in plain], BENCHMARKED)
    changed = 0
    for line, r, k, ids in zip(lines, plain, kept, (t.track_ids for t in track(plain)), strict=True):
        boxes, scores, _, m = above(k.boxes, k.scores, k.labels, SCORE_THR)
        got = line["detections"]
        assert np.allclose([d["score"] for d in got], scores, atol=6e-6)
        assert np.allclose([d["bbox"] for d in got], boxes.reshape(-1, 4), atol=0.006)
        assert [d["track_id"] for d in got] == ids[k.keep][m].tolist()
        before = r.scores[r.scores >= SCORE_THR]
        changed += len(before) != len(scores) or not np.allclose(np.sort(before), np.sort(scores))
    assert changed >= 10  # Seq-NMS did rescore
    assert [(i["image_id"], np.float32(i["score"])) for i in coco] == [
        (line["frame"] + 1, np.float32(d["score"])) for line in lines for d in line["detections"]
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.jsonl"]


def test_interrupted_detect_seq_nms_writes_the_frames_read_so_far(long_source, tmp_path):
    j, flow = tmp_path / "d.jsonl", tmp_path / "flow"
    proc = run_dff(
        *("detect", long_source, "--weights", TINY, "--no-progress", "--seq-nms", "--out-json", j),
        *("--show-flow", flow, "--score-thr", "0", "--seq-nms-own-weight", "0"),
    )
    try:
        wait_for(lambda: len(list(flow.glob("*.png"))) >= 3, proc)  # the flow pictures are written as it goes
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err.decode(), err.decode()
    lines = read_jsonl(j)
    assert 3 <= len(lines) < 300 and [line["frame"] for line in lines] == list(range(len(lines)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl", "flow"]
    # a still picture: the best sequence runs through every frame read, so its boxes share one averaged score
    # (own weight 0: the paper's rescoring)
    tops = {line["detections"][0]["score"] for line in lines}
    assert len(tops) == 1, tops


def test_seq_nms_on_a_stream_is_refused_before_anything_runs(tmp_path, capsys):
    code, err = detect(capsys, "rtsp://127.0.0.1:9/live", "--seq-nms", "--out-json", tmp_path / "d.jsonl")
    assert code == 2 and "not on streams" in one_error_line(err) and "rtsp://127.0.0.1:9/live" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args,message",
    [
        (["--seq-nms-rescore", "max"], "--seq-nms-rescore needs --seq-nms"),
        (["--tracker", "sort"], "--tracker needs --track"),
        (["--seq-nms", "--seq-nms-link-iou", "2"], "--seq-nms: link_iou and suppress_iou must lie in [0, 1]"),
        (["--seq-nms", "--seq-nms-min-score", "nan"], "--seq-nms: min_score must be >= 0"),
    ],
)
def test_bad_options_are_one_line_errors(args, message, tmp_path, capsys):
    code, err = detect(capsys, CLIP, *args, "--out-json", tmp_path / "d.jsonl")
    assert code == 2 and message in one_error_line(err)
    assert list(tmp_path.iterdir()) == []


def test_pipeline_refuses_seq_nms_on_a_stream_source(model, tmp_path):
    stream = FrameSource("udp://x", 25.0, None, lambda: iter(()), is_stream=True)
    with pytest.raises(InputError, match="not on streams"):
        detect_source(model, stream, Outputs(json=tmp_path / "d.jsonl"), DetectOptions(seq_nms=BENCHMARKED))
    assert not open_source(CLIP).is_stream


# -- dff test --track / --seq-nms ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def val_set(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("synthetic_val")
    make_synthetic(root, videos=0, frames=15, val_videos=2, det_images=0, width=480, height=272, seed=8, progress=False)
    (ann,) = convert_dataset(root, parts=("vid_val",), progress=False)
    return ann, root / "Data" / "VID"


def test_test_track_and_seq_nms_report_what_the_python_pieces_give(val_set, model, tmp_path, capsys):
    ann, img_root = val_set
    out = tmp_path / "out"
    argv = ["test", "--weights", str(TINY), "--preset", "tiny_synthetic", "--ann", str(ann), "--img-root"]
    code = main([*argv, str(img_root), "--out", str(out), "--no-progress", "--track", "--seq-nms", "--metric", "coco"])
    printed = capsys.readouterr().out
    assert code == 0
    for word in ("HOTA", "MOTA", "IDF1", "overall", "Luiten", "Ristani", "after Seq-NMS"):
        assert word in printed
    summary = json.loads((out / "summary_k10.json").read_text())
    assert set(summary["tracking_protocols"]) == {"HOTA", "MOTA", "IDF1"}
    assert summary["seq_nms"] == dataclasses.asdict(BENCHMARKED)
    # the same from the raw results file through the Python pieces
    dataset = CocoVID.load(ann)
    raw = read_records(out / "results_k10.jsonl")
    videos: dict[int, list] = {}
    for r in raw:
        videos.setdefault(r.video_id, []).append(r)
    tracks, rescored = {}, []
    for video in videos.values():
        ids = [t.track_ids for t in track(video)]
        for r, k, i in zip(video, seq_nms([(r.boxes, r.scores, r.labels) for r in video], BENCHMARKED), ids):
            tracks[r.image_id] = FrameTracks(k.boxes, k.labels, i[k.keep])
            rescored.append(dataclasses.replace(r, boxes=k.boxes, scores=k.scores, labels=k.labels, track_ids=None))
    want = evaluate_tracking(dataset, tracks, model.class_names)
    got = summary["tracking"]["overall"]
    assert want.overall.hota > 0.2 and want.overall.gt_dets > 0
    assert got["hota"] == pytest.approx(want.overall.hota) and got["mota"] == pytest.approx(want.overall.mota)
    assert got["idf1"] == pytest.approx(want.overall.idf1)
    assert set(summary["tracking"]["per_class"]) == set(want.per_class)
    ap = evaluate(dataset, rescored, model.class_names, ("coco",))["coco_ap50"].mean
    assert summary["ap50"]["coco_ap50"]["mean"] == pytest.approx(ap)
    scores = [item["score"] for item in json.loads((out / "coco_results_k10.json").read_text())]
    assert np.allclose(scores, [s for r in rescored for s in r.scores.tolist()], atol=6e-6)
    moved = [
        len(a.scores) != len(b.scores) or np.abs(np.sort(a.scores) - np.sort(b.scores)).max() > 1e-3
        for a, b in zip(rescored, raw)
        if len(b.scores)
    ]
    assert sum(moved) >= 10  # Seq-NMS did rescore
    assert f"{100 * want.overall.idf1:6.1f}" in printed
