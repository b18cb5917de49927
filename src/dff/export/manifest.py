"""The manifest of an ONNX export (`manifest.json`): the format `dff export` writes and the checks an export passes
when it is loaded.

Format version 2: every graph has a dynamic batch axis (`batch`: N frames of one padded size, each with its own
`img_shape` / `scale_factor` row); detect.onnx returns the detections of all N frames with a `batch_index` output.
Version 1 exports (batch-1 graphs) are refused with "export again".

`read_manifest` checks a manifest against the schema below: every field's type and range, the config through
`DFFConfig.from_dict`, the class names and preprocessing against the config, each stage's inputs and outputs
against the ones this format defines (`stage_specs`), each graph a plain file name beside the manifest. `check_graph`
checks a graph file against its stage: its SHA-256 (recorded at export, so a graph of another export or a changed
file is caught before onnxruntime reads it), then, once loaded, the stage name and class count the exporter wrote
into the graph's metadata and its inputs and outputs. Every failure is one CheckpointError line naming the file and
the field.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dff.config import DFFConfig
from dff.errors import CheckpointError, DFFError

FORMAT = "dff-onnx"
FORMAT_VERSION = 2
STAGES = ("key_features", "propagate", "detect")
DEFAULT_OPSET = 17
MIN_OPSET = 16  # GridSample (the warp) and RoiAlign's half_pixel mode (aligned=True)
DTYPES = {"float32": "tensor(float)", "int64": "tensor(int64)"}  # manifest dtype -> onnxruntime's type name
META_STAGE, META_CLASSES = "dff.stage", "dff.num_classes"  # graph metadata written by the exporter
MAX_SIZE = 8192  # the largest preprocessing scale a config may ask for (config.SCHEMA's preprocess.scale)


def _io(names: list[str], shapes: list[list], dtypes: list[str]) -> list[dict]:
    return [{"name": n, "shape": s, "dtype": d} for n, s, d in zip(names, shapes, dtypes, strict=True)]


def stage_specs(cfg: DFFConfig, fixed_size: tuple[int, int] | None) -> dict[str, dict]:
    """Input and output names, shapes and dtypes of the three graphs; a string names a dynamic axis ("batch": the
    frames of one call; "height", "width": the padded size unless `fixed_size`; "num_dets": all frames' detections)."""
    c = cfg.neck.out_channels
    stride = cfg.rpn.stride
    hp, wp = fixed_size or ("height", "width")
    h, w = (hp // stride, wp // stride) if fixed_size else (f"height/{stride}", f"width/{stride}")
    img, feats, shape = ["batch", 3, hp, wp], ["batch", c, h, w], ["batch", 2]
    dets = ["num_dets"]
    return {
        "key_features": {
            "inputs": _io(["img", "img_shape"], [img, shape], ["float32", "int64"]),
            "outputs": _io(["key_feats", "key_motion"], [feats, img], ["float32", "float32"]),
        },
        "propagate": {
            "inputs": _io(
                ["img", "key_feats", "key_motion", "img_shape"],
                [img, feats, img, shape],
                ["float32", "float32", "float32", "int64"],
            ),
            "outputs": _io(["feats", "flow"], [feats, ["batch", 2, hp, wp]], ["float32", "float32"]),
        },
        "detect": {
            "inputs": _io(
                ["feats", "img_shape", "scale_factor"], [feats, shape, ["batch", 4]], ["float32", "int64", "float32"]
            ),
            "outputs": _io(
                ["boxes", "scores", "labels", "batch_index"],
                [[*dets, 4], dets, dets, dets],
                ["float32", "float32", "int64", "int64"],
            ),
        },
    }


def sha256(path: Path) -> str:
    """The SHA-256 of a file, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Manifest:
    """A checked manifest: the config, the fixed padded size (or None) and each stage's spec (`file`, `sha256`,
    `inputs`, `outputs`)."""

    path: Path
    cfg: DFFConfig
    fixed_size: tuple[int, int] | None
    stages: dict[str, dict]

    def graph(self, stage: str) -> Path:
        """The graph file of a stage (beside the manifest)."""
        return self.path.parent / self.stages[stage]["file"]


class _Fields:
    """Type and range checks of one manifest, each failure one line naming the manifest and the field."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, field: str, problem: str) -> CheckpointError:
        return CheckpointError(f"{self.path}: {field}: {problem}")

    def get(self, obj: dict, key: str, where: str = "") -> Any:
        field = f"{where}{key}"
        if key not in obj:
            raise self.fail(field, "missing (export again, or restore the file dff export wrote)")
        return obj[key]

    def mapping(self, obj: dict, key: str, where: str = "") -> dict:
        value = self.get(obj, key, where)
        if not isinstance(value, dict):
            raise self.fail(f"{where}{key}", f"must be an object, got {_shown(value)}")
        return value

    def string(self, obj: dict, key: str, where: str = "") -> str:
        value = self.get(obj, key, where)
        if not isinstance(value, str):
            raise self.fail(f"{where}{key}", f"must be a string, got {_shown(value)}")
        return value

    def integer(self, obj: dict, key: str, low: int, high: int, where: str = "") -> int:
        value = self.get(obj, key, where)
        if not _is_int(value) or not low <= value <= high:
            raise self.fail(f"{where}{key}", f"must be an integer in [{low}, {high}], got {_shown(value)}")
        return value

    def sequence(
        self, obj: dict, key: str, length: tuple[int, int], item: Callable[[Any], bool], what: str, where: str = ""
    ) -> list:
        value = self.get(obj, key, where)
        low, high = length
        count = f"{low}" if low == high else f"{low} to {high}"
        if not isinstance(value, list) or not low <= len(value) <= high or not all(item(v) for v in value):
            raise self.fail(f"{where}{key}", f"must be a list of {count} {what}, got {_shown(value)}")
        return value


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _shown(value: object, limit: int = 40) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _load_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: not a readable JSON manifest ({str(e).splitlines()[0]})") from None


def read_manifest(path: str | os.PathLike) -> Manifest:
    """The manifest of an export, checked (module docstring); CheckpointError naming the field otherwise."""
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f'{path}: not a dff ONNX manifest (no "format": "{FORMAT}")')
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        older = _is_int(version) and version < FORMAT_VERSION
        raise CheckpointError(
            f"{path}: manifest format version {_shown(version)}; this dff reads version {FORMAT_VERSION}"
            + (" (graphs with a batch axis): export again with dff export" if older else "")
        )
    f = _Fields(path)
    for key in ("preset", "dff_version", "torch_version", "exporter"):
        f.string(data, key)
    cfg = _config(f, data)
    f.sequence(data, "class_names", (1, 10_000), lambda v: isinstance(v, str), "names")
    names, n = cfg.class_names, len(data["class_names"])
    if not isinstance(names, tuple) or tuple(data["class_names"]) != names:
        count = isinstance(names, tuple) and n != len(names)
        raise f.fail(
            "class_names",
            f"{n} names but config.class_names has {len(names)}" if count else "differ from config.class_names",
        )
    _preprocess(f, data, cfg)
    fixed = _fixed_size(f, data, cfg)
    f.integer(data, "opset", MIN_OPSET, 1000)
    return Manifest(path, cfg, fixed, _stages(f, data, cfg, fixed))


def _config(f: _Fields, data: dict) -> DFFConfig:
    raw = f.mapping(data, "config")
    try:
        cfg = DFFConfig.from_dict(raw)
    except DFFError as e:
        raise f.fail("config", str(e)) from None
    except (TypeError, ValueError, KeyError, AttributeError) as e:  # before DFFConfig.from_dict checked its fields
        raise f.fail("config", f"not a dff config ({type(e).__name__}: {e})") from None
    if cfg.name != data["preset"]:
        raise f.fail("preset", f"{data['preset']!r} but config.name is {cfg.name!r}")
    return cfg


def _preprocess(f: _Fields, data: dict, cfg: DFFConfig) -> None:
    """The preprocessing block (for other runtimes): checked, and equal to the config's, which the runner uses."""
    where = "preprocess."
    pre = f.mapping(data, "preprocess")
    f.sequence(pre, "scale", (2, 2), lambda v: _is_int(v) and 1 <= v <= MAX_SIZE, f"integers in [1, {MAX_SIZE}]", where)
    f.sequence(pre, "mean", (3, 3), _is_number, "finite numbers", where)
    f.sequence(pre, "std", (3, 3), lambda v: _is_number(v) and v > 0, "positive numbers", where)
    f.integer(pre, "size_divisor", 1, 1024, where)
    if f.string(pre, "color", where) != "RGB":
        raise f.fail("preprocess.color", f'must be "RGB", got {_shown(pre["color"])}')
    for key in ("scale", "mean", "std", "size_divisor"):
        ours = getattr(cfg.preprocess, key)
        theirs = tuple(pre[key]) if isinstance(pre[key], list) else pre[key]
        if theirs != ours:
            shown = f"is {_shown(_listed(ours))} but preprocess.{key} is {_shown(pre[key])}"
            raise f.fail(f"config.preprocess.{key}", shown)


def _listed(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def _fixed_size(f: _Fields, data: dict, cfg: DFFConfig) -> tuple[int, int] | None:
    if f.get(data, "fixed_size") is None:
        return None
    div = cfg.preprocess.size_divisor
    f.sequence(data, "fixed_size", (2, 2), lambda v: _is_int(v) and 1 <= v <= 2 * MAX_SIZE, "positive integers")
    h, w = data["fixed_size"]
    if h % div or w % div:
        raise f.fail("fixed_size", f"{h}x{w} is not a multiple of preprocess.size_divisor {div}")
    return h, w


_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.onnx")
_HEX = re.compile(r"[0-9a-f]{64}")


def _stages(f: _Fields, data: dict, cfg: DFFConfig, fixed: tuple[int, int] | None) -> dict[str, dict]:
    stages = f.mapping(data, "stages")
    expected = stage_specs(cfg, fixed)
    files = {}
    for name in STAGES:
        where = f"stages.{name}."
        stage = f.mapping(stages, name, "stages.")
        file = f.string(stage, "file", where)
        if not _FILE.fullmatch(file):
            raise f.fail(f"{where}file", f"must be a .onnx file name beside the manifest (no folder), got {file!r}")
        if file in files:
            raise f.fail(f"{where}file", f"{file} is also the file of stage {files[file]}")
        files[file] = name
        if not _HEX.fullmatch(f.string(stage, "sha256", where)):
            raise f.fail(f"{where}sha256", f"must be 64 lowercase hex digits, got {_shown(stage['sha256'])}")
        _tensors(f, f"{where}inputs", f.get(stage, "inputs", where), expected[name]["inputs"], subset=True)
        _tensors(f, f"{where}outputs", f.get(stage, "outputs", where), expected[name]["outputs"], subset=False)
    return {name: stages[name] for name in STAGES}


def _tensors(f: _Fields, field: str, value: object, expected: list[dict], subset: bool) -> None:
    """A stage's inputs (those the graph uses: some of `expected`, in order) or outputs (all of `expected`)."""
    if not isinstance(value, list) or not value:
        raise f.fail(field, f"must be a list of tensors, got {_shown(value)}")
    rest = list(expected)
    for tensor in value:
        if tensor in rest:
            rest = rest[rest.index(tensor) + 1 :]
            continue
        known = {t["name"]: t for t in expected}
        name = tensor.get("name") if isinstance(tensor, dict) and isinstance(tensor.get("name"), str) else None
        want = f"is not {_tensor_text(known[name])}" if name in known else f"is not one of {', '.join(known)}"
        raise f.fail(field, f"{_tensor_text(tensor)} {want} (as dff export writes it)")
    if rest and not subset:
        raise f.fail(field, f"{', '.join(t['name'] for t in rest)} missing")


def _tensor_text(tensor: object) -> str:
    if not isinstance(tensor, dict):
        return _shown(tensor)
    return f"{tensor.get('name')} {tensor.get('dtype')} {json.dumps(tensor.get('shape'))}"


def check_graph_file(manifest: Manifest, stage: str) -> Path:
    """The stage's graph file, present and with the SHA-256 the manifest records (CheckpointError otherwise)."""
    file = manifest.graph(stage)
    if not file.is_file():
        raise CheckpointError(
            f"{manifest.path}: stages.{stage}.file: missing {file.name} (expected beside the manifest)"
        )
    if sha256(file) != manifest.stages[stage]["sha256"]:
        raise CheckpointError(
            f"{file}: not the graph {manifest.path.name} was exported with (its SHA-256 differs from "
            f"stages.{stage}.sha256: a file of another export, or changed since); export again"
        )
    return file


def check_graph_session(manifest: Manifest, stage: str, session: Any) -> None:
    """A loaded graph (an onnxruntime InferenceSession) against its stage: the stage name and class count in its
    metadata, its inputs and outputs (names, dtypes, ranks, fixed sizes) as the manifest lists them."""
    file = manifest.graph(stage)
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get(META_STAGE) != stage:
        raise CheckpointError(f"{file}: holds the {meta.get(META_STAGE, 'unknown')!r} graph, not stage {stage!r}")
    classes = str(manifest.cfg.num_classes)
    if stage == "detect" and meta.get(META_CLASSES) != classes:
        raise CheckpointError(
            f"{file}: a graph for {meta.get(META_CLASSES)} classes, but the manifest's config has {classes}"
        )
    for key, tensors in (("inputs", session.get_inputs()), ("outputs", session.get_outputs())):
        spec = manifest.stages[stage][key]
        if [t.name for t in tensors] != [i["name"] for i in spec] or not all(
            _same_tensor(t, i) for t, i in zip(tensors, spec, strict=True)
        ):
            got = ", ".join(f"{t.name} {t.type} {t.shape}" for t in tensors)
            raise CheckpointError(f"{file}: its {key} ({got}) are not stages.{stage}.{key} of {manifest.path.name}")


def _same_tensor(tensor: Any, spec: dict) -> bool:
    if tensor.type != DTYPES[spec["dtype"]] or len(tensor.shape) != len(spec["shape"]):
        return False
    # a dynamic axis (a string in the spec) must be dynamic in the graph; a fixed one fixed there, or not inferred
    return all(
        not _is_int(d) if isinstance(s, str) else (d == s or not _is_int(d))
        for d, s in zip(tensor.shape, spec["shape"], strict=True)
    )


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W), positive integers; DFFError otherwise."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise DFFError(f"--fixed-size: expected HxW (e.g. 608x1008), got {text!r}") from None
    if h < 1 or w < 1:
        raise DFFError(f"--fixed-size: sizes must be positive, got {text!r}")
    return h, w
