#!/usr/bin/env bash
# Reproduces docs/ablation_phantom.md: the paper's Table 1 rows on 3,000 phantom lesions (about 20 min on 2 cores).
#   bash scripts/ablation_phantom.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-ablation_work}
.venv/bin/lesanet synth --out "$work/phantoms" --lesions 3000 --seed 0 --quiet
.venv/bin/lesanet prepare "$work/phantoms" --out "$work/data"
.venv/bin/lesanet ablation --data "$work/data" --out "$work/ablation" --epochs 8 --batch-size 64 \
  --set workers=0 --set eval_every=8 --set lr_step_epoch=6 --set amp=off --set channels_last=false
echo "table: $work/ablation/ablation.md"
