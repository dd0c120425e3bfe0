"""``lesanet ablation``: the rows of the paper's Table 1, each trained and evaluated the same way.

Each row is the full LesaNet recipe with one part taken away, expressed as data: ``TrainConfig`` overrides,
whether the model has the score propagation layer, and how the training labels are made (label expansion,
text-mining mode). All rows share the seed, the architecture, the epochs and the evaluation (same validation
calibration, same test labels: the prepared data's expanded text-mined labels), so differences come from the
ablated part alone.

Rows (Yan et al., CVPR 2019, Table 1):

============== ============================================ =================================================
name           what is removed                              how
============== ============================================ =================================================
baseline       SPL, RHEM and triplet (multi-scale CNN, WCE) loss.spl/rhem/triplet off, model without SPL
no_spl         score propagation layer                      loss.spl off, model without ``class_scores2``
no_rhem        reliable hard example mining                 loss.rhem off
no_expansion   label expansion (parents of positives)       training labels not expanded
no_textmining  the text-mining relevance module             every mentioned term positive (all-mentioned)
no_triplet     triplet loss on the embedding                loss.triplet off
full           nothing: LesaNet                             —
============== ============================================ =================================================

Label variants re-label the prepared lesions without re-cropping: their patches are read back from the
prepared cache (``build_patch_cache`` with a loader over it), so only targets change.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LesaNetError, invalid
from ..fileio import check_writable, write_text_atomic


@dataclass(frozen=True)
class AblationSpec:
    """One row of Table 1: a title and what differs from full LesaNet."""

    title: str
    overrides: tuple[str, ...] = ()
    use_spl: bool = True
    expand: bool = True
    label_mode: str = "text-mined"

    @property
    def relabels(self) -> bool:
        """Whether the row trains on differently made labels (needs its own cache)."""
        return not self.expand or self.label_mode != "text-mined"


ABLATIONS: dict[str, AblationSpec] = {
    "baseline": AblationSpec("Baseline: multi-scale CNN (WCE)",
                             ("loss.spl=false", "loss.rhem=false", "loss.triplet=false"), use_spl=False),
    "no_spl": AblationSpec("LesaNet w/o score propagation layer", ("loss.spl=false",), use_spl=False),
    "no_rhem": AblationSpec("LesaNet w/o RHEM", ("loss.rhem=false",)),
    "no_expansion": AblationSpec("LesaNet w/o label expansion", expand=False),
    "no_textmining": AblationSpec("LesaNet w/o text-mining module", label_mode="all-mentioned"),
    "no_triplet": AblationSpec("LesaNet w/o triplet loss", ("loss.triplet=false",)),
    "full": AblationSpec("LesaNet"),
}
"""Table 1's rows in the paper's order."""


def ablation_config(name: str, base: Any) -> Any:
    """``base`` (a ``TrainConfig``) with row ``name``'s overrides applied.

    Example:
        >>> from LesaNetCore.training import TrainConfig
        >>> cfg = ablation_config("no_rhem", TrainConfig())
        >>> cfg.loss.rhem, cfg.loss.spl, cfg.loss.triplet
        (False, True, True)
    """
    from ..training.config import apply_overrides

    return apply_overrides(base, _spec(name).overrides)


def model_factory_for(name: str):
    """``create_model``-compatible factory for row ``name`` (without the SPL layer where it is ablated)."""
    from ..model import create_model

    spec = _spec(name)
    if spec.use_spl:
        return create_model

    def factory(arch: str, num_labels: int, **kwargs: Any):
        return create_model(arch, num_labels=num_labels, **{**kwargs, "use_spl": False})

    return factory


def relabeled_cache(data_dir: str | os.PathLike, out_path: str | os.PathLike, *, expand: bool, label_mode: str,
                    ontology: Any = None, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """The prepared cache's lesions with labels made another way (``expand``, ``label_mode``), same patches.

    Patches come from the prepared cache itself, so nothing is re-cropped (DL_info.csv is still read for the
    patient and split of each lesion). Labels are made with DATA_DIR/label_ontology.json unless ``ontology`` is
    given. Lesions absent from the prepared cache (e.g. ones that only become positive with
    ``all-mentioned``) are left out, so every row trains on the same images.
    """
    from ..imaging import read_dl_info
    from ..ontology import load_ontology, read_label_split, read_ontology_json
    from ..training.dataset import build_patch_cache, open_patch_cache
    from .evaluate import _cache_path
    from .prepare import LABELS_FILE, MINED_FILE, ONTOLOGY_FILE, SUMMARY_FILE

    data_dir = Path(data_dir)
    cache = open_patch_cache(_cache_path(data_dir))
    if ontology is None and (data_dir / ONTOLOGY_FILE).is_file():
        # The label ontology saved by prepare: expansion and reliable negatives within the label list are the
        # same as with the full ontology, and later edits of the default ontology cannot change the labels.
        ontology = read_ontology_json(data_dir / ONTOLOGY_FILE)
    elif ontology is None:
        info_path = data_dir / SUMMARY_FILE
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
        ontology = load_ontology(info.get("ontology_path"))
        if ontology.digest() != cache.ontology_digest:
            raise LesaNetError(f"ontology: must be the one the data was prepared with (digest "
                               f"{cache.ontology_digest[:12]}), but got digest {ontology.digest()[:12]}")
    source = Path(str(cache.meta.get("source", "")))
    records = read_dl_info(source / "DL_info.csv") if (source / "DL_info.csv").is_file() else None
    rows = {int(lesion): row for row, lesion in enumerate(cache.arrays["lesion_idx"])}
    if records is None:
        raise invalid("data source", "must still hold DL_info.csv (patient and split of each lesion)", str(source))
    records = [r for r in records if r.lesion_idx in rows]

    def from_cache(_root: Any, record: Any) -> Any:
        row = rows[int(record.lesion_idx)]
        return _CachedPatch(cache.arrays["images"][row], cache.arrays["boxes"][row])

    labels = read_label_split(data_dir / LABELS_FILE)
    if not expand:
        # labels.json already holds the ancestors (the official layout does); the unexpanded labels are the
        # mined ones as found in the sentence.
        path = Path(f"{out_path}.labels.json")
        write_text_atomic(path, json.dumps(unexpanded_layout(data_dir / MINED_FILE, labels.term_list)) + "\n",
                          "labels", overwrite=True)
        labels = read_label_split(path)
    return build_patch_cache(source, records, labels, ontology, out_path, expand=expand, label_mode=label_mode,
                             overwrite=overwrite, progress=progress, patch_loader=from_cache)


def unexpanded_layout(mined_file: str | os.PathLike, term_list: Sequence[str]) -> dict[str, Any]:
    """The official split layout of DATA_DIR/mined.jsonl without label expansion (the mined terms only)."""
    from ..textmine.mine import MinedLabels, to_split_layout

    by_split: dict[str, list[Any]] = {"train": [], "val": [], "test": []}
    with open(mined_file, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            r = json.loads(line)
            by_split[r["split"]].append(MinedLabels(int(r["id"]), tuple(r["relevant"]), tuple(r["uncertain"]),
                                                    tuple(r["irrelevant"]), tuple(r["expanded"])))
    layout: dict[str, Any] = {"term_list": list(term_list)}
    for split, results in by_split.items():
        layout.update(to_split_layout(results, term_list, prefix=f"{split}_"))
    return layout


@dataclass(frozen=True)
class _CachedPatch:
    image: Any
    box: Any


def run_ablation(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    epochs: int | None = None,
    arch: str = "lesanet_demo",
    only: Sequence[str] | None = None,
    base: Any = None,
    batch_size: int | None = None,
    device: str = "cpu",
    hand_labeled: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Trains and evaluates each row; writes OUT/ablation.md and OUT/ablation.json (and a run folder per row).

    Args:
        data_dir: folder written by ``lesanet prepare``.
        out_dir: output folder; each row gets OUT/<name>/run and OUT/<name>/evaluation. Rows already evaluated
            there are read back (an interrupted ablation continues); ``overwrite`` redoes them.
        epochs, arch, batch_size, device: shared by all rows (override ``base``).
        only: row names to run (default: all, in Table 1's order).
        base: the shared ``TrainConfig`` (default: the paper's recipe).
        hand_labeled: hand-labeled / truth file; default DATA_DIR/truth.json when present.

    Returns:
        ``{"rows": {name: {..., "headline": numbers}}, "config": base config, "seconds": {name: s} (rows
        trained in this call), "read_back": [rows read back from an earlier call], "data": DATA_DIR}``.
    """
    from ..training.config import TrainConfig, apply_overrides, config_to_dict
    from ..training.engine import train
    from .evaluate import _cache_path, evaluate, headline
    from .prepare import TRUTH_FILE

    names = list(ABLATIONS) if not only else list(dict.fromkeys(only))
    for name in names:
        _spec(name)
    out_dir = Path(out_dir)
    check_writable(out_dir / "ablation.md", "--out/ablation.md", overwrite)
    check_writable(out_dir / "ablation.json", "--out/ablation.json", overwrite)
    data_dir = Path(data_dir)
    cache_path = _cache_path(data_dir)
    if hand_labeled is None and (data_dir / TRUTH_FILE).is_file():
        hand_labeled = data_dir / TRUTH_FILE
    shared = [f"arch={arch}", f"device={device}"]
    if epochs is not None:
        shared.append(f"epochs={epochs}")
    if batch_size is not None:
        shared.append(f"batch_size={batch_size}")
    base = apply_overrides(base if base is not None else TrainConfig(), shared)
    rows: dict[str, dict[str, Any]] = {}
    reports: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    read_back: list[str] = []
    for name in names:
        spec = ABLATIONS[name]
        started = time.perf_counter()
        train_data = cache_path
        if spec.relabels:
            train_data = out_dir / name / "cache"
            if not train_data.exists() or overwrite:
                relabeled_cache(data_dir, train_data, expand=spec.expand, label_mode=spec.label_mode,
                                overwrite=overwrite, progress=progress)
        run_dir = out_dir / name / "run"
        report_file = out_dir / name / "evaluation" / "report.json"
        if report_file.is_file() and not overwrite:
            # An interrupted ablation continues: rows already evaluated are read back, not retrained.
            read_back.append(name)
            report = json.loads(report_file.read_text(encoding="utf-8"))
            summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
        else:
            if overwrite and run_dir.exists():
                shutil.rmtree(run_dir)
            summary = train(ablation_config(name, base), train_data, run_dir, progress=progress,
                            resume=(run_dir / "last.pt").is_file() and not overwrite,
                            model_factory=model_factory_for(name))
            report = evaluate(run_dir / "last.pt", data_dir, out_dir / name / "evaluation",
                              hand_labeled=hand_labeled, device=device, overwrite=overwrite, progress=progress,
                              title=spec.title)
        rows[spec.title] = headline(report)
        reports[name] = {"title": spec.title, "overrides": list(spec.overrides), "use_spl": spec.use_spl,
                         "expand": spec.expand, "label_mode": spec.label_mode, "headline": rows[spec.title],
                         "val": report.get("val"), "best_epoch": summary.get("best_epoch")}
        if name not in read_back:
            seconds[name] = round(time.perf_counter() - started, 1)
    result = {"rows": reports, "config": config_to_dict(base), "seconds": seconds, "read_back": read_back,
              "data": str(data_dir)}
    write_text_atomic(out_dir / "ablation.json", json.dumps(result, indent=1) + "\n", "ablation.json", overwrite)
    write_text_atomic(out_dir / "ablation.md", ablation_markdown(rows, base, data_dir), "ablation.md", overwrite)
    return result


def ablation_markdown(rows: dict[str, dict[str, Any]], base: Any, data_dir: Path) -> str:
    """Table 1 in Markdown with how the runs were made."""
    from ..evaluation import ablation_table

    return (f"# LesaNet ablation (Table 1)\n\nData: `{data_dir}`. Every row: arch `{base.arch}`, {base.epochs} "
            f"epochs, batch {base.batch_size}, lr {base.lr}, seed {base.seed}; evaluated on the prepared test set "
            "with thresholds calibrated on validation and ontology-consistent decisions; the weights of the last "
            "epoch.\n\n" + ablation_table(rows))


def _spec(name: str) -> AblationSpec:
    if name not in ABLATIONS:
        raise invalid("--only", f"must name rows among {list(ABLATIONS)}", name)
    return ABLATIONS[name]
