"""Start-up of the `dff` command: `dff --help` fast and without any command's dependencies, `dff COMMAND --help` for
every command without torch, `dff --version`, and the hint for a glob the shell expanded."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dff
from dff.cli.main import COMMANDS, build_parser, main

HEAVY = {"torch", "torchvision", "numpy", "cv2", "av", "PIL", "matplotlib", "pycocotools", "safetensors", "tqdm"}
# Prints, as JSON, the exit code of `dff ARGV...` run in a fresh interpreter and the top-level modules it imported.
PROBE = """
import json, sys
from dff.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "imported": sorted({m.split(".")[0] for m in sys.modules})}), file=sys.stderr)
"""


def _dff_command() -> list[str]:
    """The installed `dff` console script beside this interpreter, else `python -m dff` (the same imports)."""
    script = Path(sys.executable).with_name("dff")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "dff"]


def _probe(*argv: str) -> dict:
    """The exit code of `dff ARGV...` in a fresh interpreter and which of HEAVY it imported."""
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120)
    result = json.loads(proc.stderr.strip().splitlines()[-1])
    return {"code": result["code"], "imported": sorted(HEAVY.intersection(result["imported"]))}


def test_dff_help_median_of_five_runs_is_under_two_seconds():
    times = []
    for _ in range(5):
        start = time.perf_counter()
        proc = subprocess.run([*_dff_command(), "--help"], capture_output=True, text=True, timeout=60)
        times.append(time.perf_counter() - start)
        assert proc.returncode == 0 and proc.stdout.startswith("usage: dff"), proc.stderr
    assert statistics.median(times) < 2.0, times


def test_dff_help_imports_no_command_dependency():
    assert _probe("--help") == {"code": 0, "imported": []}


def test_top_level_help_lists_every_command_with_its_own_help():
    """The static table gives `dff --help` exactly what the commands' own parsers would: same names, order, help."""
    assert build_parser(full=()).format_help() == build_parser().format_help()


@pytest.mark.parametrize(
    "command",
    [c.name for c in COMMANDS],
)
def test_command_help_works_without_importing_torch(command):
    result = _probe(command, "--help")
    assert result["code"] == 0 and "torch" not in result["imported"], result


@pytest.mark.parametrize("command", [c.name for c in COMMANDS])
def test_command_help_prints_the_commands_usage(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: dff {command} ")


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out == f"dff {dff.__version__}\n"
    from dff.version import __version__

    assert dff.__version__ is __version__


def test_a_glob_the_shell_expanded_gets_a_hint_to_quote_it(tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    paths = [frames / f"{i:06d}.jpg" for i in range(143)]
    for p in paths:
        p.touch()
    with pytest.raises(SystemExit) as stop:
        main(["detect", *map(str, paths), "--weights", "w.safetensors"])
    err = capsys.readouterr().err
    assert stop.value.code == 2
    line = err.strip().splitlines()[-1]
    assert line == (
        f"dff: error: 142 more paths than the command takes ({paths[1]} ... {paths[-1]}): if the shell expanded a "
        f"glob, quote it so that dff expands it, e.g. '{frames}/*.jpg'"
    )
    assert str(paths[70]) not in err


def test_extra_words_that_are_not_paths_keep_argparses_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["detect", str(tmp_path / "clip.mp4"), "--weights", "w", "--bogus", "extra"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "dff: error: unrecognized arguments: --bogus extra"
