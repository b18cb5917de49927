"""`dff detect --inputs ... --out-dir DIR` over five short videos (one damaged): sharded over two torchrun
processes (gloo) with the same JSONL as one process, and resumable without rewriting finished videos."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import dff
import dff.collection
from dff.cli.main import main
from dff.collection import assign, list_inputs, output_name, video_weights
from dff.io.sources import open_source

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
LENGTHS = {"a/clip.mp4": 7, "b/clip.mp4": 4, "street.mp4": 9, "night.mkv": 5}

pytestmark = pytest.mark.usefixtures("one_thread")


def _write_video(path: Path, frames: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (96, 160, 3), dtype=np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 160, 96, "yuv420p"
        for i in range(frames):
            img = np.roll(base, 4 * i, axis=1)
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")))
        c.mux(s.encode())


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """(weights, list file, the five sources in list order: four good videos and a truncated mp4)."""
    root = tmp_path_factory.mktemp("collection")
    torch.manual_seed(0)
    weights = root / "tiny.safetensors"
    dff.build(preset="tiny_synthetic").save(weights)
    videos = root / "videos"
    for seed, (name, n) in enumerate(LENGTHS.items()):
        _write_video(videos / name, n, seed)
    _write_video(videos / "broken.mp4", 6, 9)
    data = (videos / "broken.mp4").read_bytes()
    (videos / "broken.mp4").write_bytes(data[: len(data) // 2])  # cut before the mp4 index: cannot be opened
    names = ["a/clip.mp4", "b/clip.mp4", "broken.mp4", "street.mp4", "night.mkv"]
    listing = root / "list.txt"
    listing.write_text("# the test collection\n" + "\n".join(f"  videos/{n}" for n in names) + "\n\n  # end\n")
    return weights, listing, [str(videos / n) for n in names]


def _args(weights: Path, inputs: Path, out: Path) -> list[str]:
    return ["detect", "--inputs", str(inputs), "--out-dir", str(out), "--weights", str(weights), "--score-thr", "0"]


def _index(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]


def _outputs(out: Path, sources: list[str]) -> dict[str, list[dict]]:
    """Each good video's JSONL records by source."""
    return {
        s: [json.loads(x) for x in (out / output_name(s) / "detections.jsonl").read_text().splitlines()]
        for s in sources
        if "broken" not in s
    }


def _same(a: list[dict], b: list[dict]) -> bool:
    """The same frames and detections, up to the last bits of float32 (runs in other processes may sum in another
    order: the records hold the float32 values exactly)."""
    if [(r["frame"], r["key"], len(r["detections"])) for r in a] != [
        (r["frame"], r["key"], len(r["detections"])) for r in b
    ]:
        return False
    for ra, rb in zip(a, b):
        for da, db in zip(ra["detections"], rb["detections"]):
            if da["class_id"] != db["class_id"] or abs(da["score"] - db["score"]) > 1e-5:
                return False
            if max(abs(x - y) for x, y in zip(da["bbox"], db["bbox"])) > 1e-2:
                return False
    return True


def _same_outputs(a: dict[str, list[dict]], b: dict[str, list[dict]]) -> bool:
    return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def single_run(collection, tmp_path_factory) -> Path:
    """One process over the whole list: the reference outputs."""
    weights, listing, _ = collection
    out = tmp_path_factory.mktemp("single") / "out"
    assert main([*_args(weights, listing, out), "--no-progress"]) == 2
    return out


def test_single_process_outputs_index_and_failure(collection, single_run, capsys):
    _, _, sources = collection
    index = _index(single_run)
    assert [r["video"] for r in index] == sources
    assert [r["status"] for r in index] == ["ok", "ok", "failed", "ok", "ok"]
    assert [r["frames"] for r in index] == [7, 4, 0, 9, 5]
    assert [r["key_frames"] for r in index] == [1, 1, 0, 1, 1]  # key interval 10 of the tiny preset
    broken = index[2]
    assert "broken.mp4: cannot open video" in broken["error"] and "\n" not in broken["error"]
    assert all(r["error"] is None for r in index if r["status"] == "ok")
    assert len({r["out"] for r in index}) == 5 and index[0]["out"].startswith("clip-")  # two clip.mp4, two folders
    for r, n in zip(index, [7, 4, 0, 9, 5], strict=True):
        folder = single_run / r["out"]
        record = json.loads((folder / "done.json").read_text())
        assert record["status"] == r["status"] and record["settings"]["score_thr"] == 0.0
        if n:
            lines = [json.loads(x) for x in (folder / "detections.jsonl").read_text().splitlines()]
            assert [x["frame"] for x in lines] == list(range(n)) and lines[0]["key"]
            assert sum(len(x["detections"]) for x in lines) > 0


def test_same_jsonl_as_dff_detect_of_one_video(collection, single_run, tmp_path):
    weights, _, sources = collection
    j = tmp_path / "one.jsonl"
    assert main(["detect", sources[3], "--weights", str(weights), "--score-thr", "0", "--out-json", str(j)]) == 0
    one = [json.loads(x) for x in j.read_text().splitlines()]
    assert _same(_outputs(single_run, sources)[sources[3]], one)


def test_sigterm_then_rerun_completes_the_rest(collection, single_run, tmp_path):
    """A real stop: SIGTERM while the second (long) video runs; the re-run leaves the first one's files alone."""
    weights, _, sources = collection
    long = tmp_path / "long.mp4"
    _write_video(long, 40, 11)
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join([sources[0], str(long), *sources[1:]]))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "dff", *_args(weights, listing, out), "--no-progress"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / output_name(sources[0]) / "done.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert [r["status"] for r in _index(out)] == ["ok"] + ["pending"] * 5, err
    assert "1 ok (0 already done), 0 failed, 5 not run (interrupted)" in err
    first = out / output_name(sources[0])
    before = {p: p.stat().st_mtime_ns for p in first.iterdir()}
    assert main([*_args(weights, listing, out), "--no-progress"]) == 2
    assert {p: p.stat().st_mtime_ns for p in first.iterdir()} == before
    index = _index(out)
    assert [r["status"] for r in index] == ["ok", "ok", "ok", "failed", "ok", "ok"]
    assert [r["frames"] for r in index] == [7, 40, 4, 0, 9, 5]
    assert _same_outputs(_outputs(out, sources), _outputs(single_run, sources))


def test_sigterm_between_two_videos_stops_before_the_next(collection, tmp_path, monkeypatch):
    """The signal lands while the second video is being opened (no frame loop running yet): it stops at its
    first frame, without a record, and the rest is not started."""
    weights, listing, sources = collection
    opened = []

    def open_and_signal(source, fps=None):
        opened.append(source)
        if len(opened) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return open_source(source, fps=fps)

    monkeypatch.setattr(dff.collection, "open_source", open_and_signal)
    out = tmp_path / "out"
    assert main([*_args(weights, listing, out), "--no-progress"]) == 143
    assert opened == sources[:2]
    assert [r["status"] for r in _index(out)] == ["ok"] + ["pending"] * 4
    second = out / output_name(sources[1])
    assert not (second / "done.json").exists() and len((second / "detections.jsonl").read_text().splitlines()) == 1


def test_torchrun_two_processes_match_one(collection, single_run, tmp_path):
    weights, listing, sources = collection
    out = tmp_path / "out"
    cmd = [*TORCHRUN, "-m", "dff", *_args(weights, listing, out), "--no-progress"]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0, done.stderr[-3000:]
    assert "dff: error" not in done.stderr and "5 videos: 4 ok (0 already done), 1 failed" in done.stderr
    assert "failed: " + str(sources[2]) + ": cannot open video" in done.stderr
    index = _index(out)
    assert [r["status"] for r in index] == ["ok", "ok", "failed", "ok", "ok"]
    assert {r["rank"] for r in index} == {0, 1}  # both processes ran videos, each its own
    assert index[2]["error"] == _index(single_run)[2]["error"]
    assert _same_outputs(_outputs(out, sources), _outputs(single_run, sources))


def test_resume_runs_only_the_rest_and_keeps_finished_files(collection, single_run, tmp_path):
    weights, listing, sources = collection
    out = tmp_path / "out"
    first = tmp_path / "first.txt"  # as if the run had been killed after its first two videos
    first.write_text("\n".join(sources[:2]) + "\n")
    assert main([*_args(weights, first, out), "--no-progress"]) == 0
    folders = [out / output_name(s) for s in sources[:2]]
    before = {p: p.stat().st_mtime_ns for f in folders for p in f.iterdir()}
    (out / output_name(sources[3])).mkdir()  # a partial video: a temporary JSONL and no record
    (out / output_name(sources[3]) / ".detections.jsonl.x.tmp.jsonl").write_text('{"frame": 0}\n')
    assert main([*_args(weights, listing, out), "--no-progress"]) == 2
    assert {p: p.stat().st_mtime_ns for p in before} == before
    index = _index(out)
    assert [r["status"] for r in index] == ["ok", "ok", "failed", "ok", "ok"]
    assert [r["frames"] for r in index] == [7, 4, 0, 9, 5]
    assert _same_outputs(_outputs(out, sources), _outputs(single_run, sources))
    assert sorted(p.name for p in (out / output_name(sources[3])).iterdir()) == ["detections.jsonl", "done.json"]
    assert main([*_args(weights, listing, out), "--no-progress", "--score-thr", "0.9"]) == 2  # new settings: redone
    assert any(p.stat().st_mtime_ns != t for p, t in before.items())


def test_inputs_list_folder_and_glob(collection, tmp_path):
    _, listing, sources = collection
    assert list_inputs(listing) == sources
    videos = listing.parent / "videos"
    assert list_inputs(videos) == [str(videos / n) for n in ("a/clip.mp4", "b/clip.mp4", "broken.mp4")] + [
        str(videos / "night.mkv"),
        str(videos / "street.mp4"),
    ]
    assert list_inputs(f"{videos}/*.mp4") == [str(videos / "broken.mp4"), str(videos / "street.mp4")]
    assert output_name(sources[0]) != output_name(sources[1])
    assert output_name(sources[0]) == output_name(str(videos / "b" / ".." / "a" / "clip.mp4"))
    assert list_inputs(sources[3]) == [sources[3]]
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(dff.errors.InputError, match="names no source"):
        list_inputs(empty)


def test_balance_by_declared_frames(collection):
    _, _, sources = collection
    weights = video_weights(sources)
    assert [weights[i] for i in (0, 1, 3)] == [7, 4, 9]  # mp4 declares its frames
    assert weights[4] == pytest.approx(5, abs=0.6)  # mkv: duration x rate
    assert weights[2] > 0  # the damaged one: from its size
    assert assign([9, 7, 5, 4, 1], 2) == [[0, 3], [1, 2, 4]]
    assert sorted(sum(assign(weights, 2), [])) == list(range(5))


def test_bad_modes(collection, tmp_path, capsys):
    weights, listing, sources = collection
    assert main(["detect", "--weights", str(weights)]) == 2
    assert "give a SOURCE, or --inputs" in capsys.readouterr().err
    assert main(["detect", "--inputs", str(listing), "--weights", str(weights)]) == 2
    assert "--inputs needs --out-dir" in capsys.readouterr().err
    assert main([*_args(weights, listing, tmp_path / "o"), "--out-video", str(tmp_path / "v.mp4")]) == 2
    assert "--out-video: with --inputs" in capsys.readouterr().err
    assert main(["detect", sources[0], "--weights", str(weights), "--save-video"]) == 2
    assert "--save-video needs --inputs" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
