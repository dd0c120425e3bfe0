"""What an annotation produces: label scores and decisions, similar lesions, the box, and timings.

These dataclasses are the contract between the core (``Annotator``), the exports (SR, JSON, Markdown) and the
Slicer panel. They hold plain Python and numpy values only, so every consumer can use them without torch.
A user's edits (accepting, rejecting or adding labels) produce a new result with an updated ``accepted`` set;
the model's own ``decision`` of each label is never changed, so an export can say what was edited.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import LesaNetError

LABEL_CLASSES = ("bodypart", "type", "attribute")
REVIEW_STATUSES = ("", "unreviewed", "accepted", "corrected", "skipped")


@dataclass(frozen=True)
class LabelScore:
    """One label of the model's label list, as scored for one lesion.

    Attributes:
        term: ontology term name, e.g. ``"liver"``.
        label_class: ``"bodypart"``, ``"type"`` or ``"attribute"``.
        score: SPL-refined probability in [0, 1].
        threshold: the calibrated decision threshold of this label (after any user offset).
        decision: the model's decision after ontology consistency (hierarchy and exclusivity).
        radlex: RadLex RID (``"RID58"``) when the ontology knows one.
        parents: the term's direct parents among the model's labels (lets consumers tell specific labels from
            their ancestors without the ontology).
    """

    term: str
    label_class: str
    score: float
    threshold: float
    decision: bool
    radlex: str | None = None
    parents: tuple[str, ...] = ()


@dataclass(frozen=True)
class SimilarLesion:
    """A reference lesion retrieved as evidence, nearest first.

    Attributes:
        lesion_id: identifier in the reference index (e.g. DeepLesion's row index as a string).
        patient_id: patient identifier; never the query's own patient.
        distance: L2 distance between the L2-normalised embeddings (0 = identical, 2 = opposite).
        labels: the reference lesion's labels (term names).
        sentence: its report sentence.
        thumbnail: uint8 grey image (H x W) of its key patch, or None.
    """

    lesion_id: str
    patient_id: str
    distance: float
    labels: tuple[str, ...]
    sentence: str = ""
    thumbnail: np.ndarray | None = None


@dataclass(frozen=True)
class LesionLocation:
    """Where the lesion is, in the volume as stored and in the world.

    Attributes:
        key_slice: K index of the slice the box was drawn on (0-based).
        box_ijk: (i1, j1, i2, j2) voxel indices on the key slice, 0-based, corners inclusive (I = column,
            J = row).
        center_lps: box centre in LPS millimetres.
        box_lps: (x1, y1, x2, y2, z) the box's extent in LPS millimetres on the axial plane at height z.
        source_file: the DICOM file of the key slice when the volume came from DICOM, else None.
        recist_ij: the RECIST end points (i, j) on the key slice when the box was derived from a measurement
            (long axis, then the optional short axis), else None.
    """

    key_slice: int
    box_ijk: tuple[float, float, float, float]
    center_lps: tuple[float, float, float]
    box_lps: tuple[float, float, float, float, float] | None = None
    source_file: str | None = None
    recist_ij: tuple[tuple[float, float], ...] | None = None

    @property
    def box_from(self) -> str:
        """Which input made the box: ``"recist"`` (a measurement) or ``"box"`` (drawn or given)."""
        return "recist" if self.recist_ij else "box"

    def input_description(self) -> str:
        """How the box was made, in words: ``"box"`` or e.g. ``"RECIST long and short axis, padded 5 px"``."""
        if not self.recist_ij:
            return "box"
        axes = "long and short axis" if len(self.recist_ij) >= 4 else "long axis"
        return f"RECIST {axes}, padded 5 px"


@dataclass(frozen=True)
class AnnotationResult:
    """The full answer for one lesion.

    Attributes:
        labels: every label of the model, in the model's label order.
        accepted: term names the user keeps (starts as the positive decisions; edits change only this).
        location: where the lesion is.
        embedding: 256-D L2-normalised embedding (float32).
        similar: similar reference lesions, nearest first.
        patch_image: the 3 x H x W patch (grey levels 0-255) the model saw, for figures and thumbnails.
        patch_box: (x1, y1, x2, y2) of the lesion in patch pixels.
        timings_ms: named stage timings in milliseconds (e.g. ``patch``, ``forward``, ``search``, ``total``).
        model: a short description of the model (name and digest) for provenance in exports.
        volume_source: where the volume came from (file path or Slicer node name).
        added: terms the user added that the model did not score positive (subset of ``accepted``).
        review_status: a reader's verdict: ``""`` (not reviewed), ``"unreviewed"``, ``"accepted"`` (the model's
            labels kept), ``"corrected"`` (labels edited) or ``"skipped"``.
        reader: who reviewed it (a person's name, DICOM PN form ``Family^Given`` for the SR), or "".
    """

    labels: tuple[LabelScore, ...]
    accepted: frozenset[str]
    location: LesionLocation
    embedding: np.ndarray
    similar: tuple[SimilarLesion, ...] = ()
    patch_image: np.ndarray | None = None
    patch_box: tuple[float, float, float, float] | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    model: str = ""
    volume_source: str = ""
    added: frozenset[str] = frozenset()
    review_status: str = ""
    reader: str = ""

    def __post_init__(self) -> None:
        if self.review_status not in REVIEW_STATUSES:
            raise LesaNetError(f"review_status: must be one of {list(REVIEW_STATUSES)}, but got {self.review_status!r}")

    def reviewed(self, status: str, reader: str = "") -> AnnotationResult:
        """A copy with a reader's verdict (see ``review_status``)."""
        return replace(self, review_status=status, reader=reader or self.reader)

    def label(self, term: str) -> LabelScore:
        """The score of ``term``; raises LesaNetError naming the term when the model has no such label."""
        for item in self.labels:
            if item.term == term:
                return item
        raise LesaNetError(f"term: must be one of the model's {len(self.labels)} labels, but got {term!r}")

    @property
    def positives(self) -> tuple[LabelScore, ...]:
        """The model's positive decisions, highest score first."""
        return tuple(sorted((x for x in self.labels if x.decision), key=lambda x: -x.score))

    @property
    def edited(self) -> bool:
        """True when the accepted set differs from the model's decisions."""
        return self.accepted != frozenset(x.term for x in self.labels if x.decision)

    def accepted_labels(self) -> tuple[LabelScore, ...]:
        """Accepted labels in class order (body part, type, attribute), highest score first within a class."""
        order = {c: i for i, c in enumerate(LABEL_CLASSES)}
        chosen = [x for x in self.labels if x.term in self.accepted]
        return tuple(sorted(chosen, key=lambda x: (order.get(x.label_class, 9), -x.score)))

    def by_class(self) -> dict[str, tuple[LabelScore, ...]]:
        """All labels grouped by class, highest score first within each class."""
        return {
            c: tuple(sorted((x for x in self.labels if x.label_class == c), key=lambda x: -x.score))
            for c in LABEL_CLASSES
        }

    def ancestors(self, term: str) -> set[str]:
        """Ancestors of ``term`` among the model's labels (from each label's recorded parents)."""
        parents = {x.term: x.parents for x in self.labels}
        seen: set[str] = set()
        stack = list(parents.get(term, ()))
        while stack:
            parent = stack.pop()
            if parent not in seen:
                seen.add(parent)
                stack.extend(parents.get(parent, ()))
        return seen

    def most_specific(self, terms: Iterable[str]) -> list[str]:
        """``terms`` without those that are ancestors of another of them, in the given order."""
        terms = list(terms)
        covered = set().union(*(self.ancestors(t) for t in terms)) if terms else set()
        return [t for t in terms if t not in covered]

    def top_finding(self) -> str:
        """A short name for the lesion: the most specific accepted body part and type (highest score first).

        A type defined by a body part is specialised to the lesion's body part: "kidney mass" in the "right
        kidney" -> "right kidney mass", "lung nodule" in the "right lower lobe" -> "right lower lobe nodule";
        in its own body part it stands alone ("liver mass").
        """
        accepted = self.accepted_labels()
        classes = {x.term: x.label_class for x in self.labels}
        best = {}
        for label_class in ("bodypart", "type"):
            specific = self.most_specific(x.term for x in accepted if x.label_class == label_class)
            best[label_class] = specific[0] if specific else None
        bodypart, kind = best["bodypart"], best["type"]
        if kind is None or bodypart is None:
            return kind or bodypart or "lesion"
        parents = self.label(kind).parents
        site = [p for p in parents if classes.get(p) == "bodypart"]
        if bodypart in site:
            return kind
        if any(p in self.ancestors(bodypart) for p in site):
            generic = [p for p in parents if classes.get(p) == "type"]
            return f"{bodypart} {generic[0] if generic else kind}"
        return f"{bodypart} {kind}"

    def with_edits(self, accept: Iterable[str] = (), reject: Iterable[str] = ()) -> AnnotationResult:
        """A copy with ``accept`` terms added to and ``reject`` terms removed from the accepted set.

        Terms must be labels of the model; a term in both lists is an error.
        """
        accept, reject = set(accept), set(reject)
        both = accept & reject
        if both:
            raise LesaNetError(f"accept/reject: a term cannot be both accepted and rejected, but got {sorted(both)}")
        for term in accept | reject:
            self.label(term)
        accepted = (set(self.accepted) | accept) - reject
        decided = {x.term for x in self.labels if x.decision}
        return replace(self, accepted=frozenset(accepted), added=frozenset(accepted - decided))

    def with_accepted(self, terms: Iterable[str]) -> AnnotationResult:
        """A copy whose accepted set is exactly ``terms`` (:meth:`with_edits` with the difference): what an
        editor with one checkbox per label, a table or a reader's SR gives."""
        wanted, current = set(terms), set(self.accepted)
        return self.with_edits(accept=wanted - current, reject=current - wanted)
