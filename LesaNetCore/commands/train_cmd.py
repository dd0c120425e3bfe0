"""``lesanet train``: train LesaNet on a patch cache (built from DeepLesion on first use) into a run folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train LesaNet (SGD, checkpoints every epoch, --resume, torchrun for several GPUs)",
        description=(
            "Train LesaNet on a patch cache. Defaults are the paper's recipe (15 epochs, batch 128, lr 0.01 x0.1 at "
            "epoch 10). With --deeplesion and --labels, the cache is built at --data first when it does not exist. "
            "Several GPUs: torchrun --nproc_per_node=N -m LesaNetCore.cli train ..."
        ),
    )
    parser.add_argument("--data", required=True, metavar="CACHE_OR_DIR",
                        help="patch cache: a folder of .npy files or a .npz file")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (config.json, last.pt, best.pt, "
                        "metrics.jsonl)")
    parser.add_argument("--config", metavar="CONFIG.json", help="JSON file with any TrainConfig fields")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting, e.g. --set lr=0.02 --set loss.rhem=false (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    parser.add_argument("--arch", help="model name (lesanet_vgg16bn, lesanet_demo)")
    parser.add_argument("--epochs", type=int, help="number of epochs")
    parser.add_argument("--batch-size", type=int, help="lesions per step (over all processes)")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--workers", type=int, help="data-loading worker processes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    cache = parser.add_argument_group("building the cache from DeepLesion")
    cache.add_argument("--deeplesion", metavar="DL_ROOT", help="DeepLesion folder with Images_png/ (and DL_info.csv)")
    cache.add_argument("--labels", metavar="SPLIT_JSON", help="text-mined labels and split "
                       "(text_mined_labels_171_and_split.json layout)")
    cache.add_argument("--dl-info", metavar="CSV", help="DL_info.csv (default: DL_ROOT/DL_info.csv)")
    cache.add_argument("--ontology", metavar="PATH", help="ontology .xlsx or .json (default: the shipped one)")
    cache.add_argument("--label-mode", choices=("text-mined", "relevant", "all-mentioned"), default="text-mined",
                       help="text-mined: relevant+uncertain positive in training (reference); relevant: uncertain "
                            "ignored; all-mentioned: the w/o-text-mining ablation")
    cache.add_argument("--no-expand", action="store_true", help="do not add ancestors (w/o label expansion ablation)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import LesaNetError
    from ..training.config import TrainConfig, apply_overrides, load_config
    from ..training.engine import read_run_config, train

    data = Path(args.data)
    if not data.exists():
        if not (args.deeplesion and args.labels):
            raise LesaNetError(f"--data: must be an existing patch cache (or pass --deeplesion and --labels to build "
                               f"it), but got {str(data)!r}")
        _build_cache(args, data)
    if args.resume:
        config = read_run_config(args.out)
        if args.config:
            raise LesaNetError(f"--config: a resumed run keeps its saved config (use --set to change a setting), but "
                               f"got {args.config!r}")
    else:
        config = load_config(args.config) if args.config else TrainConfig()
    flags = {"arch": args.arch, "epochs": args.epochs, "batch_size": args.batch_size, "device": args.device,
             "workers": args.workers}
    overrides = [f"{k}={v}" for k, v in flags.items() if v is not None] + list(args.overrides)
    config = apply_overrides(config, overrides)
    if config.device == "cpu" or (config.device == "auto" and not _cuda_available()):
        # This process only trains: keep its large blocks in the heap instead of returning them to the system and
        # faulting them in again every step (bench: train_step_ms against train_step_mmap_ms, ~10 % per patch).
        from ..model.cpu_memory import keep_large_blocks

        keep_large_blocks()
    summary = train(config, data, args.out, resume=args.resume, progress=not args.no_progress)
    if summary.get("rank", 0) == 0:  # under torchrun every process returns; one report is enough
        print(json.dumps(summary, indent=2, default=str), file=sys.stdout)
    return 0


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _build_cache(args: argparse.Namespace, data: Path) -> None:
    from ..imaging import read_dl_info
    from ..ontology import load_ontology, read_label_split
    from ..training.dataset import build_patch_cache

    root = Path(args.deeplesion)
    records = read_dl_info(args.dl_info or root / "DL_info.csv")
    summary = build_patch_cache(root, records, read_label_split(args.labels), load_ontology(args.ontology), data,
                                expand=not args.no_expand, label_mode=args.label_mode,
                                progress=not args.no_progress)
    print(f"patch cache: {summary['lesions']} lesions, {summary['labels']} labels, {summary['counts']} -> {data} "
          f"(skipped {summary['skipped']})", file=sys.stderr)
