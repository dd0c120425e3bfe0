#!/usr/bin/env bash
# The main job on the embedded default: installs what it needs, then runs the end-to-end demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/lesanet demo --out demo_out "$@"
