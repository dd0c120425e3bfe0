"""The trained-network numerics check of the CPU kernel choice: no decision may change with the kernels.

Winograd rounds differently from direct convolution (about 1e-5 of a layer's largest output for F(4x4, 3x3)).
This runs a trained checkpoint's val and test patches through the unfused eval-mode model and through
:class:`LesaNetCore.model.InferenceModel` with every kernel choice (direct, F2 and F4 forced on every eligible
layer, and the plan measured on this machine), at batch 1 and 8, and counts the decisions (score >= calibrated
threshold) that differ from direct convolution's and from the unfused model's. ``scripts/gpu_check.sh`` runs it;
it needs no GPU:

    python -m LesaNetCore.bench.numerics RUN/best.pt DATA/cache

``--bf16`` adds the unfused model under ``torch.autocast("cpu", bfloat16)`` beside (never in the verdict): what
reduced precision would cost in decisions, the number a decision to allow it needs. On a full-size LesaNet
trained 3 epochs on 600 phantom lesions it changed 184 of 10,553 decisions (probabilities up to 2.0e-3 apart),
where every fp32 kernel choice changed none.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np


def kernel_numerics(checkpoint: str, cache: str, batches: tuple[int, ...] = (1, 8),
                    splits: tuple[str, ...] = ("val", "test"), bf16: bool = False) -> dict[str, Any]:
    """Per split, kernel choice and batch: max |prob diff| to the unfused model, decisions changed (see above).

    With ``bf16`` the result also has ``bf16_rows`` (the unfused model under bf16 autocast, batch 8, against
    the unfused fp32 model), which the verdict leaves out.
    """
    import torch

    from ..model import InferenceModel, KernelPlan
    from ..training.checkpoint import build_model, load_checkpoint
    from ..training.dataset import PatchDataset, open_patch_cache
    from ..training.engine import predict

    ckpt, patches = load_checkpoint(checkpoint), open_patch_cache(cache)
    model = build_model(ckpt).eval()
    thresholds = np.asarray(ckpt.thresholds, dtype=np.float64)
    choices = {"direct": "direct", "F2": KernelPlan.forced("F2"), "F4": KernelPlan.forced("F4"), "measured": "auto"}
    rows, bf16_rows, worst = [], [], {"prob": 0.0, "changed_vs_direct": 0}
    for split in splits:
        data = PatchDataset(patches, split)
        reference = predict(model, data, 8, "cpu")
        if bf16:
            probs = predict(model, data, 8, "cpu", amp_dtype=torch.bfloat16, channels_last=True)
            bf16_rows.append({"split": split, "kernels": "bf16", "batch": 8,
                              "max_prob_diff": float(np.abs(probs - reference).max()) if len(probs) else 0.0,
                              "changed_vs_unfused": int(((probs >= thresholds) != (reference >= thresholds)).sum()),
                              "decisions": int(probs.size)})
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
    result = {"rows": rows, "max_prob_diff": worst["prob"], "max_changed_vs_direct": worst["changed_vs_direct"]}
    if bf16:
        result["bf16_rows"] = bf16_rows
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="trained checkpoint (with calibrated thresholds)")
    parser.add_argument("cache", help="the patch cache of its prepared data (DATA/cache)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--bf16", action="store_true",
                        help="also report bf16 autocast's decisions beside (not part of the verdict)")
    args = parser.parse_args(argv)
    result = kernel_numerics(args.checkpoint, args.cache, bf16=args.bf16)
    if args.json:
        print(json.dumps(result))
    for row in result["rows"]:
        print(f"CPU {row['split']} {row['kernels']:8s} batch {row['batch']}: max |prob diff| to unfused "
              f"{row['max_prob_diff']:.1e}, decisions changed vs unfused {row['changed_vs_unfused']}, vs direct "
              f"{row['changed_vs_direct']} of {row['decisions']}")
    for row in result.get("bf16_rows", []):
        print(f"CPU {row['split']} bf16 autocast (beside, not judged) batch {row['batch']}: max |prob diff| to "
              f"unfused fp32 {row['max_prob_diff']:.1e}, decisions changed {row['changed_vs_unfused']} of "
              f"{row['decisions']}")
    ok = result["max_changed_vs_direct"] == 0 and result["max_prob_diff"] < 1e-4
    print("kernel choice changes no decision: ok" if ok else "kernel choice changed decisions or scores: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
