#!/usr/bin/env bash
# Installs everything LesaNetCore and its tests need into ./.venv, from scratch, with no network beyond the
# package registries. Safe to run again: each step is skipped when already done.
#   bash scripts/setup.sh          runtime (demo, CLI)
#   bash scripts/setup.sh --dev    runtime + test tools (pytest, pytest-qt, PySide6, ruff, slicer-core)
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0; [ "${1:-}" = "--dev" ] && dev=1

# System packages: WordNet for the offline NLTK lemmatiser (DESIGN.md, "Offline environment facts"); for the
# tests, DCMTK (dcmcjpeg writes the JPEG variants of the DICOM corpus test, which skips them without it).
debs=""
[ -f /usr/share/wordnet/data.noun ] || debs="wordnet-base"
[ "$dev" = 1 ] && ! command -v dcmcjpeg >/dev/null && debs="$debs dcmtk"
if [ -n "$debs" ] && command -v apt-get >/dev/null; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq $debs >/dev/null
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=".venv/bin/python -m pip"
$pip install -q --upgrade pip >/dev/null
# The CPU build of torch lies on this project's machines' disk; an unpinned torch would pull a CUDA build.
.venv/bin/python -c "import torch" 2>/dev/null || $pip install -q "torch==2.13.0"
if [ "$dev" = 1 ]; then
  $pip install -q -e ".[dev]"
  $pip install -q slicer-core  # the real MRML classes of 3D Slicer (no Qt, no app) for the Slicer-layer tests
else
  $pip install -q -e ".[all]"
fi
# WordNet for NLTK's lemmatiser: built from Debian's wordnet-base when nltk.download cannot reach its server.
.venv/bin/lesanet nltk-data --quiet
