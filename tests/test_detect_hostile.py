"""What a newcomer and a hostile user hit in `dff detect` (issue 26): outputs on a terminal, the bundled model on
real footage, collections re-run after their weights changed / writing into their inputs / run twice at once,
Seq-NMS over a damaged video, and values that cannot be schedules or rates."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from dff.cli.demo import CLIP_PATH, MODEL_PATH
from dff.cli.main import main
from dff.collection import folder_lock
from tests.conftest import REAL, need

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
pytestmark = pytest.mark.usefixtures("one_thread")


def one_line(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if x.startswith("dff: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_on_a_terminal_the_outputs_go_to_a_new_folder(tmp_path):
    """No output option with stdout on a terminal: the JSONL and the annotated video are saved under
    ./dff_detect_out/<name>/ (a fresh folder each run) and the place is printed; a pipe still gets JSONL."""
    cmd = [sys.executable, "-m", "dff", "detect", str(CLIP_PATH), "--weights", str(MODEL_PATH), "--max-frames", "3"]
    for run in (1, 2):
        leader, follower = pty.openpty()
        proc = subprocess.run(
            cmd + ["--no-progress"],
            cwd=tmp_path,
            env=ENV,
            stdout=follower,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
        os.close(follower)
        os.close(leader)
        assert proc.returncode == 0, proc.stderr
        folder = tmp_path / "dff_detect_out" / ("demo_clip" if run == 1 else "demo_clip-2")
        assert sorted(p.name for p in folder.iterdir()) == ["detections.jsonl", "detections.mp4"]
        assert len((folder / "detections.jsonl").read_text().splitlines()) == 3
        assert f"wrote {folder.relative_to(tmp_path)}/detections.jsonl" in proc.stderr
    piped = subprocess.run(cmd + ["--no-progress"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0 and len(piped.stdout.splitlines()) == 3
    assert json.loads(piped.stdout.splitlines()[0])["frame"] == 0


@pytest.mark.usefixtures("real_data")
def test_the_bundled_model_says_it_knows_only_synthetic_sprites(tmp_path, capsys):
    bikes = need(REAL / "videos" / "bikes.mp4")
    args = ["--weights", str(MODEL_PATH), "--max-frames", "2", "--no-progress"]
    assert main(["detect", str(bikes), *args, "--out-json", str(tmp_path / "a.jsonl")]) == 0
    assert "knows only this project's synthetic sprites" in capsys.readouterr().err
    assert main(["detect", str(CLIP_PATH), *args, "--out-json", str(tmp_path / "b.jsonl")]) == 0
    assert "synthetic sprites" not in capsys.readouterr().err  # its own demo clip: nothing to say


@pytest.fixture()
def videos(tmp_path) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(CLIP_PATH, folder / name)
    return folder


def collection(videos: Path, out: Path, weights: Path, capsys) -> tuple[int, str]:
    code = main(
        [
            "detect",
            "--inputs",
            str(videos),
            "--out-dir",
            str(out),
            "--weights",
            str(weights),
            "--max-frames",
            "3",
            "--no-progress",
        ]
    )
    return code, capsys.readouterr().err


def test_a_collection_rerun_with_other_weights_redoes_every_video(videos, tmp_path, capsys):
    weights = tmp_path / "w.safetensors"
    shutil.copy(MODEL_PATH, weights)
    out = tmp_path / "out"
    code, err = collection(videos, out, weights, capsys)
    assert code == 0 and "2 ok (0 already done)" in err
    code, err = collection(videos, out, weights, capsys)
    assert code == 0 and "2 ok (2 already done)" in err  # the same weights: nothing to redo
    state = load_file(weights)
    name = next(k for k in state if k.endswith("fc_cls.bias"))
    state[name] = state[name] + 1.0  # other weights under the same file name
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:
        metadata = f.metadata()
    save_file(state, str(weights), metadata=metadata)
    code, err = collection(videos, out, weights, capsys)
    assert code == 0 and "2 ok (0 already done)" in err  # the record holds the weights' SHA-256
    record = json.loads(next(out.glob("*/done.json")).read_text())
    assert len(record["settings"]["weights_sha256"]) == 64


def test_a_collection_may_not_write_into_its_inputs(videos, capsys):
    code, err = collection(videos, videos / "out", MODEL_PATH, capsys)
    assert code == 2 and "--out-dir is inside the input folder" in one_line(err)
    assert sorted(p.name for p in videos.iterdir()) == ["a.mp4", "b.mp4"]


def test_a_collection_folder_in_use_is_refused_at_once(videos, tmp_path, capsys):
    out = tmp_path / "out"
    with folder_lock(out):  # another run holds the folder
        code, err = collection(videos, out, MODEL_PATH, capsys)
    assert code == 2 and "in use by another dff detect run" in one_line(err)
    assert not list(out.glob("*/detections.jsonl"))
    code, err = collection(videos, out, MODEL_PATH, capsys)  # once it is free, the run goes on
    assert code == 0, err


@pytest.mark.usefixtures("real_data")
def test_seq_nms_over_a_damaged_video_writes_the_frames_before_the_damage(tmp_path, capsys):
    pytest.importorskip("trackers")
    data = bytearray(need(REAL / "videos" / "bikes.mp4").read_bytes())
    data[20_000:80_000] = bytes(60_000)  # damage after about a dozen frames
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    j, c = tmp_path / "d.jsonl", tmp_path / "c.json"
    code = main(
        [
            "detect",
            str(bad),
            "--weights",
            str(MODEL_PATH),
            "--seq-nms",
            "--out-json",
            str(j),
            "--out-coco",
            str(c),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "stopped at frame" in one_line(err)
    lines = [json.loads(x) for x in j.read_text().splitlines()]
    n = int(one_line(err).split("stopped at frame ")[1].split()[0])
    assert 0 < len(lines) == n and [r["frame"] for r in lines] == list(range(n))
    assert c.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["detect", str(CLIP_PATH), "--key-policy", "adaptive", "--key-budget", "inf"], "--key-budget must be"),
        (["detect", str(CLIP_PATH), "--fps", "1e308"], "--fps must be in (0, 1000]"),
        (["detect", str(CLIP_PATH), "--key-interval", str(10**23)], "--key-interval must be an integer"),
        (["test", "--ann", "a.json", "--img-root", ".", "--sweep-key-budget", "inf"], "--key-budget must be"),
        (["detect", str(CLIP_PATH), "--preview", "99999", "--live"], "--preview: port must be in 0..65535"),
        (["detect", str(CLIP_PATH), "--key-mode", "async"], "--key-mode and --preview are for live sources"),
    ],
    ids=["key-budget inf", "fps 1e308", "key-interval 1e23", "sweep-key-budget inf", "preview port", "key-mode"],
)
def test_values_that_cannot_be_a_schedule_or_a_rate_are_one_line(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("a.json").write_text("{}")
    code = main([*argv, "--weights", str(MODEL_PATH), "--no-progress"])
    assert code == 2 and message in one_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    assert torch.get_num_threads() == 1  # nothing ran
