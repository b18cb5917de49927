"""Issue 26: `dff train` and `dff make-synthetic` refuse values that cannot work before any work (one line, exit 2,
nothing written), a full disk while a checkpoint is written is the one-line "disk full" error with the last good
checkpoint intact, and a run folder may not be, contain or sit inside what the run reads."""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from dff.cli.main import main
from dff.config import PreprocessConfig, preset
from dff.data.convert import convert_dataset
from dff.data.synthetic import make_synthetic
from dff.errors import InputError
from dff.training.bounds import check_batch, input_bytes_per_pair
from dff.training.state import load_state

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "dff" / "assets" / "tiny_synthetic.safetensors"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
MEMORY_CAP = 8 * 2**30  # address space of a subprocess that old code would have grown until the machine stalled

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Two 6-frame training videos in the ILSVRC layout, converted (12 training pairs)."""
    root = tmp_path_factory.mktemp("syn")
    make_synthetic(root, videos=2, frames=6, val_videos=0, det_images=0, width=320, height=192, seed=3, progress=False)
    convert_dataset(root, progress=False)
    return root


def _train_args(data: Path, out: Path, *extra: object) -> list[str]:
    ann = data / "annotations" / "imagenet_vid_train.json"
    argv = ["train", "--preset", "tiny_synthetic", "--data-root", data, "--ann", ann, "--out", out]
    return [str(a) for a in (*argv, "--workers", "0", "--no-progress", *extra)]


def _cli(capsys, argv: list[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().err.strip()


def _capped(argv: list[str], cwd: Path | None = None, fsize: int | None = None) -> subprocess.CompletedProcess:
    """`python -m dff ARGV` with its address space capped (and its file sizes, if `fsize`)."""

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
        if fsize is not None:
            import signal

            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    cmd = [sys.executable, "-m", "dff", *argv]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300, preexec_fn=limits, cwd=cwd)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dff: error: "), err[-2000:]
    return lines[0]


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


# -- bounds, before any work --------------------------------------------------------------------------------------

TRAIN_VALUES = [
    (["--seed", str(10**23)], "training option seed must be in [0, 2**32 - 1]"),
    (["--seed", "-1"], "training option seed must be in [0, 2**32 - 1]"),
    (["--lr", "-1"], "training option lr (per 8 pairs) must be in (0, 100], got -1.0"),
    (["--lr", "0"], "training option lr (per 8 pairs) must be in (0, 100], got 0.0"),
    (["--lr", "nan"], "training option lr (per 8 pairs) must be in (0, 100], got nan"),
    (["--lr", "1e308"], "training option lr (per 8 pairs) must be in (0, 100], got 1e+308"),
    (  # one more than the bound (100000 would start 100000 processes on old code)
        ["--workers", str(4 * (os.cpu_count() or 1) + 1)],
        f"training option workers {4 * (os.cpu_count() or 1) + 1} is more than 4 data loader processes per CPU core",
    ),
    (["--batch-size", "13"], "--batch-size 13 is more than the 12 training pairs the training set has"),
]


@pytest.mark.parametrize(("extra", "message"), TRAIN_VALUES, ids=[" ".join(v[0]) for v in TRAIN_VALUES])
def test_train_values_that_cannot_work_are_refused_before_any_work(data, extra, message, tmp_path, capsys):
    out = tmp_path / "run"
    code, err = _cli(capsys, _train_args(data, out, "--max-iters", "1", *extra))
    assert code == 2 and message in _one_line(err)
    assert not out.exists()


def test_a_batch_of_100000_on_a_small_set_is_refused_not_loaded(data, tmp_path):
    """Old code loaded 100000 pairs for the first step (24 GB and a stalled machine); under an 8 GiB cap it failed."""
    run = _capped(_train_args(data, tmp_path / "run", "--batch-size", "100000", "--max-iters", "1"))
    line = _one_line(run.stderr)
    assert run.returncode == 2 and "--batch-size 100000 is more than the 12 training pairs" in line
    assert "use --batch-size 12 or less" in line and str(data / "annotations" / "imagenet_vid_train.json") in line
    assert not (tmp_path / "run").exists()


def test_a_batch_whose_input_images_alone_exceed_the_memory():
    big = preset("tiny_synthetic")
    big = replace(big, preprocess=PreprocessConfig(scale=(8192, 8192)))
    per_pair = input_bytes_per_pair(big)
    assert per_pair == 2 * 3 * 8192 * 8192 * 4
    cpu = torch.device("cpu")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    fits = memory // per_pair
    check_batch(max(1, fits), 1, 10**6, big, cpu, Path("train.json"))  # up to the machine's memory: accepted
    with pytest.raises(InputError, match=rf"--batch-size {fits + 1}: one step's input images alone take .* GB"):
        check_batch(fits + 1, 1, 10**6, big, cpu, Path("train.json"))
    check_batch(6, 2, 12, preset("tiny_synthetic"), cpu, Path("train.json"))  # 2 processes x 6 of 12 pairs
    with pytest.raises(InputError, match="more than the 6 training pairs each of the 2 processes gets"):
        check_batch(7, 2, 12, preset("tiny_synthetic"), cpu, Path("train.json"))


SYNTHETIC_VALUES = [  # (arguments, the error, capped: in a subprocess with memory and time limits, as old code
    # grew until the machine stalled or went on writing a set)
    (["--width", "100000"], "width must be in [32, 4096], got 100000", True),
    (["--videos", "1000000000"], "videos must be in [0, 100000], got 1000000000", True),
    (["--videos", "100000", "--frames", "10000"], "make 1000050040 images, more than 2000000", True),
    (["--height", "16"], "height must be in [32, 4096], got 16", False),
    (["--videos", "-1"], "videos must be in [0, 100000], got -1", False),
    (["--frames", "0"], "frames must be in [1, 10000], got 0", False),
    (["--det-images", "2000000"], "det_images must be in [0, 1000000], got 2000000", True),
    (["--seed", "-1"], "seed must be in [0, 4294967295], got -1", False),
    (["--seed", str(10**23)], f"seed must be in [0, 4294967295], got {10**23}", True),
]


@pytest.mark.parametrize(
    ("extra", "message", "capped"), SYNTHETIC_VALUES, ids=[" ".join(v[0]) for v in SYNTHETIC_VALUES]
)
def test_make_synthetic_sizes_that_cannot_be_made(extra, message, capped, tmp_path, capsys):
    """Old code grew until the kernel killed it (--videos 1e9), failed to allocate (--width 100000) or raised
    a NumPy ValueError (--seed -1)."""
    out = tmp_path / "syn"
    argv = ["make-synthetic", str(out), "--no-progress", *extra]
    if capped:
        run = _capped(argv)
        code, err = run.returncode, run.stderr
    else:
        code, err = _cli(capsys, argv)
    assert code == 2 and message in _one_line(err) and str(out) in err
    assert not out.exists()


def test_make_synthetic_refuses_a_set_larger_than_the_free_disk(one_megabyte_disk, capsys):
    out = one_megabyte_disk / "syn"  # 20 + 5 videos of 60 frames and 40 DET images at 480x272
    code, err = _cli(capsys, ["make-synthetic", str(out), "--no-progress"])
    line = _one_line(err)
    assert (
        code == 2 and f"{out}: 1540 images of 480x272 need about 50.3 MB or more, and the disk has 1.0 MB free" in line
    )
    assert not out.exists()


# -- a full disk while a checkpoint is written ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint_size(data, tmp_path_factory) -> int:
    """The size of a run's first latest.pth (the tiny preset's weights and SGD momentum: about 50 MB)."""
    tmp = tmp_path_factory.mktemp("probe")
    train = _capped(_train_args(data, tmp / "probe", "--max-iters", "1"))
    assert train.returncode == 0, train.stderr
    return (tmp / "probe" / "latest.pth").stat().st_size


def _tmpfs(folder: Path, size: str):
    """Mount a tmpfs of `size` on `folder` for the test; skipped where this process may not mount one."""
    folder.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture()
def small_disk(checkpoint_size, tmp_path):
    """A tmpfs of 1.5 checkpoints: room for one checkpoint (and the log), not for a second one written beside it."""
    yield from _tmpfs(tmp_path / "disk", f"{checkpoint_size * 3 // 2 // 1024}k")


@pytest.fixture()
def one_megabyte_disk(tmp_path):
    yield from _tmpfs(tmp_path / "disk", "1M")


def _assert_last_good_checkpoint(run: Path) -> None:
    assert load_state(run / "latest.pth", "tiny_synthetic")["progress"].global_iter == 1
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []  # no temporary file left


def test_a_full_disk_while_writing_a_checkpoint_is_one_line_and_keeps_the_last_good_one(data, small_disk):
    run = small_disk / "run"
    train = _capped(_train_args(data, run, "--checkpoint-every", "1", "--max-iters", "3"))
    line = _one_line(train.stderr)
    assert (
        train.returncode == 2 and line == f"dff: error: {run / 'latest.pth'}: disk full (no space left on the device)"
    )
    _assert_last_good_checkpoint(run)


def test_a_file_size_limit_while_writing_a_checkpoint_is_one_line_and_keeps_the_last_good_one(
    data, checkpoint_size, tmp_path
):
    """The same path where no tmpfs can be mounted: a run stopped after one iteration, resumed under a file size
    limit of half a checkpoint, so that its next checkpoint fails with EFBIG."""
    run = tmp_path / "run"
    assert _capped(_train_args(data, run, "--max-iters", "1")).returncode == 0
    resumed = _train_args(data, run, "--resume", "--checkpoint-every", "1", "--max-iters", "3")
    train = _capped(resumed, fsize=checkpoint_size // 2)
    lines = train.stderr.strip().splitlines()  # "resumed from ...", then the error
    assert train.returncode == 2 and "Traceback" not in train.stderr
    assert lines[-1] == f"dff: error: {run / 'latest.pth'}: File too large"
    _assert_last_good_checkpoint(run)


# -- outputs vs inputs ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory) -> Path:
    """A run that finished (one epoch, 12 iterations): latest.pth, epoch_1.pth, log.jsonl, model.safetensors."""
    out = tmp_path_factory.mktemp("finished") / "x"
    assert main(_train_args(data, out, "--epochs", "1", "--init-from", str(BUNDLED))) == 0
    assert (out / "model.safetensors").is_file()
    return out


def test_init_from_the_run_being_overwritten_is_refused_and_deletes_nothing(data, finished, capsys):
    before = _digests(finished)
    argv = _train_args(data, finished, "--init-from", finished / "model.safetensors", "--overwrite", "--max-iters", "1")
    code, err = _cli(capsys, argv)
    line = _one_line(err)
    assert code == 2
    assert line == (  # the one input / output rule of every command (dff.io.outputs)
        f"dff: error: {finished}: --out contains the input {finished / 'model.safetensors'}; "
        "write outside what the command reads"
    )
    assert _digests(finished) == before


def test_overwrite_deletes_the_old_run_only_once_every_check_passed(data, finished, capsys):
    before = _digests(finished)
    code, err = _cli(capsys, _train_args(data, finished, "--overwrite", "--batch-size", "20", "--max-iters", "1"))
    assert code == 2 and "--batch-size 20 is more than the 12 training pairs" in _one_line(err)
    assert _digests(finished) == before  # old code deleted the run before the training set was even read
    code, err = _cli(capsys, _train_args(data, finished, "--overwrite", "--max-iters", "1"))  # (the last user)
    assert code == 0, err
    assert sorted(p.name for p in finished.iterdir() if p.is_file()) == ["latest.pth", "log.jsonl"]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (".", "--out contains the input {data}/annotations/imagenet_vid_train.json"),
        ("annotations", "--out contains the input {data}/annotations/imagenet_vid_train.json"),
        ("Data", "--out contains the input {data}/Data/VID (training images under --data-root)"),
        ("Data/VID", "--out is the input {data}/Data/VID (training images under --data-root)"),
        (
            "Data/VID/train/run",
            "--out sits inside the input folder {data}/Data/VID (training images under --data-root)",
        ),
    ],
    ids=["data root", "annotation folder", "Data", "Data/VID", "inside Data/VID"],
)
def test_a_run_folder_in_the_data_set_is_refused(data, where, message, capsys):
    out = data / where
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    code, err = _cli(capsys, _train_args(data, out, "--max-iters", "1"))
    assert code == 2 and message.format(data=data) in _one_line(err)
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before


def test_a_run_folder_beside_the_images_of_the_data_set_is_fine(data, tmp_path):
    """`DATA_ROOT/runs/x` neither holds nor sits inside what is read (the Data/VID tree and the annotation file)."""
    out = data / "runs" / "x"
    try:
        assert main(_train_args(data, out, "--max-iters", "1")) == 0
        assert (out / "latest.pth").is_file()
    finally:
        shutil.rmtree(data / "runs")
