"""Annotating lesions: a CT and a box in, scored labels, consistent decisions and similar lesions out.

:class:`Annotator` loads a self-describing checkpoint once (model, label names, thresholds, label ontology) and
optionally a reference index built by the same model, then answers :meth:`Annotator.annotate` calls. It is what
``lesanet annotate``, ``lesanet demo`` and the Slicer module call. Inference runs through
:class:`LesaNetCore.model.InferenceModel` (BatchNorm-folded copy, CPU kernels measured on this machine, CUDA
graph at batch 1), the path evaluation and index building use too; the first call warms up the kernels.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LesaNetError, invalid
from .imaging.recist import Recist
from .ontology import Ontology, decide, load_default_ontology
from .result import AnnotationResult, LabelScore, LesionLocation

DEMO_MODEL_RESOURCE = "data/demo/model.pt"
DEMO_INDEX_RESOURCE = "data/demo/index"

BoxIJK = Sequence[float]
BoxLPS = Sequence[float]


def demo_model_path() -> Path:
    """The shipped demo checkpoint (trained on phantoms; not for clinical use)."""
    return Path(str(resources.files("LesaNetCore").joinpath(DEMO_MODEL_RESOURCE)))


def demo_index_path() -> Path:
    """The shipped demo reference index (phantom lesions embedded by the demo model)."""
    return Path(str(resources.files("LesaNetCore").joinpath(DEMO_INDEX_RESOURCE)))


def pick_device(device: str = "auto") -> str:
    """``"auto"`` picks CUDA when present, else CPU; anything else must be a device torch accepts."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise invalid("device", "must be 'auto', 'cpu', 'cuda' or 'cuda:N'", device) from err
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise invalid("device", "asks for CUDA, which this machine does not have; use 'cpu' or 'auto'", device)
    return device


def label_ontology_for(checkpoint: Any) -> Ontology:
    """The ontology of a checkpoint's labels: stored in the checkpoint, else the default ontology's subset.

    Decisions need the relations among the model's labels. Checkpoints written by this project store them;
    for others (an imported official model) the default ontology is used when it knows every label.
    """
    from .ontology.readers import read_ontology_json

    stored = getattr(checkpoint, "label_ontology", None)
    if stored:
        import json

        return read_ontology_json(Path(checkpoint.path or "checkpoint"), json.dumps(stored))
    default = load_default_ontology()
    missing = [n for n in checkpoint.label_names if n not in default]
    if missing:
        raise LesaNetError(
            f"checkpoint {checkpoint.path!r}: stores no label ontology and the default ontology lacks "
            f"{len(missing)} of its labels (e.g. {missing[0]!r}); import it with --ontology"
        )
    return default.subset(checkpoint.label_names)


class Annotator:
    """Loads a model (and a reference index) once and annotates lesion boxes.

    Args:
        checkpoint: a checkpoint path or a loaded ``Checkpoint``; None loads the shipped demo model.
        index: a reference-index folder or a loaded ``ReferenceIndex``; None loads the shipped demo index when
            the demo model is used, and no index otherwise; ``False`` disables retrieval.
        device: ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.
        threshold_offset: added to every calibrated threshold (clipped to [0.01, 0.99]): positive values ask for
            more confidence, negative values for more sensitivity.
        top_k: number of similar lesions to retrieve.

    Raises:
        LesaNetError: a missing or foreign checkpoint, or an index built by another model or label set.
    """

    def __init__(self, checkpoint: Any = None, index: Any = None, *, device: str = "auto",
                 threshold_offset: float = 0.0, top_k: int = 5) -> None:
        from .model import InferenceModel
        from .training.checkpoint import Checkpoint, build_model, checkpoint_digest, load_checkpoint

        started = time.perf_counter()
        using_demo = checkpoint is None
        if using_demo:
            checkpoint = demo_model_path()
            if not checkpoint.exists():
                raise LesaNetError(f"model: the shipped demo model is missing from this installation, but got "
                                   f"{str(checkpoint)!r}; reinstall LesaNetCore or pass --model")
        if not isinstance(checkpoint, Checkpoint):
            path = Path(checkpoint)
            if not path.is_file():
                raise invalid("model", "must be an existing checkpoint file", str(path))
            checkpoint = load_checkpoint(path)
        if not isinstance(top_k, int) or top_k < 0:
            raise invalid("top_k", "must be a non-negative integer", top_k)
        if not -1.0 < float(threshold_offset) < 1.0:
            raise invalid("threshold_offset", "must lie strictly between -1 and 1", threshold_offset)
        self.checkpoint = checkpoint
        self.device = pick_device(device)
        self.top_k = top_k
        self.threshold_offset = float(threshold_offset)
        self.label_names: tuple[str, ...] = tuple(checkpoint.label_names)
        self.label_ontology = label_ontology_for(checkpoint)
        self.model_digest = checkpoint_digest(checkpoint)
        self._thresholds = np.clip(np.asarray(checkpoint.thresholds, dtype=np.float64) + self.threshold_offset,
                                   0.01, 0.99)
        # Per label, what every LabelScore repeats: (term, class, threshold, RadLex code, parents).
        radlex = _radlex_codes(self.label_ontology)
        self._label_constants = tuple(
            (name, self.label_ontology.label_class(name), threshold, radlex[name],
             tuple(sorted(self.label_ontology.parents(name))))
            for name, threshold in zip(self.label_names, self._thresholds.tolist(), strict=True))
        # Kernels: batch 1 measured on the first annotation if this machine never did (about 2 s, once); batches
        # use what `lesanet tune`, evaluation or index building measured, else direct convolution.
        self._model = InferenceModel(build_model(checkpoint, device=self.device), self.device, lazy_batches=(1,))
        if index is None and using_demo:
            index = demo_index_path()
        self.index = self._load_index(index) if index is not None and index is not False else None
        self.load_seconds = time.perf_counter() - started

    def _load_index(self, index: Any):
        from .retrieval import ReferenceIndex

        if isinstance(index, ReferenceIndex):
            if index.model_digest != self.model_digest or tuple(index.label_names) != self.label_names:
                raise LesaNetError(f"index: must be built by this model (digest {self.model_digest[:12]}), but got an "
                                   f"index of model {index.model_digest[:12]}")
            return index
        return ReferenceIndex.load(index, model_digest=self.model_digest, label_names=self.label_names)

    @property
    def inference(self):
        """The :class:`LesaNetCore.model.InferenceModel` this annotator predicts with (device, kernels, graph)."""
        return self._model

    @property
    def description(self) -> str:
        """Model name and digest, for provenance in reports."""
        return f"{self.checkpoint.arch} ({len(self.label_names)} labels, digest {self.model_digest[:12]})"

    # ----------------------------------------------------------------------------------------------- inference
    def annotate(self, volume: Any, *, box_ijk: BoxIJK | None = None, box_lps: BoxLPS | None = None,
                 recist: Recist | None = None, exclude_patient: str | None = None) -> AnnotationResult:
        """Annotates one lesion on ``volume`` (a :class:`LesaNetCore.imaging.Volume`).

        Args:
            volume: the CT.
            box_ijk: (i1, j1, i2, j2, k) stored voxel indices, corners inclusive, on slice k.
            box_lps: (x1, y1, x2, y2, z) LPS millimetres on the axial plane at height z.
            recist: a RECIST measurement (:mod:`LesaNetCore.imaging.recist`); its box is DeepLesion's: the
                diameters' tight box padded by 5 pixels. The result's location keeps the end points.
            exclude_patient: a patient id whose lesions the similar-lesion search skips (the query's own).

        Exactly one of ``box_ijk``, ``box_lps`` and ``recist`` is given.
        """
        if recist is not None:
            if box_ijk is not None or box_lps is not None:
                raise LesaNetError("recist/box_ijk/box_lps: exactly one must be given, but got recist and a box")
            box = recist.box_ijk(size_ijk=volume.size_ijk)
            result = self.annotate_many(volume, boxes_ijk=[box], exclude_patient=exclude_patient)[0]
            return replace(result, location=replace(result.location, recist_ij=tuple(recist.points_ij)))
        return self.annotate_many(volume, boxes_ijk=None if box_ijk is None else [box_ijk],
                                  boxes_lps=None if box_lps is None else [box_lps],
                                  exclude_patient=exclude_patient)[0]

    def annotate_many(self, volume: Any, *, boxes_ijk: Sequence[BoxIJK] | None = None,
                      boxes_lps: Sequence[BoxLPS] | None = None,
                      exclude_patient: str | None = None) -> list[AnnotationResult]:
        """Annotates several boxes of one volume in one batched forward pass."""
        from .imaging import extract_patch, normalize_patch

        if (boxes_ijk is None) == (boxes_lps is None):
            raise LesaNetError("boxes_ijk/boxes_lps: exactly one must be given, but got "
                               f"{'both' if boxes_ijk is not None else 'neither'}")
        boxes = list(boxes_ijk if boxes_ijk is not None else boxes_lps)
        if not boxes:
            raise invalid("boxes", "must hold at least one box", boxes)
        t0 = time.perf_counter()
        if boxes_ijk is not None:
            patches = [extract_patch(volume, box_ijk=b) for b in boxes]
        else:
            patches = [extract_patch(volume, box_lps=b) for b in boxes]
        t1 = time.perf_counter()
        probs, embeddings = self.predict(np.stack([normalize_patch(p.image) for p in patches]),
                                         np.stack([p.box for p in patches]))
        t2 = time.perf_counter()
        results = []
        for n, patch in enumerate(patches):
            t3 = time.perf_counter()
            decided = decide(self.label_ontology, probs[n], self._thresholds)
            labels = tuple(
                LabelScore(name, label_class, score, threshold, name in decided, radlex, parents)
                for (name, label_class, threshold, radlex, parents), score in zip(
                    self._label_constants, probs[n].tolist(), strict=True)
            )
            t4 = time.perf_counter()
            similar = ()
            if self.index is not None and self.top_k:
                found = self.index.search(embeddings[n], self.top_k, exclude_patient)
                similar = tuple(self._specific_first(s) for s in found)
            t5 = time.perf_counter()
            share = 1.0 / len(patches)
            timings = {
                "patch": (t1 - t0) * 1000 * share,
                "forward": (t2 - t1) * 1000 * share,
                "decide": (t4 - t3) * 1000,
                "search": (t5 - t4) * 1000,
            }
            timings["total"] = sum(timings.values())
            results.append(AnnotationResult(
                labels=labels,
                accepted=frozenset(decided),
                location=_location(volume, patch),
                embedding=embeddings[n],
                similar=similar,
                patch_image=patch.image,
                patch_box=tuple(float(v) for v in patch.box),
                timings_ms=timings,
                model=self.description,
                volume_source=str(getattr(volume, "source", "")),
            ))
        return results

    def _specific_first(self, similar):
        """The reference lesion with its most specific labels first (body part, type, attribute order)."""
        known = [t for t in similar.labels if t in self.label_ontology]
        ancestors = set().union(*(self.label_ontology.ancestors(t) for t in known)) if known else set()
        order = {"bodypart": 0, "type": 1, "attribute": 2}
        rank = {t: (t in ancestors, order.get(self.label_ontology.label_class(t), 3) if t in self.label_ontology else 3)
                for t in similar.labels}
        return replace(similar, labels=tuple(sorted(similar.labels, key=lambda t: rank[t])))

    def predict(self, images: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (N x C) and embeddings (N x 256) for normalised patches (N x 3 x 120 x 120).

        The first call of a batch size on a CPU whose kernels were never measured measures them (about 1-2 s
        for the full network at batch 1, once per machine; see :class:`LesaNetCore.model.InferenceModel`).
        """
        return self._model.predict(images, boxes)


def _location(volume: Any, patch: Any) -> LesionLocation:
    from .imaging.patch import PATCH_SIZE, PIXEL_MM

    half = (PATCH_SIZE - 1) / 2.0
    cx, cy, cz = (float(v) for v in patch.center_lps)
    x1, y1, x2, y2 = (float(v) for v in patch.box)
    box_lps = (cx + (x1 - half) * PIXEL_MM, cy + (y1 - half) * PIXEL_MM,
               cx + (x2 - half) * PIXEL_MM, cy + (y2 - half) * PIXEL_MM, cz)
    files = getattr(volume, "slice_files", None)
    return LesionLocation(
        key_slice=int(patch.key_slice),
        box_ijk=tuple(float(v) for v in patch.box_ijk),
        center_lps=(cx, cy, cz),
        box_lps=box_lps,
        source_file=files[patch.key_slice] if files else None,
    )


def _radlex_codes(ontology: Ontology) -> dict[str, str | None]:
    """RadLex RIDs of the labels, from their ontology or, where it has none, the default ontology's term."""
    default = load_default_ontology()
    codes = {}
    for term in ontology:
        code = term.radlex
        if code is None and term.name in default:
            code = default.term(term.name).radlex
        codes[term.name] = code
    return codes
