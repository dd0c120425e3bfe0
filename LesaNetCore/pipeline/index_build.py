"""``lesanet index build|search``: the reference index of a prepared split, and nearest-lesion queries.

The index holds one entry per lesion of a split (the training set by default, as the paper retrieves from it):
its embedding by the model, DeepLesion row index as ``lesion_id``, patient, positive labels, report sentence
and a 64 x 64 thumbnail of the key patch's centre slice, so Slicer can show the evidence without the images.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LesaNetError, invalid
from .prepare import MINED_FILE

THUMBNAIL_SIZE = 64


def thumbnail(patch_grey: np.ndarray, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """A ``size`` x ``size`` uint8 thumbnail of one grey patch channel (area-averaged down-sampling).

    Example:
        >>> thumbnail(np.full((120, 120), 200, dtype=np.uint8)).shape
        (64, 64)
    """
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(patch_grey, dtype=np.uint8))
    return np.asarray(image.resize((size, size), Image.Resampling.BOX), dtype=np.uint8)


def read_sentence_texts(data_dir: str | os.PathLike, sentences: str | os.PathLike | None = None) -> dict[int, str]:
    """Report sentence per lesion: from ``sentences`` (JSON lines ``{"id", "text"}``) or DATA_DIR/mined.jsonl."""
    from .prepare import read_sentences

    if sentences is not None:
        return read_sentences(sentences)
    path = Path(data_dir) / MINED_FILE  # its lines carry "id" and "text" too
    return read_sentences(path) if path.is_file() else {}


def build_reference_index(
    checkpoint: Any,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None,
    *,
    split: str = "train",
    method: str = "auto",
    sentences: str | os.PathLike | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    overwrite: bool = False,
    progress: bool = True,
) -> Any:
    """Embeds every lesion of ``split`` and writes the reference index to ``out_dir`` (None: do not write).

    Args:
        checkpoint: checkpoint path or loaded :class:`LesaNetCore.training.Checkpoint`.
        data_dir: folder written by ``lesanet prepare``.
        split: "train" (the paper's gallery), "val" or "test".
        method: ``ReferenceIndex.build`` method ("auto", "exact", "ivf", "hnsw").
        sentences: report sentences; default the texts in DATA_DIR/mined.jsonl.

    Returns:
        The :class:`LesaNetCore.retrieval.ReferenceIndex`.
    """
    from ..retrieval import ReferenceEntry, ReferenceIndex
    from ..training.checkpoint import Checkpoint, build_model, checkpoint_digest, load_checkpoint
    from ..training.dataset import SPLITS, open_patch_cache
    from .evaluate import _cache_path, embed_split

    if split not in SPLITS:
        raise invalid("--split", f"must be one of {list(SPLITS)}", split)
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    cache = open_patch_cache(_cache_path(data_dir))
    if list(ckpt.label_names) != cache.label_names:
        raise LesaNetError("--model: its labels must be the data's labels, but got "
                           f"{len(ckpt.label_names)} model labels vs {len(cache.label_names)} data labels")
    rows = cache.rows(split)
    if len(rows) == 0:
        raise invalid("--split", "must hold lesions in the data", split)
    if out_dir is not None and Path(out_dir).exists() and any(Path(out_dir).iterdir()) and not overwrite:
        raise LesaNetError(f"--out: refusing to overwrite an existing index (pass --overwrite), but got {str(out_dir)!r}")
    texts = read_sentence_texts(data_dir, sentences)
    model = build_model(ckpt, device)
    _, embeddings = embed_split(model, cache, split, batch_size, device, progress)
    names = cache.label_names
    a = cache.arrays
    entries = []
    for row in rows:
        positive = (np.asarray(a["targets"][row]) > 0) & np.asarray(a["valid"][row])
        lesion = int(a["lesion_idx"][row])
        entries.append(ReferenceEntry(
            lesion_id=str(lesion),
            patient_id=str(int(a["patient"][row])),
            labels=tuple(names[c] for c in np.flatnonzero(positive)),
            sentence=texts.get(lesion, ""),
            thumbnail=thumbnail(np.asarray(a["images"][row][1])),
        ))
    index = ReferenceIndex.build(embeddings, entries, model_digest=checkpoint_digest(ckpt), label_names=names,
                                 method=method, progress=progress)
    if out_dir is not None:
        index.save(out_dir, overwrite=overwrite)
    return index


def search_lesion(index_dir: str | os.PathLike, lesion_id: int, data_dir: str | os.PathLike, *,
                  checkpoint: Any = None, k: int = 5, device: str = "cpu") -> tuple[list[Any], str]:
    """The ``k`` lesions nearest to a lesion of a prepared data set, never from its own patient.

    The query's embedding is computed by ``checkpoint`` when given (any split), else taken from the index when
    the lesion is one of its entries.

    Returns:
        (similar lesions nearest first, the query's patient id).
    """
    from ..retrieval import ReferenceIndex
    from ..training.checkpoint import Checkpoint, build_model, checkpoint_digest, load_checkpoint
    from ..training.dataset import open_patch_cache
    from .evaluate import _cache_path

    cache = open_patch_cache(_cache_path(data_dir))
    lesions = np.asarray(cache.arrays["lesion_idx"])
    found = np.flatnonzero(lesions == int(lesion_id))
    if len(found) == 0:
        raise invalid("--lesion", "must be a lesion (DL_info row index) of the prepared data", lesion_id)
    row = int(found[0])
    patient = str(int(cache.arrays["patient"][row]))
    if checkpoint is not None:
        from ..model import InferenceModel

        ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
        index = ReferenceIndex.load(index_dir, model_digest=checkpoint_digest(ckpt), label_names=ckpt.label_names)
        prep = cache.preprocessing
        image = (np.asarray(cache.arrays["images"][row], dtype=np.float32) - prep.get("mean", 50.0)) / prep.get(
            "scale", 255.0)
        # kernels="cached": one query is not worth measuring kernels for.
        _, embedding = InferenceModel(build_model(ckpt, device), device, kernels="cached").predict(
            image[None], np.array(cache.arrays["boxes"][row], dtype=np.float32)[None])
        query = embedding[0]
    else:
        index = ReferenceIndex.load(index_dir)
        stored = [r for r in range(len(index)) if index.entry(r).lesion_id == str(int(lesion_id))]
        if not stored:
            raise invalid("--lesion", "is not in the index; pass --model to embed it", lesion_id)
        query = np.asarray(index.embeddings[stored[0]])
    return index.search(query, k=k, exclude_patient=patient), patient


def format_similar(similar: list[Any]) -> str:
    """The nearest lesions as printable lines: rank, lesion, patient, distance, labels, sentence."""
    lines = []
    for n, s in enumerate(similar, start=1):
        lines.append(f"{n}. lesion {s.lesion_id} (patient {s.patient_id}) distance {s.distance:.3f}: "
                     f"{', '.join(s.labels) or '-'}")
        if s.sentence:
            lines.append(f"   \"{s.sentence}\"")
    return "\n".join(lines) if lines else "no eligible reference lesion"
