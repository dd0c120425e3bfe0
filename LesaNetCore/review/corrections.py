"""A reader's corrections kept as training data: a folder ``lesanet train`` and ``lesanet finetune`` read.

Every lesion a reader accepts or corrects is written as it is reviewed::

    CORRECTIONS/lesions/ID.json   the lesion's JSON report with its patch, the model's labels, the reader's
                                  accepted set, review status and reader
    CORRECTIONS/lesions/ID.npz    its training row (uint8 patch, box, label vectors, ids), what the cache is made of
    CORRECTIONS/cache/            a patch cache (:mod:`LesaNetCore.training.dataset`) of all of them, rebuilt on
                                  every write, so ``lesanet train --data CORRECTIONS`` reads it as a prepared
                                  data folder
    CORRECTIONS/corrections.json  the model's label list, counts, readers

Labels, per lesion, on the model's label list: the reader's final labels, with their ancestors among the labels,
are the positives (as text-mined relevant labels are); the labels the model said and the reader removed are
reliable negatives (what the relational hard example mining trusts); everything else is a plain negative. Skipped
lesions are not training data: skipping a lesion removes its correction.

Held-out part: the patients are ordered by a hash of their id and the first fifth of them (at least one when there
are two or more) are the validation split, where fine-tuning calibrates its thresholds; the split is the same on
every rebuild, so adding lesions never moves a patient between the parts.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LesaNetError, invalid
from ..fileio import atomic_path, write_text_atomic

LESIONS_DIR = "lesions"
CACHE_DIR = "cache"
SUMMARY_FILE = "corrections.json"
TRAINING_STATUSES = ("accepted", "corrected")
HELD_OUT_FRACTION = 0.2


def _stable(text: str) -> int:
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:12], 16)


def correction_file(folder: str | os.PathLike, lesion_id: str) -> Path:
    from ..worklist.run import safe_name

    return Path(folder) / LESIONS_DIR / f"{safe_name(lesion_id)}.json"


def remove_correction(folder: str | os.PathLike, lesion_id: str) -> bool:
    """Forgets one lesion's correction (its report and training row) and rebuilds the cache if it had one.

    For a lesion skipped or left unreviewed after an earlier verdict: it must leave the training data. Returns
    whether anything was removed.
    """
    path = correction_file(folder, lesion_id)
    removed = [f for f in (path, path.with_suffix(".npz")) if f.exists()]
    for file in removed:
        file.unlink()
    if removed:
        rebuild_cache(folder)
    return bool(removed)


def write_correction(folder: str | os.PathLike, result: Any, lesion_id: str, patient_id: str = "") -> Path | None:
    """Records one reviewed lesion and rebuilds the cache; returns its file (None when skipped or unreviewed).

    Raises:
        LesaNetError: a lesion without its patch (results read back from an SR carry none), or one from a model
            with another label list than the folder's.
    """
    from dataclasses import replace

    from ..report import write_json_report

    folder = Path(folder)
    path = correction_file(folder, lesion_id)
    if result.review_status not in TRAINING_STATUSES:
        remove_correction(folder, lesion_id)
        return None
    if result.patch_image is None or result.patch_box is None:
        raise invalid(f"lesion {lesion_id!r}", "must carry the patch the model saw to become training data", None)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_report([replace(result, volume_source=result.volume_source or lesion_id)], path, overwrite=True)
    targets, valid, reliable = label_vectors(result)
    # The training row: what the cache is made of.
    with atomic_path(path.with_suffix(".npz"), "corrections", overwrite=True) as partial, open(partial, "wb") as handle:
        np.savez(handle, image=np.clip(np.rint(result.patch_image), 0, 255).astype(np.uint8),
                 box=np.asarray(result.patch_box, dtype=np.float32), targets=targets, valid=valid, reliable=reliable,
                 labels=np.array([x.term for x in result.labels]), classes=np.array([x.label_class for x in
                                                                                      result.labels]),
                 ids=np.array([lesion_id, patient_id or lesion_id, result.model, result.reader,
                               result.review_status]))
    rebuild_cache(folder)
    return path


def read_corrections(folder: str | os.PathLike) -> list[tuple[dict, Any]]:
    """(ids, result) of every correction in the folder (its JSON reports), in file order."""
    from ..report import read_json_report

    out = []
    for path in sorted((Path(folder) / LESIONS_DIR).glob("*.json")):
        rows = _read_row(path.with_suffix(".npz"))
        ids = {"lesion_id": rows["ids"][0], "patient_id": rows["ids"][1]} if rows else {"lesion_id": path.stem}
        out.append((ids, read_json_report(path)[0]))
    return out


def _read_row(path: Path) -> dict | None:
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def label_vectors(result: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(targets, valid, reliable) of one reviewed lesion over the model's labels (see the module docstring)."""
    names = [x.term for x in result.labels]
    final = set(result.accepted)
    for term in list(final):
        final |= result.ancestors(term)
    decided = {x.term for x in result.labels if x.decision}
    targets = np.array([t in final for t in names], dtype=np.int8)
    reliable = np.array([t in final or t in decided for t in names], dtype=bool)
    return targets, np.ones(len(names), dtype=bool), reliable


def held_out_patients(patients: list[str]) -> set[str]:
    """The patients whose lesions form the validation split (see the module docstring)."""
    unique = sorted(set(patients), key=lambda p: (_stable(p), p))
    if len(unique) < 2:
        return set()
    count = max(1, int(round(HELD_OUT_FRACTION * len(unique))))
    return set(unique[:count])


def rebuild_cache(folder: str | os.PathLike) -> dict[str, Any]:
    """Writes ``CORRECTIONS/cache`` and ``corrections.json`` from the lesions' training rows; returns the summary."""
    from ..training.dataset import SPLITS, write_patch_cache

    folder = Path(folder)
    rows = [r for r in (_read_row(p) for p in sorted((folder / LESIONS_DIR).glob("*.npz"))) if r is not None]
    cache = folder / CACHE_DIR
    if not rows:
        if cache.exists():
            import shutil

            shutil.rmtree(cache)
        summary = {"lesions": 0}
        write_text_atomic(folder / SUMMARY_FILE, json.dumps(summary, indent=1) + "\n", SUMMARY_FILE, overwrite=True)
        return summary
    names = rows[0]["labels"].tolist()
    for row in rows:
        if row["labels"].tolist() != names:
            raise LesaNetError(f"corrections {str(folder)!r}: lesion {str(row['ids'][0])!r} comes from a model with "
                               f"another label list; keep one folder per model")
    lesion_ids = [str(r["ids"][0]) for r in rows]
    patients = [str(r["ids"][1]) for r in rows]
    held_out = held_out_patients(patients)
    arrays = {
        "boxes": np.stack([r["box"] for r in rows]),
        "targets": np.stack([r["targets"] for r in rows]),
        "valid": np.stack([r["valid"] for r in rows]),
        "reliable": np.stack([r["reliable"] for r in rows]),
        "lesion_idx": np.arange(len(rows), dtype=np.int64),
        "patient": np.array([_stable(p) % (2**62) for p in patients], dtype=np.int64),
        "split": np.array([SPLITS.index("val" if p in held_out else "train") for p in patients], dtype=np.int8),
    }
    models = sorted({str(r["ids"][2]) for r in rows})
    counts = {"train": int((arrays["split"] == 0).sum()), "val": int((arrays["split"] == 1).sum())}
    meta = {"label_names": names, "label_classes": rows[0]["classes"].tolist(), "ontology_digest": "",
            "label_ontology": None, "source": str(folder), "counts": counts,
            "corrections": {"models": models, "lesion_ids": lesion_ids, "patient_ids": patients,
                            "readers": [str(r["ids"][3]) for r in rows],
                            "statuses": [str(r["ids"][4]) for r in rows]}}
    write_patch_cache(cache, np.stack([r["image"] for r in rows]), arrays, meta, overwrite=True)
    statuses = [str(r["ids"][4]) for r in rows]
    summary = {"lesions": len(rows), "models": models, "readers": sorted({str(r["ids"][3]) for r in rows} - {""}),
               "label_names": names, "counts": counts,
               "statuses": {s: statuses.count(s) for s in TRAINING_STATUSES}}
    write_text_atomic(folder / SUMMARY_FILE, json.dumps(summary, indent=1) + "\n", SUMMARY_FILE, overwrite=True)
    return summary
