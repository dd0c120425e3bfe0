"""``lesanet synth``: write a phantom data set in the DeepLesion layout."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "synth",
        help="write a phantom CT data set (DeepLesion layout) with lesions, sentences and truth labels",
        description="Writes DL_info.csv, Images_png/, sentences.jsonl, truth.jsonl, volumes/ and manifest.json "
        "for N synthetic lesions; the same seed gives the same files.",
    )
    parser.add_argument("--out", required=True, help="output folder (must be empty unless --overwrite)")
    parser.add_argument("--lesions", required=True, type=int, help="number of lesions to synthesise")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--volumes", type=int, default=2, help="whole series to also write as NIfTI (default 2)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..phantom import synthesize

    summary = synthesize(args.out, args.lesions, seed=args.seed, overwrite=args.overwrite,
                         n_volumes=args.volumes, progress=not args.quiet)
    print(f"wrote {summary.n_lesions} lesions, {summary.n_patients} patients, {summary.n_images} images, "
          f"{summary.n_volumes} volumes to {summary.out_dir} in {summary.seconds:.1f} s "
          f"(patients train/val/test {summary.splits['train']}/{summary.splits['val']}/{summary.splits['test']})")
    return 0
