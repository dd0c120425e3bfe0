"""The reference index on disk: a folder of plain, inspectable files that never need unpickling.

Layout (format ``lesanet-reference-index``, version 1)::

    index.json       format, version, model digest, label names, dim, method, count, thumbnail shape, faiss
                     parameters (null for exact search)
    embeddings.npy   float32 (count, dim), L2-normalised
    entries.jsonl    one JSON object per row: lesion_id, patient_id, labels, sentence, has_thumbnail
    thumbnails.npy   uint8 (count, h, w); zeros where has_thumbnail is false; (count, 0, 0) when none
    faiss.index      the faiss index (approximate methods only), faiss.write_index format

The folder is written into a temporary sibling and renamed into place, so a reader never sees half an index
and an interrupted save leaves the previous index intact. Loading uses ``np.load(allow_pickle=False)`` and
JSON only; every problem is reported with the file it was found in.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LesaNetError, invalid
from . import ann

FORMAT_NAME = "lesanet-reference-index"
FORMAT_VERSION = 1
_FILES = ("index.json", "embeddings.npy", "entries.jsonl", "thumbnails.npy")
_FAISS_FILE = "faiss.index"


def save_index(index, folder: str | os.PathLike, overwrite: bool = False) -> Path:
    """Writes ``index`` (a ReferenceIndex) to ``folder``; see the module docstring for the layout.

    Raises:
        LesaNetError: ``folder`` exists and ``overwrite`` is false, or it exists but is not an index folder
            (overwriting would delete unrelated files), or it is a file.
    """
    target = Path(folder)
    _check_target(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; an index is shared like any other output folder
        _write_files(index, staging)
        if target.exists():
            _check_target(target, overwrite)
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, retired / "index")
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _check_target(target: Path, overwrite: bool) -> None:
    if target.exists() and not target.is_dir():
        raise invalid("folder", "must be a folder path, not a file", str(target))
    if not target.exists():
        return
    if not overwrite:
        raise invalid("folder", "refusing to overwrite an existing index (pass overwrite=True)", str(target))
    if any(target.iterdir()) and not (target / "index.json").is_file():
        raise invalid("folder", "must be empty or an existing index (index.json) to be overwritten", str(target))


def _write_files(index, staging: Path) -> None:
    count = len(index)
    header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "model_digest": index.model_digest,
        "label_names": list(index.label_names),
        "dim": index.dim,
        "method": index.method,
        "count": count,
        "thumbnail_shape": list(index._thumbnails.shape[1:]),
        "faiss": index.params,
    }
    (staging / "index.json").write_text(json.dumps(header, indent=1) + "\n", encoding="utf-8")
    np.save(staging / "embeddings.npy", np.asarray(index._embeddings, dtype=np.float32), allow_pickle=False)
    np.save(staging / "thumbnails.npy", index._thumbnails, allow_pickle=False)
    with open(staging / "entries.jsonl", "w", encoding="utf-8") as stream:
        for row in range(count):
            stream.write(json.dumps({
                "lesion_id": index._lesion_ids[row],
                "patient_id": index._patient_ids[row],
                "labels": list(index._labels[row]),
                "sentence": index._sentences[row],
                "has_thumbnail": bool(index._has_thumbnail[row]),
            }, ensure_ascii=False) + "\n")
    if index._faiss is not None:
        ann.write_index(index._faiss, str(staging / _FAISS_FILE))


def load_index(cls, folder: str | os.PathLike, *, model_digest: str | None = None,
               label_names: Sequence[str] | None = None):
    """Reads a folder written by :func:`save_index` into ``cls`` (ReferenceIndex); see its ``load``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise invalid("folder", "must be an existing reference index folder", str(folder))
    for name in _FILES:
        if not (folder / name).is_file():
            raise invalid("folder", f"must contain {name} (written by ReferenceIndex.save); it is missing from",
                          str(folder))
    header = _read_header(folder / "index.json")
    _check_identity(header, folder, model_digest, label_names)
    count, dim, method = header["count"], header["dim"], header["method"]
    approximate = method in ann.APPROX_METHODS
    # An approximate index keeps its vectors inside faiss; map the .npy instead of holding a second copy.
    embeddings = _read_array(folder / "embeddings.npy", np.float32, (count, dim), mmap=approximate)
    thumbnails = _read_array(folder / "thumbnails.npy", np.uint8, (count, *header["thumbnail_shape"]))
    columns = _read_entries(folder / "entries.jsonl", count)
    columns["thumbnails"] = thumbnails
    faiss_index = None
    if approximate:
        path = folder / _FAISS_FILE
        if not path.is_file():
            raise invalid("folder", f"must contain {_FAISS_FILE} for a {method!r} index; it is missing from",
                          str(folder))
        faiss_index = ann.read_index(str(path), argument=str(path))
        if faiss_index.ntotal != count or faiss_index.d != dim:
            raise invalid(str(path), f"must hold {count} vectors of dimension {dim} (index.json)",
                          f"{faiss_index.ntotal} of dimension {faiss_index.d}")
    return cls(embeddings, columns, model_digest=header["model_digest"], label_names=header["label_names"],
               method=method, params=header["faiss"], faiss_index=faiss_index)


def _read_header(path: Path) -> dict[str, Any]:
    try:
        header = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise invalid(str(path), "must be valid JSON", f"{type(err).__name__}: {err}") from err
    if not isinstance(header, dict):
        raise invalid(str(path), "must hold a JSON object", type(header).__name__)
    if header.get("format") != FORMAT_NAME:
        raise invalid(str(path), f"must declare format {FORMAT_NAME!r}", header.get("format"))
    if header.get("version") != FORMAT_VERSION:
        raise invalid(str(path), f"must be format version {FORMAT_VERSION} (this LesaNetCore reads only it)",
                      header.get("version"))
    checks = {
        "model_digest": lambda v: isinstance(v, str) and v != "",
        "label_names": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        "dim": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "count": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "method": lambda v: v in ("exact", *ann.APPROX_METHODS),
        "thumbnail_shape": lambda v: isinstance(v, list) and len(v) == 2
        and all(isinstance(x, int) and x >= 0 for x in v),
        "faiss": lambda v: v is None or isinstance(v, dict),
    }
    for key, check in checks.items():
        if key not in header:
            raise invalid(str(path), f"must have the key {key!r}", sorted(header))
        if not check(header[key]):
            raise invalid(f"{path}: {key}", "has an invalid value", header[key])
    if (header["method"] == "exact") != (header["faiss"] is None):
        raise invalid(f"{path}: faiss", f"must be null exactly when method is 'exact' (method "
                      f"{header['method']!r})", header["faiss"])
    if header["faiss"] is not None:
        try:
            header["faiss"] = ann.check_params(header["method"], header["faiss"], header["count"])
        except LesaNetError as err:
            raise invalid(f"{path}: faiss", f"must hold valid parameters ({err})", header["faiss"]) from err
    return header


def _check_identity(header: dict[str, Any], folder: Path, model_digest: str | None,
                    label_names: Sequence[str] | None) -> None:
    if model_digest is not None and model_digest != header["model_digest"]:
        raise invalid("model_digest", f"must match the model that built the index in {str(folder)!r} "
                      f"(index digest {header['model_digest']!r})", model_digest)
    if label_names is None:
        return
    stored, given = list(header["label_names"]), list(label_names)
    for position, (ours, theirs) in enumerate(zip(stored, given, strict=False)):
        if ours != theirs:
            raise invalid("label_names", f"must equal the label names of the index in {str(folder)!r}; first "
                          f"difference at position {position}: index has {ours!r}", theirs)
    if len(stored) != len(given):
        raise invalid("label_names", f"must equal the {len(stored)} label names of the index in "
                      f"{str(folder)!r} (the common prefix agrees)", f"{len(given)} labels")


def _read_array(path: Path, dtype: type, shape: tuple[int, ...], mmap: bool = False) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (ValueError, OSError, EOFError) as err:
        raise invalid(str(path), "must be a readable .npy array", f"{type(err).__name__}: {err}") from err
    if array.dtype != dtype or array.shape != shape:
        raise invalid(str(path), f"must be {np.dtype(dtype).name} of shape {shape} (index.json)",
                      f"{array.dtype} of shape {array.shape}")
    return array


def _read_entries(path: Path, count: int) -> dict[str, Any]:
    columns: dict[str, Any] = {"lesion_ids": [], "patient_ids": [], "labels": [], "sentences": []}
    has_thumbnail = np.zeros(count, dtype=bool)
    row = -1
    with open(path, encoding="utf-8") as stream:
        for row, line in enumerate(stream):
            if row >= count:
                raise invalid(str(path), f"must have {count} lines (index.json count)", f"more than {count}")
            try:
                item = json.loads(line)
                fields = (item["lesion_id"], item["patient_id"], item["labels"], item["sentence"],
                          item["has_thumbnail"])
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise invalid(f"{path}: line {row + 1}", "must be a JSON object with lesion_id, patient_id, "
                              "labels, sentence, has_thumbnail", line.strip()[:200]) from err
            lesion_id, patient_id, labels, sentence, thumb = fields
            if not (isinstance(lesion_id, str) and isinstance(patient_id, str) and isinstance(sentence, str)
                    and isinstance(labels, list) and all(isinstance(x, str) for x in labels)
                    and isinstance(thumb, bool)):
                raise invalid(f"{path}: line {row + 1}", "has a field of the wrong type", line.strip()[:200])
            columns["lesion_ids"].append(lesion_id)
            columns["patient_ids"].append(patient_id)
            columns["labels"].append(tuple(labels))
            columns["sentences"].append(sentence)
            has_thumbnail[row] = thumb
    if row + 1 != count:
        raise invalid(str(path), f"must have {count} lines (index.json count)", row + 1)
    if len(set(columns["lesion_ids"])) != count:
        raise invalid(str(path), "must not repeat a lesion_id", "duplicates")
    columns["has_thumbnail"] = has_thumbnail
    return columns
