"""On a CUDA GPU (benchmarks/gpu_check.sh runs these; skipped without one): the golden comparison with TF32 off."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import dff
from dff.golden import deterministic_state_dict
from dff.models.detector import DFF
from dff.run import REFERENCE, RunOptions
from tests.conftest import GOLDEN

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine"),
]


def golden_rows_found(result: dff.FrameResult, golden: np.ndarray) -> list[bool]:
    """For each golden row (x1, y1, x2, y2, score, label): a same-label detection within 0.05 px and 1e-4?"""
    ours = np.concatenate([result.boxes, result.scores[:, None]], axis=1).astype(np.float64)
    return [
        bool(
            (
                (result.labels == int(row[5]))
                & (np.abs(ours[:, :4] - row[:4]).max(axis=1) <= 0.05)
                & (np.abs(ours[:, 4] - row[4]) <= 1e-4)
            ).any()
        )
        for row in golden
    ]


@pytest.mark.parametrize(
    "run", [REFERENCE.with_options(device="cuda"), RunOptions(device="cuda")], ids=["reference", "default"]
)
def test_golden_on_cuda_with_tf32_off(run: RunOptions, tmp_path: Path):
    template = DFF(dff.preset("r50_dc5")).state_dict()
    ckpt = tmp_path / "dff_r50_seed0.pth"
    classes = list(dff.preset("r50_dc5").class_names)
    torch.save({"state_dict": deterministic_state_dict(template, 0), "meta": {"CLASSES": classes}}, ckpt)
    model = dff.load(ckpt, preset="r50_dc5", device="cuda")
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32  # spec pitfall 23
    z = np.load(GOLDEN / "golden_r50_seed0.npz")
    frames = [cv2.imread(str(p)) for p in sorted((GOLDEN / "frames_seed0").glob("*.png"))]
    results = list(model.predict(frames, run))
    assert [r.is_key_frame for r in results] == [i % 10 == 0 for i in range(12)]
    for i, r in enumerate(results):
        hits = golden_rows_found(r, z[f"f{i}/detections"])
        assert all(hits[:20]), f"frame {i}: golden top-20 rows without a match: {[j for j in range(20) if not hits[j]]}"
        assert sum(hits[:100]) >= min(95, len(hits)), f"frame {i}: only {sum(hits)} of {len(hits)} matched"
