"""Golden equivalence with mmtracking 0.14's own DFF outputs (../shared/golden/README.md)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import dff
from dff.golden import deterministic_state_dict
from dff.models.detector import DFF
from tests.conftest import GOLDEN, need


def write_mmtracking_checkpoint(path: Path, preset: str, seed: int) -> None:
    """An mmtracking-format .pth with the golden recipe's weights for every key of the preset."""
    template = DFF(dff.preset(preset)).state_dict()
    state = deterministic_state_dict(template, seed)
    torch.save({"state_dict": state, "meta": {"CLASSES": list(dff.preset(preset).class_names)}}, path)


class Recorder:
    """Forward hooks that keep each frame's intermediate tensors, as the golden file summarises them."""

    def __init__(self, net: DFF) -> None:
        self.frames: list[dict[str, torch.Tensor]] = []
        self.current: dict[str, torch.Tensor] = {}
        for name, module in (
            ("backbone", net.detector.backbone),
            ("neck", net.detector.neck),
            ("flow_full", net.motion),
            ("warped", net.warp),
            ("proposals", net.detector.proposal_generator),
        ):
            module.register_forward_hook(self._hook(name))

    def _hook(self, name: str):
        def hook(module, inputs, output):
            self.current[name] = output.detach().clone()

        return hook

    def next_frame(self) -> None:
        self.frames.append(self.current)
        self.current = {}


def close(actual: np.ndarray, golden: np.ndarray, what: str) -> None:
    actual, golden = np.asarray(actual, np.float64), np.asarray(golden, np.float64)
    assert actual.shape == golden.shape, f"{what}: shape {actual.shape} != {golden.shape}"
    err = np.abs(actual - golden) - 1e-3 * (1 + np.abs(golden))
    assert err.max() <= 0, f"{what}: max excess {err.max():.3g} over |d| <= 1e-3 (1 + |golden|)"


def summary_matches(t: torch.Tensor, z, prefix: str) -> None:
    assert list(t.shape) == list(z[f"{prefix}/shape"]), prefix
    a = t.double().numpy()
    close(a.mean(), z[f"{prefix}/mean"], f"{prefix}/mean")
    close(a.std(), z[f"{prefix}/std"], f"{prefix}/std")
    close(a.mean(axis=(0, 2, 3)), z[f"{prefix}/channel_mean"], f"{prefix}/channel_mean")
    close(a[0, :8, :8, :8], z[f"{prefix}/slice"], f"{prefix}/slice")


def detections_match(result: dff.FrameResult, golden: np.ndarray, what: str) -> None:
    """Every golden top-20 detection (and >= 95 of the top 100) has a same-label match within 0.05 px / 1e-4."""
    ours = np.concatenate([result.boxes, result.scores[:, None]], axis=1).astype(np.float64)

    def found(row: np.ndarray) -> bool:
        same = result.labels == int(row[5])
        ok = (np.abs(ours[:, :4] - row[:4]).max(axis=1) <= 0.05) & (np.abs(ours[:, 4] - row[4]) <= 1e-4)
        return bool((same & ok).any())

    hits = [found(row) for row in golden]
    assert all(hits[:20]), (
        f"{what}: golden top-20 rows without a match: {[i for i in range(min(20, len(hits))) if not hits[i]]}"
    )
    assert sum(hits[:100]) >= min(95, len(hits)), f"{what}: only {sum(hits)} of {len(hits)} golden detections matched"


def load_golden(folder: Path):
    """(golden npz, the 12 BGR frames, the R-50 model loaded via dff.load from an mmtracking .pth in `folder`)."""
    z = np.load(need(GOLDEN / "golden_r50_seed0.npz"))
    frames = [cv2.imread(str(p)) for p in sorted((GOLDEN / "frames_seed0").glob("*.png"))]
    ckpt = folder / "dff_r50_seed0.pth"
    write_mmtracking_checkpoint(ckpt, "r50_dc5", seed=0)
    return z, frames, dff.load(ckpt, preset="r50_dc5", device="cpu")


@pytest.fixture(scope="module")
def golden_run(tmp_path_factory):
    z, frames, model = load_golden(tmp_path_factory.mktemp("golden"))
    rec = Recorder(model.net)
    results = []
    for r in model.predict(frames):
        results.append(r)
        rec.next_frame()
    return z, results, rec.frames, frames


def test_golden_meta(golden_run):
    z, results, _, frames = golden_run
    from dff.data.transforms import preprocess

    assert len(results) == len(frames) == 12
    for i, frame in enumerate(frames):
        img, meta = preprocess(frame, dff.preset("r50_dc5").preprocess)
        assert (*meta.img_shape, 3) == tuple(z[f"f{i}/img_shape"])
        assert (*meta.pad_shape, 3) == tuple(z[f"f{i}/pad_shape"])
        np.testing.assert_allclose(meta.scale_factor, z[f"f{i}/scale_factor"], rtol=1e-6)
        assert results[i].is_key_frame == (i % 10 == 0)


def test_golden_features_and_flow(golden_run):
    z, _, recorded, _ = golden_run
    for i, rec in enumerate(recorded):
        if i % 10 == 0:
            summary_matches(rec["backbone"], z, f"f{i}/backbone")
            summary_matches(rec["neck"], z, f"f{i}/neck")
            assert "flow_full" not in rec
        else:
            assert list(rec["flow_full"].shape) == list(z[f"f{i}/flow_shape"])
            close(rec["flow_full"][0, :, ::8, ::8].numpy(), z[f"f{i}/flow_full"], f"f{i}/flow_full")
            summary_matches(rec["warped"], z, f"f{i}/warped")


def test_golden_proposals(golden_run):
    z, _, recorded, _ = golden_run
    for i, rec in enumerate(recorded):
        props = rec["proposals"].numpy()
        assert len(props) == int(z[f"f{i}/num_proposals"])
        g = z[f"f{i}/proposals"][:20]
        np.testing.assert_allclose(props[:20, :4], g[:, :4], atol=0.05, rtol=0, err_msg=f"f{i} proposals")
        np.testing.assert_allclose(props[:20, 4], g[:, 4], atol=1e-4, rtol=0, err_msg=f"f{i} proposal scores")


def test_golden_detections(golden_run):
    z, results, _, _ = golden_run
    for i, r in enumerate(results):
        assert r.boxes.dtype == np.float32 and r.scores.dtype == np.float32 and r.labels.dtype == np.int64
        assert len(r.scores) <= 100 and np.all(np.diff(r.scores) <= 0) and np.all(r.scores > 1e-4)
        detections_match(r, z[f"f{i}/detections"], f"frame {i}")
