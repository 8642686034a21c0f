#!/usr/bin/env bash
# Create .venv/ at the repository root with the CPU stack and fmcore (editable).
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
# --no-compile: pip byte-compiles one file at a time; compileall below does it on every core.
.venv/bin/python -m pip install --quiet --no-compile -r requirements/cpu.txt 2> >(grep -v "^WARNING: Location" >&2)
# clean-fid hard-requires torchvision, and PyPI has no CPU torchvision that loads next to
# the CPU torch wheel ("operator torchvision::nms does not exist"). fmcore uses only the
# parts of clean-fid that need no torchvision (clean resizing, the TorchScript Inception),
# so install it without dependencies here; clusters install requirements/gpu.txt instead.
.venv/bin/python -m pip install --quiet --no-deps clean-fid==0.1.35 2> >(grep -v "^WARNING: Location" >&2)
.venv/bin/python -m pip install --quiet --no-deps -e . 2> >(grep -v "^WARNING: Location" >&2)
# Byte-compile fmcore and the installed packages once, in parallel: where
# PYTHONDONTWRITEBYTECODE is set (as on this project's CI machines) nothing writes .pyc at
# import time, and every job would recompile torch/mlflow from source (~2x slower jobs).
# Measured on 2 cores: set-up 108-114 s this way vs 131-139 s with pip compiling serially.
# (A few vendored test files in site-packages are not valid Python 3; compileall skips them.)
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
.venv/bin/python -m compileall -q -j 0 fmcore "$site" >/dev/null || true
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
