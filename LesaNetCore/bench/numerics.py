"""The trained-network numerics check of the CPU kernel choice: no decision may change with the kernels.

Winograd rounds differently from direct convolution (about 1e-5 of a layer's largest output for F(4x4, 3x3)).
This runs a trained checkpoint's val and test patches through the unfused eval-mode model and through
:class:`LesaNetCore.model.InferenceModel` with every kernel choice (direct, F2 and F4 forced on every eligible
layer, and the plan measured on this machine), at batch 1 and 8, and counts the decisions (score >= calibrated
threshold) that differ from direct convolution's and from the unfused model's. ``scripts/gpu_check.sh`` runs it;
it needs no GPU:

    python -m LesaNetCore.bench.numerics RUN/best.pt DATA/cache
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np


def kernel_numerics(checkpoint: str, cache: str, batches: tuple[int, ...] = (1, 8),
                    splits: tuple[str, ...] = ("val", "test")) -> dict[str, Any]:
    """Per split, kernel choice and batch: max |prob diff| to the unfused model, decisions changed (see above)."""
    from ..model import InferenceModel, KernelPlan
    from ..training.checkpoint import build_model, load_checkpoint
    from ..training.dataset import PatchDataset, open_patch_cache
    from ..training.engine import predict

    ckpt, patches = load_checkpoint(checkpoint), open_patch_cache(cache)
    model = build_model(ckpt).eval()
    thresholds = np.asarray(ckpt.thresholds, dtype=np.float64)
    choices = {"direct": "direct", "F2": KernelPlan.forced("F2"), "F4": KernelPlan.forced("F4"), "measured": "auto"}
    rows, worst = [], {"prob": 0.0, "changed_vs_direct": 0}
    for split in splits:
        data = PatchDataset(patches, split)
        reference = predict(model, data, 8, "cpu")
        for batch in batches:
            direct = None
            for name, kernels in choices.items():
                probs = InferenceModel(model, "cpu", kernels=kernels).predict_dataset(data, batch)
                decided = probs >= thresholds
                direct = decided if direct is None else direct
                row = {"split": split, "kernels": name, "batch": batch,
                       "max_prob_diff": float(np.abs(probs - reference).max()) if len(probs) else 0.0,
                       "changed_vs_unfused": int((decided != (reference >= thresholds)).sum()),
                       "changed_vs_direct": int((decided != direct).sum()), "decisions": int(decided.size)}
                rows.append(row)
                worst["prob"] = max(worst["prob"], row["max_prob_diff"])
                worst["changed_vs_direct"] = max(worst["changed_vs_direct"], row["changed_vs_direct"])
    return {"rows": rows, "max_prob_diff": worst["prob"], "max_changed_vs_direct": worst["changed_vs_direct"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="trained checkpoint (with calibrated thresholds)")
    parser.add_argument("cache", help="the patch cache of its prepared data (DATA/cache)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args(argv)
    result = kernel_numerics(args.checkpoint, args.cache)
    if args.json:
        print(json.dumps(result))
    for row in result["rows"]:
        print(f"CPU {row['split']} {row['kernels']:8s} batch {row['batch']}: max |prob diff| to unfused "
              f"{row['max_prob_diff']:.1e}, decisions changed vs unfused {row['changed_vs_unfused']}, vs direct "
              f"{row['changed_vs_direct']} of {row['decisions']}")
    ok = result["max_changed_vs_direct"] == 0 and result["max_prob_diff"] < 1e-4
    print("kernel choice changes no decision: ok" if ok else "kernel choice changed decisions or scores: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
