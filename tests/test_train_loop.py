"""The trainer on a tiny synthetic set: learning, gradients, exact resume, bad input, checkpoint format."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dff import checkpoint
from dff.cli.main import main as cli_main
from dff.config import preset
from dff.data.convert import convert_dataset
from dff.data.synthetic import make_synthetic
from dff.data.train_dataset import build_train_dataset
from dff.errors import CheckpointError
from dff.models.detector import DFF
from dff.training.flow_pretrain import warp_target
from dff.training.loop import TrainOptions, train
from dff.training.losses import LOSS_NAMES, DFFLoss, dff_features
from dff.training.sampler import ShardSampler
from dff.training.state import load_state

SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> Path:
    """Two 6-frame training videos (every frame a key frame), one val video and four DET images, converted."""
    root = tmp_path_factory.mktemp("syn")
    make_synthetic(root, videos=2, frames=6, val_videos=1, det_images=4, width=320, height=192, seed=3, progress=False)
    convert_dataset(root, progress=False)
    return root


def _opts(root: Path, out: Path, **kw) -> TrainOptions:
    base = dict(
        preset="tiny_synthetic",
        ann=root / "annotations" / "imagenet_vid_train.json",
        out=out,
        data_root=root,
        workers=0,
        progress_bar=False,
        log_every=1,
    )
    return TrainOptions(**{**base, **kw})


def _train_cmd(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dff",
        "train",
        "--preset",
        "tiny_synthetic",
        "--data-root",
        str(root),
        "--ann",
        str(root / "annotations" / "imagenet_vid_train.json"),
        "--out",
        str(out),
        "--workers",
        "0",
        "--no-progress",
        *extra,
    ]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_trainable_parameter_gets_gradient_and_frozen_ones_none(tiny_set):
    torch.manual_seed(0)
    cfg = preset("tiny_synthetic")
    ds = build_train_dataset(
        cfg,
        tiny_set / "annotations" / "imagenet_vid_train.json",
        tiny_set / "Data" / "VID",
        tiny_set / "annotations" / "imagenet_det_30plus1cls.json",
        tiny_set / "Data" / "DET",
    )
    pairs = [ds[i] for i in range(len(ds))]
    vid = next(p for p in pairs if p.is_video_data and p.ref_img_meta.frame_id != p.img_meta.frame_id)
    det = pairs[-1]
    assert not det.is_video_data
    net = DFF(cfg).train()
    losses = DFFLoss(net)([vid, det])
    assert set(LOSS_NAMES) <= set(losses)
    sum(losses[k] for k in LOSS_NAMES).backward()
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    assert frozen == {
        n
        for n, _ in net.named_parameters()
        if n.startswith(("detector.backbone.conv1", "detector.backbone.bn1", "detector.backbone.layer1."))
    }
    for name, p in net.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
        else:
            assert p.grad is None, name
    assert any(float(p.grad.abs().sum()) > 0 for n, p in net.named_parameters() if n.startswith("motion."))
    for m in net.detector.backbone.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert not m.training


def test_initial_losses_are_mmdet_reductions(tiny_set):
    """At init (logits ~ 0): RPN BCE ~ ln 2 per sampled anchor, RCNN CE ~ ln(C+1) per sampled RoI."""
    torch.manual_seed(0)
    cfg = preset("tiny_synthetic")
    ds = build_train_dataset(cfg, tiny_set / "annotations" / "imagenet_vid_train.json", tiny_set / "Data" / "VID")
    losses = DFFLoss(DFF(cfg).train())([ds[0], ds[1]])
    assert float(losses["loss_rpn_cls"].detach()) == pytest.approx(np.log(2), abs=0.01)
    assert float(losses["loss_cls"].detach()) == pytest.approx(np.log(cfg.num_classes + 1), abs=0.05)
    assert all(np.isfinite(float(losses[k].detach())) for k in LOSS_NAMES)


def test_loss_falls_and_run_writes_logs_checkpoints_and_model(tiny_set, tmp_path):
    out = tmp_path / "run"
    result = train(_opts(tiny_set, out, epochs=2, lr=0.08))
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(records) == result.progress.global_iter == 24 and result.progress.epoch == 2
    first = np.mean([r["loss"] for r in records[:4]])
    last = np.mean([r["loss"] for r in records[-4:]])
    assert last < 0.6 * first, (first, last)
    assert {"lr", "eta_s", "grad_norm", *LOSS_NAMES} <= set(records[-1])
    assert (out / "epoch_1.pth").is_file() and (out / "epoch_2.pth").is_file()
    assert result.model_path == out / "model.safetensors"
    state, cfg = checkpoint.read_safetensors(result.model_path)
    assert cfg.name == "tiny_synthetic" and "motion.conv1.0.conv.weight" in state
    ckpt = torch.load(out / "latest.pth", map_location="cpu", weights_only=True)
    assert ckpt["progress"] == {"epoch": 2, "iter_in_epoch": 0, "global_iter": 24}
    rest, flow = ckpt["optimizer"]["param_groups"]  # the FlowNet trains at the preset's flow_lr_mult
    assert len(flow["params"]) == len(list(DFF(cfg).motion.parameters()))
    assert flow["lr"] == pytest.approx(rest["lr"] * cfg.train.flow_lr_mult) and cfg.train.flow_lr_mult == 0.125


class _ZeroMotionLoss(DFFLoss):
    """Warps every pair by a zero displacement instead of the FlowNet's flow (which joins at weight 0)."""

    groups: list[int] = []

    def features(self, group, img, ref):
        shape = group[0].img_meta.img_shape
        flow = self.net.motion(img, ref, shape)
        still = warp_target(torch.zeros_like(flow), self.net.cfg.rpn.stride)
        is_video = torch.ones(len(group), dtype=torch.bool)
        feats = dff_features(self.net, img, ref, shape, is_video, still + 0 * flow)
        torch.testing.assert_close(feats, self.net.detector.extract_feat(ref))
        self.groups.append(len(group))
        return feats


def test_train_takes_a_loss_that_forms_the_features_otherwise(tiny_set, tmp_path):
    torch.manual_seed(0)
    cfg = preset("tiny_synthetic")
    ds = build_train_dataset(cfg, tiny_set / "annotations" / "imagenet_vid_train.json", tiny_set / "Data" / "VID")
    net = DFF(cfg).train()
    losses = _ZeroMotionLoss(net)([ds[0], ds[1]])
    sum(losses[k] for k in LOSS_NAMES).backward()
    assert all(p.grad is not None and float(p.grad.abs().max()) == 0.0 for p in net.motion.parameters())
    assert float(net.detector.roi_head.bbox_head.fc_cls.weight.grad.abs().sum()) > 0
    _ZeroMotionLoss.groups.clear()
    result = train(_opts(tiny_set, tmp_path / "run", max_iters=3, batch_size=2), loss=_ZeroMotionLoss)
    assert result.progress.global_iter == 3 and _ZeroMotionLoss.groups == [2, 2, 2]


def test_tensorboard_events_hold_the_logged_scalars(tiny_set, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    train(_opts(tiny_set, out, max_iters=5, log_every=2))
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["global_iter"] for r in records] == [2, 4, 5]
    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    assert {"train/loss", "train/lr", "train/grad_norm", *(f"train/{k}" for k in LOSS_NAMES)} <= set(
        events.Tags()["scalars"]
    )
    for key in ("loss", "lr", "loss_rpn_cls"):
        logged = [(e.step, e.value) for e in events.Scalars(f"train/{key}")]
        assert logged == [(r["global_iter"], pytest.approx(r[key], rel=1e-6)) for r in records]


def test_killed_run_resumes_to_the_same_weights(tiny_set, tmp_path):
    common = ("--epochs", "2", "--lr", "0.08", "--seed", "5", "--log-every", "1")
    full = tmp_path / "full"
    subprocess.run(_train_cmd(tiny_set, full, *common), check=True, env=SUBPROCESS_ENV, capture_output=True)

    cut = tmp_path / "cut"
    proc = subprocess.Popen(
        _train_cmd(tiny_set, cut, *common, "--checkpoint-every", "5"),
        env=SUBPROCESS_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not (cut / "latest.pth").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    saved = load_state(cut / "latest.pth", "tiny_synthetic")["progress"]
    assert 0 < saved.global_iter < 24
    subprocess.run(
        _train_cmd(tiny_set, cut, *common, "--checkpoint-every", "5", "--resume"),
        check=True,
        env=SUBPROCESS_ENV,
        capture_output=True,
    )

    a, _ = checkpoint.read_safetensors(full / "model.safetensors")
    b, _ = checkpoint.read_safetensors(cut / "model.safetensors")
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]
    # log.jsonl holds each iteration once: the ones logged after the checkpoint and replayed were dropped
    full_log = [json.loads(line) for line in (full / "log.jsonl").read_text().splitlines()]
    cut_log = [json.loads(line) for line in (cut / "log.jsonl").read_text().splitlines()]
    assert [r["global_iter"] for r in cut_log] == [r["global_iter"] for r in full_log] == list(range(1, 25))
    assert [r["loss"] for r in cut_log] == [r["loss"] for r in full_log]


@pytest.fixture(scope="module")
def good_run(tiny_set, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("good")
    train(_opts(tiny_set, out, max_iters=2))
    return out


def _run_cli(capsys, argv: list[str]) -> tuple[int, str]:
    code = cli_main(argv)
    return code, capsys.readouterr().err.strip()


def test_missing_image_is_one_clear_error_and_keeps_the_checkpoint(tiny_set, good_run, tmp_path, capsys):
    latest = good_run / "latest.pth"
    before = _digest(latest)
    ann_path = tiny_set / "annotations" / "imagenet_vid_train.json"
    ds = build_train_dataset(preset("tiny_synthetic"), ann_path, tiny_set / "Data" / "VID")
    next_key = ds.keys[ShardSampler(len(ds), 1, seed=0).order()[2]]  # the key of the first batch after resuming
    ann = json.loads(ann_path.read_text())
    for im in ann["images"]:
        if im["id"] == next_key["id"]:
            im["file_name"] = im["file_name"].replace(".JPEG", "_gone.JPEG")
    (tmp_path / "train.json").write_text(json.dumps(ann))
    code, err = _run_cli(
        capsys,
        [
            "train",
            "--preset",
            "tiny_synthetic",
            "--data-root",
            str(tiny_set),
            "--ann",
            str(tmp_path / "train.json"),
            "--out",
            str(good_run),
            "--workers",
            "0",
            "--resume",
            "--no-progress",
        ],
    )
    assert code == 2
    assert err.startswith("dff: error: ") and "_gone.JPEG" in err and "\n" not in err
    assert _digest(latest) == before


def test_annotations_of_another_class_set_are_refused(tiny_set, good_run, tmp_path, capsys):
    latest = good_run / "latest.pth"
    before = _digest(latest)
    ann = json.loads((tiny_set / "annotations" / "imagenet_vid_train.json").read_text())
    for i, c in enumerate(ann["categories"]):
        c["name"] = f"widget_{i}"
    path = tmp_path / "widgets.json"
    path.write_text(json.dumps(ann))
    code, err = _run_cli(
        capsys,
        [
            "train",
            "--preset",
            "tiny_synthetic",
            "--data-root",
            str(tiny_set),
            "--ann",
            str(path),
            "--out",
            str(good_run),
            "--workers",
            "0",
            "--resume",
            "--no-progress",
        ],
    )
    assert code == 2 and str(path) in err and "another class set" in err and "\n" not in err
    assert _digest(latest) == before


def test_resume_with_another_preset_is_refused(tiny_set, good_run, capsys):
    latest = good_run / "latest.pth"
    before = _digest(latest)
    code, err = _run_cli(
        capsys,
        [
            "train",
            "--preset",
            "r50_dc5",
            "--data-root",
            str(tiny_set),
            "--ann",
            str(tiny_set / "annotations" / "imagenet_vid_train.json"),
            "--out",
            str(good_run),
            "--resume",
            "--no-progress",
        ],
    )
    assert code == 2 and str(latest) in err and "'tiny_synthetic', not 'r50_dc5'" in err
    assert _digest(latest) == before


def test_model_only_files_cannot_be_resumed(good_run, tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": torch.load(good_run / "latest.pth", weights_only=True)["model"]}, path)
    with pytest.raises(CheckpointError, match="not a 'dff train' checkpoint"):
        load_state(path, "tiny_synthetic")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_state(tmp_path / "nope.pth", "tiny_synthetic")


def test_checkpoint_is_weights_only_loadable_and_restores_rng(good_run):
    state = torch.load(good_run / "latest.pth", map_location="cpu", weights_only=True)
    assert state["progress"]["global_iter"] == 2
    assert {"model", "optimizer", "rng", "run", "config"} <= set(state)
    assert len(state["optimizer"]["state"]) > 0  # momentum buffers
    from dff.training.state import rng_state, set_rng_state

    snap = rng_state()
    a = (torch.rand(3), np.random.rand(3), __import__("random").random())
    set_rng_state(snap)
    b = (torch.rand(3), np.random.rand(3), __import__("random").random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_training_steps(tiny_set, tmp_path, amp):
    result = train(_opts(tiny_set, tmp_path / amp, amp=amp, max_iters=2))
    assert result.progress.global_iter == 2 and np.isfinite(result.losses["loss"])
    state = load_state(tmp_path / amp / "latest.pth", "tiny_synthetic")
    assert state["run"]["amp"] == amp
    assert (state["scaler"] is not None) == (amp == "fp16")  # fp16 scales the loss; bf16 needs no scaler
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_a_failed_checkpoint_write_leaves_the_previous_one(good_run, tmp_path, monkeypatch):
    from dff.training import state as state_module

    latest = tmp_path / "latest.pth"
    latest.write_bytes((good_run / "latest.pth").read_bytes())
    before = _digest(latest)

    def disk_full(obj, f):
        f.write(b"partial")  # torch.save gets an open file, so that the OSError reaches the caller
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(state_module.torch, "save", disk_full)
    with pytest.raises(OSError) as e:
        state_module.atomic_torch_save({"x": torch.zeros(1)}, latest)
    assert e.value.filename == str(latest)  # named by its own name, not the temporary one
    assert _digest(latest) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pth"]  # no temporary file left behind
