#!/usr/bin/env bash
# The test suite: installs what it needs, then runs ruff and pytest (slow tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
.venv/bin/ruff check LesaNetCore LesaNetSlicer Testing
QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest "$@"
