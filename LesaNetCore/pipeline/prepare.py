"""``lesanet prepare``: a DeepLesion-layout folder and report sentences -> a training data folder.

The paper's data preparation, in one step: every lesion's report sentence is mined (relevant / uncertain /
irrelevant labels, :class:`LesaNetCore.textmine.mine.TextMiner`), a label list is chosen, lesions are split by
DL_info's ``Train_Val_Test`` column, and the labels are written in the official split file's layout so the
rest of the pipeline reads a phantom, a new data set and DeepLesion alike. Then every lesion's patch is cropped
once into the patch cache.

Label selection (no ``labels`` file given): a term is kept when at least ``min_positives`` training lesions
have it after label expansion (relevant ∪ uncertain ∪ their ancestors), as the paper kept the 171 terms that
occur often enough in DeepLesion's training set for a classifier to learn them. With an official split file
its ``term_list`` is used instead (names mapped to the ontology's spelling).

DATA_DIR layout::

    labels.json          term_list + {split}_lesion_idxs / _relevant_labels / _uncertain_labels /
                         _irrelevant_labels (official layout; relevant and uncertain include ancestors)
    mined.jsonl          per lesion: id (DL_info row), split, text, relevant, uncertain, irrelevant, expanded
    label_ontology.json  the ontology restricted to the label list (its relations decide consistent labels)
    truth.json           phantoms only: per test lesion the expanded true labels within the label list,
                         in the hand-labeled file's layout ({"lesion_idx", "expanded_terms", "text"})
    cache/               the patch cache (:func:`LesaNetCore.training.build_patch_cache`)
    prepare.json         what was done: options, counts, selected labels with their training counts
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LesaNetError, invalid
from ..fileio import read_json_lines, write_text_atomic

SPLIT_CODES = {1: "train", 2: "val", 3: "test"}
"""DL_info.csv ``Train_Val_Test`` codes."""

DEFAULT_MIN_POSITIVES = 10
"""Training lesions a term needs (after expansion) to become a label; see the module docstring."""

LABELS_FILE = "labels.json"
MINED_FILE = "mined.jsonl"
ONTOLOGY_FILE = "label_ontology.json"
TRUTH_FILE = "truth.json"
CACHE_DIR = "cache"
SUMMARY_FILE = "prepare.json"
_OUTPUTS = (LABELS_FILE, MINED_FILE, ONTOLOGY_FILE, TRUTH_FILE, CACHE_DIR, SUMMARY_FILE)


@dataclass(frozen=True)
class PrepareSummary:
    """What :func:`prepare` wrote."""

    out_dir: Path
    term_list: tuple[str, ...]
    lesions: dict[str, int]
    cache: dict[str, Any]
    skipped: dict[str, int] = field(default_factory=dict)
    truth_lesions: int = 0
    seconds: float = 0.0


def read_sentences(path: str | os.PathLike) -> dict[int, str]:
    """Report sentence per lesion from a JSON-lines file of ``{"id": DL_info row, "text": ...}``.

    Raises:
        LesaNetError: a missing file, or a line that is not such an object (naming the line).
    """
    path = Path(path)
    if not path.is_file():
        raise invalid("--sentences", "must be an existing JSON-lines file", str(path))
    out: dict[int, str] = {}
    records = read_json_lines(path, lambda record: (int(record["id"]), record["text"]),
                              "a JSON object with an integer 'id' and a 'text'")
    for number, (lesion, text) in records:
        if not isinstance(text, str):
            raise invalid(f"{path.name} line {number} 'text'", "must be a string", text)
        out[lesion] = text
    return out


def select_labels(expanded: Mapping[int, Sequence[str]], split_of: Mapping[int, str], ontology: Any,
                  min_positives: int) -> tuple[list[str], dict[str, int]]:
    """Terms with at least ``min_positives`` training lesions, in ontology order, and every term's count.

    Args:
        expanded: lesion -> its expanded mined labels (relevant ∪ uncertain ∪ ancestors).
        split_of: lesion -> "train", "val" or "test"; only training lesions count.
        ontology: gives the term order.
        min_positives: the selection threshold.
    """
    if isinstance(min_positives, bool) or not isinstance(min_positives, int) or min_positives < 1:
        raise invalid("--min-positives", "must be a positive integer", min_positives)
    counts: dict[str, int] = {}
    for lesion, names in expanded.items():
        if split_of.get(lesion) != "train":
            continue
        for name in set(names):
            counts[name] = counts.get(name, 0) + 1
    chosen = [name for name in ontology.names if counts.get(name, 0) >= min_positives]
    return chosen, counts


def prepare(
    dl_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    sentences: str | os.PathLike | None = None,
    ontology: Any = None,
    labels: str | os.PathLike | None = None,
    min_positives: int = DEFAULT_MIN_POSITIVES,
    method: str = "combined",
    overwrite: bool = False,
    progress: bool = True,
) -> PrepareSummary:
    """Mines, selects labels, splits and caches a DeepLesion-layout data set (module docstring).

    Args:
        dl_root: folder with ``DL_info.csv`` and ``Images_png/``.
        out_dir: DATA_DIR to write.
        sentences: JSON lines ``{"id", "text"}``; default ``DL_ROOT/sentences.jsonl``.
        ontology: an :class:`Ontology`, a path (.xlsx / .json) or None for the default ontology.
        labels: an official split file whose ``term_list`` fixes the labels (else selection by count).
        min_positives: training lesions a term needs to become a label (ignored with ``labels``).
        method: the miner's relevance method ("combined", "rules", "cnn").
        overwrite: replace outputs of an earlier run in ``out_dir``.
        progress: tqdm bars.

    Raises:
        LesaNetError: missing inputs, no sentence for any lesion, an empty label list, or outputs that exist
            without ``overwrite``.
    """
    from tqdm import tqdm

    from ..imaging import read_dl_info
    from ..ontology import Ontology, load_ontology, read_label_split
    from ..textmine.mine import TextMiner, to_split_layout
    from ..training.dataset import build_patch_cache, canonical_label_names

    started = time.perf_counter()
    dl_root = Path(dl_root).resolve()  # the cache records it; ablations re-read DL_info.csv from there
    out_dir = Path(out_dir)
    if not (dl_root / "DL_info.csv").is_file():
        raise invalid("DL_ROOT", "must be a folder holding DL_info.csv", str(dl_root))
    _check_outputs(out_dir, overwrite)
    ontology_path = None if ontology is None or isinstance(ontology, Ontology) else str(Path(ontology).resolve())
    if not isinstance(ontology, Ontology):
        ontology = load_ontology(ontology)
    sentence_file = Path(sentences) if sentences is not None else dl_root / "sentences.jsonl"
    if sentences is None and not sentence_file.is_file():
        raise invalid("--sentences", "is required when DL_ROOT has no sentences.jsonl", str(sentence_file))
    texts = read_sentences(sentence_file)
    records = read_dl_info(dl_root / "DL_info.csv")
    split_of: dict[int, str] = {}
    for r in records:
        if r.train_val_test not in SPLIT_CODES:
            raise invalid(f"DL_info.csv row {r.lesion_idx + 2} Train_Val_Test", "must be 1, 2 or 3", r.train_val_test)
        split_of[r.lesion_idx] = SPLIT_CODES[r.train_val_test]

    miner = TextMiner(ontology, method=method)
    mined = {}
    skipped = {"no_sentence": 0}
    for r in tqdm(records, desc="mine", unit="lesion", disable=not progress):
        text = texts.get(r.lesion_idx)
        if text is None:
            skipped["no_sentence"] += 1
            continue
        mined[r.lesion_idx] = miner.mine(text, r.lesion_idx)
    if not mined:
        raise invalid("--sentences", "must hold a sentence for at least one DL_info.csv row", str(sentence_file))

    counts: dict[str, int]
    if labels is not None:
        term_list = canonical_label_names(read_label_split(labels).term_list, ontology, "--labels term_list")
        _, counts = select_labels({k: m.expanded for k, m in mined.items()}, split_of, ontology, 1)
    else:
        term_list, counts = select_labels({k: m.expanded for k, m in mined.items()}, split_of, ontology,
                                          min_positives)
    if not term_list:
        raise invalid("--min-positives", f"leaves no label: no term has that many training lesions (most: "
                      f"{max(counts.values(), default=0)})", min_positives)

    layout: dict[str, Any] = {"term_list": list(term_list)}
    per_split: dict[str, int] = {}
    for split in SPLIT_CODES.values():
        results = [m for k, m in sorted(mined.items()) if split_of[k] == split]
        per_split[split] = len(results)
        layout.update(to_split_layout(results, term_list, prefix=f"{split}_", ontology=ontology))

    out_dir.mkdir(parents=True, exist_ok=True)
    label_ontology = ontology.subset(term_list)
    write_text_atomic(out_dir / LABELS_FILE, json.dumps(layout) + "\n", LABELS_FILE, overwrite)
    write_text_atomic(out_dir / ONTOLOGY_FILE, json.dumps(label_ontology.to_dict(), indent=1) + "\n",
                      ONTOLOGY_FILE, overwrite)
    mined_lines = [json.dumps({**m.to_dict(), "split": split_of[k], "text": texts[k]}, ensure_ascii=False)
                   for k, m in sorted(mined.items())]
    write_text_atomic(out_dir / MINED_FILE, "\n".join(mined_lines) + "\n", MINED_FILE, overwrite)

    truth_count = 0
    if (dl_root / "truth.jsonl").is_file():
        truth = phantom_truth(dl_root / "truth.jsonl", term_list, ontology, split_of, texts)
        truth_count = len(truth)
        write_text_atomic(out_dir / TRUTH_FILE, json.dumps(truth, indent=0) + "\n", TRUTH_FILE, overwrite)
    elif (out_dir / TRUTH_FILE).exists():
        (out_dir / TRUTH_FILE).unlink()  # an earlier preparation's truth would not describe these lesions

    label_split = read_label_split(out_dir / LABELS_FILE)
    cache = build_patch_cache(dl_root, records, label_split, ontology, out_dir / CACHE_DIR, overwrite=overwrite,
                              progress=progress)
    summary = PrepareSummary(out_dir=out_dir, term_list=tuple(term_list), lesions=per_split, cache=cache,
                             skipped=skipped, truth_lesions=truth_count, seconds=time.perf_counter() - started)
    info = {
        "dl_root": str(dl_root), "sentences": str(sentence_file), "ontology": ontology.name,
        "ontology_path": ontology_path,
        "ontology_digest": ontology.digest(), "labels_file": None if labels is None else str(labels),
        "min_positives": None if labels is not None else int(min_positives), "method": method,
        "lesions_mined": per_split, "skipped": skipped, "truth_lesions": truth_count,
        "labels": [{"term": t, "class": ontology.label_class(t), "train_lesions": counts.get(t, 0)}
                   for t in term_list],
        "cache": cache, "seconds": round(summary.seconds, 1),
    }
    write_text_atomic(out_dir / SUMMARY_FILE, json.dumps(info, indent=1) + "\n", SUMMARY_FILE, overwrite)
    return summary


def phantom_truth(path: str | os.PathLike, term_list: Sequence[str], ontology: Any, split_of: Mapping[int, str],
                  texts: Mapping[int, str] | None = None) -> list[dict[str, Any]]:
    """The phantom's true labels of every test lesion, expanded and restricted to ``term_list``.

    The analogue of the paper's hand-labeled test set: labels that do not depend on text mining. Written in the
    layout of the official ``hand_labeled_dev.json`` so :func:`LesaNetCore.pipeline.evaluate.read_hand_labeled`
    reads both.
    """
    path = Path(path)
    keep = set(term_list)
    out = []
    records = read_json_lines(path, lambda record: (int(record["id"]), [str(n) for n in record["labels"]]),
                              "a JSON object with 'id' and 'labels'")
    for _, (lesion, names) in records:
        if split_of.get(lesion) != "test":
            continue
        known = [n for n in names if n in ontology]
        expanded = [n for n in ontology.names if n in set(ontology.expand(known)) and n in keep]
        out.append({"lesion_idx": lesion, "expanded_terms": expanded, "text": (texts or {}).get(lesion, "")})
    return out


def _check_outputs(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise invalid("--out", "must be a folder", str(out_dir))
    present = [name for name in _OUTPUTS if (out_dir / name).exists()]
    if present and not overwrite:
        raise LesaNetError(f"--out: refusing to overwrite an earlier preparation (pass --overwrite), but got "
                           f"{str(out_dir)!r} holding {present}")
