"""Every Python snippet of README.md and docs/*.md runs as written.

Each file's ```python blocks run in order in one namespace (a later block may use an earlier one's names), in a
folder holding the files the snippets name: short videos (the bundled clip's first frames), a frame folder, a
model file, a small synthetic ImageNet VID tree under data/ILSVRC, and the zoo's R-50 checkpoint in the cache
(golden-recipe weights under the official file name: what `dff.load("dff_r50_dc5_imagenetvid")` finds once it
has downloaded it; nothing is downloaded here).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import av
import cv2
import pytest

from dff.cli.demo import CLIP_PATH, MODEL_PATH
from dff.data.convert import convert_dataset
from dff.data.synthetic import make_synthetic
from dff.io.writers import VideoWriter
from dff.zoo import ZOO
from tests.test_golden import write_mmtracking_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def snippets(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text(encoding="utf-8"))


WITH_SNIPPETS = [p for p in DOCS if snippets(p)]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """A folder with every file the snippets name, and a cache holding the zoo's R-50 file."""
    root = tmp_path_factory.mktemp("docs")
    with av.open(str(CLIP_PATH)) as c:
        frames = [f.to_ndarray(format="bgr24") for _, f in zip(range(8), c.decode(video=0))]
    for name in ("video.mp4", "clip.mp4", "street.mp4", "a.mp4", "b.mp4"):
        with VideoWriter(root / name, 15.0) as w:
            for f in frames[: 8 if name != "b.mp4" else 5]:
                w.write(f)
    (root / "frames").mkdir()
    for i, f in enumerate(frames[:4]):
        cv2.imwrite(str(root / "frames" / f"{i:06d}.png"), f)
    cv2.imwrite(str(root / "image.jpg"), frames[0])
    shutil.copy(MODEL_PATH, root / "model.safetensors")
    write_mmtracking_checkpoint(root / "dff_r50.pth", "r50_dc5", seed=0)
    data = root / "data" / "ILSVRC"
    make_synthetic(data, videos=2, frames=6, val_videos=2, det_images=2, width=96, height=64, seed=7, progress=False)
    convert_dataset(data, progress=False)
    cache = root / "cache"
    cache.mkdir()
    entry = ZOO["dff_r50_dc5_imagenetvid"]
    shutil.copy(root / "dff_r50.pth", cache / entry.url.rsplit("/", 1)[-1])
    return root


@pytest.mark.parametrize("doc", WITH_SNIPPETS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_snippets_run_as_written(doc, sandbox, tmp_path, monkeypatch, one_thread):
    work = tmp_path / "work"
    shutil.copytree(sandbox, work, symlinks=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("DFF_CACHE", str(work / "cache"))
    namespace: dict = {"__name__": "__docs__"}
    for i, code in enumerate(snippets(doc)):
        try:
            exec(compile(code, f"{doc.name} block {i + 1}", "exec"), namespace)  # noqa: S102 - the docs' own code
        except Exception as e:  # noqa: BLE001 - report which block failed
            pytest.fail(f"{doc.relative_to(ROOT)}, python block {i + 1}: {type(e).__name__}: {e}")


def test_every_snippet_file_is_checked():
    """The harness finds the snippets (a changed fence would silently test nothing)."""
    assert ROOT / "README.md" in WITH_SNIPPETS and len(WITH_SNIPPETS) >= 8
    assert all(os.path.exists(p) for p in WITH_SNIPPETS)
