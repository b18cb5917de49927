"""What a hostile user does to `dff export` and its exports (issue #26): a manifest edited by hand, graph files
swapped or from another export, `dff export` killed over an existing export, sizes and opsets that cannot work.
Each is one line naming the file and the field, exit 2, and nothing that existed before is changed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import dff  # noqa: E402
from dff.cli.main import main  # noqa: E402
from dff.errors import CheckpointError  # noqa: E402
from dff.export.manifest import sha256  # noqa: E402
from dff.export.onnx import export_onnx, max_opset  # noqa: E402
from dff.io.sources import open_source  # noqa: E402

TINY = str(files("dff") / "assets" / "tiny_synthetic.safetensors")
CLIP = str(files("dff") / "assets" / "demo_clip.mp4")
SRC = str(Path(dff.__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    return export_onnx(dff.load(TINY), tmp_path_factory.mktemp("hostile") / "export").parent


@pytest.fixture(scope="module")
def other_export(tmp_path_factory) -> Path:
    """An export of other weights (the tiny model with its box head's biases changed)."""
    model = dff.load(TINY)
    with __import__("torch").no_grad():
        model.net.detector.roi_head.bbox_head.fc_cls.bias += 0.5
    return export_onnx(model, tmp_path_factory.mktemp("hostile_other") / "export").parent


def _edit(change: Callable[[dict], None]) -> Callable[[Path, Path], None]:
    """A tampering of manifest.json's JSON."""

    def apply(folder: Path, other: Path) -> None:
        path = folder / "manifest.json"
        manifest = json.loads(path.read_text())
        change(manifest)
        path.unlink()  # a new file, not the hard-linked original
        path.write_text(json.dumps(manifest))

    return apply


def _set(*keys_and_value) -> Callable[[Path, Path], None]:
    *keys, value = keys_and_value

    def change(m: dict) -> None:
        for k in keys[:-1]:
            m = m[k]
        m[keys[-1]] = value(m[keys[-1]]) if callable(value) else value

    return _edit(change)


def _delete(*keys) -> Callable[[Path, Path], None]:
    def change(m: dict) -> None:
        for k in keys[:-1]:
            m = m[k]
        del m[keys[-1]]

    return _edit(change)


def _swap_files(a: str, b: str) -> Callable[[Path, Path], None]:
    def apply(folder: Path, other: Path) -> None:
        (folder / a).rename(folder / "tmp.onnx")
        (folder / b).rename(folder / a)
        (folder / "tmp.onnx").rename(folder / b)

    return apply


def _swap_stages(a: str, b: str) -> Callable[[dict], None]:
    """The two stages' file entries exchanged in the manifest, with their hashes (so the hashes hold)."""

    def change(m: dict) -> None:
        sa, sb = m["stages"][a], m["stages"][b]
        for key in ("file", "sha256"):
            sa[key], sb[key] = sb[key], sa[key]

    return _edit(change)


def _fewer_classes(m: dict) -> None:
    """29 classes in the config and in class_names, consistently: the detect graph still has 30."""
    m["class_names"] = m["class_names"][:-1]
    m["config"]["class_names"] = m["config"]["class_names"][:-1]


def _graph_of_other_export(folder: Path, other: Path) -> None:
    (folder / "detect.onnx").unlink()
    shutil.copy(other / "detect.onnx", folder / "detect.onnx")


def _truncated_graph(folder: Path, other: Path) -> None:
    data = (folder / "propagate.onnx").read_bytes()
    (folder / "propagate.onnx").unlink()
    (folder / "propagate.onnx").write_bytes(data[: len(data) // 2])


def _garbage_with_its_hash(folder: Path, other: Path) -> None:
    (folder / "detect.onnx").unlink()
    (folder / "detect.onnx").write_bytes(b"not an onnx graph")
    _set("stages", "detect", "sha256", sha256(folder / "detect.onnx"))(folder, other)


TAMPERINGS = {
    "stages missing": (_delete("stages"), "stages: missing"),
    "a stage's hash missing": (_delete("stages", "detect", "sha256"), "stages.detect.sha256: missing"),
    "config missing": (_delete("config"), "config: missing"),
    "preprocess.size_divisor missing": (_delete("preprocess", "size_divisor"), "preprocess.size_divisor: missing"),
    "opset a string": (_set("opset", "17"), "opset: must be an integer in [16, 1000], got '17'"),
    "fixed_size a string": (_set("fixed_size", "192x320"), "fixed_size: must be a list of 2 positive integers"),
    "config a list": (_set("config", []), "config: must be an object, got []"),
    "config.roi a number": (_set("config", "roi", 5), "config: "),
    "class_names a string": (_set("class_names", "car"), "class_names: must be a list of 1 to 10000 names"),
    "stages.detect a list": (_set("stages", "detect", []), "stages.detect: must be an object"),
    "size_divisor 0": (
        _set("preprocess", "size_divisor", 0),
        "preprocess.size_divisor: must be an integer in [1, 1024], got 0",
    ),
    "config size_divisor 0": (_set("config", "preprocess", "size_divisor", 0), "preprocess.size_divisor"),
    "negative scale": (
        _set("preprocess", "scale", [-320, 192]),
        "preprocess.scale: must be a list of 2 integers in [1, 8192]",
    ),
    "config negative scale": (_set("config", "preprocess", "scale", [-320, 192]), "preprocess.scale"),
    "std 0": (_set("preprocess", "std", [58.4, 0, 57.4]), "preprocess.std: must be a list of 3 positive numbers"),
    "mean NaN": (
        _set("preprocess", "mean", [float("nan"), 116.28, 103.53]),
        "preprocess.mean: must be a list of 3 finite",
    ),
    "fewer class names than classes": (
        _set("class_names", lambda v: v[:-1]),
        "class_names: 29 names but config.class_names has 30",
    ),
    "fewer classes than the graph's": (
        _edit(_fewer_classes),
        "detect.onnx: a graph for 30 classes, but the manifest's config has 29",
    ),
    "preset not the config's": (_set("preset", "r50_dc5"), "preset: 'r50_dc5' but config.name is 'tiny_synthetic'"),
    "fixed_size not padded": (
        _set("fixed_size", [100, 320]),
        "fixed_size: 100x320 is not a multiple of preprocess.size_divisor 16",
    ),
    "a graph file in another folder": (
        _set("stages", "detect", "file", "../detect.onnx"),
        "stages.detect.file: must be a .onnx file name beside the manifest",
    ),
    "one file for two stages": (
        _set("stages", "detect", "file", "propagate.onnx"),
        "stages.detect.file: propagate.onnx is also the file of stage propagate",
    ),
    "an input renamed": (
        _set("stages", "detect", "inputs", 0, "name", "x"),
        'stages.detect.inputs: x float32 ["batch", 64, "height/16", "width/16"] is not one of feats, img_shape',
    ),
    "a batch-1 output": (
        _set("stages", "detect", "outputs", 0, "shape", [1, 4]),
        'stages.detect.outputs: boxes float32 [1, 4] is not boxes float32 ["num_dets", 4]',
    ),
    "an input's name a list": (
        _set("stages", "propagate", "inputs", 0, "name", [1]),
        "stages.propagate.inputs: [1] float32",
    ),
    "version 1 export": (
        _set("format_version", 1),
        "this dff reads version 2 (graphs with a batch axis): export again",
    ),
    "two graph files swapped": (
        _swap_files("key_features.onnx", "propagate.onnx"),
        "key_features.onnx: not the graph manifest.json was exported with",
    ),
    "two stages' files swapped in the manifest": (
        _swap_stages("detect", "propagate"),
        "detect.onnx: holds the 'detect' graph, not stage 'propagate'",
    ),
    "a graph of another export": (
        _graph_of_other_export,
        "detect.onnx: not the graph manifest.json was exported with (its SHA-256 differs",
    ),
    "a truncated graph": (_truncated_graph, "propagate.onnx: not the graph manifest.json was exported with"),
    "a graph onnxruntime cannot read": (_garbage_with_its_hash, "detect.onnx: onnxruntime cannot load it"),
    "a graph file missing": (
        lambda folder, other: (folder / "key_features.onnx").unlink(),
        "stages.key_features.file: missing key_features.onnx",
    ),
}


def _linked_copy(src: Path, dst: Path) -> Path:
    """A copy of an export whose files are hard links (tamperings replace a file, never write into it)."""
    shutil.copytree(src, dst, copy_function=os.link)
    return dst


@pytest.mark.parametrize("case", list(TAMPERINGS))
def test_a_tampered_export_is_one_line_with_exit_2(case, export_dir, other_export, tmp_path, capsys):
    tamper, message = TAMPERINGS[case]
    folder = _linked_copy(export_dir, tmp_path / "export")
    tamper(folder, other_export)
    out = tmp_path / "dets.jsonl"
    code = main(
        [
            "detect",
            CLIP,
            "--weights",
            str(folder / "manifest.json"),
            "--max-frames",
            "1",
            "--no-progress",
            "--out-json",
            str(out),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("dff: error: ") and "\n" not in err, err
    assert message in err, err
    assert not out.exists()
    with pytest.raises(CheckpointError):
        dff.load(folder / "manifest.json")


def test_the_untampered_copy_runs(export_dir, tmp_path, capsys):
    """The linked copy the table starts from is itself a working export (so each case fails by its tampering)."""
    folder = _linked_copy(export_dir, tmp_path / "export")
    out = tmp_path / "dets.jsonl"
    args = ["detect", CLIP, "--weights", str(folder / "manifest.json"), "--max-frames", "2", "--no-progress"]
    assert main([*args, "--out-json", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 2


def _export_cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dff", "export", "--weights", TINY, "--out", str(out), *extra]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}


def test_kill_9_during_export_over_an_existing_export_leaves_it_whole(tmp_path, capsys):
    """A real `dff export` subprocess killed (SIGKILL) while it writes its second graph over an earlier export of
    other weights: the earlier export is untouched (same files, same hashes) and still runs; the half-written
    export is a hidden folder beside it that the next export does not mind."""
    out = tmp_path / "export"
    model = dff.load(TINY)
    with __import__("torch").no_grad():
        model.net.detector.roi_head.bbox_head.fc_cls.bias += 0.5  # other weights than the export being killed
    export_onnx(model, out)
    before = {p.name: sha256(p) for p in out.iterdir()}
    with open_source(CLIP) as src:
        frames = [f.image for f in src][:2]
    expected = list(dff.load(out / "manifest.json").predict(frames))

    proc = subprocess.Popen(_export_cmd(out), stderr=subprocess.PIPE, text=True, env=_env())
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "propagate.onnx (2/3)" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, lines
    assert {p.name: sha256(p) for p in out.iterdir()} == before
    again = list(dff.load(out / "manifest.json").predict(frames))
    for a, b in zip(expected, again, strict=True):
        np.testing.assert_array_equal(a.boxes, b.boxes)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "export"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".export.") and leftovers[0].endswith(".partial")
    assert (tmp_path / leftovers[0] / "key_features.onnx").is_file()

    done = subprocess.run(_export_cmd(out, "--no-progress"), capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    after = {p.name: sha256(p) for p in out.iterdir()}
    assert after.keys() == before.keys() and after["detect.onnx"] != before["detect.onnx"]
    dff.load(out / "manifest.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["export", *leftovers])


def test_export_over_an_earlier_export_replaces_it_whole(tmp_path, capsys):
    """An export over an earlier one: the folder swapped in whole (nothing of the old one, no temporary folder
    left); a folder holding anything else is refused before any work, and left as it was."""
    out = tmp_path / "export"
    assert main(["export", "--weights", TINY, "--out", str(out), "--fixed-size", "192x320"]) == 0
    assert main(["export", "--weights", TINY, "--out", str(out)]) == 0
    assert json.loads((out / "manifest.json").read_text())["fixed_size"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    assert sorted(p.name for p in out.iterdir()) == [
        "detect.onnx",
        "key_features.onnx",
        "manifest.json",
        "propagate.onnx",
    ]
    capsys.readouterr()

    (out / "notes.txt").write_text("mine")
    before = {p.name: sha256(p) for p in out.iterdir()}
    assert main(["export", "--weights", TINY, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds 'notes.txt', which is not part of a dff export" in err and err.count("\n") == 1
    assert {p.name: sha256(p) for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_export_shows_progress_per_graph(tmp_path, capsys):
    assert main(["export", "--weights", TINY, "--out", str(tmp_path / "export")]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "dff export: key_features.onnx (1/3)",
        "dff export: propagate.onnx (2/3)",
        "dff export: detect.onnx (3/3)",
    ]
    assert captured.out.startswith("wrote ")
    assert main(["export", "--weights", TINY, "--out", str(tmp_path / "quiet"), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


BOUNDS = {
    "--fixed-size 160000x160000": "fixed size 160000x160000: tiny_synthetic preprocesses every frame to a long side "
    "of 320 (short side at most 192) or a short side of 192 (long side at most 320)",
    "--fixed-size 192x336": "fixed size 192x336: tiny_synthetic preprocesses every frame to a long side of 320",
    "--fixed-size 208x320": "fixed size 208x320: tiny_synthetic preprocesses every frame to a long side of 320",
    "--fixed-size 16x16": "fixed size 16x16: tiny_synthetic preprocesses every frame to a long side of 320",
    "--fixed-size 176x304": "fixed size 176x304: tiny_synthetic preprocesses every frame to a long side of 320",
    "--fixed-size 100x320": "fixed size 100x320 is not a multiple of 16",
    "--fixed-size 0x320": "--fixed-size: sizes must be positive",
    "--opset 99": f"opset 99: choose 16 to {max_opset()}",
    "--opset 15": f"opset 15: choose 16 to {max_opset()}",
    "--weights export/manifest.json": "already an ONNX export",
}


@pytest.mark.parametrize("args", list(BOUNDS))
def test_export_bounds_are_one_line_before_any_work(args, tmp_path, capsys):
    option, value = args.split(" ")
    weights = str(tmp_path / value) if option == "--weights" else TINY
    extra = [] if option == "--weights" else [option, value]
    code = main(["export", "--weights", weights, "--out", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("dff: error: ") and "\n" not in err, err
    assert BOUNDS[args] in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("opset", [16, max_opset()])
def test_oldest_and_newest_opset_export_and_run(opset, tmp_path, one_thread):
    """The bounds are real: the oldest opset the graphs need and the newest this torch writes both export, load
    and give the detections of the default opset's export."""
    model = dff.load(TINY)
    with open_source(CLIP) as src:
        frames = [f.image for f in src][:2]
    manifest = export_onnx(model, tmp_path / "export", opset=opset)
    assert json.loads(manifest.read_text())["opset"] == opset
    ref = list(model.predict(frames, dff.run.REFERENCE))
    for a, b in zip(ref, dff.load(manifest).predict(frames), strict=True):
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_allclose(b.boxes, a.boxes, atol=0.05, rtol=0)


@pytest.mark.parametrize("preset", ["tiny_synthetic", "r50_dc5"])
def test_the_fixed_size_bound_is_exact(preset):
    """The padded size of any frame (a grid of 1..4000 x 1..4000 pixels, both orientations) passes the --fixed-size
    bound; a size longer or wider than the preset's padded scale, or with neither side at its scale's edge, fails."""
    from dff.data.transforms import image_meta
    from dff.errors import DFFError
    from dff.export.onnx import check_fixed_size, largest_input

    cfg = dff.preset(preset)
    sides = [1, 2, 7, 100, 333, 479, 600, 601, 1000, 1080, 2160, 4000]
    sizes = {image_meta(h, w, cfg.preprocess).pad_shape for h in sides for w in sides}
    assert len(sizes) > 20
    for size in sizes:
        check_fixed_size(size, cfg)
    long, short = largest_input(cfg.preprocess)
    d = cfg.preprocess.size_divisor
    for h, w in [(short, long + d), (long + d, short), (short + d, short + d), (short - d, long - d), (d, d)]:
        assert (h, w) not in sizes
        with pytest.raises(DFFError, match="no frame would ever have this size"):
            check_fixed_size((h, w), cfg)
