"""Adding reference lesions to an index without rebuilding it.

A reader's reviewed lesions are the best evidence a site can show for its own cases, and they arrive a few at a
time. Rebuilding means embedding every reference lesion again with the model (minutes for DeepLesion's 22k
training lesions on a CPU) and, for a faiss inverted file, training its coarse quantizer again. Neither is needed:
an exact index is its rows, so new rows are appended; a faiss index keeps its trained lists and receives the new
vectors (IVF assigns them to the nearest existing centroid, HNSW links them into its graph), which is what faiss
is designed for. Only the new lesions are embedded, by the same model (the digest check in :func:`extended_index`).

Replacing lesions that are already in the index (a lesion reviewed again) is possible for exact indexes, where a
row is removed by dropping it; faiss indexes number their vectors by row, so removing one would renumber all the
rows after it, and those are refused with the advice to rebuild.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import invalid
from . import ann


def extended_index(index: Any, embeddings: np.ndarray, entries: Sequence[Any], *, model_digest: str,
                   replace: bool = False) -> Any:
    """A new :class:`ReferenceIndex` with ``entries`` (and their ``embeddings``) after the rows of ``index``.

    Args:
        index: the existing index (left unchanged).
        embeddings: (M, D) L2-normalised embeddings of the new lesions, by the model that built ``index``.
        entries: one :class:`ReferenceEntry` per new row; lesion ids unique among themselves.
        model_digest: digest of the model that computed ``embeddings``; must be the index's.
        replace: new entries whose lesion id is already in the index replace the old row (exact indexes only);
            without it such an id is an error.

    Raises:
        LesaNetError: another model, another dimension, a repeated lesion id, thumbnails of another shape, or a
            replacement in a faiss index; each naming the argument and value.
    """
    from .index import ReferenceIndex, _check_embeddings, _columns

    if model_digest != index.model_digest:
        raise invalid("--model", f"must be the model that built the index (digest {index.model_digest[:12]}...) so "
                      "the new embeddings live in the same space", model_digest[:12] + "...")
    new = _check_embeddings(embeddings, "embeddings", dim=index.dim)
    added = _columns(list(entries), len(new))
    old_rows = np.arange(len(index))
    existing = {lesion: row for row, lesion in enumerate(index._lesion_ids)}
    repeated = [lesion for lesion in added["lesion_ids"] if lesion in existing]
    if repeated and not replace:
        raise invalid("entries", f"must be lesions not yet in the index ({len(repeated)} already are; pass "
                      "replace to update them)", repeated[0])
    if repeated and index._faiss is not None:
        raise invalid("replace", f"works on exact indexes only: a {index.method!r} index numbers its vectors by row; "
                      "rebuild it (lesanet index build) to update lesions already in it", repeated[0])
    if repeated:
        dropped = {existing[lesion] for lesion in repeated}
        old_rows = np.array([row for row in old_rows if row not in dropped], dtype=np.int64)
    thumbnails = _joined_thumbnails(index._thumbnails[old_rows], added["thumbnails"])
    columns = {
        "lesion_ids": [index._lesion_ids[row] for row in old_rows] + added["lesion_ids"],
        "patient_ids": [index._patient_ids[row] for row in old_rows] + added["patient_ids"],
        "labels": [index._labels[row] for row in old_rows] + added["labels"],
        "sentences": [index._sentences[row] for row in old_rows] + added["sentences"],
        "thumbnails": thumbnails,
        "has_thumbnail": np.concatenate([index._has_thumbnail[old_rows], added["has_thumbnail"]]),
    }
    vectors = np.concatenate([np.asarray(index._embeddings[old_rows], dtype=np.float32), new])
    faiss_index = None
    params = index.params
    if index._faiss is not None:
        faiss_index = ann._faiss().clone_index(index._faiss)
        faiss_index.add(np.ascontiguousarray(new))
        params = ann.check_params(index.method, dict(params), len(vectors))
    return ReferenceIndex(vectors, columns, model_digest=index.model_digest, label_names=index.label_names,
                          method=index.method, params=params, faiss_index=faiss_index)


def entry_changes(index: Any, entries: Sequence[Any]) -> list[str]:
    """Per entry: ``"added"`` (its lesion id is not in ``index``), ``"updated"`` (it is, with other labels) or
    ``"unchanged"`` (it is, with the same labels); read from the index's columns, no thumbnail copied."""
    rows = {lesion: row for row, lesion in enumerate(index._lesion_ids)}
    out = []
    for entry in entries:
        row = rows.get(entry.lesion_id)
        out.append("added" if row is None else "unchanged" if index._labels[row] == tuple(entry.labels)
                   else "updated")
    return out


def _joined_thumbnails(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Old and new thumbnail stacks as one; a side without thumbnails takes the other side's shape (blank)."""
    if old.shape[1:] == new.shape[1:]:
        return np.concatenate([old, new])
    if old.shape[1:] == (0, 0):
        return np.concatenate([np.zeros((len(old), *new.shape[1:]), dtype=np.uint8), new])
    if new.shape[1:] == (0, 0):
        return np.concatenate([old, np.zeros((len(new), *old.shape[1:]), dtype=np.uint8)])
    raise invalid("entries", f"thumbnails must have the index's shape {tuple(old.shape[1:])}", tuple(new.shape[1:]))
