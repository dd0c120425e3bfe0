"""Coded concepts the structured report uses, each as (value, scheme, meaning).

The SR speaks in codes so PACS and QuantitativeReporting can read it without knowing LesaNet. The choices:

* Finding of every measurement group: SNOMED CT 52988006 "Lesion" (LesaNet annotates lesions of any kind).
* Finding Site: one per accepted body-part label, coded with the label's RadLex RID.
* One qualitative evaluation per accepted label. Its concept name says which label class it belongs to, using
  the RadLex roots of the three classes: RID3 "anatomical entity" (body part), RID5 "imaging observation"
  (type) and RID6 "RadLex descriptor" (attribute). Its value is the label itself: ``(RIDxxx, RADLEX, term)``
  when the ontology knows a RadLex RID, else ``(term, 99LESANET, term)`` in the private scheme declared in the
  SR's Coding Scheme Identification Sequence (values longer than 16 characters go to LongCodeValue, as
  DICOM requires).
* The model's score of each accepted label: a numeric measurement named by the label's code, unit
  UCUM ``{probability}`` (a dimensionless UCUM annotation), inside the group that carries the algorithm
  identification, so a reader can tell the number came from the model.
* A user-edited label set: a TEXT item (DCM 121106 "Comment") in the group, starting with
  :data:`EDITED_PREFIX` and naming the added and removed terms.

Codes are plain tuples here; :func:`code` turns them into highdicom objects on demand so importing this module
stays free of highdicom.
"""

from __future__ import annotations

from typing import Any

from ..errors import invalid

CodeTuple = tuple[str, str, str]
"""(code value, coding scheme designator, code meaning)."""

PRIVATE_SCHEME = "99LESANET"
PRIVATE_SCHEME_NAME = "LesaNet lesion ontology terms (DeepLesion ontology, Yan et al. CVPR 2019)"
PRIVATE_SCHEME_ORGANIZATION = "LesaNet for 3D Slicer"

LESION: CodeTuple = ("52988006", "SCT", "Lesion")
FINDING: CodeTuple = ("121071", "DCM", "Finding")
COMMENT: CodeTuple = ("121106", "DCM", "Comment")
PROBABILITY_UNIT: CodeTuple = ("{probability}", "UCUM", "probability")
CT_PROCEDURE: CodeTuple = ("25045-6", "LN", "CT unspecified body region")
IMAGING_PROCEDURE: CodeTuple = ("P5-09051", "SRT", "Imaging procedure")

CLASS_CONCEPTS: dict[str, CodeTuple] = {
    "bodypart": ("RID3", "RADLEX", "anatomical entity"),
    "type": ("RID5", "RADLEX", "imaging observation"),
    "attribute": ("RID6", "RADLEX", "RadLex descriptor"),
}
"""Concept name of a label's qualitative evaluation, by label class."""

EDITED_PREFIX = "Label set edited by the user"
REVIEW_PREFIX = "Review"
"""Start of the comment that marks a lesion whose accepted labels differ from the model's decisions."""


def class_of_concept(value: str, scheme: str) -> str | None:
    """The label class whose evaluation concept is (value, scheme), or None for any other concept."""
    for label_class, (v, s, _) in CLASS_CONCEPTS.items():
        if v == value and s == scheme:
            return label_class
    return None


def label_code(term: str, radlex: str | None) -> CodeTuple:
    """The code of an ontology term: its RadLex RID when known, else the term in the private scheme.

    Example:
        >>> label_code("liver", "RID58")
        ('RID58', 'RADLEX', 'liver')
        >>> label_code("lung nodule", None)
        ('lung nodule', '99LESANET', 'lung nodule')
    """
    if not term or len(term) > 64:
        raise invalid("term", "must be a non-empty string of at most 64 characters (DICOM LO)", term)
    if radlex:
        rid = radlex.strip().upper()
        if not rid.startswith("RID") or not rid[3:].isdigit():
            raise invalid("radlex", "must look like 'RID<digits>'", radlex)
        return (rid, "RADLEX", term)
    return (term, PRIVATE_SCHEME, term)


def code(value: CodeTuple) -> Any:
    """A highdicom CodedConcept for a code tuple (imports highdicom lazily)."""
    from highdicom.sr import CodedConcept

    return CodedConcept(value=value[0], scheme_designator=value[1], meaning=value[2])
