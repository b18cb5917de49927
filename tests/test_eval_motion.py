"""Motion IoU from annotations: mean IoU with the same track within +-10 frames; a lonely box gets 0."""

from __future__ import annotations

import pytest

from dff.data.cocovid import CocoVID
from dff.evaluation.motion import gt_motion_iou


def dataset(tracks: dict[int, list[tuple[int, list[float]]]], num_frames: int = 40) -> CocoVID:
    """One video of `num_frames` frames; tracks: instance id -> [(frame_id, xywh)]."""
    images = [
        {"id": f + 1, "file_name": f"v/{f:06d}.JPEG", "height": 100, "width": 200, "video_id": 1, "frame_id": f}
        for f in range(num_frames)
    ]
    anns = [
        {
            "id": 100 * inst + f,
            "image_id": f + 1,
            "video_id": 1,
            "category_id": 1,
            "instance_id": inst,
            "bbox": box,
            "area": box[2] * box[3],
            "iscrowd": False,
        }
        for inst, boxes in tracks.items()
        for f, box in boxes
    ]
    return CocoVID(
        {
            "categories": [{"id": 1, "name": "airplane"}],
            "videos": [{"id": 1, "name": "v"}],
            "images": images,
            "annotations": anns,
        }
    )


def test_moving_box_by_hand():
    # 10x10 boxes moving 5 px per frame: IoU 50/150 = 1/3 with a neighbour, 0 two frames apart
    m = gt_motion_iou(dataset({1: [(0, [0, 0, 10, 10]), (1, [5, 0, 10, 10]), (2, [10, 0, 10, 10])]}))
    assert m == pytest.approx({100: 1 / 6, 101: 1 / 3, 102: 1 / 6})


def test_window_is_ten_frames_and_lonely_boxes_get_zero():
    box = [0, 0, 10, 10]
    assert gt_motion_iou(dataset({1: [(0, box), (10, box)]})) == pytest.approx({100: 1.0, 110: 1.0})
    assert gt_motion_iou(dataset({1: [(0, box), (11, box)]})) == pytest.approx({100: 0.0, 111: 0.0})


def test_tracks_are_separate():
    m = gt_motion_iou(
        dataset({1: [(0, [0, 0, 10, 10]), (3, [0, 0, 10, 10]), (12, [0, 0, 5, 10])], 2: [(3, [0, 0, 10, 10])]})
    )
    # frames 0<->3 IoU 1, 3<->12 IoU .5; track 2 is alone
    assert m == pytest.approx({100: 1.0, 103: 0.75, 112: 0.5, 203: 0.0})
