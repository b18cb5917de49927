#!/usr/bin/env bash
# Install check: the package with each extra in a fresh virtual environment, as the README installs it (torch and
# torchvision first, then `pip install -e ".[EXTRA]"`). For each: exactly one OpenCV distribution, `pip check`
# clean, cv2 imports, `dff --version` and `dff --help` run; with the test extra also tests/test_install.py.
#
#   bash benchmarks/check_extras.sh [EXTRA ...]     (default: the base package, track, onnx, test)
#
# TORCH="torch==2.14.1 torchvision==0.29.1" (the default) is what is installed first; on this project's machine pip
# takes those two from local files. Each environment (about 6 GB with a CUDA build of torch) is made in a temporary
# folder and deleted after its check, so one exists at a time. Exit status 1 if any check failed.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
torch_pins=(${TORCH:-torch==2.14.1 torchvision==0.29.1})
extras=("$@")
[ ${#extras[@]} -gt 0 ] || extras=("" track onnx test)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
unset PYTHONPATH  # the environments' own install of the package, not a checkout on the path
failed=0

check() {  # check NAME COMMAND...: run it, print its output and whether it passed
    local name="$1"
    shift
    local out
    if out="$("$@" 2>&1)"; then
        printf '  %-24s ok: %s\n' "$name" "$(tail -n 1 <<<"$out")"
    else
        printf '  %-24s FAILED:\n%s\n' "$name" "$(sed 's/^/    /' <<<"$out")"
        failed=1
    fi
}

echo "install check $(date -u +%Y-%m-%d), $(uname -m), $(python3 --version), pip $(python3 -m pip --version | cut -d' ' -f2)"
echo "first: ${torch_pins[*]}"
for extra in "${extras[@]}"; do
    spec="${extra:+[$extra]}"
    venv="$work/venv"
    echo "== deep-feature-flow$spec in a fresh venv"
    python3 -m venv "$venv"
    py="$venv/bin/python"
    start=$SECONDS
    log="$work/pip.log"  # shown only if the install fails
    if ! "$py" -m pip install -q "${torch_pins[@]}" >"$log" 2>&1 || ! "$py" -m pip install -q -e "$root$spec" >>"$log" 2>&1; then
        echo "  install FAILED:"
        tail -n 30 "$log" | sed 's/^/    /'
        failed=1
        rm -rf "$venv"
        continue
    fi
    echo "  installed in $((SECONDS - start)) s"
    check "one OpenCV distribution" "$py" -c '
import importlib.metadata as m, re
names = {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower() for d in m.distributions()}
found = sorted(n for n in names if n.startswith("opencv-"))
print(", ".join(f"{n} {m.version(n)}" for n in found))
raise SystemExit(len(found) != 1)'
    check "pip check" "$py" -m pip check
    check "import cv2" "$py" -c 'import cv2; print("cv2", cv2.__version__)'
    check "torch, torchvision" "$py" -c 'import torch, torchvision; print(torch.__version__, torchvision.__version__)'
    check "dff --version" "$venv/bin/dff" --version
    check "dff --help" "$venv/bin/dff" --help
    if [ "$extra" = test ]; then
        check "tests/test_install.py" "$py" -m pytest -q -p no:cacheprovider "$root/tests/test_install.py"
    fi
    rm -rf "$venv"
done
exit "$failed"
