"""The annotated (sentence, mention, bookmark, relevance) pairs that train and test the relevance classifier.

Two sources, both shipped in ``LesaNetCore/data/textmine``: ``relevance_sentences.txt``, report sentences
written for this project with each mention marked ``[surface|R]`` (relevant), ``|U]`` (uncertain) or ``|I]``
(irrelevant) with respect to the BOOKMARK lesion; and sentences generated here from templates with a fixed
seed (:func:`template_sentences`), which add the same patterns with varied words and balance the classes.
The held-out part is a fixed quarter of the hand-written sentences (by CRC-32 of the text), never templates.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import LesaNetError
from .matcher import Mention
from .preprocess import BOOKMARK, Token, data_path, tokenize
from .relevance_rules import RELEVANCE_CLASSES, rule_details

SENTENCES_FILE = "relevance_sentences.txt"
HELD_OUT_FILE = "relevance_heldout.txt"
_MARK = re.compile(r"\[([^\[\]|]+)\|([RUI])\]")
_CODES = {"R": "relevant", "U": "uncertain", "I": "irrelevant"}


@dataclass(frozen=True)
class AnnotatedSentence:
    """A sentence, its tokens, its marked mentions (token spans) and their relevance to the BOOKMARK lesion."""

    text: str
    tokens: tuple[Token, ...]
    mentions: tuple[Mention, ...]
    labels: tuple[str, ...]
    source: str

    @property
    def pairs(self) -> list[tuple[Mention, str]]:
        return list(zip(self.mentions, self.labels, strict=True))


def parse_annotated(line: str, source: str = "") -> AnnotatedSentence:
    """Parses one ``[surface|R]``-marked line.

    Raises:
        LesaNetError: the line has no mark, or a mark's surface does not fall on token boundaries.
    """
    text_parts, spans, pos, last = [], [], 0, 0
    for match in _MARK.finditer(line):
        text_parts.append(line[last:match.start()])
        pos += match.start() - last
        surface = match.group(1)
        spans.append((pos, pos + len(surface), _CODES[match.group(2)]))
        text_parts.append(surface)
        pos += len(surface)
        last = match.end()
    text_parts.append(line[last:])
    if not spans:
        raise LesaNetError(f"{source or 'line'}: must mark at least one mention as [surface|R/U/I], "
                           f"but got {line!r}")
    text = "".join(text_parts)
    tokens = tokenize(text)
    mentions = []
    for start, end, _ in spans:
        inside = [i for i, t in enumerate(tokens) if t.start >= start and t.end <= end]
        if not inside or tokens[inside[0]].start != start or tokens[inside[-1]].end != end:
            raise LesaNetError(f"{source or 'line'}: a mark must cover whole tokens, but got "
                               f"{text[start:end]!r} in {text!r}")
        mentions.append(Mention("", start, end, inside[0], inside[-1], text[start:end]))
    return AnnotatedSentence(text, tuple(tokens), tuple(mentions), tuple(label for *_, label in spans), source)


def load_annotated(include_templates: bool = True, name: str = SENTENCES_FILE) -> list[AnnotatedSentence]:
    """The shipped hand-written sentences (and, by default, the template sentences).

    Args:
        name: ``relevance_sentences.txt`` (training and the split's held-out quarter) or
            ``relevance_heldout.txt`` (test only; then templates are never added).
    """
    path = data_path(name)
    include_templates = include_templates and name == SENTENCES_FILE
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip() and not line.startswith("#"):
            out.append(parse_annotated(line.strip(), f"{path.name}:{number}"))
    if include_templates:
        out.extend(template_sentences())
    return out


def split_annotated(sentences: Sequence[AnnotatedSentence]) -> tuple[list[AnnotatedSentence], list[AnnotatedSentence]]:
    """(train, held-out): a fixed quarter of the hand-written sentences is held out; templates always train."""
    train, held_out = [], []
    for s in sentences:
        hand = not s.source.startswith("template")
        (held_out if hand and zlib.crc32(s.text.encode()) % 4 == 0 else train).append(s)
    return train, held_out


def training_samples(sentences: Sequence[AnnotatedSentence], n_buckets: int = 4096, max_distance: int = 10):
    """(encoded pair, class index) for every marked mention."""
    from .relevance_cnn import encode_pairs

    samples = []
    for s in sentences:
        spans = [(m.first, m.last) for m in s.mentions]
        encoded = encode_pairs(s.tokens, spans, BOOKMARK, n_buckets, max_distance)
        samples.extend((p, RELEVANCE_CLASSES.index(y)) for p, y in zip(encoded, s.labels, strict=True))
    return samples


def evaluate_relevance(sentences: Sequence[AnnotatedSentence], model=None) -> dict[str, dict[str, float]]:
    """Accuracy and macro F1 of the rules, the classifier and their combination on annotated pairs."""
    from .relevance_cnn import RelevanceCNN, encode_pairs
    from .relevance_combine import combine_relevance

    model = model or RelevanceCNN.load()
    gold, predicted = [], {"rules": [], "cnn": [], "combined": []}
    for s in sentences:
        details = rule_details(s.tokens, s.mentions)
        rules = details.labels
        spans = [(m.first, m.last) for m in s.mentions]
        proba = model.predict_proba(encode_pairs(s.tokens, spans, BOOKMARK, model.n_buckets, model.max_distance))
        cnn = [RELEVANCE_CLASSES[k] for k in proba.argmax(axis=1)]
        gold.extend(s.labels)
        predicted["rules"].extend(rules)
        predicted["cnn"].extend(cnn)
        predicted["combined"].extend(combine_relevance(details, proba))
    return {method: _scores(gold, labels) for method, labels in predicted.items()}


def _scores(gold: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    g, p = np.asarray(gold), np.asarray(predicted)
    f1s = []
    for c in RELEVANCE_CLASSES:
        tp = float(np.sum((g == c) & (p == c)))
        denom = float(np.sum(g == c) + np.sum(p == c))
        f1s.append(2 * tp / denom if denom else 1.0)
    out = {"pairs": float(len(g)), "accuracy": float(np.mean(g == p)) if len(g) else 0.0,
           "macro_f1": float(np.mean(f1s))}
    out.update({f"f1_{c}": f for c, f in zip(RELEVANCE_CLASSES, f1s, strict=True)})
    return out


_BODIES = ("liver", "right lower lobe", "left upper lobe", "right kidney", "left adrenal", "pancreatic head",
           "spleen", "mediastinal", "retroperitoneal", "mesenteric", "left axillary", "right hilar", "pelvic",
           "subcarinal", "paraaortic", "right middle lobe", "left lower lobe", "hepatic", "renal", "splenic",
           "peritoneal", "left inguinal", "right iliac", "sacral", "pleural", "gallbladder")
_TYPES = ("nodule", "mass", "lesion", "cyst", "lymph node", "opacity", "hypodensity", "consolidation",
          "thickening", "implant", "collection", "adenopathy", "nodules", "masses", "lesions")
_ATTRIBUTES = ("hypodense", "enhancing", "calcified", "spiculated", "large", "small", "lobulated",
               "heterogeneous", "necrotic", "enlarged", "cystic", "solid", "ill-defined", "lytic", "sclerotic",
               "exophytic", "round", "tiny", "bulky")
_DIAGNOSES = ("metastasis", "cyst", "hemangioma", "adenoma", "abscess", "lymphoma", "granuloma", "carcinoma",
              "hematoma", "fibroid", "infection", "atelectasis", "scar", "lipoma", "metastatic disease")
_TEMPLATES = (
    "[{a}|R] [{t}|R] in the [{b}|R] BOOKMARK.",
    "No [{t2}|I]. [{b}|R] [{t}|R] BOOKMARK.",
    "[{b}|R] [{t}|R] BOOKMARK, likely [{d}|U].",
    "[{b}|R] [{t}|R] BOOKMARK and [{b2}|I] [{t2}|I] OTHER_BMK.",
    "[{b2}|I] [{t2}|I] OTHER_BMK and [{a}|R] [{b}|R] [{t}|R] BOOKMARK.",
    "[{t}|R] BOOKMARK in the [{b}|R], [{t2}|I] OTHER_BMK in the [{b2}|I].",
    "[{a}|R] [{b}|R] [{t}|R] BOOKMARK without [{a2}|I] [{t2}|I].",
    "[{b}|R] [{t}|R] BOOKMARK, [{d}|U] versus [{d2}|U].",
    "[{a}|R] [{t}|R] in the [{b}|R] BOOKMARK, concerning for [{d}|U].",
    "[{b}|R] [{t}|R] BOOKMARK, [{d}|U] cannot be excluded.",
    "Previously seen [{b2}|I] [{t2}|I] has resolved. [{b}|R] [{t}|R] BOOKMARK.",
    "[{b}|R] [{t}|R] BOOKMARK, negative for [{d}|I].",
    "[{a}|R] [{b}|R] [{t}|R] BOOKMARK, OTHER_BMK, no change.",
    "[{a}|R] [{t}|R] BOOKMARK may represent [{d}|U].",
    "[{a}|R] [{b}|R] [{t}|R], possibly [{d}|U]",
    "[{b}|R] [{t}|R] BOOKMARK is [{a}|R], with no [{d}|I].",
    "[{a2}|I] [{t2}|I] OTHER_BMK, [{a}|R] [{t}|R] BOOKMARK in the [{b}|R].",
    "There is a [{a}|R] [{t}|R] BOOKMARK in the [{b}|R] and a [{t2}|I] in the [{b2}|I] OTHER_BMK.",
    "[{b}|R] [{t}|R] BOOKMARK, [{d}|U] or [{d2}|U].",
    "The [{b2}|I] [{t2}|I] is no longer seen. [{a}|R] [{t}|R] BOOKMARK in the [{b}|R].",
)


def template_sentences(per_template: int = 24, seed: int = 0) -> list[AnnotatedSentence]:
    """Sentences generated from :data:`_TEMPLATES` with a fixed seed (deterministic across machines)."""
    rng = np.random.default_rng(seed)
    out = []
    for k, template in enumerate(_TEMPLATES):
        for i in range(per_template):
            b, b2 = rng.choice(len(_BODIES), 2, replace=False)
            t, t2 = rng.choice(len(_TYPES), 2, replace=False)
            a, a2 = rng.choice(len(_ATTRIBUTES), 2, replace=False)
            d, d2 = rng.choice(len(_DIAGNOSES), 2, replace=False)
            line = template.format(b=_BODIES[b], b2=_BODIES[b2], t=_TYPES[t], t2=_TYPES[t2], a=_ATTRIBUTES[a],
                                   a2=_ATTRIBUTES[a2], d=_DIAGNOSES[d], d2=_DIAGNOSES[d2])
            line = line[0].upper() + line[1:] if line[0] != "[" else "[" + line[1].upper() + line[2:]
            out.append(parse_annotated(line, f"template {k}.{i}"))
    return out
