"""The synthetic ILSVRC generator: layout, determinism, speed, motion buckets and the CLI commands."""

import hashlib
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from dff.classes import VID_WNIDS
from dff.cli.main import main
from dff.data.cocovid import CocoVID, motion_iou
from dff.data.convert import convert_dataset
from dff.data.synthetic import SYNTHETIC_CLASSES, ground_truth_flow, load_ground_truth, make_synthetic
from dff.errors import DatasetError, InputError

STANDARD_DIGEST = "1c49649d62b0a73d8d2ddb0de400ba34adf52ea044169988b275cf3798efc442"


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_layout_is_ilsvrc2015(tmp_path):
    made = make_synthetic(
        tmp_path, videos=2, val_videos=1, frames=16, det_images=4, width=160, height=96, progress=False
    )
    files = _files(tmp_path)
    train = "train/ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000001"
    for t in (0, 15):
        assert f"Data/VID/{train}/{t:06d}.JPEG" in files
        assert f"Annotations/VID/{train}/{t:06d}.xml" in files
        assert f"Data/VID/val/ILSVRC2015_val_00000000/{t:06d}.JPEG" in files
    assert f"Data/VID/{train}/000016.JPEG" not in files
    assert "Data/DET/train/ILSVRC2014_train_0000/ILSVRC2014_train_00000000.JPEG" in files
    assert any(f.startswith("Annotations/DET/train/ILSVRC2013_train/n") and f.endswith(".xml") for f in files)
    assert {
        "Lists/VID_train_15frames.txt",
        "Lists/VID_val_videos.txt",
        "Lists/DET_train_30classes.txt",
        "synthetic_gt.json",
    } <= set(files)
    lines = (tmp_path / "Lists" / "VID_train_15frames.txt").read_text().splitlines()
    assert len(lines) == 30 and lines[0].split()[1::2] == ["1", "16"]
    assert (tmp_path / "Lists" / "VID_val_videos.txt").read_text() == "val/ILSVRC2015_val_00000000 1 0 16\n"
    assert load_ground_truth(tmp_path).to_dict() == made.to_dict()
    wnids = {tr.wnid for v in made.videos for tr in v.tracks}
    assert wnids <= {VID_WNIDS[i] for i in range(30)}
    with pytest.raises(InputError, match="folder is not empty"):
        make_synthetic(tmp_path, videos=1, val_videos=0, frames=2, det_images=0, progress=False)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    kw = dict(videos=1, val_videos=1, frames=12, det_images=2, width=160, height=96, progress=False)
    a, b, c = (make_synthetic(tmp_path / n, seed=s, **kw) for n, s in (("a", 4), ("b", 4), ("c", 5)))
    frame = "Data/VID/val/ILSVRC2015_val_00000000/000007.JPEG"
    assert (tmp_path / "a" / frame).read_bytes() == (tmp_path / "b" / frame).read_bytes()
    assert (tmp_path / "a" / frame).read_bytes() != (tmp_path / "c" / frame).read_bytes()
    assert a.to_dict() == b.to_dict() != c.to_dict()
    # a video does not depend on how many others are made
    d = make_synthetic(tmp_path / "d", seed=4, **{**kw, "videos": 3})
    assert json.dumps(d.to_dict()["videos"][0]) == json.dumps(a.to_dict()["videos"][0])


def test_frames_accept_1280x720(tmp_path):
    make_synthetic(tmp_path, videos=0, val_videos=1, frames=2, det_images=1, width=1280, height=720, progress=False)
    (path,) = convert_dataset(tmp_path, parts=("vid_val",), progress=False)
    coco = CocoVID.load(path)
    assert {(img["width"], img["height"]) for img in coco.images} == {(1280, 720)}


@pytest.mark.slow
def test_default_twenty_video_set_is_fast_balanced_and_varied(tmp_path):
    start = time.perf_counter()
    made = make_synthetic(tmp_path, videos=20, val_videos=0, det_images=0, progress=False)
    elapsed = time.perf_counter() - start
    assert elapsed < 60, f"20 videos took {elapsed:.1f}s"
    (path,) = convert_dataset(tmp_path, parts=("vid_train",), progress=False)
    coco = CocoVID.load(path)
    assert len(coco.videos) == 20 and len(coco.images) == 1200
    m = np.array([v for v in motion_iou(coco).values() if not math.isnan(v)])
    fast, medium, slow = (m < 0.7).mean(), ((m >= 0.7) & (m <= 0.9)).mean(), (m > 0.9).mean()
    assert min(fast, medium, slow) > 0.2, (fast, medium, slow)
    drawn = {tr.wnid for v in made.videos for tr in v.tracks}
    assert len(drawn) == len(SYNTHETIC_CLASSES)
    anns = coco.all_annotations()
    assert 0.05 < np.mean([a["occluded"] for a in anns]) < 0.5
    speeds = {tr.speed for v in made.videos for tr in v.tracks}
    assert speeds == {"slow", "medium", "fast"}
    # objects enter after frame 0 and leave before the end
    assert any(tr.frames[0] > 0 for v in made.videos for tr in v.tracks)
    assert any(tr.frames[-1] < v.num_frames - 1 for v in made.videos for tr in v.tracks)


def test_cli_make_synthetic_and_convert_dataset(tmp_path, capsys):
    out = tmp_path / "syn"
    assert (
        main(
            [
                "make-synthetic",
                str(out),
                "--videos",
                "1",
                "--val-videos",
                "1",
                "--frames",
                "15",
                "--det-images",
                "2",
                "--width",
                "128",
                "--height",
                "80",
                "--seed",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    assert main(["convert-dataset", str(out), "-o", str(tmp_path / "ann"), "--no-progress"]) == 0
    printed = capsys.readouterr().out.split()
    names = ("imagenet_vid_train.json", "imagenet_vid_val.json", "imagenet_det_30plus1cls.json")
    assert printed == [str(out)] + [str(tmp_path / "ann" / n) for n in names]
    assert main(["convert-dataset", str(tmp_path / "nowhere")]) == 2
    assert "dff: error:" in capsys.readouterr().err


def _warp(frame: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample `frame` at p + flow(p) (bilinear): the frame-k content each frame-t pixel maps to."""
    h, w = flow.shape[1:]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(frame, xs + flow[0], ys + flow[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def test_ground_truth_flow_moves_frame_k_onto_frame_t_and_reads_background_where_objects_left(tmp_path):
    made = make_synthetic(
        tmp_path, videos=0, val_videos=4, frames=20, det_images=0, width=320, height=192, seed=7, progress=False
    )

    def read(v, t):
        return cv2.imread(str(tmp_path / "Data" / "VID" / v.name / f"{t:06d}.JPEG")).astype(np.float32)

    objects_gt, objects_camera, uncovered, reads_object = [], [], 0, 0
    for v in made.videos:
        assert len(v.camera) == 20 and all(len(tr.full_boxes) == len(tr.frames) for tr in v.tracks)
        for t, k in ((9, 0), (19, 10)):
            flow = ground_truth_flow(v, t, k)
            ft, warped = read(v, t), _warp(read(v, k), flow)
            bg = np.subtract(v.camera[t], v.camera[k])
            camera = _warp(read(v, k), np.broadcast_to(bg.astype(np.float32)[:, None, None], flow.shape).copy())
            now = np.zeros(flow.shape[1:], bool)
            for tr in v.tracks:
                at = dict(zip(tr.frames, tr.full_boxes))
                if t in at:
                    x1, y1, x2, y2 = np.clip(at[t], 0, [320, 192, 320, 192])
                    now[y1:y2, x1:x2] = True
            ys, xs = np.mgrid[0:192, 0:320].astype(np.float32)
            hidden_by = np.zeros(flow.shape[1:], int)  # how many key-frame boxes cover a pixel's background in k
            for tr in v.tracks:
                at = dict(zip(tr.frames, tr.full_boxes))
                if k in at:
                    kx1, ky1, kx2, ky2 = at[k]
                    hidden_by += (xs + bg[0] >= kx1) & (xs + bg[0] < kx2) & (ys + bg[1] >= ky1) & (ys + bg[1] < ky2)
            for tr in v.tracks:
                at = dict(zip(tr.frames, tr.full_boxes))
                if t not in at or k not in at:
                    continue
                x1, y1, x2, y2 = at[t]
                inner = np.zeros(flow.shape[1:], bool)
                inner[
                    max(0, (3 * y1 + y2) // 4) : max(0, (y1 + 3 * y2) // 4),
                    max(0, (3 * x1 + x2) // 4) : max(0, (x1 + 3 * x2) // 4),
                ] = True
                if inner.sum() > 20:
                    objects_gt.append(np.abs(warped - ft).mean(-1)[inner].mean())
                    objects_camera.append(np.abs(camera - ft).mean(-1)[inner].mean())
                kx1, ky1, kx2, ky2 = at[k]
                left = ((xs + bg[0] >= kx1) & (xs + bg[0] < kx2) & (ys + bg[1] >= ky1) & (ys + bg[1] < ky2)) & ~now
                left &= hidden_by == 1  # where objects overlapped in frame k, the top one's motion is taken
                rx, ry = xs + flow[0], ys + flow[1]
                uncovered += int(left.sum())
                inside = (rx > kx1 + 1) & (rx < kx2 - 1) & (ry > ky1 + 1) & (ry < ky2 - 1)  # deeper than a pixel
                reads_object += int((left & inside).sum())
    assert len(objects_gt) >= 8 and uncovered > 500
    # median over objects: a box's flow is not its pixels' where the sprite is transparent, occluded or cut
    assert np.median(objects_gt) < 0.3 * np.median(objects_camera), (objects_gt, objects_camera)
    assert reads_object == 0  # the background an object left reads background in frame k, not the object
    v = made.videos[0]
    assert np.array_equal(ground_truth_flow(v, 5, 5), np.zeros((2, 192, 320), np.float32))
    v.camera = []
    with pytest.raises(DatasetError, match="no camera record"):
        ground_truth_flow(v, 1, 0)


def _tree_digest(root: Path) -> str:
    """SHA-256 over every file's relative path and bytes, in path order."""
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def test_standard_split_unchanged_by_the_varied_style(tmp_path):
    """The digest of a small standard set (frames, XML, lists, ground truth), taken from the generator before the
    varied style existed: the standard split stays byte for byte what the bundled model was measured on."""
    make_synthetic(tmp_path, videos=2, val_videos=2, frames=20, det_images=2, seed=5, progress=False)
    assert _tree_digest(tmp_path) == STANDARD_DIGEST


def test_varied_split_has_cuts_stop_and_go_zoom_and_entering_objects(tmp_path):
    made = make_synthetic(
        tmp_path, videos=0, val_videos=6, frames=60, det_images=0, seed=2, style="varied", progress=False
    )
    cuts = [c for v in made.videos for c in v.cuts]
    assert len(cuts) >= 3 and all(12 <= c <= 48 for c in cuts)
    assert all(max(v.zoom) > 1.05 for v in made.videos)
    assert sum(tr.frames[0] > 0 for v in made.videos for tr in v.tracks) >= 6  # objects entering mid-shot
    v = next(v for v in made.videos if v.cuts)
    c = v.cuts[0]
    before = {tr.trackid for tr in v.tracks if c - 1 in tr.frames}
    after = {tr.trackid for tr in v.tracks if c in tr.frames}
    assert before and after and not before & after  # a cut: no object continues across it
    read = [
        cv2.imread(str(tmp_path / "Data" / "VID" / v.name / f"{t:06d}.JPEG")).astype(np.float32)
        for t in (c - 2, c - 1, c)
    ]
    assert np.abs(read[2] - read[1]).mean() > 3 * np.abs(read[1] - read[0]).mean()
    with pytest.raises(DatasetError, match="varied"):
        ground_truth_flow(v, 1, 0)
    again = load_ground_truth(tmp_path)
    assert [x.cuts for x in again.videos] == [x.cuts for x in made.videos]
    with pytest.raises(InputError, match="style"):
        make_synthetic(tmp_path / "x", videos=0, val_videos=1, frames=20, det_images=0, style="wild", progress=False)
