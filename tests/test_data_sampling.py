"""Reference-frame sampling and the shared training transforms (spec 2.3-2.4)."""

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dff.config import preset
from dff.data.convert import convert_dataset
from dff.data.sampling import ref_candidates, sample_reference
from dff.data.synthetic import make_synthetic
from dff.data.train_dataset import PairDataset, build_train_dataset, collate_pairs, parse_annotations, transform_pair
from dff.data.transforms import preprocess


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("sampling")
    make_synthetic(root, videos=3, val_videos=1, frames=40, det_images=8, width=240, height=136, seed=5, progress=False)
    convert_dataset(root, parts=("vid_train", "det"), progress=False)
    return root


def test_candidates_are_the_clipped_window():
    assert ref_candidates(40, 0, 9) == range(0, 10)
    assert ref_candidates(40, 20, 9) == range(11, 30)
    assert ref_candidates(40, 39, 9) == range(30, 40)
    assert ref_candidates(5, 2, 9) == range(0, 5)


def test_vid_reference_is_uniform_within_9_frames_including_the_key():
    frames = [{"id": 100 + i, "frame_id": i, "video_id": 7} for i in range(40)]
    rng = random.Random(0)
    for fid in (0, 4, 20, 39):
        drawn = Counter(sample_reference(frames[fid], frames, 9, rng)["frame_id"] for _ in range(3000))
        window = set(ref_candidates(40, fid, 9))
        assert set(drawn) == window  # every candidate, the key frame itself included, and nothing else
        assert max(drawn.values()) / min(drawn.values()) < 1.6  # uniform
    ref = sample_reference(frames[3], frames, 9, rng)
    assert ref["video_id"] == 7 and ref is not frames[ref["frame_id"]]  # a copy


def test_det_reference_is_the_same_image():
    key = {"id": 3, "file_name": "a.JPEG", "width": 10, "height": 10}
    for frames, r in ((None, 9), ([key], 0)):
        ref = sample_reference(key, frames, r, random.Random(0))
        assert ref == key and ref is not key


def test_vid_pairs_stay_in_the_video_and_share_resize_and_flip(tree):
    cfg = preset("tiny_synthetic")
    ds = PairDataset(tree / "annotations" / "imagenet_vid_train.json", tree / "Data" / "VID", cfg, rng=random.Random(1))
    assert len(ds) == 45 and all(k["is_vid_train_frame"] for k in ds.keys)
    flips = []
    for i in range(len(ds)):
        p = ds[i]
        key_dir, ref_dir = Path(p.img_meta.filename).parent, Path(p.ref_img_meta.filename).parent
        assert key_dir == ref_dir and key_dir.name.startswith("ILSVRC2015_train_")
        assert abs(p.img_meta.frame_id - p.ref_img_meta.frame_id) <= 9
        assert p.img_meta.flip == p.ref_img_meta.flip
        assert p.img_meta.img_shape == p.ref_img_meta.img_shape == (181, 320)  # 240x136 into (320, 192)
        assert p.img.shape == p.ref_img.shape == (3, 192, 320) and p.img.dtype == torch.float32
        assert p.is_video_data and p.gt_boxes.dtype == torch.float32 and p.gt_labels.dtype == torch.int64
        assert len(p.gt_boxes) == len(p.gt_labels) == len(p.gt_instance_ids) > 0
        assert bool((p.gt_labels >= 0).all() and (p.gt_labels < 30).all())
        assert bool((p.gt_boxes[:, 2] <= 320).all() and (p.gt_boxes[:, 3] <= 181).all())
        flips.append(p.img_meta.flip)
    assert 0 < sum(flips) < len(flips)


def test_det_pairs_use_the_same_image(tree):
    cfg = preset("tiny_synthetic")
    ds = build_train_dataset(
        cfg,
        tree / "annotations" / "imagenet_vid_train.json",
        tree / "Data" / "VID",
        tree / "annotations" / "imagenet_det_30plus1cls.json",
        tree / "Data" / "DET",
        rng=random.Random(2),
    )
    det = ds.datasets[1]
    assert len(ds) == 45 + len(det) and len(det) > 0
    for i in range(len(det)):
        p = det[i]
        assert not p.is_video_data
        km, rm = p.img_meta, p.ref_img_meta
        assert (km.filename, km.img_shape, km.pad_shape, km.flip) == (rm.filename, rm.img_shape, rm.pad_shape, rm.flip)
        assert torch.equal(p.img, p.ref_img)
        assert p.gt_instance_ids.tolist() == list(range(len(p.gt_boxes)))
    loader = DataLoader(ds, batch_size=2, shuffle=False, collate_fn=collate_pairs)
    batch = next(iter(loader))
    assert len(batch) == 2 and batch[0].img.ndim == 3


def test_transform_pair_matches_test_preprocess_and_flips_boxes():
    cfg = preset("tiny_synthetic")
    rng = np.random.default_rng(0)
    key = rng.integers(0, 256, (136, 240, 3), dtype=np.uint8)
    ref = rng.integers(0, 256, (136, 240, 3), dtype=np.uint8)
    boxes = np.array([[10, 20, 110, 60], [0, 0, 240, 136]], np.float32)
    img, ref_img, meta, ref_meta, out = transform_pair(key, ref, boxes, cfg, flip=False)
    want, want_meta = preprocess(key, cfg.preprocess)
    assert torch.equal(img, want) and meta.img_shape == want_meta.img_shape == (181, 320)
    np.testing.assert_array_equal(meta.scale_factor, want_meta.scale_factor)
    np.testing.assert_array_equal(out, boxes * want_meta.scale_factor)
    img_f, ref_f, meta_f, ref_meta_f, out_f = transform_pair(key, ref, boxes, cfg, flip=True)
    assert meta_f.flip and ref_meta_f.flip and not meta.flip
    h, w = meta.img_shape
    assert torch.equal(img_f[:, :h, :w], img[:, :h, :w].flip(-1))
    assert torch.equal(ref_f[:, :h, :w], ref_img[:, :h, :w].flip(-1))
    assert float(img_f[:, h:].abs().sum()) == 0.0  # padding stays zero
    np.testing.assert_allclose(out_f[:, [0, 2]], w - out[:, [2, 0]])
    np.testing.assert_array_equal(out_f[:, [1, 3]], out[:, [1, 3]])
    np.testing.assert_allclose(out_f[1], [0, 0, 320, 181])


def test_parse_annotations_filters_like_mmtracking():
    img = {"width": 100, "height": 50}
    cat2label = {1: 0, 2: 5}
    anns = [
        {"bbox": [10, 10, 20, 20], "category_id": 2, "instance_id": 7, "area": 400},
        {"bbox": [200, 10, 20, 20], "category_id": 1, "instance_id": 8, "area": 400},  # outside the image
        {"bbox": [10, 10, 0.5, 20], "category_id": 1, "instance_id": 9, "area": 10},  # w < 1
        {"bbox": [10, 10, 20, 20], "category_id": 31, "instance_id": 10, "area": 400},  # unknown category
        {"bbox": [10, 10, 20, 20], "category_id": 1, "instance_id": 11, "area": 400, "ignore": True},
        {"bbox": [90, 40, 20, 20], "category_id": 1, "instance_id": 12, "area": 400},  # partly outside: kept
    ]
    boxes, labels, ids = parse_annotations(anns, img, cat2label, use_instance_ids=True)
    np.testing.assert_array_equal(boxes, [[10, 10, 30, 30], [90, 40, 110, 60]])
    assert labels.tolist() == [5, 0] and ids.tolist() == [7, 12]
    _, _, ids = parse_annotations(anns, img, cat2label, use_instance_ids=False)
    assert ids.tolist() == [0, 1]
