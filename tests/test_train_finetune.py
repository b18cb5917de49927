"""Fine-tuning (issue 20): any class set in `dff train`, `--init-from` with the box head's rows remapped by class
name, `--freeze backbone`, from CVAT / MOT annotations to `dff detect` showing the new names."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from dff import checkpoint, zoo
from dff.api import load
from dff.classes import VID_CLASSES
from dff.cli.main import main
from dff.config import preset
from dff.data.convert import convert_vid
from dff.data.synthetic import make_synthetic
from dff.errors import CheckpointError, DatasetError, InputError
from dff.models.detector import DFF
from dff.training.class_set import AUTO, resolve_classes
from dff.training.init_from import CLS, REG, init_from
from dff.training.loop import train
from dff.training.options import TrainOptions
from dff.training.state import load_state
from tests.test_data_formats import ANN_FIELDS, IMAGE_FIELDS, assert_same, write_cvat, write_mot

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "dff" / "assets" / "tiny_synthetic.safetensors"
PATTERN = "train/ILSVRC2015_VID_train_0000/{video}/{frame:06d}.JPEG"
NEW_NAMES = ("sedan", "coach", "panda_bear", "jet", "boat")  # the renamed classes, in the order met

pytestmark = pytest.mark.usefixtures("one_thread")


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err.strip()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, object, dict]:
    """Two 8-frame videos at the tiny model's size and the generator's own COCO-VID for them."""
    root = tmp_path_factory.mktemp("syn")
    made = make_synthetic(root, videos=2, frames=8, val_videos=0, det_images=0, width=320, height=192, seed=21)
    return root, made, convert_vid(root, "train", progress=False)


@pytest.fixture(scope="module")
def converted(synthetic, tmp_path_factory) -> tuple[dict, dict]:
    """The set written as CVAT video XML and as MOTChallenge sequences, converted with `dff convert-annotations`."""
    root, made, _ = synthetic
    tmp = tmp_path_factory.mktemp("formats")
    (tmp / "cvat").mkdir()
    xmls, seqs = [], []
    for v in made.videos:
        name = v.name.rsplit("/", 1)[1]
        xmls.append(tmp / "cvat" / f"{name}.xml")
        write_cvat(v, xmls[-1])
        seqs.append(tmp / "mot" / name)
        write_mot(v, seqs[-1])
    names = tmp / "classes.txt"
    names.write_text("".join(f"{n}\n" for n in VID_CLASSES))
    cvat, mot = tmp / "cvat.json", tmp / "mot.json"
    cvat_args = ["--from", "cvat-video", *map(str, xmls), "--out", str(cvat), "--file-pattern", PATTERN]
    assert main(["convert-annotations", *cvat_args]) == 0
    assert (
        main(["convert-annotations", "--from", "mot", *map(str, seqs), "--names", str(names), "--out", str(mot)]) == 0
    )
    return json.loads(cvat.read_text()), json.loads(mot.read_text())


def renamed(ann: dict, count: int = 3) -> tuple[dict, dict[str, str]]:
    """`ann` with only its annotated categories, the first `count` of them renamed to NEW_NAMES."""
    used = {a["category_id"] for a in ann["annotations"]}
    cats = [dict(c) for c in ann["categories"] if c["id"] in used]
    assert len(cats) >= count
    mapping = {c["name"]: new for c, new in zip(cats, NEW_NAMES[:count])}
    for c in cats:
        c["name"] = mapping.get(c["name"], c["name"])
    return {**ann, "categories": cats}, mapping


@pytest.fixture(scope="module")
def finetuned(synthetic, converted, tmp_path_factory) -> dict:
    """The CVAT JSON with three classes renamed, and `dff train --init-from` the bundled model on it (one epoch)."""
    root, _, _ = synthetic
    tmp = tmp_path_factory.mktemp("finetune")
    ann, mapping = renamed(converted[0])
    path = tmp / "renamed.json"
    path.write_text(json.dumps(ann))
    out = tmp / "run"
    argv = ["train", "--preset", "tiny_synthetic", "--data-root", str(root), "--ann", str(path), "--out", str(out)]
    argv += ["--init-from", str(BUNDLED), "--epochs", "1", "--workers", "0", "--no-progress", "--log-every", "1"]
    assert main(argv) == 0
    return {
        "root": root,
        "ann": path,
        "out": out,
        "mapping": mapping,
        "classes": tuple(c["name"] for c in ann["categories"]),
    }


def test_cvat_and_mot_to_a_fine_tuned_model_that_detects_with_the_new_names(synthetic, converted, finetuned, capsys):
    _, _, theirs = synthetic
    cvat, mot = converted
    assert_same(cvat, theirs, IMAGE_FIELDS, ANN_FIELDS + ("generated",))
    assert_same(mot, theirs, ("height", "width", "id", "frame_id", "video_id"), ANN_FIELDS)
    out, classes, mapping = finetuned["out"], finetuned["classes"], finetuned["mapping"]
    assert set(mapping.values()) <= set(classes) and len(classes) >= 3
    model = load(out / "model.safetensors")
    assert (
        model.class_names == classes and model.net.detector.roi_head.bbox_head.fc_cls.out_features == len(classes) + 1
    )
    record = json.loads((out / "log.jsonl").read_text().splitlines()[0])["init_from"]
    assert record["source"] == str(BUNDLED) and tuple(record["reinitialised"]) == tuple(mapping.values())
    assert {r["class"] for r in record["remapped"]} | set(record["kept"]) == set(classes) - set(mapping.values())
    assert record["background"] == [len(VID_CLASSES), len(classes)]
    frames = finetuned["root"] / "Data" / "VID" / PATTERN.format(video="ILSVRC2015_train_00000000", frame=0)
    jsonl = out.parent / "det.jsonl"
    weights = str(out / "model.safetensors")
    detect = ["detect", str(frames.parent), "--weights", weights, "--out-json", str(jsonl), "--no-progress"]
    code, _, printed = _cli([*detect, "--score-thr", "0.01"], capsys)  # a few iterations: new classes score low
    assert code == 0
    labels = {d["label"] for line in jsonl.read_text().splitlines() for d in json.loads(line)["detections"]}
    assert labels <= set(classes) and labels & set(mapping.values())
    assert any(name in printed for name in labels & set(mapping.values()))  # the summary line (stderr)


def test_the_new_classes_travel_to_dff_test_and_resume(finetuned, tmp_path, capsys):
    out, classes = finetuned["out"], finetuned["classes"]
    root = finetuned["root"] / "Data" / "VID"
    argv = [
        "test",
        "--weights",
        str(out / "model.safetensors"),
        "--ann",
        str(finetuned["ann"]),
        "--img-root",
        str(root),
    ]
    code, printed, err = _cli([*argv, "--out", str(tmp_path / "t"), "--no-progress"], capsys)
    assert code == 0, err
    assert all(name in printed for name in classes)
    resumed = train(
        TrainOptions(
            preset="tiny_synthetic",
            ann=finetuned["ann"],
            out=out,
            data_root=finetuned["root"],
            workers=0,
            progress_bar=False,
            resume=out / "latest.pth",
            epochs=2,
            max_iters=17,
        )
    )
    assert resumed.progress.global_iter == 17
    assert load_state(out / "latest.pth", "tiny_synthetic")["config"].class_names == classes


def test_the_new_classes_travel_to_dff_export(finetuned, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    export = tmp_path / "onnx"
    assert main(["export", "--weights", str(finetuned["out"] / "model.safetensors"), "--out", str(export)]) == 0
    manifest = json.loads((export / "manifest.json").read_text())
    assert tuple(manifest["class_names"]) == finetuned["classes"]
    from dff.weights import load as load_any

    assert load_any(export / "manifest.json").class_names == finetuned["classes"]


def _source() -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    state, cfg = checkpoint.read_safetensors(BUNDLED)
    return state, cfg.class_names


def _fresh(classes: tuple[str, ...], seed: int = 0) -> DFF:
    torch.manual_seed(seed)
    return DFF(replace(preset("tiny_synthetic"), class_names=classes))


def test_rows_of_shared_classes_are_copied_bit_for_bit_and_new_ones_drawn_as_a_fresh_head(tmp_path):
    state, src = _source()
    dst = ("car", "widget", "bus", "zebra")
    net, fresh = _fresh(dst), _fresh(dst)
    report = init_from(net, BUNDLED)
    got = net.state_dict()
    for j, name in enumerate(dst):
        i = src.index(name) if name in src else None
        for key, per in ((f"{CLS}.weight", 1), (f"{CLS}.bias", 1), (f"{REG}.weight", 4), (f"{REG}.bias", 4)):
            row = got[key][per * j : per * (j + 1)]
            if i is None:
                assert torch.equal(row, fresh.state_dict()[key][per * j : per * (j + 1)])
                if key.endswith("weight"):  # (biases start at zero; a bundled class never seen has zero fc_reg bias)
                    assert not any(torch.equal(row, state[key][per * k : per * (k + 1)]) for k in range(len(src)))
            else:
                assert torch.equal(row, state[key][per * i : per * (i + 1)]), (name, key)
    assert torch.equal(got[f"{CLS}.weight"][len(dst)], state[f"{CLS}.weight"][len(src)])  # background, last
    assert torch.equal(got[f"{CLS}.bias"][len(dst)], state[f"{CLS}.bias"][len(src)])
    others = [k for k in got if not k.startswith((CLS, REG))]
    assert others and all(torch.equal(got[k], state[k]) for k in others)
    assert report.reinitialised == ("widget",) and report.kept == ()
    assert report.remapped == (("car", 6, 0), ("bus", 5, 2), ("zebra", 29, 3))
    assert report.loaded == len(others) and report.background == (30, 4)
    same = _fresh(("airplane", "antelope", "widget"))
    report = init_from(same, BUNDLED)
    assert report.kept == ("airplane", "antelope") and report.remapped == () and len(report.dropped) == 28


def test_mmtracking_pth_and_zoo_name_sources(tmp_path, monkeypatch):
    state, src = _source()
    pth = tmp_path / "dff_mmtracking.pth"
    torch.save({"state_dict": state, "meta": {}}, pth)  # no CLASSES: mmtracking's VID classes
    net = _fresh(("car", "widget"))
    init_from(net, pth)
    assert torch.equal(net.state_dict()[f"{REG}.weight"][:4], state[f"{REG}.weight"][24:28])
    named = tmp_path / "named.pth"
    torch.save({"state_dict": state, "meta": {"CLASSES": tuple(f"c{i}" for i in range(30))}}, named)
    net = _fresh(("c3", "car"))
    report = init_from(net, named)
    assert report.remapped == (("c3", 3, 0),) and report.reinitialised == ("car",)
    monkeypatch.setenv("DFF_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    shutil.copyfile(pth, tmp_path / "cache" / "tiny-0123abcd.pth")
    entry = zoo.ZooEntry("tiny_synthetic", "https://example.invalid/dff/tiny-0123abcd.pth", 0.0)
    monkeypatch.setitem(zoo.ZOO, "tiny_zoo_test", entry)
    report = init_from(_fresh(("car",)), "tiny_zoo_test")  # the cached file; nothing downloaded
    assert report.source == str(tmp_path / "cache" / "tiny-0123abcd.pth") and report.kept == ()
    with pytest.raises(CheckpointError, match="dff_r50_dc5_imagenetvid: the official r50_dc5 checkpoint, not one of"):
        init_from(_fresh(("car",)), "dff_r50_dc5_imagenetvid")


def _opts(root: Path, ann: Path, out: Path, **kw) -> TrainOptions:
    return TrainOptions(
        preset="tiny_synthetic", ann=ann, out=out, data_root=root, workers=0, progress_bar=False, log_every=1, **kw
    )


def test_frozen_backbone_keeps_its_weights_through_training_and_resume(finetuned, tmp_path):
    root, ann, out = finetuned["root"], finetuned["ann"], tmp_path / "frozen"
    train(_opts(root, ann, out, init_from=BUNDLED, freeze="backbone", max_iters=3))
    source, _ = _source()
    saved = load_state(out / "latest.pth", "tiny_synthetic")
    assert saved["run"]["freeze"] == "backbone"
    model = saved["model"]
    backbone = [k for k in model if k.startswith("detector.backbone.")]
    assert backbone and all(torch.equal(model[k], source[k]) for k in backbone)
    assert not torch.equal(model["detector.rpn_head.rpn_conv.weight"], source["detector.rpn_head.rpn_conv.weight"])
    assert not torch.equal(model[f"{CLS}.weight"][0], source[f"{CLS}.weight"][0])
    trainable = sum(len(g["params"]) for g in saved["optimizer"]["param_groups"])
    net = DFF(saved["config"])
    assert trainable == sum(1 for n, _ in net.named_parameters() if not n.startswith("detector.backbone."))
    train(_opts(root, ann, out, resume=out / "latest.pth", max_iters=5))  # the run's own freeze setting
    model = load_state(out / "latest.pth", "tiny_synthetic")["model"]
    assert all(torch.equal(model[k], source[k]) for k in backbone)
    with pytest.raises(CheckpointError, match="trains with --freeze backbone, not none"):
        train(_opts(root, ann, out, resume=out / "latest.pth", max_iters=6, freeze="none"))


def test_class_rule(finetuned, converted):
    from dff.data.cocovid import CocoVID

    vid = CocoVID(converted[0], "cvat.json")
    assert resolve_classes(vid, VID_CLASSES) == VID_CLASSES  # every category a preset class: the preset's
    assert resolve_classes(vid, VID_CLASSES, AUTO) == VID_CLASSES  # the file's own (here the same 30)
    own = CocoVID.load(finetuned["ann"])
    assert resolve_classes(own, VID_CLASSES) == finetuned["classes"]
    picked = tuple(reversed(finetuned["classes"])) + ("spare",)
    assert resolve_classes(own, VID_CLASSES, picked) == picked
    with pytest.raises(DatasetError, match=r"renamed.json: --classes sedan leaves out \d annotated categor"):
        resolve_classes(own, VID_CLASSES, ("sedan",))
    with pytest.raises(InputError, match="given twice: car"):
        TrainOptions(preset="tiny_synthetic", ann=Path("a.json"), out=Path("o"), classes="car,bus,car")
    with pytest.raises(InputError, match="--init-from starts a new run"):
        TrainOptions(preset="tiny_synthetic", ann=Path("a"), out=Path("o"), init_from="x.pth", resume=Path("o/l.pth"))


def test_bad_inputs_are_one_line_errors_with_exit_2(finetuned, tmp_path, capsys):
    root, ann = finetuned["root"], finetuned["ann"]
    base = ["train", "--preset", "tiny_synthetic", "--data-root", str(root), "--ann", str(ann), "--workers", "0"]
    base += ["--no-progress", "--max-iters", "1"]
    code, _, err = _cli([*base, "--out", str(tmp_path / "a"), "--classes", "sedan,coach"], capsys)
    assert code == 2 and err.startswith("dff: error: ") and str(ann) in err and "leaves out" in err and "\n" not in err
    assert not (tmp_path / "a").exists()
    state, _ = _source()
    cut = dict(state)
    del cut["detector.backbone.layer3.1.conv2.weight"]
    cut["detector.backbone.layer2.0.conv1.weight"] = cut["detector.backbone.layer2.0.conv1.weight"][:, :3]
    bad = tmp_path / "other_arch.pth"
    torch.save(cut, bad)
    code, _, err = _cli([*base, "--out", str(tmp_path / "b"), "--init-from", str(bad)], capsys)
    assert code == 2 and "\n" not in err
    assert f"{bad}: not a checkpoint of the tiny_synthetic preset's architecture: 1 missing, 1 mis-shaped (" in err
    assert "detector.backbone.layer3.1.conv2.weight" in err and not (tmp_path / "b" / "latest.pth").exists()
    flow_only = tmp_path / "flownet.pth"
    torch.save({f"motion.{k[len('motion.') :]}": v for k, v in state.items() if k.startswith("motion.")}, flow_only)
    code, _, err = _cli([*base, "--out", str(tmp_path / "c"), "--init-from", str(flow_only)], capsys)
    assert code == 2 and "missing, 0 mis-shaped" in err and str(flow_only) in err
    code, _, err = _cli([*base, "--out", str(tmp_path / "d"), "--init-from", str(BUNDLED), "--resume"], capsys)
    assert code == 2 and "--init-from starts a new run" in err
