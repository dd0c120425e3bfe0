#!/usr/bin/env bash
# GPU checks for a CUDA machine (CI has none, so these are run by hand where a GPU is available):
#   1. `lesanet bench` model and annotate sections on CUDA: batch-1 forward and annotate replayed from a CUDA graph
#      beside the same without it (eager), and the CUDA-graph test of the suite;
#   2. a short phantom training run of the full network with mixed precision and channels-last, then evaluation,
#      and that the thresholds it saved were calibrated on fp32 inference scores, not mixed-precision ones;
#   3. the Annotator on CUDA against the same checkpoint on CPU (scores, decisions, embeddings), and on CPU every
#      kernel choice (direct, F2, F4 forced, the plan measured on the host) against direct and the unfused model:
#      no decision may change (LesaNetCore/bench/numerics.py);
#   4. reproducibility: two seeded CUDA runs give bit-identical weights, with no nondeterministic kernel warned.
# Usage: bash scripts/gpu_check.sh [OUT_DIR] [PYTHON]   (PYTHON defaults to .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu_check}
py=${2:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
mkdir -p "$out"
lesanet() { "$py" -m LesaNetCore.cli "$@"; }

"$py" - <<'EOF'
import torch
assert torch.cuda.is_available(), "no CUDA device: this script checks the GPU paths"
print("torch", torch.__version__, "|", torch.cuda.get_device_name(0), "| bf16:", torch.cuda.is_bf16_supported())
EOF

echo "== 1. bench on CUDA: batch 1 with the CUDA graph and eager, side by side"
lesanet bench --only model annotate --device cuda --json | tee "$out/bench_cuda.json"
"$py" - "$out/bench_cuda.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"forward batch 1: graph {r['forward_b1_ms']:.2f} ms, eager {r['forward_b1_eager_ms']:.2f} ms | annotate: graph "
      f"{r['annotate_ms']:.2f} ms, eager {r['annotate_eager_ms']:.2f} ms | batch 32: {r['forward_b32_ms']:.3f} ms/patch")
EOF
QT_QPA_PLATFORM=offscreen "$py" -m pytest -q -p no:cacheprovider Testing/core/test_model_inference.py -k cuda -rs

echo "== 2. phantom training on CUDA (AMP auto, channels-last), then evaluation"
lesanet synth --out "$out/phantoms" --lesions 600 --volumes 0 --seed 0 --quiet
lesanet prepare "$out/phantoms" --out "$out/data" --quiet
started=$(date +%s)
lesanet train --data "$out/data" --out "$out/run" --arch lesanet_vgg16bn --epochs 3 --batch-size 32 \
  --device cuda --workers 2 --no-progress --set lr_step_epoch=2 --set amp=auto --set channels_last=true
echo "train_seconds $(( $(date +%s) - started ))"
tail -n 3 "$out/run/metrics.jsonl"
lesanet evaluate --model "$out/run/best.pt" --data "$out/data" --out "$out/eval" --device cuda --quiet
"$py" - "$out/eval/report.json" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
print("evaluate: mean per class", report["mean_per_class"], "| retrieval", report["retrieval"])
EOF

echo "== 2b. the thresholds saved by AMP training fit fp32 inference scores"
"$py" - "$out/run/best.pt" "$out/data/cache" <<'EOF'
import sys
import numpy as np
import torch
from LesaNetCore.evaluation.metrics import calibrate_thresholds
from LesaNetCore.model import InferenceModel
from LesaNetCore.training.checkpoint import build_model, load_checkpoint
from LesaNetCore.training.dataset import PatchDataset, open_patch_cache, split_arrays
from LesaNetCore.training.engine import predict

checkpoint, cache = load_checkpoint(sys.argv[1]), open_patch_cache(sys.argv[2])
model = build_model(checkpoint, device="cuda").eval()
val, labels = PatchDataset(cache, "val"), split_arrays(cache, "val")
targets, valid = labels["targets"] > 0, labels["valid"]
saved = np.array(checkpoint.thresholds)
fp32 = calibrate_thresholds(InferenceModel(model, "cuda").predict_dataset(val, 64), targets, valid)
bf16 = calibrate_thresholds(predict(model, val, 64, "cuda", amp_dtype=torch.bfloat16), targets, valid)
same_fp32, same_bf16 = int(np.sum(np.isclose(saved, fp32))), int(np.sum(np.isclose(saved, bf16)))
print(f"saved thresholds equal to fp32-calibrated ones: {same_fp32} of {saved.size}; "
      f"to bf16-calibrated ones: {same_bf16} of {saved.size}")
assert same_fp32 >= saved.size - 1, "training calibrated its thresholds on other scores than fp32 inference gives"
EOF
echo "== 3. Annotator CUDA vs CPU on the demo phantom CT"
"$py" - "$out/run/best.pt" <<'EOF'
import sys
import numpy as np
from LesaNetCore.annotate import Annotator
from LesaNetCore.demo import demo_volume

volume, lesions = demo_volume()
boxes = [lesion.box_ijk for lesion in lesions]
results = {}
for device in ("cpu", "cuda"):
    annotator = Annotator(sys.argv[1], index=False, device=device)
    results[device] = annotator.annotate_many(volume, boxes_ijk=boxes)
for cpu, gpu in zip(results["cpu"], results["cuda"], strict=True):
    s_cpu = np.array([label.score for label in cpu.labels])
    s_gpu = np.array([label.score for label in gpu.labels])
    emb = float(np.abs(cpu.embedding - gpu.embedding).max())
    print(f"max |score diff| {np.abs(s_cpu - s_gpu).max():.2e}  max |embedding diff| {emb:.2e}  "
          f"same accepted labels: {cpu.accepted == gpu.accepted}  gpu forward {gpu.timings_ms['forward']:.2f} ms")
    assert np.abs(s_cpu - s_gpu).max() < 1e-3, "CUDA and CPU scores differ"
print("annotate CUDA == CPU: ok")
EOF
"$py" -m LesaNetCore.bench.numerics "$out/run/best.pt" "$out/data/cache"
echo "== 4. two seeded CUDA runs (AMP, channels-last) give bit-identical weights"
for run in a b; do
  lesanet train --data "$out/data" --out "$out/repro_$run" --arch lesanet_vgg16bn --epochs 1 --batch-size 32 \
    --device cuda --workers 2 --no-progress --set amp=auto --set max_steps_per_epoch=8 >"$out/repro_$run.log" 2>&1
done
if grep -h "deterministic implementation" "$out"/repro_?.log; then echo "a nondeterministic kernel ran"; exit 1; fi
"$py" - "$out/repro_a/last.pt" "$out/repro_b/last.pt" <<'EOF'
import sys
import torch
from LesaNetCore.training.checkpoint import load_checkpoint

a, b = (load_checkpoint(path).state_dict for path in sys.argv[1:3])
differ = [name for name in a if not torch.equal(a[name], b[name])]
print(f"{len(a)} tensors compared, {len(differ)} differ", differ[:5])
assert not differ, "two runs with the same seed gave different weights"
print("reproducible CUDA training: ok")
EOF
echo "gpu_check: all done; outputs in $out"
