"""Issue 26: a `dff train` checkpoint (`latest.pth`, `epoch_K.pth`) is usable wherever weights are taken: `dff.load`,
`dff detect`, `dff test`, `dff export`, `dff convert-checkpoint` and `--init-from`, with the preset and class names
of the run; its detections equal those of the same weights saved as safetensors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import dff
from dff import checkpoint
from dff.cli.main import main
from dff.data.convert import convert_dataset
from dff.data.synthetic import make_synthetic
from dff.errors import CheckpointError
from dff.training.init_from import read_source

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "dff" / "assets" / "tiny_synthetic.safetensors"
CLASSES = ("car", "zebra", "airplane", "giant_panda", "bus", "bird", "turtle", "watercraft")  # a run's order

pytestmark = pytest.mark.usefixtures("one_thread")


def _cli(capsys, *argv: object) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err.strip()


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory) -> dict:
    """A run fine-tuned from the bundled model with its own class list, stopped by --max-iters in its second
    epoch: epoch_1.pth and latest.pth, no model.safetensors."""
    root = tmp_path_factory.mktemp("syn")
    make_synthetic(root, videos=2, frames=6, val_videos=1, det_images=0, width=320, height=192, seed=3, progress=False)
    convert_dataset(root, progress=False)
    out = tmp_path_factory.mktemp("runs") / "x"
    argv = ["train", "--preset", "tiny_synthetic", "--data-root", root, "--out", out, "--workers", "0"]
    argv += ["--ann", root / "annotations" / "imagenet_vid_train.json", "--init-from", BUNDLED, "--no-progress"]
    argv += ["--classes", ",".join(CLASSES), "--epochs", "3", "--max-iters", "14"]
    assert main([str(a) for a in argv]) == 0
    assert (out / "epoch_1.pth").is_file() and (out / "latest.pth").is_file()
    assert not (out / "model.safetensors").exists()
    return {"root": root, "out": out}


@pytest.mark.parametrize("name", ["latest.pth", "epoch_1.pth"])
def test_dff_load_takes_a_training_checkpoint_with_its_preset_and_classes(stopped_run, name, tmp_path):
    path = stopped_run["out"] / name
    model = dff.load(path)
    assert model.config.name == "tiny_synthetic" and model.class_names == CLASSES
    saved = torch.load(path, map_location="cpu", weights_only=True)
    for k, v in model.net.state_dict().items():
        assert torch.equal(v, saved["model"][k]), k
    assert saved["progress"]["global_iter"] == (14 if name == "latest.pth" else 12)
    with pytest.raises(CheckpointError, match=f"{name}: saved for preset 'tiny_synthetic', not 'r50_dc5'"):
        dff.load(path, preset="r50_dc5")
    source, state, classes = read_source(path, "tiny_synthetic")  # --init-from takes it too
    assert (
        source == path
        and classes == CLASSES
        and torch.equal(state[checkpoint.CLS_WEIGHT], saved["model"][checkpoint.CLS_WEIGHT])
    )


def test_detect_with_a_training_checkpoint_equals_the_same_weights_as_safetensors(stopped_run, tmp_path, capsys):
    latest = stopped_run["out"] / "latest.pth"
    as_safetensors = tmp_path / "latest.safetensors"
    dff.load(latest).save(as_safetensors)
    frames = next((stopped_run["root"] / "Data" / "VID" / "val").iterdir())
    results = {}
    for weights in (latest, as_safetensors):
        jsonl = tmp_path / f"{weights.suffix[1:]}.jsonl"
        code, _, err = _cli(capsys, "detect", frames, "--weights", weights, "--out-json", jsonl, "--no-progress")
        assert code == 0, err
        results[weights.suffix] = [json.loads(line) for line in jsonl.read_text().splitlines()]
    pth, st = results[".pth"], results[".safetensors"]
    assert len(pth) == 6 and [r["detections"] for r in pth] == [r["detections"] for r in st]
    labels = {d["label"] for r in pth for d in r["detections"]}
    assert labels and labels <= set(CLASSES)


def test_test_export_and_convert_take_training_checkpoints(stopped_run, tmp_path, capsys):
    out, root = stopped_run["out"], stopped_run["root"]
    ann = root / "annotations" / "imagenet_vid_val.json"
    argv = ["test", "--weights", out / "epoch_1.pth", "--ann", ann, "--img-root", root / "Data" / "VID"]
    code, printed, err = _cli(capsys, *argv, "--out", tmp_path / "t", "--no-progress")
    assert code == 0, err
    assert "AP" in printed and any(name in printed for name in CLASSES)

    converted = tmp_path / "epoch_1.safetensors"
    code, printed, err = _cli(capsys, "convert-checkpoint", out / "epoch_1.pth", converted)
    assert code == 0, err
    assert f"wrote {converted} (tiny_synthetic, " in printed
    a, b = dff.load(converted), dff.load(out / "epoch_1.pth")
    assert a.config == b.config and a.class_names == CLASSES
    for k, v in a.net.state_dict().items():
        assert torch.equal(v, b.net.state_dict()[k]), k

    pytest.importorskip("onnxruntime")
    export = tmp_path / "onnx"
    code, _, err = _cli(capsys, "export", "--weights", out / "latest.pth", "--out", export)
    assert code == 0, err
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["config"]["name"] == "tiny_synthetic" and tuple(manifest["class_names"]) == CLASSES
