"""Hostile annotation files through the commands that read them: one `dff: error:` line naming the file and the
problem, exit 2, nothing written (not UTF-8, `inf` ids and frames, NaN coordinates, sizes no video has, ...); and
YOLO class names from Ultralytics' dataset YAML."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from dff.cli.main import main
from dff.data.cocovid import CocoVID
from dff.data.formats.common import read_names
from dff.errors import DatasetError
from tests.test_data_bad_input import _tree


def cvat(box: str = 'xtl="1" ytl="2" xbr="10" ybr="20"', size: str = "2", head: str = "", task: str = "") -> str:
    return (
        f"{head}<annotations><meta><task><size>{size}</size>{task}<labels><label><name>car</name></label></labels>"
        "<original_size><width>64</width><height>48</height></original_size></task></meta>"
        f'<track id="0" label="car"><box frame="0" keyframe="1" outside="0" occluded="0" {box}/></track></annotations>'
    )


SEQINFO = "[Sequence]\nname=seq1\nimDir=img1\nseqLength=2\nimWidth=64\nimHeight=48\nimExt=.jpg\n"
GT = "1,1,1,2,10,10,1,1,1.0\n"
LABEL = "0 0.5 0.5 0.25 0.25\n"


def make_sources(root: Path, files: dict[str, str | bytes]) -> None:
    """street1.xml, a MOT sequence MOT/seq1, a YOLO folder labels/street1 with two images and names.txt, each
    replaced by `files` where given (text or bytes)."""
    labels = root / "labels" / "street1"
    labels.mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(labels / f"{i:06d}.jpg"), np.zeros((48, 64, 3), np.uint8))
    (root / "MOT" / "seq1" / "gt").mkdir(parents=True)
    defaults = {
        "street1.xml": cvat(),
        "MOT/seq1/seqinfo.ini": SEQINFO,
        "MOT/seq1/gt/gt.txt": GT,
        "labels/street1/000000.txt": LABEL,
        "names.txt": "car\n",
    }
    for name, content in {**defaults, **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())


FROM = {
    "cvat": ["--from", "cvat-video", "street1.xml"],
    "mot": ["--from", "mot", "MOT/seq1"],
    "yolo": ["--from", "yolo", "labels/street1", "--names", "names.txt"],
    "yolo-yaml": ["--from", "yolo", "labels/street1", "--names", "data.yaml"],
}

CONVERT_CASES = [
    # (id, input format, files, the error's file, what it says)
    ("xml-unknown-encoding", "cvat", {"street1.xml": cvat(head='<?xml version="1.0" encoding="bogus"?>')},
     "street1.xml", "malformed XML (unknown encoding: bogus)"),
    ("cvat-nan", "cvat", {"street1.xml": cvat('xtl="nan" ytl="2" xbr="10" ybr="20"')},
     "street1.xml", "track 0: the <box> on frame 0 has xtl=nan"),
    ("cvat-inf", "cvat", {"street1.xml": cvat('xtl="1" ytl="2" xbr="inf" ybr="20"')},
     "street1.xml", "track 0: the <box> on frame 0 has xbr=inf"),
    ("cvat-inverted", "cvat", {"street1.xml": cvat('xtl="10" ytl="2" xbr="1" ybr="20"')},
     "street1.xml", "the <box> on frame 0 has xbr < xtl or ybr < ytl"),
    ("cvat-huge-size", "cvat", {"street1.xml": cvat(size="1000000000")},
     "street1.xml", "the task has 1000000000 frames, more than 1000000"),
    ("cvat-odd-step", "cvat", {"street1.xml": cvat(task="<frame_filter>step=\u00b2</frame_filter>")},
     "street1.xml", "unsupported <frame_filter> 'step=\u00b2' (want step=N)"),
    ("mot-gt-latin1", "mot", {"MOT/seq1/gt/gt.txt": b"1,1,1,2,10,10,1,1,1.0 # caf\xe9\n"},
     "MOT/seq1/gt/gt.txt", "not UTF-8 text (byte 0xe9 at offset 27)"),
    ("mot-seqinfo-latin1", "mot", {"MOT/seq1/seqinfo.ini": SEQINFO.encode() + b"; caf\xe9\n"},
     "MOT/seq1/seqinfo.ini", "not UTF-8 text"),
    ("mot-id-inf", "mot", {"MOT/seq1/gt/gt.txt": "1,inf,1,2,10,10,1,1,1.0\n"},
     "MOT/seq1/gt/gt.txt", "line 1 has a value that is not finite: '1,inf,1,2,10,10,1,1,1.0'"),
    ("mot-frame-inf", "mot", {"MOT/seq1/gt/gt.txt": GT + "inf,2,1,2,10,10,1,1,1.0\n"},
     "MOT/seq1/gt/gt.txt", "line 2 has a value that is not finite"),
    ("mot-nan-left", "mot", {"MOT/seq1/gt/gt.txt": "1,1,nan,2,10,10,1,1,1.0\n"},
     "MOT/seq1/gt/gt.txt", "line 1 has a value that is not finite"),
    ("mot-nan-visibility", "mot", {"MOT/seq1/gt/gt.txt": "1,1,1,2,10,10,1,1,nan\n"},
     "MOT/seq1/gt/gt.txt", "line 1 has a value that is not finite"),
    ("mot-negative-size", "mot", {"MOT/seq1/gt/gt.txt": "1,1,1,2,-10,10,1,1,1.0\n"},
     "MOT/seq1/gt/gt.txt", "line 1: negative box size -10x10"),
    ("mot-huge-length", "mot", {"MOT/seq1/seqinfo.ini": SEQINFO.replace("seqLength=2", "seqLength=999999999999")},
     "MOT/seq1/seqinfo.ini", "seqLength 999999999999 is more than 1000000 frames"),
    ("yolo-label-latin1", "yolo", {"labels/street1/000000.txt": b"0 0.5 0.5 0.25 0.25 \xff\n"},
     "labels/street1/000000.txt", "not UTF-8 text (byte 0xff at offset 20)"),
    ("yolo-nan", "yolo", {"labels/street1/000000.txt": "0 nan 0.5 0.25 0.25\n"},
     "labels/street1/000000.txt", "line 1: cx cy w h must be fractions of the image, 0 to 1: '0 nan 0.5 0.25 0.25'"),
    ("yolo-pixels", "yolo", {"labels/street1/000000.txt": "0 32 24 16 12\n"},
     "labels/street1/000000.txt", "line 1: cx cy w h must be fractions of the image, 0 to 1"),
    ("names-latin1", "yolo", {"names.txt": b"caf\xe9\n"}, "names.txt", "not UTF-8 text (byte 0xe9 at offset 3)"),
    ("names-key-value", "yolo", {"names.txt": "car\nbus: 1\n"},
     "names.txt", "line 2 reads like YAML ('bus: 1'), not a class name"),
    ("names-yaml-in-txt", "yolo", {"names.txt": "path: .\ntrain: images\n"},
     "names.txt", "a YAML file without 'names' is not a class names file"),
    ("yaml-without-names", "yolo-yaml", {"data.yaml": "path: .\nnc: 1\n"},
     "data.yaml", "a YAML file without 'names' is not a class names file"),
    ("yaml-nc-differs", "yolo-yaml", {"data.yaml": "nc: 3\nnames: [car, bus]\n"},
     "data.yaml", "nc is 3 but 'names' lists 2 classes"),
    ("yaml-keys-from-1", "yolo-yaml", {"data.yaml": "names:\n  1: car\n  2: bus\n"},
     "data.yaml", "'names' must be numbered 0..1, got keys 1, 2"),
    ("yaml-a-string", "yolo-yaml", {"data.yaml": "names: car bus\n"},
     "data.yaml", "'names' must be a list or {index: name}, got str"),
    ("yaml-unquoted-yes", "yolo-yaml", {"data.yaml": "names: [yes, no]\n"},
     "data.yaml", "class 0 in 'names' is True, not a name (quote it in the YAML)"),
    ("yaml-malformed", "yolo-yaml", {"data.yaml": "names: [car\n"}, "data.yaml", "malformed YAML"),
]  # fmt: skip


@pytest.mark.parametrize(
    "fmt, files, where, message", [c[1:] for c in CONVERT_CASES], ids=[c[0] for c in CONVERT_CASES]
)
def test_convert_annotations_refuses_a_bad_file_in_one_line(tmp_path, capsys, monkeypatch, fmt, files, where, message):
    make_sources(tmp_path, files)
    monkeypatch.chdir(tmp_path)
    assert main(["convert-annotations", *FROM[fmt], "--out", "out.json"]) == 2
    err = capsys.readouterr().err
    assert err == f"dff: error: {where}: {message}\n" or (err.startswith(f"dff: error: {where}: ") and message in err)
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out.json").exists()


def test_mot_seqinfo_may_hold_a_percent_sign(tmp_path, capsys, monkeypatch):
    make_sources(tmp_path, {"MOT/seq1/seqinfo.ini": SEQINFO.replace("imDir=img1", "imDir=img%1")})
    monkeypatch.chdir(tmp_path)
    assert main(["convert-annotations", *FROM["mot"], "--out", "out.json"]) == 0
    assert json.loads((tmp_path / "out.json").read_text())["images"][0]["file_name"] == "seq1/img%1/000001.jpg"


# -- YOLO class names from Ultralytics' data.yaml ---------------------------------------------------------------

ULTRALYTICS_DICT = "path: ../datasets/street\ntrain: images/train\nval: images/val\n\nnames:\n  0: car\n  1: bus\n"
ULTRALYTICS_LIST = "path: .\ntrain: images\nval: images\nnc: 2\nnames: ['car', 'bus']\n"


@pytest.mark.parametrize("yaml_text", [ULTRALYTICS_DICT, ULTRALYTICS_LIST], ids=["dict", "list"])
def test_yolo_names_from_ultralytics_data_yaml(tmp_path, capsys, monkeypatch, yaml_text):
    make_sources(tmp_path, {"labels/street1/000000.txt": "1 0.5 0.5 0.25 0.25\n0 0.25 0.25 0.5 0.5\n"})
    (tmp_path / "data.yaml").write_text(yaml_text)
    monkeypatch.chdir(tmp_path)
    assert main(["convert-annotations", *FROM["yolo-yaml"], "--out", "out.json"]) == 0
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["categories"] == [{"id": 1, "name": "car"}, {"id": 2, "name": "bus"}]
    name = {c["id"]: c["name"] for c in data["categories"]}
    boxes = [(name[a["category_id"]], a["bbox"]) for a in data["annotations"]]
    assert boxes == [("bus", [24.0, 18.0, 16.0, 12.0]), ("car", [0.0, 0.0, 32.0, 24.0])]
    assert "classes car, bus" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text, names",
    [
        ("car\ntraffic light\n\nbus\n", ["car", "traffic light", "bus"]),
        ("\ufeffcar\nbus\n", ["car", "bus"]),  # a byte-order mark (Windows' Notepad)
        ("person\n", ["person"]),
        ("yes\nno\n", ["yes", "no"]),  # YAML would read booleans; one per line reads names
        ("names:\n- car\n- bus\n", ["car", "bus"]),  # a dataset YAML whatever its name
    ],
)
def test_names_one_per_line(tmp_path, text, names):
    (tmp_path / "classes.txt").write_text(text, encoding="utf-8")
    assert read_names(tmp_path / "classes.txt") == names


# -- check-dataset, convert-dataset and the COCO-VID reader -------------------------------------------------------


def coco_vid(**edit: Callable[[dict], None]) -> dict:
    data = {
        "categories": [{"id": 1, "name": "car"}],
        "videos": [{"id": 1, "name": "v"}],
        "images": [
            {"id": i, "file_name": f"v/{i}.jpg", "height": 48, "width": 64, "video_id": 1, "frame_id": i}
            for i in range(2)
        ],
        "annotations": [{"id": 1, "image_id": 0, "category_id": 1, "instance_id": 1, "bbox": [1, 2, 10, 10]}],
    }
    for change in edit.values():
        change(data)
    return data


CHECK_CASES = [
    # (id, file content, what `dff check-dataset` says: an error line, or a finding of its report)
    ("not-utf8", b'{"categories": [], "note": "caf\xe9"}', "not UTF-8 text (byte 0xe9 at offset 31)"),
    ("nested", b"[" * 100_000, "malformed JSON (nested too deeply)"),
    ("nan-bbox", coco_vid(a=lambda d: d["annotations"][0].update(bbox=[float("nan"), 2, 10, 10])),
     "malformed bbox [nan, 2, 10, 10]"),
    ("inf-bbox", coco_vid(a=lambda d: d["annotations"][0].update(bbox=[1, 2, float("inf"), 10])),
     "malformed bbox [1, 2, inf, 10]"),
    ("annotations-not-a-list", coco_vid(a=lambda d: d.update(annotations=5)), "'annotations' must be a list"),
    ("categories-not-a-list", coco_vid(a=lambda d: d.update(categories=5)), "missing list 'categories'"),
    ("image-id-a-list", coco_vid(a=lambda d: d["images"][1].update(id=[1])),
     "image id [1] is not a number or a string"),
    ("category-id-a-list", coco_vid(a=lambda d: d["annotations"][0].update(category_id=[])),
     "annotation 1 category_id [] is not a number or a string"),
    ("file-name-a-list", coco_vid(a=lambda d: d["images"][1].update(file_name=[1])), "image 1 has file_name [1]"),
    ("width-a-list", coco_vid(a=lambda d: d["images"][0].update(width=[1, 2])), "has invalid size [1, 2]x48"),
    ("area-a-string", coco_vid(a=lambda d: d["annotations"][0].update(area="big")), "malformed area 'big'"),
    ("name-a-number", coco_vid(a=lambda d: d["categories"][0].update(name=7)), "category 1 has name 7"),
]  # fmt: skip


@pytest.mark.parametrize("content, message", [c[1:] for c in CHECK_CASES], ids=[c[0] for c in CHECK_CASES])
def test_check_dataset_and_the_reader_on_a_hostile_file(tmp_path, capsys, content, message):
    ann = tmp_path / "ann.json"
    ann.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    assert main(["check-dataset", str(ann), "--img-root", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in err and message in out + err
    assert err == "" or err == f"dff: error: {ann}: {message}\n"
    with pytest.raises(DatasetError, match=f"^{ann}: ") as e:  # what `dff train` and `dff test` read it with
        CocoVID.load(ann)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("Lists/VID_val_videos.txt", b"val/ILSVRC2015_val_00000000 1 0 1 # \xe9\n", "not UTF-8 text (byte 0xe9"),
        (
            "Annotations/VID/val/ILSVRC2015_val_00000000/000000.xml",
            b'<?xml version="1.0" encoding="bogus"?><annotation/>',
            "malformed XML (unknown encoding: bogus)",
        ),
    ],
)
def test_convert_dataset_refuses_a_bad_file_in_one_line(tmp_path, capsys, name, content, message):
    _tree(tmp_path, [[]])
    (tmp_path / name).write_bytes(content)
    assert main(["convert-dataset", str(tmp_path), "--parts", "vid_val", "--no-progress"]) == 2
    assert capsys.readouterr().err.startswith(f"dff: error: {tmp_path / name}: {message}")
    assert not (tmp_path / "annotations").exists()
