"""Report sentences: BOOKMARK style, hedges, negations, synonyms, omissions; reproducible per seed."""

from __future__ import annotations

import numpy as np

from LesaNetCore.phantom import PHANTOM_BODYPARTS
from LesaNetCore.phantom import anatomy as an
from LesaNetCore.phantom.lesions import sample_lesion
from LesaNetCore.phantom.sentences import make_sentence


def _corpus(seed: int):
    rng = np.random.default_rng(seed)
    body = an.make_patient(rng, "M")
    specs = [sample_lesion(body, rng, part, 0.8) for part in PHANTOM_BODYPARTS for _ in range(6)]
    texts = []
    for i, spec in enumerate(specs):
        other = specs[i - 1] if i % 4 == 0 else None
        texts.append(make_sentence(rng, spec, spec.diameter_mm, spec.diameter_mm * 0.7, other))
    return specs, texts


def test_every_sentence_marks_its_lesion_once():
    specs, texts = _corpus(3)
    for i, text in enumerate(texts):
        assert text.count("BOOKMARK") == 1
        assert text[0].isupper() and text.endswith(".")
        assert ("OTHER_BMK" in text) == (i % 4 == 0)


def test_sentences_need_real_text_mining():
    specs, texts = _corpus(4)
    joined = " ".join(texts).lower()
    for hedge in ("likely", "versus", "may represent", "suspicious for", "without"):
        assert hedge in joined
    for form in ("hepatic", "renal", "pulmonary", "metasta"):
        assert form in joined
    # Attributes are often left out: many true attributes never reach the sentence.
    omitted = sum(1 for spec, text in zip(specs, texts, strict=True) for a in spec.attributes
                  if a not in ("tiny", "large") and a[:5] not in text.lower())
    assert omitted > 10


def test_reproducible():
    assert _corpus(9)[1] == _corpus(9)[1]
    assert _corpus(9)[1] != _corpus(10)[1]
