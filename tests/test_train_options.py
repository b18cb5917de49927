"""TrainOptions built in Python equal what `dff train` parses from the same settings (defaults included)."""

from __future__ import annotations

import importlib
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from dff.cli.main import build_parser
from dff.cli.train import options
from dff.errors import InputError
from dff.training.options import TrainOptions

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def parsed(*argv: str) -> TrainOptions:
    return options(build_parser().parse_args(["train", *argv]))


def test_defaults_equal_the_cli_defaults():
    built = TrainOptions(preset="r50_dc5", ann=Path("a.json"), out=Path("runs/x"))
    assert parsed("--preset", "r50_dc5", "--ann", "a.json", "--out", "runs/x") == built
    assert built.resume is None and built.batch_size == 1 and built.workers == 2 and built.log_every == 50


def test_every_option_from_the_command_line_equals_the_python_built_one():
    built = TrainOptions(
        preset="tiny_synthetic",
        ann=Path("d/vid.json"),
        out=Path("o"),
        data_root=Path("d"),
        det_ann=Path("d/det.json"),
        epochs=3,
        resume=Path("o/epoch_1.pth"),
        batch_size=4,
        workers=0,
        seed=7,
        amp="bf16",
        checkpoint_every=5,
        log_every=2,
        device="cpu",
        lr=0.0025,
        backbone_weights=Path("r18.pth"),
        flownet_weights=Path("flow.pth"),
        max_iters=11,
        progress_bar=False,
        classes=("car", "bus"),
        freeze="backbone",
        overwrite=True,
    )
    cli = parsed(
        *("--preset", "tiny_synthetic", "--ann", "d/vid.json", "--out", "o", "--data-root", "d"),
        *("--det-ann", "d/det.json", "--epochs", "3", "--resume", "o/epoch_1.pth", "--batch-size", "4"),
        *("--workers", "0", "--seed", "7", "--amp", "bf16", "--checkpoint-every", "5", "--log-every", "2"),
        *("--device", "cpu", "--lr", "0.0025", "--backbone-weights", "r18.pth", "--flownet-weights", "flow.pth"),
        *("--max-iters", "11", "--no-progress", "--classes", "car, bus", "--freeze", "backbone", "--overwrite"),
    )
    assert cli == built
    defaults = TrainOptions(preset="tiny_synthetic", ann=Path("d/vid.json"), out=Path("o"))
    not_set = {"init_from"}  # it conflicts with resume: below
    assert all(
        getattr(built, f.name) != getattr(defaults, f.name) for f in fields(TrainOptions)[3:] if f.name not in not_set
    )
    fine_tune = parsed("--preset", "tiny_synthetic", "--ann", "a.json", "--out", "o", "--init-from", "m.safetensors")
    assert fine_tune == TrainOptions(
        preset="tiny_synthetic", ann=Path("a.json"), out=Path("o"), init_from="m.safetensors"
    )


def test_bare_resume_is_the_run_folders_latest_checkpoint():
    opts = parsed("--preset", "r50_dc5", "--ann", "a.json", "--out", "runs/x", "--resume")
    assert opts.resume == TrainOptions(preset="r50_dc5", ann=Path("a.json"), out=Path("runs/x")).latest
    assert opts.resume == Path("runs/x/latest.pth")


@pytest.mark.parametrize("started", [False, True])
def test_train_tiny_recipe_equals_its_former_command_line(tmp_path, monkeypatch, started):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    train_tiny = importlib.import_module("train_tiny")
    data, flow, out, r = tmp_path / "data", tmp_path / "flow.pth", tmp_path / "train", train_tiny.Recipe()
    if started:
        out.mkdir()
        (out / "latest.pth").write_bytes(b"")
    argv = [
        *("--preset", "tiny_synthetic", "--data-root", str(data)),
        *("--ann", str(data / "annotations" / "imagenet_vid_train.json")),
        *("--det-ann", str(data / "annotations" / "imagenet_det_30plus1cls.json")),
        *("--out", str(out), "--batch-size", str(r.batch_size // 2), "--workers", "0", "--seed", str(r.train_seed)),
        *("--flownet-weights", str(flow), "--no-progress"),
    ]
    cli = parsed(*argv, *(["--resume"] if started else []))
    assert train_tiny.train_options(data, flow, out, r, procs=2) == cli
    assert cli.resume == (out / "latest.pth" if started else None)
    sys.modules.pop("train_tiny", None)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("batch_size", 0, "batch_size must be >= 1"),
        ("workers", -1, "workers must be >= 0"),
        ("epochs", 0, "epochs must be >= 1"),
        ("amp", "fp8", "amp must be one of bf16, fp16"),
        ("freeze", "neck", "freeze must be one of none, backbone"),
        ("classes", "car,,bus", "an empty class name"),
    ],
)
def test_bad_options_are_refused(field, value, message):
    with pytest.raises(InputError, match=message):
        TrainOptions(preset="r50_dc5", ann=Path("a.json"), out=Path("o"), **{field: value})
