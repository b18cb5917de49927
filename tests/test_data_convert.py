"""ILSVRC -> COCO-VID conversion: the JSON matches mmtracking's converters field by field (spec section 7)."""

import json

import pytest

from dff.classes import VID_CLASSES, VID_WNIDS
from dff.data.convert import DET_OUTPUT, VID_OUTPUTS, convert_dataset
from dff.data.synthetic import OTHER_WNID, make_synthetic

VIDEO_KEYS = ["id", "name", "vid_train_frames"]
VID_IMAGE_KEYS = ["file_name", "height", "width", "id", "frame_id", "video_id", "is_vid_train_frame"]
VID_ANN_KEYS = [
    "id",
    "video_id",
    "image_id",
    "category_id",
    "instance_id",
    "bbox",
    "area",
    "iscrowd",
    "occluded",
    "generated",
]
DET_IMAGE_KEYS = ["file_name", "height", "width", "id", "is_vid_train_frame"]
DET_ANN_KEYS = ["id", "image_id", "category_id", "bbox", "area", "iscrowd"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("ilsvrc")
    gt = make_synthetic(
        root,
        videos=3,
        val_videos=2,
        frames=24,
        det_images=12,
        width=192,
        height=112,
        seed=3,
        overwrite=True,
        progress=False,
    )
    convert_dataset(root, progress=False)
    out = {
        name: (root / "annotations" / f).read_text()
        for name, f in (("train", VID_OUTPUTS["train"]), ("val", VID_OUTPUTS["val"]), ("det", DET_OUTPUT))
    }
    return root, gt, out


def test_top_level_key_order_and_json_formatting(converted):
    _, _, out = converted
    for name, text in out.items():
        data = json.loads(text)
        expected = (
            ["categories", "images", "annotations"]
            if name == "det"
            else ["categories", "videos", "images", "annotations"]
        )
        assert list(data) == expected
        assert text == json.dumps(data)  # mmcv.dump == json.dump with default separators, no indent


def test_vid_categories_are_the_30_classes(converted):
    cats = json.loads(converted[2]["val"])["categories"]
    assert [list(c) for c in cats] == [["id", "name", "encode_name"]] * 30
    assert [(c["id"], c["name"], c["encode_name"]) for c in cats] == [
        (i + 1, n, w) for i, (n, w) in enumerate(zip(VID_CLASSES, VID_WNIDS))
    ]


@pytest.mark.parametrize("split", ["train", "val"])
def test_vid_records_field_by_field(converted, split):
    root, gt, out = converted
    data = json.loads(out[split])
    videos = [v for v in gt.videos if v.split == split]
    assert [list(v) for v in data["videos"]] == [VIDEO_KEYS] * len(videos)
    assert [v["id"] for v in data["videos"]] == list(range(1, len(videos) + 1))
    assert [v["name"] for v in data["videos"]] == [v.name for v in videos]
    lines = [line.split() for line in (root / "Lists" / "VID_train_15frames.txt").read_text().splitlines()]
    for rec, v in zip(data["videos"], videos):
        listed = [int(f[2]) - 1 for f in lines if f[0] == v.name]
        assert rec["vid_train_frames"] == listed == v.train_frames
        assert len(listed) == (15 if split == "train" else 0)
    images = data["images"]
    assert all(list(img) == VID_IMAGE_KEYS for img in images)
    assert [img["id"] for img in images] == list(range(1, len(images) + 1))
    expected = [(v.name, i + 1, f) for i, v in enumerate(videos) for f in range(v.num_frames)]
    assert [(img["file_name"], img["video_id"], img["frame_id"]) for img in images] == [
        (f"{n}/{f:06d}.JPEG", vid, f) for n, vid, f in expected
    ]
    assert all((img["width"], img["height"]) == (192, 112) for img in images)
    train_frames = {rec["id"]: set(rec["vid_train_frames"]) for rec in data["videos"]}
    assert [img["is_vid_train_frame"] for img in images] == [
        img["frame_id"] in train_frames[img["video_id"]] for img in images
    ]
    assert sum(img["is_vid_train_frame"] for img in images) == (15 * len(videos) if split == "train" else 0)
    by_id = {img["id"]: img for img in images}
    anns = data["annotations"]
    assert anns and all(list(a) == VID_ANN_KEYS for a in anns)
    assert [a["id"] for a in anns] == list(range(1, len(anns) + 1))
    assert [a["image_id"] for a in anns] == sorted(a["image_id"] for a in anns)
    for a in anns:
        x1, y1, w, h = a["bbox"]
        assert all(type(v) is int for v in a["bbox"]) and w > 0 and h > 0
        assert a["area"] == w * h and a["iscrowd"] is False
        assert type(a["occluded"]) is bool and type(a["generated"]) is bool
        assert a["video_id"] == by_id[a["image_id"]]["video_id"]
        assert 1 <= a["category_id"] <= 30
    # instance ids: 1.. in first-seen (video, trackid) order, never shared between videos
    seen = []
    for a in anns:
        if a["instance_id"] not in seen:
            seen.append(a["instance_id"])
    assert seen == list(range(1, len(seen) + 1))
    assert len({(a["video_id"], a["instance_id"]) for a in anns}) == len(seen)


def test_det_records_field_by_field(converted):
    root, gt, out = converted
    data = json.loads(out["det"])
    cats = data["categories"]
    assert len(cats) == 31 and cats[30] == {"id": 31, "name": "other_categeries", "encode_name": None}
    assert list(cats[30]) == ["id", "name", "encode_name"]
    listed = (root / "Lists" / "DET_train_30classes.txt").read_text().split("\n")
    listed = [line.split()[0] + ".JPEG" for line in listed if line]
    images = data["images"]
    assert all(list(img) == DET_IMAGE_KEYS for img in images)
    assert [img["id"] for img in images] == list(range(1, len(images) + 1))
    # listed images first, in list order; then the rest, 2013 subset before 2014, each sorted
    assert [img["file_name"] for img in images[: len(listed)]] == listed
    assert all(img["is_vid_train_frame"] for img in images[: len(listed)])
    rest = images[len(listed) :]
    assert rest and not any(img["is_vid_train_frame"] for img in rest)
    expected_rest = sorted(f"{d.name}.JPEG" for d in gt.det_images if not d.listed and "2013" in d.name) + sorted(
        f"{d.name}.JPEG" for d in gt.det_images if not d.listed and "2014" in d.name
    )
    assert [img["file_name"] for img in rest] == expected_rest
    anns = data["annotations"]
    assert all(list(a) == DET_ANN_KEYS for a in anns)
    assert [a["id"] for a in anns] == list(range(1, len(anns) + 1))
    by_name = {f"{d.name}.JPEG": d for d in gt.det_images}
    wnid_to_cat = {w: i + 1 for i, w in enumerate(VID_WNIDS)}
    for img in images:
        d = by_name[img["file_name"]]
        assert (img["width"], img["height"]) == (d.width, d.height)
        got = [(a["category_id"], a["bbox"], a["area"], a["iscrowd"]) for a in anns if a["image_id"] == img["id"]]
        want = []
        for o in d.objects:
            x1, y1, x2, y2 = o["box"]
            want.append((wnid_to_cat.get(o["wnid"], 31), [x1, y1, x2 - x1, y2 - y1], (x2 - x1) * (y2 - y1), False))
        assert got == want
    assert any(a["category_id"] == 31 for a in anns)
    assert OTHER_WNID not in VID_WNIDS


def test_duplicate_det_list_entries_become_two_images(converted, tmp_path):
    root, _, _ = converted
    lst = root / "Lists" / "DET_train_30classes.txt"
    first = lst.read_text().split("\n")[0]
    copy = tmp_path / "root"
    copy.mkdir()
    for sub in ("Annotations", "Data"):
        (copy / sub).symlink_to(root / sub)
    (copy / "Lists").mkdir()
    (copy / "Lists" / "DET_train_30classes.txt").write_text(f"{first}\n{first}\n")
    (path,) = convert_dataset(copy, tmp_path / "out", parts=("det",), progress=False)
    images = json.loads(path.read_text())["images"]
    assert [img["file_name"] for img in images[:2]] == [first.split()[0] + ".JPEG"] * 2
    assert [img["is_vid_train_frame"] for img in images[:3]] == [True, True, False]
