"""Training data: per-lesion label vectors, a pre-cropped patch cache, and a torch Dataset over it.

Cropping a patch means reading several 16-bit PNGs and resampling them; doing that every epoch would dominate
training. :func:`build_patch_cache` crops every lesion once and stores:

* ``images`` uint8 (N, 3, 120, 120): grey levels of the HU window, rounded (the model normalises them);
* ``boxes`` float32 (N, 4): lesion box in patch pixels;
* ``targets`` int8 (N, C): 1 positive, 0 negative;
* ``valid`` bool (N, C): False where the label is uncertain (no loss, not evaluated);
* ``reliable`` bool (N, C): positives and reliable negatives (labels exclusive with a positive), for RHEM;
* ``lesion_idx``, ``patient``, ``split`` (0 train, 1 val, 2 test) per row; ``meta.json`` with label names,
  classes, ontology digest, preprocessing and the labelling options.

A cache is a folder of ``.npy`` files (opened memory-mapped, so a 32k-lesion cache need not fit in RAM) or a
single ``.npz``.

Labels (the reference code's ``TEXT_MINED_LABEL: 'RU'``, DESIGN.md "relevant ∪ uncertain, expanded with
parents"): in the training split the positives are the relevant and uncertain labels expanded with their
ancestors; in validation and test, the relevant labels expanded. Uncertain labels (with their ancestors) that
are not positive and not exclusive with a positive are marked invalid (weight 0, not evaluated), which in the
training split only concerns ancestors outside the term list. Options give the paper's ablations:
``expand=False`` (w/o label expansion), ``label_mode="relevant"`` (uncertain labels ignored instead of
positive) and ``label_mode="all-mentioned"`` (w/o text mining: relevant, uncertain and irrelevant all
positive in training). Lesions marked possibly noisy, and lesions left without any positive label, are skipped
as in the reference.

Augmentation: the reference uses none, so none by default; ``box_jitter`` moves box corners by up to that
many pixels (deterministic per seed, epoch and lesion).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LesaNetError, invalid
from .checkpoint import DEFAULT_PREPROCESSING

CACHE_FORMAT = "lesanet-patch-cache"
CACHE_VERSION = 1
SPLITS = ("train", "val", "test")
LABEL_MODES = ("text-mined", "relevant", "all-mentioned")
_ARRAYS = ("images", "boxes", "targets", "valid", "reliable", "lesion_idx", "patient", "split")


def canonical_label_names(names: Sequence[str], ontology: Any, argument: str = "labels") -> list[str]:
    """Each label name as the ontology spells it: the name itself, else the term owning it as a synonym.

    The official term list and an ontology may differ in spelling ("porta Hepatis", "groin lymph node" are
    "porta hepatis", "inguinal lymph node" in the shipped ontology); the model's outputs must carry the
    ontology's names so decisions and reports can use its hierarchy.

    Raises:
        LesaNetError: a name the ontology does not know, or two names that map to one term.
    """
    synonyms = ontology.synonym_index() if hasattr(ontology, "synonym_index") else {}
    out: list[str] = []
    for name in names:
        canonical = name if name in ontology else synonyms.get(" ".join(str(name).lower().split()))
        if canonical is None:
            raise LesaNetError(f"{argument}: every label must be a term or synonym of the ontology, but got "
                               f"{name!r}")
        if canonical in out:
            raise LesaNetError(f"{argument}: labels must map to distinct ontology terms, but got {name!r} -> "
                               f"{canonical!r} twice")
        out.append(canonical)
    return out


def lesion_label_vectors(
    term_list: Sequence[str],
    relevant: Iterable[int],
    uncertain: Iterable[int],
    irrelevant: Iterable[int],
    ontology: Any,
    *,
    split: str,
    expand: bool = True,
    label_mode: str = "text-mined",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Targets, validity and reliability of one lesion from its mined label indices.

    Args:
        term_list: the label names, in output order.
        relevant, uncertain, irrelevant: indices into ``term_list`` mined from the report.
        ontology: provides ``expand(names)`` and ``reliable_negatives(names)``; may hold more terms than
            ``term_list`` (ancestors outside the list are dropped).
        split: "train", "val" or "test"; uncertain (and irrelevant) labels count as positive in training only.
        expand: add ancestors of every positive (off = the "w/o label expansion" ablation).
        label_mode: "text-mined", "relevant" or "all-mentioned" (see the module docstring).

    Returns:
        ``(targets int8 (C,), valid bool (C,), reliable bool (C,))``.

    Example:
        >>> from LesaNetCore.ontology import Ontology, Term
        >>> onto = Ontology([Term("chest", "bodypart"), Term("abdomen", "bodypart", exclusive=frozenset({"chest"})),
        ...                  Term("lung", "bodypart", parents=frozenset({"chest"}))])
        >>> t, v, r = lesion_label_vectors(["chest", "abdomen", "lung"], [2], [], [], onto, split="val")
        >>> t.tolist(), v.tolist(), r.tolist()
        ([1, 0, 1], [True, True, True], [True, True, True])
    """
    if label_mode not in LABEL_MODES:
        raise invalid("label_mode", f"must be one of {list(LABEL_MODES)}", label_mode)
    names = list(term_list)
    known = set(names)
    index = {name: i for i, name in enumerate(names)}

    def to_names(idxs: Iterable[int]) -> set[str]:
        return {names[int(i)] for i in idxs}

    rel, unc, irr = to_names(relevant), to_names(uncertain), to_names(irrelevant)
    source = set(rel)
    if split == "train" and label_mode == "text-mined":
        source |= unc
    elif split == "train" and label_mode == "all-mentioned":
        source |= unc | irr
    positives = (set(ontology.expand(source)) if expand else source) & known
    unc_all = (set(ontology.expand(unc)) if expand else unc) & known
    negatives = set(ontology.reliable_negatives(positives)) & known - positives
    masked = unc_all - positives - negatives

    count = len(names)
    targets = np.zeros(count, dtype=np.int8)
    valid = np.ones(count, dtype=bool)
    reliable = np.zeros(count, dtype=bool)
    targets[[index[n] for n in positives]] = 1
    valid[[index[n] for n in masked]] = False
    reliable[[index[n] for n in positives | negatives]] = True
    return targets, valid, reliable


def build_patch_cache(
    dl_root: str | os.PathLike,
    records: Sequence[Any],
    label_split: Any,
    ontology: Any,
    out_path: str | os.PathLike,
    *,
    expand: bool = True,
    label_mode: str = "text-mined",
    splits: Sequence[str] = SPLITS,
    skip_noisy: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    patch_loader: Callable[[Any, Any], Any] | None = None,
) -> dict[str, Any]:
    """Crops every labelled lesion once and writes the patch cache (folder of .npy, or .npz by extension).

    Args:
        dl_root: DeepLesion folder (with ``Images_png/``).
        records: ``read_dl_info`` rows; lesions of the split file without a row are counted as missing.
        label_split: :class:`LesaNetCore.ontology.LabelSplit` (term list and per-split label indices).
        ontology: the ontology the labels come from (``expand``, ``reliable_negatives``, ``digest``).
        out_path: ``DIR`` (memory-mappable .npy files) or ``FILE.npz``.
        expand, label_mode: labelling options (module docstring).
        splits: which splits to include.
        skip_noisy: skip lesions DL_info marks as possibly noisy (the reference does).
        overwrite: replace an existing cache.
        progress: show a tqdm bar.
        patch_loader: ``(dl_root, record) -> Patch``; default :func:`LesaNetCore.imaging.load_lesion_patch`.

    Returns:
        A summary: counts per split, skipped lesions by reason, number of labels, output path.

    Raises:
        LesaNetError: no lesion to cache, an unknown split, a patch that cannot be read (naming the lesion),
            or an existing output without ``overwrite``.
    """
    from tqdm import tqdm

    if patch_loader is None:
        from ..imaging import load_lesion_patch as patch_loader
    out_path = Path(out_path)
    if out_path.exists() and not overwrite:
        raise LesaNetError(f"cache: refusing to overwrite an existing cache (pass --overwrite), but got {str(out_path)!r}")
    for split in splits:
        if split not in SPLITS:
            raise invalid("splits", f"must be among {list(SPLITS)}", split)
    term_list = canonical_label_names(label_split.term_list, ontology, "label_split.term_list")
    by_idx = {int(r.lesion_idx): r for r in records}

    rows: list[tuple[int, Any, np.ndarray, np.ndarray, np.ndarray]] = []
    skipped = {"missing_record": 0, "noisy": 0, "no_positive": 0}
    counts = {}
    for split in splits:
        if split not in label_split.splits:
            continue
        labels = label_split.splits[split]
        kept = 0
        for i, lesion_idx in enumerate(labels.lesion_idxs):
            record = by_idx.get(int(lesion_idx))
            if record is None:
                skipped["missing_record"] += 1
                continue
            if skip_noisy and bool(getattr(record, "possibly_noisy", False)):
                skipped["noisy"] += 1
                continue
            irrelevant = labels.irrelevant[i] if labels.irrelevant else ()
            target, valid, reliable = lesion_label_vectors(
                term_list, labels.relevant[i], labels.uncertain[i], irrelevant, ontology,
                split=split, expand=expand, label_mode=label_mode)
            if not target.any():
                skipped["no_positive"] += 1
                continue
            rows.append((SPLITS.index(split), record, target, valid, reliable))
            kept += 1
        counts[split] = kept
    if not rows:
        raise LesaNetError(f"cache: must contain at least one lesion with a record and a positive label, but got "
                           f"none (skipped {skipped})")

    n, c = len(rows), len(term_list)
    size = int(DEFAULT_PREPROCESSING["patch_size"])
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", suffix=".part", dir=_parent(out_path)))
    try:
        images = np.lib.format.open_memmap(tmp_dir / "images.npy", mode="w+", dtype=np.uint8, shape=(n, 3, size, size))
        boxes = np.zeros((n, 4), dtype=np.float32)
        for row, (_, record, *_rest) in enumerate(tqdm(rows, desc="patch cache", unit="lesion", disable=not progress)):
            try:
                patch = patch_loader(dl_root, record)
            except LesaNetError as err:
                raise LesaNetError(f"lesion {record.lesion_idx}: its patch must be readable, but got: {err}") from err
            image = np.asarray(patch.image, dtype=np.float32)
            if image.shape != (3, size, size):
                raise invalid(f"lesion {record.lesion_idx} patch", f"must be (3, {size}, {size})", image.shape)
            images[row] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
            boxes[row] = np.asarray(patch.box, dtype=np.float32)
        images.flush()
        del images
        arrays = {
            "boxes": boxes,
            "targets": np.stack([r[2] for r in rows]),
            "valid": np.stack([r[3] for r in rows]),
            "reliable": np.stack([r[4] for r in rows]),
            "lesion_idx": np.array([int(r[1].lesion_idx) for r in rows], dtype=np.int64),
            "patient": np.array([int(getattr(r[1], "patient_index", -1)) for r in rows], dtype=np.int64),
            "split": np.array([r[0] for r in rows], dtype=np.int8),
        }
        digest = ontology.digest() if hasattr(ontology, "digest") else ""
        classes = [ontology.label_class(t) for t in term_list] if hasattr(ontology, "label_class") else []
        # The label list's own ontology travels with the cache into every checkpoint (consistent decisions).
        label_ontology = ontology.subset(term_list).to_dict() if hasattr(ontology, "subset") else None
        meta = {
            "format": CACHE_FORMAT, "version": CACHE_VERSION, "label_names": term_list, "label_classes": classes,
            "ontology_digest": digest, "source_label_names": list(label_split.term_list), "preprocessing": dict(DEFAULT_PREPROCESSING), "splits": list(SPLITS),
            "counts": counts, "skipped": skipped, "expand": bool(expand), "label_mode": label_mode,
            "skip_noisy": bool(skip_noisy), "source": str(dl_root), "label_ontology": label_ontology,
        }
        for name, array in arrays.items():
            np.save(tmp_dir / f"{name}.npy", array)
        (tmp_dir / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        _publish(tmp_dir, out_path, overwrite)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)
    return {"out": str(out_path), "lesions": n, "labels": c, "counts": counts, "skipped": skipped}


@dataclass
class PatchCache:
    """An opened patch cache: arrays (memory-mapped for a folder) and its metadata."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    path: str

    @property
    def label_names(self) -> list[str]:
        return list(self.meta["label_names"])

    @property
    def label_classes(self) -> list[str]:
        return list(self.meta.get("label_classes") or [])

    @property
    def ontology_digest(self) -> str:
        return str(self.meta.get("ontology_digest") or "")

    @property
    def preprocessing(self) -> dict[str, Any]:
        return dict(self.meta.get("preprocessing") or DEFAULT_PREPROCESSING)

    @property
    def label_ontology(self) -> dict[str, Any] | None:
        """``Ontology.to_dict()`` of the label list, when the cache was built with an ontology."""
        return self.meta.get("label_ontology")

    def rows(self, split: str) -> np.ndarray:
        """Row numbers of ``split`` ("train", "val", "test")."""
        if split not in SPLITS:
            raise invalid("split", f"must be one of {list(SPLITS)}", split)
        return np.nonzero(np.asarray(self.arrays["split"]) == SPLITS.index(split))[0]


def open_patch_cache(path: str | os.PathLike) -> PatchCache:
    """Opens a cache written by :func:`build_patch_cache` (folder memory-mapped, .npz loaded).

    ``path`` may also be a ``lesanet prepare`` output folder, whose cache is its ``cache/`` subfolder.

    Raises:
        LesaNetError: the path is not a cache, has another format version, or has arrays of mismatched sizes.
    """
    path = Path(path)
    if path.is_dir() and not (path / "meta.json").is_file() and (path / "cache" / "meta.json").is_file():
        path = path / "cache"  # a folder written by `lesanet prepare`: its cache is DATA_DIR/cache
    if path.is_dir():
        meta_file = path / "meta.json"
        if not meta_file.is_file():
            raise LesaNetError(f"--data: must be a patch cache (a folder with meta.json), but got {str(path)!r}")
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        try:
            arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}
        except (OSError, ValueError) as err:
            raise LesaNetError(f"--data {str(path)!r}: a cache array is missing or unreadable ({err})") from err
    elif path.is_file() and path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                arrays = {name: data[name] for name in _ARRAYS}
        except (OSError, ValueError, KeyError) as err:
            raise LesaNetError(f"--data {str(path)!r}: must be a patch cache .npz ({err})") from err
    else:
        raise LesaNetError(f"--data: must be a patch cache folder or .npz file, but got {str(path)!r}")
    if meta.get("format") != CACHE_FORMAT or meta.get("version") != CACHE_VERSION:
        raise LesaNetError(f"--data {str(path)!r}: must be a {CACHE_FORMAT} version {CACHE_VERSION}, but got "
                           f"{meta.get('format')!r} version {meta.get('version')!r}")
    n = len(arrays["split"])
    c = len(meta["label_names"])
    expected = {"images": (n, 3), "targets": (n, c), "valid": (n, c), "reliable": (n, c), "boxes": (n, 4)}
    for name, shape in expected.items():
        if tuple(arrays[name].shape[: len(shape)]) != shape:
            raise LesaNetError(f"--data {str(path)!r}: {name} must have shape {shape}..., but got "
                               f"{tuple(arrays[name].shape)}")
    return PatchCache(arrays=arrays, meta=meta, path=str(path))


class PatchDataset:
    """A torch ``Dataset`` over one split of a patch cache.

    Items are dicts of tensors: ``image`` float32 (3, 120, 120) normalised as ``(grey - mean) / scale``,
    ``box`` float32 (4,), ``target`` float32 (C,), ``valid`` and ``reliable`` bool (C,), ``row`` int64.

    Args:
        cache: an opened cache.
        split: "train", "val" or "test".
        box_jitter: maximum shift of each box corner in pixels (0 = no augmentation, the reference).
        seed: seeds the jitter together with the epoch (:meth:`set_epoch`) and the row, so it is reproducible
            across worker processes and after resuming.
    """

    def __init__(self, cache: PatchCache, split: str, box_jitter: float = 0.0, seed: int = 0) -> None:
        self.cache = cache
        self.split = split
        self.row_numbers = cache.rows(split)
        self.box_jitter = float(box_jitter)
        self.seed = int(seed)
        self.epoch = 0
        prep = cache.preprocessing
        self.mean = np.float32(prep.get("mean", 50.0))
        self.scale = np.float32(prep.get("scale", 255.0))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.row_numbers)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        row = int(self.row_numbers[i])
        a = self.cache.arrays
        image = (np.asarray(a["images"][row], dtype=np.float32) - self.mean) / self.scale
        box = np.array(a["boxes"][row], dtype=np.float32)
        if self.box_jitter > 0:
            rng = np.random.default_rng((self.seed, self.epoch, row))
            size = image.shape[-1]
            box = box + rng.uniform(-self.box_jitter, self.box_jitter, 4).astype(np.float32)
            box = np.clip(box, 0, size - 1)
            box[2:] = np.maximum(box[2:], box[:2])
        return {
            "image": torch.from_numpy(image),
            "box": torch.from_numpy(box),
            "target": torch.from_numpy(np.asarray(a["targets"][row], dtype=np.float32)),
            "valid": torch.from_numpy(np.array(a["valid"][row], dtype=bool)),
            "reliable": torch.from_numpy(np.array(a["reliable"][row], dtype=bool)),
            "row": torch.tensor(row, dtype=torch.int64),
        }


def split_arrays(cache: PatchCache, split: str) -> dict[str, np.ndarray]:
    """targets, valid, reliable of a split as in-memory arrays (for class weights and evaluation)."""
    rows = cache.rows(split)
    return {name: np.asarray(cache.arrays[name][rows]) for name in ("targets", "valid", "reliable", "lesion_idx")}


# ------------------------------------------------------------------------------------------------- helpers
def _parent(path: Path) -> Path:
    parent = path.parent if str(path.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    return parent


def _publish(tmp_dir: Path, out_path: Path, overwrite: bool) -> None:
    """The staged cache folder becomes ``out_path``: packed into one file for ``.npz``, renamed into place else."""
    if out_path.suffix == ".npz":
        _write_npz(tmp_dir, out_path, overwrite)
    else:
        _move_into_place(tmp_dir, out_path, overwrite)


def _move_into_place(tmp_dir: Path, out_path: Path, overwrite: bool) -> None:
    """Renames the finished folder onto ``out_path``; an old cache is removed only after the swap."""
    old = None
    if out_path.exists():
        if not overwrite:
            raise LesaNetError(f"cache: the output appeared while it was being written; refusing to overwrite "
                               f"{str(out_path)!r}")
        old = out_path.with_name(f".{out_path.name}.old")
        if old.exists():
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        os.replace(out_path, old)
    os.replace(tmp_dir, out_path)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def _write_npz(tmp_dir: Path, out_path: Path, overwrite: bool) -> None:
    from ..fileio import atomic_path

    meta = (tmp_dir / "meta.json").read_text(encoding="utf-8")
    arrays: Mapping[str, np.ndarray] = {name: np.load(tmp_dir / f"{name}.npy") for name in _ARRAYS}
    with atomic_path(out_path, "cache", overwrite=overwrite) as tmp, tmp.open("wb") as handle:
        np.savez(handle, meta=np.array(meta), **arrays)


def write_patch_cache(out_path: str | os.PathLike, images: np.ndarray, arrays: Mapping[str, np.ndarray],
                      meta: Mapping[str, Any], overwrite: bool = False) -> Path:
    """Writes a patch cache from arrays already made (a corrections folder's lesions, a mixed data set).

    Args:
        out_path: ``DIR`` or ``FILE.npz``.
        images: uint8 (N, 3, 120, 120) grey levels.
        arrays: ``boxes``, ``targets``, ``valid``, ``reliable``, ``lesion_idx``, ``patient``, ``split`` (see the
            module docstring).
        meta: ``label_names`` at least; ``format``, ``version``, ``preprocessing`` and ``splits`` are filled in.
        overwrite: replace an existing cache (atomically: the old one goes only after the new one is in place).
    """
    out_path = Path(out_path)
    if out_path.exists() and not overwrite:
        raise LesaNetError(f"cache: refusing to overwrite an existing cache (pass --overwrite), but got {str(out_path)!r}")
    missing = [name for name in _ARRAYS if name != "images" and name not in arrays]
    if missing:
        raise invalid("arrays", f"must hold {list(_ARRAYS[1:])}", f"missing {missing}")
    full = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "preprocessing": dict(DEFAULT_PREPROCESSING),
            "splits": list(SPLITS), **dict(meta)}
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", suffix=".part", dir=_parent(out_path)))
    try:
        np.save(tmp_dir / "images.npy", np.ascontiguousarray(images, dtype=np.uint8))
        for name in _ARRAYS[1:]:
            np.save(tmp_dir / f"{name}.npy", np.asarray(arrays[name]))
        (tmp_dir / "meta.json").write_text(json.dumps(full, indent=1), encoding="utf-8")
        _publish(tmp_dir, out_path, overwrite)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)
    return out_path
