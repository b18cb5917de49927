"""Synthetic tree -> convert -> CocoVID reader gives back exactly what the generator drew."""

import math

import numpy as np
import pytest

from dff.classes import VID_WNIDS
from dff.data.cocovid import CocoVID, motion_iou
from dff.data.convert import convert_dataset
from dff.data.synthetic import load_ground_truth, make_synthetic
from dff.io.image import read_image


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("roundtrip")
    make_synthetic(
        root, videos=3, val_videos=2, frames=30, det_images=6, width=224, height=128, seed=11, progress=False
    )
    convert_dataset(root, progress=False)
    return root


@pytest.mark.parametrize("split", ["train", "val"])
def test_boxes_track_ids_and_frame_order_round_trip(tree, split):
    gt = load_ground_truth(tree)
    coco = CocoVID.load(tree / "annotations" / f"imagenet_vid_{split}.json")
    videos = [v for v in gt.videos if v.split == split]
    assert [v["name"] for v in coco.videos] == [v.name for v in videos]
    next_instance = 1
    for (_video, frames), want in zip(coco.iter_videos(), videos):
        assert [f["frame_id"] for f in frames] == list(range(want.num_frames))
        assert [f["file_name"] for f in frames] == [f"{want.name}/{t:06d}.JPEG" for t in range(want.num_frames)]
        drawn = {}  # (frame, trackid) -> (wnid, box, occluded, generated)
        first_seen = []
        for tr in want.tracks:
            for t, box, occ, gen in zip(tr.frames, tr.boxes, tr.occluded, tr.generated):
                drawn[(t, tr.trackid)] = (tr.wnid, box, occ, gen)
        for t in range(want.num_frames):  # XML order within a frame is trackid order
            first_seen += [k for (f, k) in sorted(drawn) if f == t and k not in first_seen]
        expected_ids = {k: next_instance + i for i, k in enumerate(first_seen)}
        next_instance += len(first_seen)
        got = {}
        for img in frames:
            for a in coco.annotations(img["id"]):
                x1, y1, w, h = a["bbox"]
                trackid = {v: k for k, v in expected_ids.items()}[a["instance_id"]]
                got[(img["frame_id"], trackid)] = (
                    VID_WNIDS[a["category_id"] - 1],
                    [x1, y1, x1 + w, y1 + h],
                    a["occluded"],
                    a["generated"],
                )
        assert got == drawn
        assert len(drawn) > 0


def test_frames_on_disk_match_json_sizes(tree):
    coco = CocoVID.load(tree / "annotations" / "imagenet_vid_val.json")
    video, frames = next(coco.iter_videos())
    img = read_image(tree / "Data" / "VID" / frames[0]["file_name"])
    assert img.shape == (frames[0]["height"], frames[0]["width"], 3) == (128, 224, 3)
    assert img.dtype == np.uint8


def test_reader_accessors(tree):
    coco = CocoVID.load(tree / "annotations" / "imagenet_vid_train.json")
    assert coco.is_video and len(coco.categories) == 30
    vid = coco.videos[1]
    frames = coco.frames(vid["id"])
    assert all(coco.image(f["id"]) is f for f in frames)
    assert coco.video(vid["id"]) is vid
    assert sum(len(coco.annotations(img["id"])) for img in coco.images) == len(coco.all_annotations())
    assert coco.annotations(-5) == []
    det = CocoVID.load(tree / "annotations" / "imagenet_det_30plus1cls.json")
    assert not det.is_video and len(det.categories) == 31


def test_motion_iou_of_hand_made_tracks():
    data = {
        "categories": [{"id": 1, "name": "car"}],
        "videos": [{"id": 1, "name": "v"}],
        "images": [
            {"id": i + 1, "file_name": f"{i}.jpg", "width": 400, "height": 100, "video_id": 1, "frame_id": i}
            for i in range(25)
        ],
        "annotations": [],
    }
    aid = 1
    for i in range(25):  # instance 1 static; instance 2 moves 2 px/frame with a 40-px box; instance 3 seen once
        for inst, x in ((1, 0), (2, 2 * i)):
            data["annotations"].append(
                {"id": aid, "image_id": i + 1, "category_id": 1, "instance_id": inst, "bbox": [x, 0, 40, 40]}
            )
            aid += 1
    data["annotations"].append({"id": aid, "image_id": 1, "category_id": 1, "instance_id": 3, "bbox": [300, 0, 20, 20]})
    miou = motion_iou(CocoVID(data))
    assert miou[1] == 1.0  # static
    # instance 2 at frame 12: neighbours at distance k = 1..10 on both sides, IoU (40-2k)/(40+2k)
    expected = np.mean([(40 - 2 * k) / (40 + 2 * k) for k in range(1, 11)])
    assert miou[2 * 12 + 2] == pytest.approx(expected)
    # frame 0 sees only frames 1..10
    assert miou[2] == pytest.approx(expected)
    assert math.isnan(miou[aid])


def test_motion_buckets_are_all_populated(tree):
    coco = CocoVID.load(tree / "annotations" / "imagenet_vid_train.json")
    m = np.array([v for v in motion_iou(coco).values() if not math.isnan(v)])
    fast, medium, slow = (m < 0.7).mean(), ((m >= 0.7) & (m <= 0.9)).mean(), (m > 0.9).mean()
    assert min(fast, medium, slow) > 0.1, (fast, medium, slow)
