"""The real ImageNet VID/DET list files parse the way mmtracking reads them."""

from pathlib import Path

import pytest

from dff.data.ilsvrc import parse_det_train_list, parse_vid_train_list, parse_vid_val_list
from dff.data.synthetic import train_frame_numbers
from dff.errors import DatasetError

IMAGESETS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "ImageSets"
needs_real = pytest.mark.usefixtures("real_data")  # skips, or fails under DFF_REQUIRE_SHARED=1


@needs_real
def test_vid_train_list_has_15_one_based_frames_per_video():
    videos = parse_vid_train_list(IMAGESETS / "VID_train_15frames.txt")
    assert len(videos) == 3862
    first = videos[0]
    assert first.name == "train/ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000"
    assert first.num_frames == 300
    assert first.train_frames == [9 + 20 * k for k in range(15)]  # "1 10 300" -> frame index 9
    full = [v for v in videos if len(v.train_frames) == 15]
    assert len(full) == 3835
    for v in full:  # 1-based numbers in 1..n become 0-based 0..n-1, strictly increasing
        assert v.train_frames[-1] <= v.num_frames - 1
        assert v.train_frames == sorted(set(v.train_frames))
    # the real quirk kept as mmtracking reads it: videos under 30 frames list a first frame "0", i.e. -1
    assert all(v.train_frames[0] >= 0 for v in full if v.num_frames >= 30)
    assert sum(v.train_frames[0] == -1 for v in full) == 117
    short = [v for v in videos if len(v.train_frames) < 15]
    assert all(v.train_frames[0] == -1 and len(v.train_frames) == v.num_frames for v in short)


@needs_real
def test_vid_val_list_has_555_videos_and_176126_frames():
    videos = parse_vid_val_list(IMAGESETS / "VID_val_videos.txt")
    assert len(videos) == 555
    assert sum(v.num_frames for v in videos) == 176126
    assert videos[0].name == "val/ILSVRC2015_val_00000000" and videos[0].num_frames == 464
    assert videos[-1].name == "val/ILSVRC2015_val_00177001" and videos[-1].num_frames == 145
    assert all(v.train_frames == [] for v in videos)


@needs_real
def test_det_list_keeps_order_and_duplicates():
    names = parse_det_train_list(IMAGESETS / "DET_train_30classes.txt")
    assert len(names) == 53639 and len(set(names)) == 53237
    assert names[0] == "train/ILSVRC2014_train_0000/ILSVRC2014_train_00000663"
    assert names[-1] == "train/ILSVRC2013_train/n02391049/n02391049_9977"


@needs_real
def test_synthetic_train_frames_follow_the_real_segment_centres():
    videos = {v.num_frames: v for v in parse_vid_train_list(IMAGESETS / "VID_train_15frames.txt")}
    assert [n - 1 for n in train_frame_numbers(300)] == videos[300].train_frames


def test_bad_list_lines_name_file_and_line(tmp_path):
    path = tmp_path / "VID_train_15frames.txt"
    path.write_text("train/a 1 10 300\ntrain/a 1 x 300\n")
    with pytest.raises(DatasetError, match=r"VID_train_15frames.txt:2: frame number is not an integer"):
        parse_vid_train_list(path)
    path.write_text("train/a 1\n")
    with pytest.raises(DatasetError, match=r":1: expected at least 4 fields"):
        parse_vid_train_list(path)
    with pytest.raises(DatasetError, match="list file is missing"):
        parse_vid_val_list(tmp_path / "missing.txt")
