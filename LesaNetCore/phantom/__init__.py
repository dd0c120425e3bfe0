"""Phantom CT data the project makes itself: anatomy, lesions that look like their labels, report sentences.

DeepLesion cannot be downloaded everywhere, so the demo model, the tests and the demo run on phantoms written
in DeepLesion's layout (:func:`synthesize`) or built in memory (:func:`make_phantom_volume`).
"""

from __future__ import annotations

from .terms import PHANTOM_ATTRIBUTES, PHANTOM_BODYPARTS, PHANTOM_TYPES
from .volume import PhantomLesion, make_phantom_volume
from .writer import DL_INFO_COLUMNS, SynthSummary, synthesize

__all__ = [
    "DL_INFO_COLUMNS",
    "PHANTOM_ATTRIBUTES",
    "PHANTOM_BODYPARTS",
    "PHANTOM_TYPES",
    "PhantomLesion",
    "SynthSummary",
    "make_phantom_volume",
    "synthesize",
]
