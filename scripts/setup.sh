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
.venv/bin/python -m pip install --quiet -r requirements/cpu.txt 2> >(grep -v "^WARNING: Location" >&2)
# clean-fid hard-requires torchvision, and PyPI has no CPU torchvision that loads next to
# the CPU torch wheel ("operator torchvision::nms does not exist"). fmcore uses only the
# parts of clean-fid that need no torchvision (clean resizing, the TorchScript Inception),
# so install it without dependencies here; clusters install requirements/gpu.txt instead.
.venv/bin/python -m pip install --quiet --no-deps clean-fid==0.1.35 2> >(grep -v "^WARNING: Location" >&2)
.venv/bin/python -m pip install --quiet --no-deps -e . 2> >(grep -v "^WARNING: Location" >&2)
# Byte-compile fmcore once: where PYTHONDONTWRITEBYTECODE is set (as on this project's CI
# machines), every job would otherwise recompile it from source. pip already compiled the
# installed packages (installing with --no-compile made each job ~2x slower there).
.venv/bin/python -m compileall -q fmcore
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
