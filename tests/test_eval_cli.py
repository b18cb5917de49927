"""`dff test` end to end on a tiny synthetic val set: resume after an interruption, the sweep, and torchrun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import dff
from dff.cli.main import main
from dff.data.cocovid import CocoVID
from dff.data.convert import convert_dataset
from dff.data.synthetic import make_synthetic
from dff.evaluation.results import make_header, read_records
from dff.evaluation.runner import run_dataset
from dff.io.result import FrameResult
from dff.run import RunOptions

FRAMES_PER_VIDEO = 4


@pytest.fixture(scope="module")
def val_set(tmp_path_factory) -> SimpleNamespace:
    """3 videos x 4 frames of 96x64, as COCO-VID, and a random-weights tiny model saved as .safetensors."""
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic(
        root, videos=0, frames=FRAMES_PER_VIDEO, val_videos=3, det_images=0, width=96, height=64, seed=1, progress=False
    )
    (ann,) = convert_dataset(root, parts=("vid_val",), progress=False)
    weights = root / "tiny.safetensors"
    dff.build(preset="tiny_synthetic").save(weights)
    return SimpleNamespace(ann=ann, img_root=root / "Data" / "VID", weights=weights, dataset=CocoVID.load(ann))


def cli_args(s: SimpleNamespace, out: Path, *extra: str) -> list[str]:
    return [
        "test",
        "--weights",
        str(s.weights),
        "--ann",
        str(s.ann),
        "--img-root",
        str(s.img_root),
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


class FakeModel:
    """Deterministic detections from the frame content; raises KeyboardInterrupt after `stop_after` frames."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.stop_after, self.frames = stop_after, 0

    def predict(self, frames, run=None):
        for i, frame in enumerate(frames):
            if self.stop_after is not None and self.frames == self.stop_after:
                raise KeyboardInterrupt
            self.frames += 1
            m = float(frame.image.mean())
            yield FrameResult(
                boxes=np.array([[m, m / 2, m + 10.5, m / 2 + 7.25]], np.float32),
                scores=np.array([m / 255], np.float32),
                labels=np.array([int(m) % 30]),
                is_key_frame=i % 10 == 0,
                frame_index=frame.index,
            )


def test_interrupted_run_resumes_to_the_same_file(val_set, tmp_path):
    header = make_header(key_interval=10, weights="fake", ann="fake", preset="fake")
    full, cut = tmp_path / "full.jsonl", tmp_path / "cut.jsonl"
    run = RunOptions()
    run_dataset(FakeModel(), val_set.dataset, val_set.img_root, full, header, run, progress=False)
    with pytest.raises(KeyboardInterrupt):  # stops in the middle of the second video
        run_dataset(FakeModel(stop_after=6), val_set.dataset, val_set.img_root, cut, header, run, progress=False)
    assert len(cut.read_text().splitlines()) == 1 + 6  # the header and every finished frame were flushed
    resumed = FakeModel()
    stats = run_dataset(resumed, val_set.dataset, val_set.img_root, cut, header, run, progress=False)
    assert resumed.frames == stats.frames == 2 * FRAMES_PER_VIDEO  # the partial video ran again, the first did not
    assert cut.read_bytes() == full.read_bytes()


def test_cli_resume_equals_uninterrupted_run(val_set, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(cli_args(val_set, out, "--metric", "coco,ilsvrc")) == 0
    results = out / "results_k10.jsonl"
    full = results.read_bytes()
    lines = full.decode().splitlines(keepends=True)
    assert len(lines) == 1 + 3 * FRAMES_PER_VIDEO
    # as a run killed while writing the 7th frame leaves it: 6 complete lines and a cut-off one
    results.write_text("".join(lines[:7]) + lines[7][:40])
    summary_before = json.loads((out / "summary_k10.json").read_text())
    capsys.readouterr()
    assert main(cli_args(val_set, out, "--metric", "coco,ilsvrc")) == 0
    printed = capsys.readouterr().out
    assert results.read_bytes() == full
    summary = json.loads((out / "summary_k10.json").read_text())
    assert summary["frames_run_this_session"] == 2 * FRAMES_PER_VIDEO
    assert summary["ap50"] == summary_before["ap50"]
    assert "coco_ap50" in printed and "ilsvrc_ap50" in printed and "fps:" in printed
    coco = json.loads((out / "coco_results_k10.json").read_text())
    records = read_records(results)
    assert len(coco) == sum(len(r.scores) for r in records)
    first = records[0]
    x1, y1, x2, y2 = first.boxes[0].tolist()
    assert coco[0] == {
        "image_id": first.image_id,
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "score": float(first.scores[0]),
        "category_id": int(first.labels[0]) + 1,
    }


def test_sweep_writes_table_and_plot(val_set, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(cli_args(val_set, out, "--sweep-key-interval", "1,2", "--metric", "coco")) == 0
    printed = capsys.readouterr().out
    assert "key-frame sweep" in printed
    points = json.loads((out / "sweep.json").read_text())
    assert [p["key_interval"] for p in points] == [1, 2] and all(p["fps"] > 0 for p in points)
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(r.is_key_frame for r in read_records(out / "results_k1.jsonl"))  # the per-frame baseline
    assert [r.is_key_frame for r in read_records(out / "results_k2.jsonl")][:4] == [True, False, True, False]


def test_bad_arguments_are_one_line_errors(val_set, tmp_path, capsys):
    assert main(cli_args(val_set, tmp_path, "--metric", "map")) == 2
    assert main(cli_args(val_set, tmp_path, "--sweep-key-interval", "0,5")) == 2
    err = capsys.readouterr().err
    assert "dff: error: unknown metric(s) map" in err and "dff: error: --sweep-key-interval: key intervals" in err


def run_group(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a command in its own process group (OMP_NUM_THREADS=1); on timeout the group is stopped.

    SIGTERM first: torchrun starts its workers in sessions of their own and only stops them when terminated.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.slow
def test_torchrun_two_processes_match_one(val_set, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    done = run_group([sys.executable, "-m", "dff", *cli_args(val_set, one)])
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_group(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "dff",
            *cli_args(val_set, two),
        ]
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (two / "results_k10.jsonl").read_bytes() == (one / "results_k10.jsonl").read_bytes()
    assert not list(two.glob("*.rank*"))
    s1 = json.loads((one / "summary_k10.json").read_text())
    s2 = json.loads((two / "summary_k10.json").read_text())
    assert s2["ap50"] == s1["ap50"] and s2["frames_run_this_session"] == 3 * FRAMES_PER_VIDEO
    assert set(s1["ap50"]) == {"coco_ap50", "ilsvrc_ap50", "motion_fast", "motion_medium", "motion_slow"}
