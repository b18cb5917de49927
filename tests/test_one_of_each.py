"""The helpers there is one of: padded geometry, image reader, key-interval parser, JSON writer."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from dff.config import preset
from dff.data.fast_preprocess import preprocess_hwc
from dff.data.transforms import image_meta, preprocess
from dff.errors import DatasetError, InputError
from dff.evaluation.sweep import check_intervals, parse_intervals
from dff.io.atomic import write_json_atomic
from dff.io.image import read_image


@pytest.mark.parametrize(("h", "w"), [(375, 500), (64, 96), (333, 1001), (600, 1000)])
def test_image_meta_is_the_geometry_both_preprocessings_produce(h, w):
    cfg = preset("r50_dc5").preprocess
    frame = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    meta = image_meta(h, w, cfg)
    tensor, ref = preprocess(frame, cfg)
    hwc, fast = preprocess_hwc(frame, cfg)
    assert tuple(tensor.shape[1:]) == hwc.shape[:2] == meta.pad_shape
    for m in (ref, fast):
        assert (m.ori_shape, m.img_shape, m.pad_shape) == (meta.ori_shape, meta.img_shape, meta.pad_shape)
        assert np.array_equal(m.scale_factor, meta.scale_factor)
    assert all(p % 16 == 0 and 0 <= p - s < 16 for p, s in zip(meta.pad_shape, meta.img_shape))
    assert max(meta.img_shape) <= 1000 and min(meta.img_shape) <= 600


def test_one_image_reader_names_the_file_with_the_callers_error(tmp_path):
    img = np.arange(8 * 6 * 3, dtype=np.uint8).reshape(8, 6, 3)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    assert np.array_equal(read_image(tmp_path / "a.png"), img)
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match=r"bad\.jpg: not a decodable image"):
        read_image(tmp_path / "bad.jpg")
    with pytest.raises(DatasetError, match=r"gone\.jpg: image file is missing or unreadable"):
        read_image(tmp_path / "gone.jpg", DatasetError)


def test_one_interval_parser():
    assert parse_intervals("10, 1,5") == [10, 1, 5]
    assert check_intervals((2, 3)) == [2, 3]
    for text in ("1,1", "0,5", "", "a"):
        with pytest.raises(ValueError, match="key intervals must be"):
            parse_intervals(text)


def test_write_json_atomic_uses_json_dump_defaults(tmp_path):
    obj = {"b": [1, 2.5, None], "a": "é"}
    write_json_atomic(obj, tmp_path / "sub" / "x.json")
    assert (tmp_path / "sub" / "x.json").read_text() == json.dumps(obj)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["x.json"]
