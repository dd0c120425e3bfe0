"""Per-layer CPU times of the fused full-size LesaNet with each convolution algorithm, to check Winograd's rule.

``LesaNetCore.model.winograd.choose_tile`` picks direct convolution, F(2x2, 3x3) or F(4x4, 3x3) per layer from
thresholds measured on the project's 2-core machine. This script times every 3 x 3 conv layer inside real forward
passes (so weights and feature maps are as cold or warm as in use) with each algorithm forced in turn, for the
given batch sizes and thread counts, and prints one table per setting with the rule's pick marked ``*`` and the
fastest in brackets. Run it on a new kind of CPU before trusting the rule there:

    python scripts/winograd_layers.py --threads 2 8 --batch 1 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from LesaNetCore.fileio import write_text_atomic  # noqa: E402
from LesaNetCore.model import create_model, fuse_for_inference, lesanet  # noqa: E402
from LesaNetCore.model.lesanet import _ConvReLU  # noqa: E402
from LesaNetCore.model.winograd import choose_tile  # noqa: E402

ALGORITHMS = {"direct": None, "F2": 2, "F4": 4}


def layer_times(model, batch: int, forced: int | None, repeats: int) -> dict[str, float]:
    """Median ms per conv layer over ``repeats`` forward passes with ``choose_tile`` replaced by ``forced``."""
    times: dict[str, list[float]] = {}
    handles = []
    for name, layer in model.named_children():
        if isinstance(layer, _ConvReLU) and layer.weight.shape[1] >= 64:
            handles.append(layer.register_forward_pre_hook(
                lambda mod, inp, name=name: times.setdefault(name, []).append(-time.perf_counter())))
            handles.append(layer.register_forward_hook(
                lambda mod, inp, out, name=name: times[name].__setitem__(-1, times[name][-1] + time.perf_counter())))
    original = lesanet.choose_tile
    lesanet.choose_tile = lambda b, c, h, w: forced if c >= 64 else None
    images = torch.randn(batch, 3, 120, 120)
    boxes = torch.tensor([[40.0, 42.0, 80.0, 76.0]] * batch)
    try:
        with torch.inference_mode():
            for _ in range(2):
                model(images, boxes)
            times.clear()
            for _ in range(repeats):
                model(images, boxes)
    finally:
        lesanet.choose_tile = original
        for handle in handles:
            handle.remove()
    return {name: statistics.median(values) * 1e3 for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=15, help="forward passes per algorithm at batch 1")
    parser.add_argument("--json", type=Path, help="also write all times to this new file (never overwritten)")
    args = parser.parse_args()
    for name in ("threads", "batch"):
        if min(getattr(args, name)) < 1:
            parser.error(f"--{name}: must be positive integers, got {getattr(args, name)}")
    if args.json is not None and args.json.exists():
        parser.error(f"--json: must name a new file; {args.json} exists and is not overwritten")
    if args.repeats < 1:
        parser.error(f"--repeats: must be a positive integer, got {args.repeats}")
    torch.manual_seed(0)
    model = fuse_for_inference(create_model("lesanet_vgg16bn", num_labels=171), chunk=None)
    shapes = {}
    for name, layer in model.named_children():
        if isinstance(layer, _ConvReLU):
            layer.register_forward_pre_hook(lambda mod, inp, name=name: shapes.__setitem__(name, tuple(inp[0].shape)))
    results = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch in args.batch:
            repeats = max(3, args.repeats // batch)
            table = {algo: layer_times(model, batch, tile, repeats) for algo, tile in ALGORITHMS.items()}
            print(f"\nthreads {threads}, batch {batch} (ms per layer, median of {repeats})")
            print(f"{'layer':8s} {'input':>18s} " + " ".join(f"{a:>9s}" for a in ALGORITHMS))
            totals = dict.fromkeys(ALGORITHMS, 0.0)
            rule_total = best_total = 0.0
            for name in table["direct"]:
                row = {a: table[a][name] for a in ALGORITHMS}
                pick = choose_tile(*shapes[name])
                rule = next(a for a, t in ALGORITHMS.items() if t == pick)
                best = min(row, key=row.get)
                cells = []
                for algo, value in row.items():
                    text = f"{value:.2f}" + ("*" if algo == rule else "")
                    cells.append(f"[{text}]".rjust(9) if algo == best else text.rjust(9))
                print(f"{name:8s} {str(shapes[name]):>18s} " + " ".join(cells))
                for algo in ALGORITHMS:
                    totals[algo] += row[algo]
                rule_total += row[rule]
                best_total += row[best]
            print(f"{'sum':8s} {'':>18s} " + " ".join(f"{totals[a]:9.2f}" for a in ALGORITHMS)
                  + f"   rule {rule_total:.2f}   best per layer {best_total:.2f}")
            results.append({"threads": threads, "batch": batch, "shapes": dict(shapes), "ms": table})
    if args.json:
        write_text_atomic(args.json, json.dumps(results, indent=1), argument="--json")


if __name__ == "__main__":
    main()
