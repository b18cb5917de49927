"""`dff.evaluate` (the Python API under `dff test`) on a tiny synthetic val set, against the CLI's own files."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

import dff
from dff.cli.main import main
from dff.data.convert import convert_dataset
from dff.data.synthetic import make_synthetic
from dff.errors import DatasetError, DFFError, InputError
from dff.evaluation.results import read_records


@pytest.fixture(scope="module")
def val_set(tmp_path_factory) -> SimpleNamespace:
    """2 videos x 5 frames of 96x64 as COCO-VID, and a random-weights tiny model saved as .safetensors."""
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic(root, videos=0, frames=5, val_videos=2, det_images=0, width=96, height=64, seed=3, progress=False)
    (ann,) = convert_dataset(root, parts=("vid_val",), progress=False)
    weights = root / "tiny.safetensors"
    dff.build(preset="tiny_synthetic").save(weights)
    return SimpleNamespace(ann=ann, img_root=root / "Data" / "VID", weights=weights)


def test_evaluate_matches_the_cli_files(val_set, tmp_path, capsys):
    cli_out, api_out = tmp_path / "cli", tmp_path / "api"
    args = ["--weights", str(val_set.weights), "--ann", str(val_set.ann), "--img-root", str(val_set.img_root)]
    assert main(["test", *args, "--out", str(cli_out), "--sweep-key-interval", "1,3", "--no-progress"]) == 0
    capsys.readouterr()

    model = dff.load(val_set.weights)
    seen = []
    result = dff.evaluate(
        model,
        val_set.ann,
        val_set.img_root,
        api_out,
        policies=[dff.FixedInterval(1), dff.FixedInterval(3)],
        weights=val_set.weights,
        progress=False,
        on_interval=seen.append,
    )
    assert not hasattr(model, "key_interval") and not hasattr(model, "key_policy")  # a run is a value
    assert [r.key_interval for r in result.intervals] == [1, 3] and seen == result.intervals
    for r in result.intervals:
        k = r.key_interval
        assert r.results_path.read_bytes() == (cli_out / f"results_k{k}.jsonl").read_bytes()
        assert r.coco_results_path.read_bytes() == (cli_out / f"coco_results_k{k}.json").read_bytes()
        cli_summary = json.loads((cli_out / f"summary_k{k}.json").read_text())
        api_summary = json.loads(r.summary_path.read_text())
        assert api_summary["ap50"] == cli_summary["ap50"]
        assert {p: v.mean for p, v in r.ap50.items()} == {p: v["mean"] for p, v in cli_summary["ap50"].items()}
        assert set(r.ap50) == {"coco_ap50", "ilsvrc_ap50", "motion_fast", "motion_medium", "motion_slow"}
        records = read_records(r.results_path)
        assert r.stats.frames == len(records) == 10
        assert [x.is_key_frame for x in records] == [i % k == 0 for i in range(5)] * 2
    cli_sweep = json.loads((cli_out / "sweep.json").read_text())
    api_sweep = json.loads(result.sweep_json.read_text())
    assert [p["ap50"] for p in api_sweep] == [p["ap50"] for p in cli_sweep]
    assert result.sweep_png.stat().st_size > 0
    assert result.sweep_table().splitlines()[0].split()[:6] == ["key", "interval", "policy", "key", "share", "fps"]

    with pytest.raises(DFFError, match="different settings \\(weights\\)"):  # resuming with other weights is refused
        dff.evaluate(model, val_set.ann, val_set.img_root, api_out, policies=[dff.FixedInterval(3)])
    again = dff.evaluate(
        model,
        val_set.ann,
        val_set.img_root,
        api_out,
        policies=[dff.FixedInterval(3)],
        metrics="coco",
        weights=val_set.weights,
    )
    (resumed,) = again.intervals
    assert resumed.stats.frames == 0 and resumed.fps is None  # every video was already in the results file
    assert resumed.ap50["coco_ap50"].mean == result.intervals[1].ap50["coco_ap50"].mean
    assert again.sweep_json is None and again.sweep_png is None


def test_evaluate_rejects_bad_input(val_set, tmp_path):
    model = dff.load(val_set.weights)
    with pytest.raises(InputError, match="unknown metric"):
        dff.evaluate(model, val_set.ann, val_set.img_root, tmp_path, metrics=["map"])
    with pytest.raises(InputError, match="listed twice"):
        dff.evaluate(model, val_set.ann, val_set.img_root, tmp_path, policies=[dff.FixedInterval(3)] * 2)
    with pytest.raises(InputError, match="at least one key-frame policy"):
        dff.evaluate(model, val_set.ann, val_set.img_root, tmp_path, policies=[])
    with pytest.raises(InputError, match="not a folder"):
        dff.evaluate(model, val_set.ann, tmp_path / "missing", tmp_path)
    with pytest.raises(DatasetError, match="missing"):
        dff.evaluate(model, tmp_path / "none.json", val_set.img_root, tmp_path)
    assert not list(tmp_path.iterdir())  # nothing was written


def test_adaptive_budgets_in_the_evaluation_and_its_sweep(val_set, tmp_path, capsys):
    """`dff test --key-policy adaptive` and `--sweep-key-budget`: adaptive schedules get their own files, their
    key-frame share, and a place in the sweep beside the fixed intervals."""
    out = tmp_path / "sweep"
    args = ["--weights", str(val_set.weights), "--ann", str(val_set.ann), "--img-root", str(val_set.img_root)]
    code = main(
        ["test", *args, "--out", str(out), "--sweep-key-interval", "1,5", "--sweep-key-budget", "2", "--no-progress"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "Adaptive(budget=2.0," in printed and "key-frame share" in printed
    points = json.loads((out / "sweep.json").read_text())
    assert [(p["policy"], p["key_interval"]) for p in points] == [("fixed", 1), ("fixed", 5), ("adaptive", 2)]
    assert [p["key_share"] for p in points[:2]] == [1.0, 0.2]  # 5-frame videos: at k=5 only frame 0 is key
    assert 0.2 <= points[2]["key_share"] <= 0.8
    records = read_records(out / "results_adaptive2.jsonl")
    assert len(records) == 10 and records[0].is_key_frame
    summary = json.loads((out / "summary_adaptive2.json").read_text())
    assert summary["key_policy"].startswith("Adaptive(budget=2") and summary["key_share"] == points[2]["key_share"]
    assert (out / "sweep.png").stat().st_size > 0
    single = tmp_path / "single"
    code = main(["test", *args, "--out", str(single), "--key-policy", "adaptive", "--key-budget", "3", "--no-progress"])
    assert code == 0 and (single / "results_adaptive3.jsonl").is_file() and not (single / "sweep.json").exists()


@pytest.mark.parametrize(
    "bad, message",
    [
        (["--key-policy", "smart"], "--key-policy must be one of fixed, adaptive"),
        (
            ["--key-policy", "adaptive", "--key-budget", "0.5"],
            "--key-budget must be a number of frames in [1, 1000000]",
        ),
        (["--key-policy", "adaptive", "--key-min-interval", "5", "--key-max-interval", "3"], "min_interval"),
        (["--key-budget", "5"], "--key-budget needs --key-policy adaptive"),
    ],
)
def test_bad_key_policy_options_are_one_line_errors(val_set, tmp_path, capsys, bad, message):
    args = ["--weights", str(val_set.weights), "--ann", str(val_set.ann), "--img-root", str(val_set.img_root)]
    assert main(["test", *args, "--out", str(tmp_path / "o"), *bad, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dff: error:") and message in err[0], err
