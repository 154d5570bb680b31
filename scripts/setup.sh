#!/usr/bin/env bash
# Create ./.venv with csrdmri and its dependencies; safe to run again (it only does what is missing).
# Without an NVIDIA GPU it installs the CPU build of torch, with one the normal (CUDA) build.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
PYTHON=${PYTHON:-python3}
STAMP="$VENV/.csrdmri-installed"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || { echo "csrdmri needs Python >= 3.10 (found $("$PYTHON" --version 2>&1))" >&2; exit 1; }
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --quiet --progress-bar off)

if ! "$PY" -c 'import torch' 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "NVIDIA GPU found: installing torch==$TORCH_VERSION (CUDA build)"
    "${PIP[@]}" "torch==$TORCH_VERSION"
  elif "$PY" -c 'import urllib.request as u; u.urlopen("https://download.pytorch.org/whl/cpu/", timeout=5)' 2>/dev/null; then
    echo "No NVIDIA GPU: installing torch==$TORCH_VERSION (CPU build, PyTorch CPU index)"
    "${PIP[@]}" "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu
  else
    # Offline or behind a mirror: a locally provided CPU wheel (pip find-links) satisfies the pin.
    echo "No NVIDIA GPU: installing torch==$TORCH_VERSION from the configured package sources"
    "${PIP[@]}" "torch==$TORCH_VERSION"
  fi
fi

if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  echo "Installing csrdmri (editable) and its dependencies into $VENV"
  "${PIP[@]}" -e ".[dev]"
  touch "$STAMP"
fi
