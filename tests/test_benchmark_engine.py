"""`dff benchmark`'s engine and command produce complete, consistent reports (no timing thresholds here)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

import dff
from dff.benchmark import STAGES, FrameTiming, parse_settings, run_benchmark, summarize
from dff.cli.main import main
from tests.conftest import REAL, need


def _frames(n: int) -> list[np.ndarray]:
    files = sorted(need(REAL / "ILSVRC2015_val_00007010").glob("*.JPEG"))[:n]
    return [cv2.resize(cv2.imread(str(f)), (480, 270), interpolation=cv2.INTER_AREA) for f in files]


@pytest.fixture(scope="module")
def report():
    torch.manual_seed(0)
    model = dff.build("tiny_synthetic")
    settings = parse_settings(["reference", "fast"], [1, 3])
    return run_benchmark(model.net, model.device, _frames(6), settings, warmup=2, matmul_size=256)


def test_report_has_every_setting_and_frame(report):
    assert list(report.settings) == ["reference@1", "reference@3", "fast@1", "fast@3"]
    assert report.frames == 6 and report.frame_size == [480, 270] and report.input_size == [320, 192]
    for _label, s in report.settings.items():
        interval = s["setting"]["key_interval"]
        assert s["frames"] == 6
        assert s["key_frames"] == (6 if interval == 1 else 2)
        assert s["fps"] > 0 and s["fps_median"] > 0
        assert s["key"]["count"] == s["key_frames"] and s["non_key"]["count"] == 6 - s["key_frames"]
        assert 0 < s["key_fraction_of_peak"] and s["peak_memory_bytes"] > 0
        assert set(s["stages_median"]["key"]) == set(STAGES)
        assert s["stages_median"]["key"]["backbone"] > 0 and s["stages_median"]["key"]["flow"] == 0
        assert s["key_share"] == pytest.approx(1 / interval)
        if interval > 1:
            non_key = s["stages_median"]["non_key"]
            assert non_key["flow"] > 0 and non_key["warp"] > 0 and non_key["backbone"] == 0
            assert 0 < s["non_key_over_key"]
    json.dumps(report.to_dict())  # serialisable as it is written


def test_stage_times_add_up_to_the_frame_time(report):
    for s in report.settings.values():
        assert [r["index"] for r in s["records"]] == list(range(6))
        for r in s["records"]:
            measured = sum(v for k, v in r["stages"].items() if k != "other")
            assert 0.5 * r["seconds"] < measured <= r["seconds"] * 1.0001
            assert r["stages"]["other"] == pytest.approx(r["seconds"] - measured, abs=1e-9)
            assert r["is_key"] == (r["stages"].get("backbone", 0) > 0)


def test_flops_and_peak(report):
    assert report.gflops["key"] > report.gflops["non_key"] > 0
    assert report.matmul_peak_gflops["fp32"] > 0
    s = report.settings["fast@3"]
    assert s["gflops_per_frame"] == pytest.approx((report.gflops["key"] + 2 * report.gflops["non_key"]) / 3)
    assert report.settings["fast@1"]["gflops_per_frame"] == pytest.approx(report.gflops["key"])


def test_fast_results_agree_with_reference(report):
    for label in ("fast@1", "fast@3"):
        a = report.settings[label]["agreement"]
        assert a["baseline"] == label.replace("fast", "reference")
        assert a["within_golden_tolerance"] and a["max_box_px"] <= 0.05 and a["max_score"] <= 1e-4
    assert report.settings["reference@1"]["agreement"] is None


def test_ratios_pair_the_right_settings(report):
    pairs = {(r["setting"], r["baseline"]) for r in report.ratios}
    assert pairs == {
        ("fast@1", "reference@1"),
        ("fast@3", "reference@3"),
        ("reference@3", "reference@1"),
        ("fast@3", "fast@1"),
    }
    for r in report.ratios:
        fps = report.settings[r["setting"]]["fps"] / report.settings[r["baseline"]]["fps"]
        assert r["throughput"] == pytest.approx(fps)


def test_summarize_arithmetic():
    records = [FrameTiming(i, i % 2 == 0, 0.4 if i % 2 == 0 else 0.1, {"backbone": 0.3}, 0.01) for i in range(4)]
    s = summarize(records, key_interval=2)
    assert s["fps"] == pytest.approx(4 / 1.0)
    assert s["fps_median"] == pytest.approx(2 / 0.5)
    assert s["non_key_over_key"] == pytest.approx(0.25)
    assert s["key"]["median"] == pytest.approx(0.4) and s["non_key"]["p90"] == pytest.approx(0.1)


def test_parse_settings():
    s = parse_settings(["fast", "fast:bf16", "reference"], [10], dtype="fp32")
    assert [x.label for x in s] == ["fast@10", "fast-bf16@10", "reference@10"]
    assert parse_settings(["fast"], [1], dtype="bf16")[0].label == "fast-bf16@1"
    for bad in (["reference:bf16"], ["quickest"], ["fast:int8"], ["fast", "fast"]):
        with pytest.raises(ValueError):
            parse_settings(bad, [1])
    s = parse_settings(["fast"], [1, 10], policies=["fixed", "adaptive"])
    assert [x.label for x in s] == ["fast@1", "fast@10", "fast@adaptive10"]  # no adaptive per-frame setting
    with pytest.raises(ValueError, match="key policy"):
        parse_settings(["fast"], [10], policies=["smart"])


def test_adaptive_setting_times_its_policy():
    """The adaptive policy's signals are timed as their own stage; fps(med) weighs by the key share measured."""
    torch.manual_seed(0)
    model = dff.build("tiny_synthetic")
    settings = parse_settings(["fast"], [3], policies=["fixed", "adaptive"])
    report = run_benchmark(model.net, model.device, _frames(9), settings, warmup=1, matmul_size=128)
    fixed, adaptive = report.settings["fast@3"], report.settings["fast@adaptive3"]
    fixed_cost, adaptive_cost = (x["stages_median"]["non_key"]["policy"] for x in (fixed, adaptive))
    assert 0 < fixed_cost < 1e-3 and adaptive_cost > 3 * fixed_cost  # a modulo against thumbnails and a warp
    assert adaptive["key_share"] == pytest.approx(adaptive["key_frames"] / 9)
    k, n, share = adaptive["key"]["median"], adaptive["non_key"]["median"], adaptive["key_share"]
    assert adaptive["fps_median"] == pytest.approx(1 / (share * k + (1 - share) * n))
    assert adaptive["agreement"] is None  # other key frames than fast@3: detections are not comparable
    assert any(r["setting"] == "fast@adaptive3" and r["baseline"] == "fast@3" for r in report.ratios)


def test_cli_writes_table_and_json(tmp_path, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(_frames(4)):
        cv2.imwrite(str(folder / f"{i:06d}.jpg"), f)
    out = tmp_path / "bench.json"
    code = main(
        [
            "benchmark",
            "--preset",
            "tiny_synthetic",
            "--source",
            str(folder),
            "--frames",
            "4",
            "--warmup",
            "1",
            "--key-interval",
            "2",
            "--compare",
            "reference,fast",
            "--matmul-size",
            "256",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "fast@2" in printed and "stage medians" in printed and "matmul peak" in printed
    data = json.loads(out.read_text())
    assert set(data["settings"]) == {"reference@2", "fast@2"}
    assert data["command"].startswith("dff benchmark --preset tiny_synthetic") and "--key-interval 2" in data["command"]
    assert data["machine"]["torch_threads"] >= 1


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    assert main(["benchmark", "--source", str(tmp_path), "--key-interval", "0"]) == 2
    assert main(["benchmark", "--source", str(tmp_path), "--compare", "reference:bf16"]) == 2
    assert main(["benchmark", "--source", str(tmp_path / "missing")]) == 2
    assert "dff: error:" in capsys.readouterr().err


def test_onnx_setting_times_the_exported_stages():
    """`--compare fast,onnx`: the exported stages on onnxruntime timed next to the fast path, with their detections
    checked against it (golden tolerances)."""
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = dff.build("tiny_synthetic")
    settings = parse_settings(["fast", "onnx"], [2])
    assert [s.label for s in settings] == ["fast@2", "onnx@2"]
    report = run_benchmark(model.net, model.device, _frames(4), settings, warmup=1, matmul_size=128)
    onnx = report.settings["onnx@2"]
    assert onnx["frames"] == 4 and onnx["key_frames"] == 2 and onnx["fps"] > 0
    assert onnx["agreement"]["baseline"] == "fast@2" and onnx["agreement"]["within_golden_tolerance"]
    with pytest.raises(ValueError, match="fp32 only"):
        parse_settings(["onnx:bf16"], [1])
