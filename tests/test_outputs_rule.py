"""One input/output rule for every command: an output may not be, contain, or sit inside what the command reads
(`dff.io.outputs.check_outputs`), refused in one line before anything is read or written."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest

from dff.cli.main import main
from dff.errors import OutputError
from dff.io.outputs import Output, check_outputs
from tests.test_data_bad_input import _tree


def digests(root: Path) -> dict[str, str]:
    """Every file under `root` by its content: what a refused command must leave as it was."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("dff: error: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def tree(tmp_path) -> Path:
    """data/in.json (a file input), data/frames/ (a folder input) with one file, and an empty out/."""
    (tmp_path / "data" / "frames").mkdir(parents=True)
    (tmp_path / "data" / "in.json").write_text("{}")
    (tmp_path / "data" / "frames" / "0.jpg").write_bytes(b"x")
    (tmp_path / "out").mkdir()
    return tmp_path


RULES = [
    # (output relative to the tree, folder?, the message's end)
    ("data/in.json", False, "--out is the input {t}/data/in.json; refusing to overwrite it"),
    ("data/frames", True, "--out is the input {t}/data/frames; refusing to overwrite it"),
    ("data", True, "--out contains the input {t}/data/in.json; write outside what the command reads"),
    (".", True, "--out contains the input {t}/data/in.json; write outside what the command reads"),
    ("data/frames/1.json", False, "--out is inside the input folder {t}/data/frames; write outside what the command"),
    ("data/frames/sub/x", True, "--out is inside the input folder {t}/data/frames; write outside what the command"),
    ("data/./frames/../frames/0.jpg", False, "--out is inside the input folder {t}/data/frames; write outside"),
]


@pytest.mark.parametrize("out, folder, message", RULES)
def test_an_output_may_not_be_contain_or_sit_inside_an_input(tree, out, folder, message):
    with pytest.raises(OutputError) as e:
        check_outputs(
            [Output(tree / out, "--out", folder)], inputs=[tree / "data" / "in.json", tree / "data" / "frames"]
        )
    assert str(e.value).startswith(f"{tree / out}: ") and message.format(t=tree) in str(e.value)


@pytest.mark.parametrize("out, folder", [("data/out.json", False), ("out", True), ("out/x.json", False)])
def test_outputs_beside_the_inputs_are_fine(tree, out, folder):
    check_outputs([Output(tree / out, "--out", folder)], inputs=[tree / "data" / "in.json", tree / "data" / "frames"])


def test_inputs_that_are_not_files_are_compared_by_name_only(tree, monkeypatch):
    monkeypatch.chdir(tree)  # a zoo name or a URL resolves to a path under the current folder that does not exist
    check_outputs(
        [Output(".", "--out-dir", folder=True)], inputs=["dff_r50_dc5_imagenetvid", "rtsp://cam/1", None, "-"]
    )
    with pytest.raises(OutputError, match="is the input dff_r50"):
        check_outputs([Output("dff_r50_dc5_imagenetvid", "--out")], inputs=["dff_r50_dc5_imagenetvid"])


def test_a_character_device_may_be_named_twice_and_need_not_sit_in_a_writable_folder(tmp_path):
    null = tmp_path / "null"
    try:
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs root")
    check_outputs([Output(null, "--out-json"), Output(null, "--out-coco"), Output("/dev/null", "--out-video")])
    with pytest.raises(OutputError, match="--out-coco and --out-json name the same file"):
        check_outputs([Output(tmp_path / "x", "--out-json"), Output(tmp_path / "x", "--out-coco")])
    with pytest.raises(OutputError, match="needs a folder, but this is a file"):
        check_outputs([Output(null, "--out-dir", folder=True)])


# -- dff convert-annotations --------------------------------------------------------------------------------------

CVAT = (
    "<annotations><meta><task><size>2</size><labels><label><name>car</name></label></labels>"
    "<original_size><width>64</width><height>48</height></original_size></task></meta>"
    '<track id="0" label="car"><box frame="0" keyframe="1" outside="0" occluded="0" '
    'xtl="1" ytl="2" xbr="10" ybr="20"/></track></annotations>'
)


@pytest.fixture
def sources(tmp_path) -> Path:
    """street1.xml (CVAT), a YOLO labels folder with its images and names.txt, a MOT sequence."""
    (tmp_path / "street1.xml").write_text(CVAT)
    labels = tmp_path / "labels" / "street1"
    labels.mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(labels / f"{i:06d}.jpg"), np.zeros((48, 64, 3), np.uint8))
        (labels / f"{i:06d}.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (tmp_path / "names.txt").write_text("car\n")
    seq = tmp_path / "MOT" / "seq1"
    (seq / "gt").mkdir(parents=True)
    (seq / "seqinfo.ini").write_text(
        "[Sequence]\nname=seq1\nimDir=img1\nseqLength=2\nimWidth=64\nimHeight=48\nimExt=.jpg\n"
    )
    (seq / "gt" / "gt.txt").write_text("1,1,1,2,10,10,1,1,1.0\n")
    return tmp_path


CONVERT = [
    # (--from, inputs, --out, message)
    ("cvat-video", ["street1.xml"], "street1.xml", "--out is the input {t}/street1.xml; refusing to overwrite it"),
    ("yolo", ["labels/street1", "--names", "names.txt"], "names.txt", "--out is the input {t}/names.txt"),
    ("yolo", ["labels/street1", "--names", "names.txt"], "labels/street1/000001.txt", "inside the input folder"),
    ("yolo", ["labels/street1", "--names", "names.txt"], "labels/street1/ann.json", "inside the input folder"),
    ("yolo", ["labels/street1", "--names", "names.txt"], "labels", "--out is a folder, not a file"),
    ("mot", ["MOT/seq1"], "MOT/seq1/gt/gt.txt", "--out is inside the input folder {t}/MOT/seq1;"),
    ("mot", ["MOT/seq1/gt/gt.txt"], "MOT/seq1/gt/gt.txt", "--out is the input {t}/MOT/seq1/gt/gt.txt"),
]


@pytest.mark.parametrize("fmt, inputs, out, message", CONVERT)
def test_convert_annotations_refuses_to_write_over_what_it_reads(sources, capsys, fmt, inputs, out, message):
    before = digests(sources)
    args = [str(sources / a) if not a.startswith("--") else a for a in inputs]
    assert main(["convert-annotations", "--from", fmt, *args, "--out", str(sources / out)]) == 2
    assert message.format(t=sources) in error_line(capsys)
    assert digests(sources) == before


@pytest.mark.parametrize(
    "fmt, inputs", [("cvat-video", ["street1.xml"]), ("yolo", ["labels/street1", "--names", "names.txt"])]
)
def test_convert_annotations_beside_its_inputs_works(sources, capsys, fmt, inputs):
    args = [str(sources / a) if not a.startswith("--") else a for a in inputs]
    assert main(["convert-annotations", "--from", fmt, *args, "--out", str(sources / "street1.json")]) == 0
    assert "1 videos, 2 frames" in capsys.readouterr().out


# -- dff convert-dataset ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "out, message",
    [
        (".", "contains the input {t}/Lists"),
        ("Annotations", "--out is the input {t}/Annotations; refusing to overwrite it"),
        ("Data/VID/json", "--out is inside the input folder {t}/Data;"),
        ("Lists/VID_val_videos.txt", "--out is inside the input folder {t}/Lists;"),
    ],
)
def test_convert_dataset_refuses_an_output_in_what_it_reads(tmp_path, capsys, out, message):
    _tree(tmp_path, [[]])
    before = digests(tmp_path)
    assert main(["convert-dataset", str(tmp_path), "--out", str(tmp_path / out), "--no-progress"]) == 2
    assert message.format(t=tmp_path) in error_line(capsys)
    assert digests(tmp_path) == before


def test_convert_dataset_writes_its_default_folder_beside_what_it_reads(tmp_path, capsys):
    _tree(tmp_path, [[]])
    assert main(["convert-dataset", str(tmp_path), "--parts", "vid_val", "--no-progress"]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "annotations" / "imagenet_vid_val.json")]
