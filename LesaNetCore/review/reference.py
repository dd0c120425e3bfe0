"""A reader's reviewed lesions added to a reference index (``lesanet index add``), without rebuilding it.

Each accepted or corrected lesion of a corrections folder becomes a reference entry: its embedding by the index's
model, the reader's final labels (with their ancestors, as the training targets have them), its patient (so it is
never shown for its own patient), a thumbnail of its patch and, where a report sentence would be, who reviewed it.
Only these lesions are embedded; the index's rows stay as they are (:mod:`LesaNetCore.retrieval.extend`).

Running it again after more reviews is the expected use: lesions already in the index with the same labels are
left alone, new ones are added, and ones whose labels the reader has since changed are updated (exact indexes;
a faiss index must be rebuilt to change a row, and says so).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import invalid


def correction_entries(cache: Any) -> list[Any]:
    """One :class:`ReferenceEntry` per row of a corrections cache (row order), labels = the reader's final set."""
    from ..pipeline.index_build import thumbnail
    from ..retrieval import ReferenceEntry

    info = cache.meta.get("corrections") or {}
    count = len(cache.arrays["split"])
    lesion_ids = list(info.get("lesion_ids") or [])
    if len(lesion_ids) != count:
        raise invalid("--corrections", "must be a corrections folder (its cache lists the lesion ids)", cache.path)
    patients = list(info.get("patient_ids") or lesion_ids)
    readers = list(info.get("readers") or [""] * count)
    statuses = list(info.get("statuses") or ["reviewed"] * count)
    names = cache.label_names
    entries = []
    for row in range(count):
        positive = np.asarray(cache.arrays["targets"][row]) > 0
        who = f" by {readers[row].replace('^', ' ').strip()}" if readers[row] else ""
        entries.append(ReferenceEntry(
            lesion_id=str(lesion_ids[row]), patient_id=str(patients[row] or lesion_ids[row]),
            labels=tuple(names[c] for c in np.flatnonzero(positive)),
            sentence=f"Labels {statuses[row]}{who} in review.",
            thumbnail=thumbnail(np.asarray(cache.arrays["images"][row][1]))))
    return entries


def add_corrections_to_index(index_dir: str | os.PathLike, checkpoint: Any, corrections: str | os.PathLike, *,
                             out: str | os.PathLike | None = None, device: str = "cpu",
                             progress: bool = True) -> dict[str, Any]:
    """Adds (or updates) the corrections' lesions in the index at ``index_dir``; writes to ``out`` or in place.

    The index is written atomically (a reader never sees half of it; an error leaves it as it was).

    Returns:
        counts: ``added``, ``updated``, ``unchanged`` lesions, ``total`` rows, and the ``index`` written.

    Raises:
        LesaNetError: a model other than the index's, a folder that is not a corrections folder or has no
            reviewed lesions, another label list, an ``out`` that already exists.
    """
    from ..model import InferenceModel
    from ..retrieval import ReferenceIndex
    from ..retrieval.extend import entry_changes, extended_index
    from ..training.checkpoint import Checkpoint, build_model, checkpoint_digest, load_checkpoint
    from ..training.dataset import SPLITS, PatchDataset, open_patch_cache
    from .corrections import CACHE_DIR

    if out is not None and Path(out).exists():
        raise invalid("--out", "must be a new folder (leave it out to update the index in place)", str(out))
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    cache_dir = Path(corrections) / CACHE_DIR
    if not cache_dir.is_dir():
        raise invalid("--corrections", "must be a corrections folder with reviewed lesions (its cache/ folder is "
                      "missing)", str(corrections))
    cache = open_patch_cache(cache_dir)
    if cache.label_names != list(ckpt.label_names):
        raise invalid("--corrections", "must hold corrections of the model's labels (same label list)",
                      f"{len(cache.label_names)} labels vs the model's {len(ckpt.label_names)}")
    digest = checkpoint_digest(ckpt)
    index = ReferenceIndex.load(index_dir, model_digest=digest, label_names=ckpt.label_names)
    entries = correction_entries(cache)
    changes = entry_changes(index, entries)
    keep = [number for number, change in enumerate(changes) if change != "unchanged"]
    counts = {change: changes.count(change) for change in ("added", "updated", "unchanged")}
    target = Path(out) if out is not None else Path(index_dir)
    if keep:
        from torch.utils.data import Subset

        embeddings = np.zeros((len(entries), index.dim), dtype=np.float32)
        inference = InferenceModel(build_model(ckpt, device), device)
        wanted = set(keep)
        for split in SPLITS:  # only the added and updated lesions are embedded
            data = PatchDataset(cache, split)
            positions = [i for i, row in enumerate(data.row_numbers) if int(row) in wanted]
            if positions:
                embeddings[np.asarray(data.row_numbers)[positions]] = inference.predict_dataset(
                    Subset(data, positions), 64, progress=progress, return_embeddings=True, desc=f"embed {split}")[1]
        index = extended_index(index, embeddings[keep], [entries[n] for n in keep], model_digest=digest,
                               replace=True)
    if keep or out is not None:
        index.save(target, overwrite=out is None)
    return {**counts, "total": len(index), "index": str(target)}
