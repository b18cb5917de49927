"""The command line passes a run's options as a value: `dff test` runs exactly the key-frame policy asked for, and
`dff detect --out-coco` writes the same COCO results as `dff test` scores (one serialisation, 1-based image ids)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from dff.cli.demo import MODEL_PATH
from dff.cli.main import main
from dff.data.cocovid import CocoVID
from dff.data.convert import convert_dataset
from dff.data.synthetic import make_synthetic
from dff.evaluation.coco import coco_ap50


@pytest.fixture(scope="module")
def one_video(tmp_path_factory) -> SimpleNamespace:
    """One synthetic val video of 24 frames (the bundled model's own kind of data), as COCO-VID."""
    root = tmp_path_factory.mktemp("one_video")
    make_synthetic(root, videos=0, frames=24, val_videos=1, det_images=0, seed=4, progress=False)
    (ann,) = convert_dataset(root, parts=("vid_val",), progress=False)
    dataset = CocoVID.load(ann)
    (video,) = dataset.videos
    folder = root / "Data" / "VID" / Path(dataset.frames(video["id"])[0]["file_name"]).parent
    return SimpleNamespace(ann=ann, img_root=root / "Data" / "VID", dataset=dataset, folder=folder)


def _test(s: SimpleNamespace, out: Path, *extra: str) -> dict:
    args = ["test", "--weights", str(MODEL_PATH), "--ann", str(s.ann), "--img-root", str(s.img_root)]
    assert main([*args, "--out", str(out), "--metric", "coco", "--no-progress", "--device", "cpu", *extra]) == 0
    (summary,) = out.glob("summary_*.json")
    return json.loads(summary.read_text())


def test_dff_test_runs_exactly_the_adaptive_policy_asked_for(one_video, tmp_path, capsys):
    """The regression of issue 24: --key-min-interval and --key-max-interval used to be validated and then dropped."""
    summary = _test(
        one_video, tmp_path / "out", "--key-policy", "adaptive", "--key-min-interval", "4", "--key-max-interval", "20"
    )
    policy = summary["key_policy"]
    assert policy.startswith("Adaptive(budget=10.0, min_interval=4, max_interval=20,"), policy
    assert "min_interval=4, max_interval=20" in capsys.readouterr().out  # the printed summary says so too
    (results,) = (tmp_path / "out").glob("results_*.jsonl")
    assert json.loads(results.read_text().splitlines()[0])["key_policy"] == policy


def test_detect_coco_results_score_as_dff_test_reports(one_video, tmp_path):
    summary = _test(one_video, tmp_path / "test")
    reported = summary["ap50"]["coco_ap50"]["mean"]
    results = tmp_path / "r.json"
    assert (
        main(
            [
                "detect",
                str(one_video.folder),
                "--weights",
                str(MODEL_PATH),
                "--out-coco",
                str(results),
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    items = json.loads(results.read_text())
    ids = {im["id"] for im in one_video.dataset.images}
    assert {i["image_id"] for i in items} <= ids and min(i["image_id"] for i in items) == 1
    assert min(i["score"] for i in items) < 0.5  # without --score-thr the COCO results keep every detection
    dataset = one_video.dataset
    gt = dataset.all_annotations()
    ap = coco_ap50(dataset.images, gt, items, len(dataset.categories)).mean
    assert 0.3 < reported and ap == pytest.approx(reported, abs=1e-12)
