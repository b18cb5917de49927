"""Two-process CPU training (torchrun, gloo): gradients are averaged and both ranks hold identical weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dff.config import preset
from dff.data.convert import convert_dataset
from dff.data.synthetic import make_synthetic
from dff.training.state import load_state

HERE = Path(__file__).resolve().parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("syn_ddp")
    make_synthetic(root, videos=2, frames=4, val_videos=0, det_images=0, width=320, height=192, seed=7, progress=False)
    convert_dataset(root, parts=("vid_train",), progress=False)
    return root


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def test_ddp_step_averages_gradients_and_keeps_ranks_identical(tiny_set, tmp_path):
    _run([*TORCHRUN, str(HERE / "ddp_train_step.py"), str(tiny_set), str(tmp_path)])
    reports = [json.loads((tmp_path / f"report_rank{r}.json").read_text()) for r in (0, 1)]
    for r in reports:
        assert r["world"] == 2 and r["num_params"] > 50
        assert r["max_rel_error"] < 1e-5, r  # DDP gradient == mean of the two ranks' own gradients
        assert r["max_rank_difference"] > 0, r  # the ranks really trained on different pairs
    w0 = torch.load(tmp_path / "weights_rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "weights_rank1.pt", weights_only=True)
    assert w0.keys() == w1.keys()
    assert all(torch.equal(w0[k], w1[k]) for k in w0)


def test_torchrun_dff_train_two_processes(tiny_set, tmp_path):
    out = tmp_path / "run"
    _run(
        [
            *TORCHRUN,
            "-m",
            "dff",
            "train",
            "--preset",
            "tiny_synthetic",
            "--data-root",
            str(tiny_set),
            "--ann",
            str(tiny_set / "annotations" / "imagenet_vid_train.json"),
            "--out",
            str(out),
            "--workers",
            "0",
            "--max-iters",
            "2",
            "--log-every",
            "1",
            "--no-progress",
        ]
    )
    state = load_state(out / "latest.pth", "tiny_synthetic")
    assert state["run"]["world_size"] == 2 and state["progress"].global_iter == 2
    assert len(state["rng"]) == 2  # every rank's RNG, for an exact resume
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["global_iter"] for r in records] == [1, 2]
    t = preset("tiny_synthetic").train
    first_lr = t.lr_per_8_images * 2 / 8 * (t.warmup_ratio if t.warmup_iters else 1.0)
    assert records[0]["lr"] == pytest.approx(first_lr)  # the LR scales with the 2-process batch
