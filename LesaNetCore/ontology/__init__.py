"""Lesion ontology: terms, hierarchy, exclusivity, label expansion, consistent decisions, and their files."""

from .core import LABEL_CLASSES, Ontology, Term
from .decision import decide
from .readers import (
    LabelSplit,
    SplitLabels,
    load_default_ontology,
    load_ontology,
    read_label_split,
    read_official_ontology,
    read_ontology_json,
)

__all__ = [
    "LABEL_CLASSES",
    "LabelSplit",
    "Ontology",
    "SplitLabels",
    "Term",
    "decide",
    "load_default_ontology",
    "load_ontology",
    "read_label_split",
    "read_official_ontology",
    "read_ontology_json",
]
