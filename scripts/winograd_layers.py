"""Per-layer CPU times of the fused full-size LesaNet with each convolution algorithm, for several thread counts.

``lesanet tune`` measures direct, F(2x2, 3x3) and F(4x4, 3x3) per layer for this machine's thread count and caches
the choice (``LesaNetCore.model.kernels``). This script runs the same measurement for other thread counts and
batch sizes without touching the cache, prints one table per setting (the chosen algorithm marked ``*``) and can
write every time to a JSON file, to compare CPUs:

    python scripts/winograd_layers.py --threads 2 8 --batch 1 8 --json layers.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from LesaNetCore.fileio import write_text_atomic  # noqa: E402
from LesaNetCore.model import create_model, fuse_for_inference  # noqa: E402
from LesaNetCore.model.kernel_plan import ALGORITHMS  # noqa: E402
from LesaNetCore.model.kernels import format_table, tune  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of timed rounds per batch (default: the tuner's, 1 s at batch 1, 4 s above)")
    parser.add_argument("--json", type=Path, help="also write all times to this new file (never overwritten)")
    args = parser.parse_args()
    for name in ("threads", "batch"):
        if min(getattr(args, name)) < 1:
            parser.error(f"--{name}: must be positive integers, got {getattr(args, name)}")
    if args.json is not None and args.json.exists():
        parser.error(f"--json: must name a new file; {args.json} exists and is not overwritten")
    if args.budget is not None and args.budget <= 0:
        parser.error(f"--budget: must be positive seconds, got {args.budget}")
    torch.manual_seed(0)
    model = fuse_for_inference(create_model("lesanet_vgg16bn", num_labels=171), chunk=None)
    records = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch in args.batch:
            result = tune(model, (batch,), budget_s=args.budget)
            print(f"\nthreads {threads}, batch {batch}\n{format_table(result)}")
            records.append({
                "threads": threads, "batch": batch, "machine": result.machine,
                "shapes": {row["layer"]: list(row["shape"]) for row in result.rows},
                "ms": {a: {row["layer"]: row["ms"][a] for row in result.rows} for a in ALGORITHMS},
                "chosen": {row["layer"]: row["algorithm"] for row in result.rows},
                "check": result.checks[0],
            })
    if args.json:
        write_text_atomic(args.json, json.dumps(records, indent=1), argument="--json")


if __name__ == "__main__":
    main()
