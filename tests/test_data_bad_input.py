"""Bad inputs give one-line DatasetErrors naming the file and record, and never a half-written JSON."""

import json
import random

import cv2
import numpy as np
import pytest

from dff.config import preset
from dff.data.cocovid import CocoVID
from dff.data.convert import convert_dataset
from dff.data.train_dataset import PairDataset
from dff.errors import DatasetError
from dff.io.image import read_image

CAR, ZEBRA, PERSON = "n02958343", "n02391049", "n00007846"


def _obj(wnid, box, trackid=None):
    track = "" if trackid is None else f"<trackid>{trackid}</trackid><occluded>0</occluded><generated>0</generated>"
    x1, y1, x2, y2 = box
    return (
        f"<object>{track}<name>{wnid}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
        f"<ymax>{y2}</ymax></bndbox></object>"
    )


def _xml(objects, w=64, h=48):
    return f"<annotation><size><width>{w}</width><height>{h}</height></size>{''.join(objects)}</annotation>"


def _tree(root, val_frames):
    """A hand-written ILSVRC root: one val video whose frames hold the given <object> lists, one DET image."""
    name = "val/ILSVRC2015_val_00000000"
    for t, objects in enumerate(val_frames):
        for kind, ext, content in (("Annotations", "xml", _xml(objects)), ("Data", "JPEG", None)):
            path = root / kind / "VID" / name / f"{t:06d}.{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            if content is None:
                cv2.imwrite(str(path), np.zeros((48, 64, 3), np.uint8))
            else:
                path.write_text(content)
    (root / "Lists").mkdir(parents=True, exist_ok=True)
    (root / "Lists" / "VID_val_videos.txt").write_text(f"{name} 1 0 {len(val_frames)}\n")
    det = "train/ILSVRC2014_train_0000/ILSVRC2014_train_00000001"
    for kind in ("Annotations", "Data"):
        (root / kind / "DET" / det).parent.mkdir(parents=True, exist_ok=True)
    (root / "Annotations" / "DET" / f"{det}.xml").write_text(
        _xml([_obj(ZEBRA, (1, 2, 30, 40)), _obj(PERSON, (5, 5, 9, 9))])
    )
    cv2.imwrite(str(root / "Data" / "DET" / f"{det}.JPEG"), np.zeros((48, 64, 3), np.uint8))
    (root / "Lists" / "DET_train_30classes.txt").write_text(f"{det} 1\n")
    return root / "Annotations" / "VID" / name


def _no_json_left(out):
    return not out.exists() or list(out.iterdir()) == []


def test_truncated_xml_names_the_file_and_writes_nothing(tmp_path):
    ann_dir = _tree(tmp_path, [[_obj(CAR, (1, 1, 20, 20), 0)]] * 3)
    bad = ann_dir / "000001.xml"
    bad.write_text(bad.read_text()[:40])
    out = tmp_path / "annotations"
    with pytest.raises(DatasetError, match=r"000001\.xml: malformed XML"):
        convert_dataset(tmp_path, parts=("vid_val",), progress=False)
    assert _no_json_left(out)


def test_existing_json_is_not_replaced_by_a_failed_run(tmp_path):
    ann_dir = _tree(tmp_path, [[_obj(CAR, (1, 1, 20, 20), 0)]] * 2)
    (path,) = convert_dataset(tmp_path, parts=("vid_val",), progress=False)
    before = path.read_text()
    (ann_dir / "000001.xml").write_text("<annotation><size><width>64</width></size></annotation>")
    with pytest.raises(DatasetError, match=r"000001\.xml: missing <height> in <size>"):
        convert_dataset(tmp_path, parts=("vid_val",), progress=False)
    assert path.read_text() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp file left


def test_unknown_wnid_is_skipped_in_vid_and_is_category_31_in_det(tmp_path):
    _tree(
        tmp_path,
        [
            [_obj(PERSON, (1, 1, 9, 9), 0), _obj(CAR, (2, 3, 22, 13), 1)],
            [_obj(PERSON, (1, 1, 9, 9), 0), _obj(CAR, (3, 3, 23, 13), 1)],
        ],
    )
    vid_path, det_path = convert_dataset(tmp_path, parts=("vid_val", "det"), progress=False)
    anns = json.loads(vid_path.read_text())["annotations"]
    assert [(a["category_id"], a["instance_id"], a["bbox"]) for a in anns] == [
        (7, 1, [2, 3, 20, 10]),
        (7, 1, [3, 3, 20, 10]),
    ]  # the skipped person consumed no instance id
    det = json.loads(det_path.read_text())["annotations"]
    assert [(a["category_id"], a["bbox"], a["area"]) for a in det] == [
        (30, [1, 2, 29, 38], 1102),
        (31, [5, 5, 4, 4], 16),
    ]


def test_missing_image_names_the_file(tmp_path):
    _tree(tmp_path, [[_obj(CAR, (1, 1, 20, 20), 0)]] * 2)
    (tmp_path / "Data" / "VID" / "val" / "ILSVRC2015_val_00000000" / "000001.JPEG").unlink()
    with pytest.raises(DatasetError, match=r"ILSVRC2015_val_00000000/000001\.JPEG: image file is missing"):
        convert_dataset(tmp_path, parts=("vid_val",), progress=False)
    assert _no_json_left(tmp_path / "annotations")
    (path,) = convert_dataset(tmp_path, parts=("vid_val",), check_images=False, progress=False)
    assert len(json.loads(path.read_text())["images"]) == 2


def test_missing_xml_and_missing_trackid_name_the_file(tmp_path):
    ann_dir = _tree(tmp_path, [[_obj(CAR, (1, 1, 20, 20), 0)]] * 2)
    (ann_dir / "000001.xml").write_text(_xml([_obj(CAR, (1, 1, 20, 20))]))
    with pytest.raises(DatasetError, match=r"000001\.xml: <object> #0 \(n02958343\) has no <trackid>"):
        convert_dataset(tmp_path, parts=("vid_val",), progress=False)
    (ann_dir / "000001.xml").unlink()
    with pytest.raises(DatasetError, match=r"000001\.xml: annotation file is missing"):
        convert_dataset(tmp_path, parts=("vid_val",), progress=False)


def test_empty_video_is_an_error(tmp_path):
    _tree(tmp_path, [[_obj(CAR, (1, 1, 20, 20), 0)]])
    (tmp_path / "Lists" / "VID_val_videos.txt").write_text("val/ILSVRC2015_val_00000000 1 0 0\n")
    with pytest.raises(DatasetError, match="video val/ILSVRC2015_val_00000000 has 0 frames"):
        convert_dataset(tmp_path, parts=("vid_val",), progress=False)
    data = _coco()
    data["videos"].append({"id": 2, "name": "empty"})
    with pytest.raises(DatasetError, match=r"video 2 \(empty\) has no frames"):
        CocoVID(data, "x.json")


def _coco():
    return {
        "categories": [{"id": 1, "name": "car"}],
        "videos": [{"id": 1, "name": "v"}],
        "images": [
            {"id": 10 + i, "file_name": f"v/{i}.jpg", "width": 64, "height": 48, "video_id": 1, "frame_id": i}
            for i in range(3)
        ],
        "annotations": [{"id": 5, "image_id": 11, "category_id": 1, "bbox": [1, 2, 10, 10], "instance_id": 1}],
    }


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["annotations"][0].update(image_id=99), r"x\.json: annotation 5 refers to unknown image_id 99"),
        (lambda d: d["images"][1].update(video_id=4), r"image 11 \(v/1\.jpg\) has unknown video_id 4"),
        (lambda d: d["images"][2].update(frame_id=5), r"video 1 \(v\) has a frame_id gap: frame 2 is missing"),
        (lambda d: d["images"][2].update(frame_id=1), r"image 12 \(v/2\.jpg\) repeats frame_id 1 of video 1"),
        (
            lambda d: d["annotations"][0].update(bbox=[60, 2, 10, 10]),
            r"annotation 5 box \[60, 2, 10, 10\] lies "
            r"outside image 11 \(v/1\.jpg, 64x48\)",
        ),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, 10]), r"annotation 5 has malformed bbox"),
        (lambda d: d["annotations"][0].update(category_id=3), r"annotation 5 has unknown category_id 3"),
        (lambda d: d["images"].append(dict(d["images"][0])), r"duplicate image id 10"),
        (lambda d: d["images"][0].pop("width"), r"image 10 lacks field\(s\) width"),
    ],
)
def test_invalid_cocovid_names_the_record(edit, message):
    data = _coco()
    CocoVID(data, "x.json")
    edit(data)
    with pytest.raises(DatasetError, match=message):
        CocoVID(data, "x.json")


def test_unreadable_json_and_images(tmp_path):
    with pytest.raises(DatasetError, match="annotation JSON is missing"):
        CocoVID.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text('{"images": [')
    with pytest.raises(DatasetError, match=r"bad\.json: malformed JSON"):
        CocoVID.load(tmp_path / "bad.json")
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=r"bad\.jpg: not a decodable image"):
        read_image(tmp_path / "bad.jpg", DatasetError)
    with pytest.raises(DatasetError, match=r"gone\.jpg: image file is missing"):
        read_image(tmp_path / "gone.jpg", DatasetError)


def test_training_sample_with_missing_image_names_it(tmp_path):
    data = _coco()
    for img in data["images"]:  # tall enough for min_img_size 32
        img["width"] = img["height"] = 64
    ds = PairDataset(CocoVID(data, "x.json"), tmp_path, preset("tiny_synthetic"), rng=random.Random(0))
    assert len(ds) == 1
    with pytest.raises(DatasetError, match=r"v/1\.jpg: image file is missing"):
        ds[0]
