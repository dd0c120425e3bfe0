"""``lesanet tune``: measure which convolution algorithm each LesaNet layer should run on this CPU, and keep it.

Times direct convolution, Winograd F(2x2, 3x3) and F(4x4, 3x3) inside real forward passes per layer, at batch 1
(annotation) and 8 (the slices batched inference runs), and caches the choice for this CPU model, ISA, thread
count and torch version in the user's cache folder ($LESANET_CACHE_DIR overrides). Inference does this by itself
on first use; running it ahead spares the first annotation those seconds, and re-running it replaces a choice
made while the machine was busy.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tune", help="choose CPU convolution kernels by measuring this machine",
                                   description=__doc__)
    parser.add_argument("--model", metavar="CKPT", help="checkpoint whose layers to measure (default: the full-size "
                        "lesanet_vgg16bn, whose choices the shipped demo model shares where shapes match)")
    parser.add_argument("--arch", default="lesanet_vgg16bn", help="registered architecture when no --model is given")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], metavar="N",
                        help="batch sizes to measure (default 1 8)")
    parser.add_argument("--budget", type=float, metavar="SECONDS",
                        help="seconds of timed rounds per batch size (default 1 at batch 1, 4 above)")
    parser.add_argument("--threads", type=int, metavar="N", help="torch threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true", help="print the measurements as one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    import torch

    from ..errors import invalid
    from ..model import InferenceModel, create_model
    from ..model.kernels import BUDGET_S, cache_file, format_table

    if min(args.batch) < 1:
        raise invalid("--batch", "must be positive integers", args.batch)
    if args.budget is not None and args.budget <= 0:
        raise invalid("--budget", "must be positive seconds", args.budget)
    if args.threads is not None:
        if args.threads < 1:
            raise invalid("--threads", "must be a positive integer", args.threads)
        torch.set_num_threads(args.threads)
    if args.model:
        from ..training.checkpoint import build_model, load_checkpoint

        model = build_model(load_checkpoint(args.model))
    else:
        model = create_model(args.arch, num_labels=171)
    inference = InferenceModel(model, "cpu", kernels="direct")
    echo = None if args.json else (lambda text: print(text, file=sys.stderr))
    budget = args.budget if args.budget is not None else BUDGET_S
    result = inference.tune(tuple(sorted(set(args.batch))), echo=echo, budget_s=budget)
    if args.json:
        print(json.dumps({"key": result.key, "machine": result.machine, "seconds": result.seconds,
                          "cache": str(cache_file()), "checks": result.checks,
                          "layers": [{**row, "shape": list(row["shape"])} for row in result.rows]}))
    else:
        print(format_table(result))
        print(f"saved in {cache_file()}")
    return 0
