"""Annotation converters (CVAT for video, MOTChallenge, YOLO) against the synthetic generator's own COCO-VID, and
`dff check-dataset` on a converted set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dff.classes import VID_CLASSES, VID_WNIDS
from dff.cli.main import main
from dff.data.cocovid import CocoVID
from dff.data.convert import convert_vid
from dff.data.formats import convert_annotations
from dff.data.formats.cvat import read_cvat_video
from dff.data.synthetic import SYNTHETIC_CLASSES, SyntheticSet, SyntheticVideo, make_synthetic
from dff.evaluation.evaluate import evaluate
from tests.conftest import frame_result

NAME_OF = dict(zip(VID_WNIDS, VID_CLASSES))
IMAGE_FIELDS = ("file_name", "height", "width", "id", "frame_id", "video_id")
ANN_FIELDS = ("id", "video_id", "image_id", "category_id", "instance_id", "bbox", "area", "iscrowd", "occluded")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[SyntheticSet, dict]:
    """Two 14-frame training videos and the generator's own COCO-VID (dff convert-dataset) for them."""
    root = tmp_path_factory.mktemp("synthetic")
    made = make_synthetic(root, videos=2, frames=14, val_videos=0, det_images=0, width=160, height=96, seed=11)
    return made, convert_vid(root, "train", progress=False)


def _runs(frames: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs (first, last) of sorted frame numbers."""
    runs: list[list[int]] = []
    for f in frames:
        if runs and f == runs[-1][1] + 1:
            runs[-1][1] = f
        else:
            runs.append([f, f])
    return [(a, b) for a, b in runs]


def write_cvat(video: SyntheticVideo, path: Path) -> None:
    """The video as CVAT's 'for video 1.1' export writes it: every frame of a track, outside after each run."""
    labels = "".join(f"<label><name>{n}</name><type>rectangle</type></label>" for n in VID_CLASSES)
    tracks = []
    for k, tr in enumerate(video.tracks):
        at = dict(zip(tr.frames, zip(tr.boxes, tr.occluded, tr.generated)))
        boxes = []
        for first, last in _runs(tr.frames):
            for f in range(first, last + 1):
                (x1, y1, x2, y2), occ, gen = at[f]
                boxes.append(
                    f'<box frame="{f}" keyframe="{int(not gen)}" outside="0" occluded="{int(occ)}" '
                    f'xtl="{x1:.2f}" ytl="{y1:.2f}" xbr="{x2:.2f}" ybr="{y2:.2f}" z_order="0"></box>'
                )
            if last + 1 < video.num_frames:
                x1, y1, x2, y2 = at[last][0]
                boxes.append(
                    f'<box frame="{last + 1}" keyframe="1" outside="1" occluded="0" '
                    f'xtl="{x1:.2f}" ytl="{y1:.2f}" xbr="{x2:.2f}" ybr="{y2:.2f}" z_order="0"></box>'
                )
        tracks.append(f'<track id="{k}" label="{NAME_OF[tr.wnid]}" source="manual">{"".join(boxes)}</track>')
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version><meta><task>'
        f"<id>1</id><name>{video.name}</name><size>{video.num_frames}</size><mode>interpolation</mode>"
        f"<start_frame>0</start_frame><stop_frame>{video.num_frames - 1}</stop_frame><frame_filter></frame_filter>"
        f"<labels>{labels}</labels><original_size><width>{video.width}</width><height>{video.height}</height>"
        f"</original_size></task></meta>{''.join(tracks)}</annotations>\n"
    )


def write_mot(video: SyntheticVideo, seq: Path) -> None:
    """The video as a MOTChallenge sequence: 1-based frames, ids from 1, class = VID index + 1, visibility."""
    (seq / "gt").mkdir(parents=True)
    (seq / "seqinfo.ini").write_text(
        f"[Sequence]\nname={seq.name}\nimDir=img1\nframeRate=25\nseqLength={video.num_frames}\n"
        f"imWidth={video.width}\nimHeight={video.height}\nimExt=.jpg\n"
    )
    lines = []
    for k, tr in enumerate(video.tracks, 1):
        cls = VID_CLASSES.index(NAME_OF[tr.wnid]) + 1
        for f, (x1, y1, x2, y2), occ in zip(tr.frames, tr.boxes, tr.occluded):
            lines.append(f"{f + 1},{k},{x1},{y1},{x2 - x1},{y2 - y1},1,{cls},{0.5 if occ else 1.0}\n")
    (seq / "gt" / "gt.txt").write_text("".join(lines))


def _names_file(tmp_path: Path) -> Path:
    path = tmp_path / "classes.txt"
    path.write_text("".join(f"{n}\n" for n in VID_CLASSES))
    return path


def assert_same(ours: dict, theirs: dict, image_fields: tuple[str, ...], ann_fields: tuple[str, ...]) -> None:
    """Field-by-field equality of two COCO-VID dicts, for the fields a format can express."""
    assert ours["categories"] == [{"id": c["id"], "name": c["name"]} for c in theirs["categories"]]
    assert [v["name"] for v in ours["videos"]] == [v["name"].rsplit("/", 1)[1] for v in theirs["videos"]]
    assert [v["id"] for v in ours["videos"]] == [v["id"] for v in theirs["videos"]]
    assert [{k: im[k] for k in image_fields} for im in ours["images"]] == [
        {k: im[k] for k in image_fields} for im in theirs["images"]
    ]
    assert len(ours["annotations"]) == len(theirs["annotations"]) > 20
    for a, b in zip(ours["annotations"], theirs["annotations"]):
        assert {k: a[k] for k in ann_fields} == {k: b[k] for k in ann_fields}


def test_cvat_video_equals_generator(synthetic, tmp_path):
    made, theirs = synthetic
    for v in made.videos:
        write_cvat(v, tmp_path / f"{v.name.rsplit('/', 1)[1]}.xml")
    xmls = sorted(tmp_path.glob("*.xml"))
    pattern = "train/ILSVRC2015_VID_train_0000/{video}/{frame:06d}.JPEG"
    ours = convert_annotations("cvat-video", xmls, tmp_path / "ann.json", file_pattern=pattern)
    assert_same(ours, theirs, IMAGE_FIELDS, ANN_FIELDS + ("generated",))
    assert sum(a["generated"] for a in ours["annotations"]) > 5 and any(a["occluded"] for a in ours["annotations"])
    assert json.loads((tmp_path / "ann.json").read_text()) == ours


def test_mot_equals_generator(synthetic, tmp_path):
    made, theirs = synthetic
    seqs = []
    for v in made.videos:
        seqs.append(tmp_path / v.name.rsplit("/", 1)[1])
        write_mot(v, seqs[-1])
    ours = convert_annotations("mot", seqs, tmp_path / "ann.json", names=_names_file(tmp_path))
    assert_same(ours, theirs, ("height", "width", "id", "frame_id", "video_id"), ANN_FIELDS)
    assert ours["images"][1]["file_name"] == f"{seqs[0].name}/img1/000002.jpg"
    assert not any(a["generated"] for a in ours["annotations"])
    assert {a["visibility"] for a in ours["annotations"]} == {0.5, 1.0}


def test_yolo_round_trip(synthetic, tmp_path):
    made, theirs = synthetic
    video = made.videos[0]
    img_dir = made.root / "Data" / "VID" / video.name
    labels = tmp_path / "labels" / img_dir.name
    labels.mkdir(parents=True)
    per_frame: dict[int, list[str]] = {}
    for tr in video.tracks:
        cls = SYNTHETIC_CLASSES.index(NAME_OF[tr.wnid])
        for f, (x1, y1, x2, y2) in zip(tr.frames, tr.boxes):
            cx, cy = (x1 + x2) / 2 / video.width, (y1 + y2) / 2 / video.height
            w, h = (x2 - x1) / video.width, (y2 - y1) / video.height
            per_frame.setdefault(f, []).append(f"{cls} {cx!r} {cy!r} {w!r} {h!r}\n")
    for f, lines in per_frame.items():
        (labels / f"{f:06d}.txt").write_text("".join(lines))
    names = tmp_path / "classes.txt"
    names.write_text("\n".join(SYNTHETIC_CLASSES) + "\n")
    shutil.copytree(img_dir, tmp_path / "images" / img_dir.name)  # Ultralytics' images/ beside labels/
    ours = convert_annotations("yolo", [labels], tmp_path / "ann.json", names=names)
    assert [c["name"] for c in ours["categories"]] == list(SYNTHETIC_CLASSES)
    assert [im["file_name"] for im in ours["images"]] == [f"{img_dir.name}/{t:06d}.JPEG" for t in range(14)]
    assert all((im["width"], im["height"]) == (160, 96) for im in ours["images"])
    expected = sorted(
        (f + 1, NAME_OF[tr.wnid], x1, y1, x2 - x1, y2 - y1)
        for tr in video.tracks
        for f, (x1, y1, x2, y2) in zip(tr.frames, tr.boxes)
    )
    name_of = {c["id"]: c["name"] for c in ours["categories"]}
    got = sorted((a["image_id"], name_of[a["category_id"]], *a["bbox"]) for a in ours["annotations"])
    assert got == expected
    assert [a["instance_id"] for a in ours["annotations"]] == list(range(1, len(expected) + 1))


def test_converted_ground_truth_scores_ap50_100(synthetic, tmp_path):
    made, _ = synthetic
    for v in made.videos:
        write_cvat(v, tmp_path / f"{v.name.rsplit('/', 1)[1]}.xml")
    convert_annotations("cvat-video", sorted(tmp_path.glob("*.xml")), tmp_path / "ann.json")
    dataset = CocoVID.load(tmp_path / "ann.json")
    classes = list(SYNTHETIC_CLASSES)
    label_of = {c["id"]: classes.index(c["name"]) for c in dataset.categories if c["name"] in classes}
    records = []
    for video, frames in dataset.iter_videos():
        for img in frames:
            anns = dataset.annotations(img["id"])
            boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], np.float32)
            records.append(
                frame_result(
                    video["id"],
                    img["id"],
                    img["frame_id"],
                    True,
                    boxes.reshape(-1, 4),
                    np.linspace(1.0, 0.5, len(anns), dtype=np.float32),
                    np.array([label_of[a["category_id"]] for a in anns], np.int64),
                )
            )
    results = evaluate(dataset, records, classes, metrics=("coco", "ilsvrc"))
    assert results["coco_ap50"].mean == pytest.approx(1.0)
    assert results["ilsvrc_ap50"].mean == pytest.approx(1.0)
    shifted = [
        frame_result(r.video_id, r.image_id, r.frame_index, True, r.boxes + 30, r.scores, r.labels) for r in records
    ]
    assert evaluate(dataset, shifted, classes, metrics=("coco",))["coco_ap50"].mean < 0.5


def _cvat_task(body: str, size: int = 10) -> str:
    return (
        f"<annotations><version>1.1</version><meta><task><size>{size}</size><labels><label><name>car</name></label>"
        f"</labels><original_size><width>100</width><height>80</height></original_size></task></meta>{body}"
        "</annotations>"
    )


def test_cvat_keyframes_only_are_interpolated(tmp_path):
    path = tmp_path / "clip.xml"
    path.write_text(
        _cvat_task(
            '<track id="0" label="car">'
            '<box frame="2" keyframe="1" outside="0" occluded="0" xtl="10" ytl="10" xbr="30" ybr="20"/>'
            '<box frame="6" keyframe="1" outside="0" occluded="1" xtl="30" ytl="10" xbr="50" ybr="28"/>'
            '<box frame="8" keyframe="1" outside="1" occluded="0" xtl="30" ytl="10" xbr="50" ybr="28"/>'
            "</track>"
        )
    )
    video = read_cvat_video(path)
    assert video.name == "clip" and video.file_names[3] == "clip/000003.jpg"
    got = {b.frame_id: (b.box, b.occluded, b.generated) for b in video.boxes}
    assert sorted(got) == [2, 3, 4, 5, 6, 7]
    assert got[2] == ((10.0, 10.0, 30.0, 20.0), False, False)
    assert got[4] == ((20.0, 10.0, 40.0, 24.0), False, True)  # halfway between the keyframes
    assert got[6] == ((30.0, 10.0, 50.0, 28.0), True, False)
    assert got[7] == ((30.0, 10.0, 50.0, 28.0), True, True)  # held until the outside box


def _run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cvat_images_flavour_is_refused(tmp_path, capsys):
    path = tmp_path / "images.xml"
    path.write_text(
        _cvat_task(
            '<image id="0" name="a.jpg" width="100" height="80"><box label="car" occluded="0" '
            'xtl="1" ytl="1" xbr="5" ybr="5"/></image>'
        )
    )
    out = tmp_path / "ann.json"
    code, _, err = _run_cli(["convert-annotations", "--from", "cvat-video", str(path), "--out", str(out)], capsys)
    assert code == 2 and not out.exists()
    assert err.count("\n") == 1 and err.startswith(f"dff: error: {path}: a 'CVAT for images' file")


def test_mot_wrong_column_count_is_refused(tmp_path, capsys):
    seq = tmp_path / "SEQ-01"
    (seq / "gt").mkdir(parents=True)
    (seq / "seqinfo.ini").write_text(
        "[Sequence]\nname=SEQ-01\nimDir=img1\nseqLength=5\nimWidth=64\nimHeight=48\nimExt=.jpg\n"
    )
    (seq / "gt" / "gt.txt").write_text("1,1,4,4,10,10,1,1,1.0\n2,1,5,4,10,10,1,1\n")
    out = tmp_path / "ann.json"
    code, _, err = _run_cli(["convert-annotations", "--from", "mot", str(seq), "--out", str(out)], capsys)
    assert code == 2 and not out.exists()
    gt = seq / "gt" / "gt.txt"
    want = "want 9 (frame, id, bb_left, bb_top, width, height, active, class, visibility)"
    assert err == f"dff: error: {gt}: line 2 has 8 columns, {want}\n"


def test_check_dataset_reports_what_training_refuses(synthetic, tmp_path, capsys):
    made, theirs = synthetic
    img_root = made.root / "Data" / "VID"
    good = tmp_path / "good.json"
    good.write_text(json.dumps(theirs))
    code, out, _ = _run_cli(["check-dataset", str(good), "--img-root", str(img_root)], capsys)
    assert code == 0 and out.strip().endswith("training would accept it")
    drawn = {a["category_id"] for a in theirs["annotations"]}
    assert f"warning: classes without boxes: {30 - len(drawn)} (first: " in out  # the 30 VID categories
    bad = json.loads(json.dumps(theirs))
    bad["images"][3]["file_name"] = "train/nowhere/000003.JPEG"
    bad["annotations"][0]["bbox"][2] = 0.5  # skipped by the trainer (w < 1)
    bad["annotations"][1]["id"] = bad["annotations"][2]["id"]
    bad_path = tmp_path / "bad.json"
    bad_path.write_text(json.dumps(bad))
    code, out, _ = _run_cli(["check-dataset", str(bad_path), "--img-root", str(img_root)], capsys)
    assert code == 2
    lines = out.splitlines()
    assert any(
        line.startswith("  error:   missing or unreadable images: 1 (first: train/nowhere/000003.JPEG")
        for line in lines
    )
    assert any(
        line.startswith(f"  error:   duplicate ids: 1 (first: annotation id {bad['annotations'][2]['id']}")
        for line in lines
    )
    assert any(line.startswith("  warning: boxes the trainer skips: 1 (first: annotation 1 ") for line in lines)
    assert lines[-1] == "training would fail: 3 kind(s) of error"  # the reader refuses the duplicate id too


def test_mot_defaults_and_inactive_lines(tmp_path):
    seq = tmp_path / "MOT17-02"
    (seq / "gt").mkdir(parents=True)
    (seq / "seqinfo.ini").write_text(
        "[Sequence]\nname=MOT17-02-FRCNN\nimDir=img1\nseqLength=3\nimWidth=64\nimHeight=48\nimExt=.jpg\n"
    )
    (seq / "gt" / "gt.txt").write_text(
        "2,7,-5,4,20,10,1,1,0.6\n1,7,4,4,10,10,1,1,1.0\n1,3,30,20,40,40,1,3,1.0\n3,9,1,1,5,5,0,8,1.0\n"
    )
    data = convert_annotations("mot", [seq], tmp_path / "ann.json")
    assert data["categories"] == [{"id": 1, "name": "pedestrian"}, {"id": 2, "name": "car"}]  # class 8 inactive
    assert data["videos"] == [{"id": 1, "name": "MOT17-02-FRCNN"}]
    got = [(a["image_id"], a["category_id"], a["instance_id"], a["bbox"], a["occluded"]) for a in data["annotations"]]
    assert got == [
        (1, 2, 1, [30.0, 20.0, 34.0, 28.0], False),  # id 3 before id 7 on frame 1; clipped to 64x48
        (1, 1, 2, [4.0, 4.0, 10.0, 10.0], False),
        (2, 1, 2, [0.0, 4.0, 15.0, 10.0], True),  # clipped at the left border; visibility 0.6
    ]


def test_yolo_bad_line_and_check_against_a_preset(synthetic, tmp_path, capsys):
    made, _ = synthetic
    img_dir = made.root / "Data" / "VID" / made.videos[1].name
    frames = tmp_path / "clip"
    shutil.copytree(img_dir, frames)
    (frames / "000000.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    names = tmp_path / "obj.names"
    names.write_text("widget\n")
    out = tmp_path / "ann.json"
    code, _, _ = _run_cli(
        ["convert-annotations", "--from", "yolo", str(frames), "--names", str(names), "--out", str(out)], capsys
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert data["annotations"][0]["bbox"] == [60.0, 36.0, 40.0, 24.0]
    code, report, _ = _run_cli(["check-dataset", str(out), "--img-root", str(tmp_path)], capsys)
    assert code == 0 and "1 usable key frames" in report
    code, report, _ = _run_cli(
        ["check-dataset", str(out), "--img-root", str(tmp_path), "--preset", "tiny_synthetic"], capsys
    )
    assert code == 2 and "  error:   no category is a model class: 1 (first: categories widget)" in report
    (frames / "000001.txt").write_text("0 0.5 0.5 0.25\n")
    code, _, err = _run_cli(
        ["convert-annotations", "--from", "yolo", str(frames), "--names", str(names), "--out", str(out)], capsys
    )
    assert code == 2
    assert err == f"dff: error: {frames / '000001.txt'}: line 1 has 4 columns, want 5 (class cx cy w h)\n"
    assert json.loads(out.read_text()) == data  # the earlier file is untouched
