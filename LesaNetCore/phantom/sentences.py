"""Report sentences in radiologists' style, written from a lesion's truth but not equal to it.

Like DeepLesion's sentences, each one marks the lesion of interest with ``BOOKMARK`` (and sometimes another
lesion with ``OTHER_BMK``), names the location with synonyms and adjectival forms (hepatic, renal, pulmonary,
RUL), hedges the diagnosis ("likely", "may represent", "versus"), negates findings that are absent ("without
calcification"), and leaves out many true attributes. A text miner therefore has real work, and the truth
labels stay in truth.jsonl only.
"""

from __future__ import annotations

import numpy as np

from .lesions import LesionSpec

_LOCATION = {
    "right upper lobe": ["right upper lobe", "RUL", "right upper lobe", "right upper lung"],
    "right mid lung": ["right middle lobe", "right mid lung", "RML", "middle lobe"],
    "right lower lobe": ["right lower lobe", "RLL", "right lower lobe", "right lung base"],
    "left upper lung": ["left upper lobe", "LUL", "left upper lung", "lingula"],
    "left lower lobe": ["left lower lobe", "left lower lung", "left lung base", "left lower lobe"],
    "liver": ["liver", "right hepatic lobe", "left hepatic lobe", "hepatic segment 7", "hepatic dome", "liver"],
    "spleen": ["spleen", "splenic tip", "spleen"],
    "right kidney": ["right kidney", "lower pole of the right kidney", "interpolar right kidney", "right kidney"],
    "left kidney": ["left kidney", "upper pole of the left kidney", "left kidney", "interpolar left kidney"],
    "adrenal gland": ["{side} adrenal gland", "{side} adrenal", "adrenal gland"],
    "pancreas": ["pancreatic tail", "pancreatic head", "pancreas", "body of the pancreas"],
    "mediastinum lymph node": ["mediastinum", "right paratracheal region", "subcarinal region", "AP window",
                               "prevascular space"],
    "abdomen lymph node": ["mesentery", "abdomen", "small bowel mesentery"],
    "retroperitoneum lymph node": ["retroperitoneum", "left para-aortic region", "aortocaval region",
                                   "retroperitoneum"],
    "pelvis lymph node": ["pelvis", "{side} obturator region", "{side} pelvic sidewall"],
    "iliac lymph node": ["{side} external iliac chain", "{side} common iliac region", "{side} iliac chain"],
    "spine": ["{vertebra} vertebral body", "spine", "{vertebra} vertebra"],
    "rib": ["{side} posterior rib", "{side} {nth} rib", "rib"],
    "pelvic bone": ["{side} iliac bone", "{side} acetabulum", "{side} hemipelvis", "pelvic bone"],
    "soft tissue": ["subcutaneous soft tissues", "{side} gluteal soft tissues", "anterior abdominal wall soft tissue"],
    "pleura": ["{side} pleura", "{side} pleural surface", "{side} hemithorax, pleural-based"],
    "chest wall": ["{side} chest wall", "anterior chest wall", "{side} lateral chest wall"],
}
# Adjectival forms used before a noun: "hepatic metastasis", "mediastinal lymph node".
_ADJECTIVE = {
    "liver": ["hepatic", "liver"], "spleen": ["splenic"], "right kidney": ["right renal"], "left kidney": ["left renal"],
    "pancreas": ["pancreatic"], "mediastinum lymph node": ["mediastinal"], "abdomen lymph node": ["mesenteric", "abdominal"],
    "retroperitoneum lymph node": ["retroperitoneal", "para-aortic"], "pelvis lymph node": ["pelvic"],
    "iliac lymph node": ["iliac", "{side} external iliac"], "right upper lobe": ["RUL", "right upper lobe"],
    "right mid lung": ["right middle lobe"], "right lower lobe": ["right lower lobe", "RLL"],
    "left upper lung": ["left upper lobe", "LUL"], "left lower lobe": ["left lower lobe"], "pleura": ["pleural"],
    "adrenal gland": ["{side} adrenal"], "spine": ["vertebral"], "rib": ["rib"], "pelvic bone": ["pelvic"],
    "chest wall": ["chest wall"], "soft tissue": ["soft tissue", "subcutaneous"],
}
_NOUN = {
    "nodule": ["nodule", "nodule", "nodular lesion"], "lung nodule": ["pulmonary nodule", "nodule", "lung nodule"],
    "mass": ["mass", "soft tissue mass"], "lung mass": ["lung mass", "pulmonary mass", "mass"],
    "liver mass": ["hepatic mass", "liver mass", "mass"], "cyst": ["cyst", "cystic lesion"],
    "kidney cyst": ["renal cyst", "cyst", "simple cyst"],
    "lymphadenopathy": ["lymph node", "lymphadenopathy", "adenopathy", "enlarged lymph node", "node"],
    "metastasis": ["metastasis", "metastatic lesion", "metastatic deposit"], "hemangioma": ["hemangioma"],
}
# Plurals follow an adjectival location ("right renal cysts"), so they carry no location word themselves.
_PLURAL = {
    "nodule": "nodules", "lung nodule": "nodules", "mass": "masses", "lung mass": "masses",
    "liver mass": "masses", "cyst": "cysts", "kidney cyst": "cysts",
    "lymphadenopathy": "lymph nodes", "metastasis": "metastases", "hemangioma": "hemangiomas",
}
_DIAGNOSIS = {
    "metastasis": ["metastasis", "metastatic disease", "a metastasis"], "hemangioma": ["hemangioma", "a hemangioma"],
    "cyst": ["a cyst", "cyst"], "kidney cyst": ["a renal cyst", "a cyst"], "lymphadenopathy": ["lymphadenopathy"],
}
_LOOKALIKE = {"metastasis": ["cyst", "hemangioma"], "hemangioma": ["metastasis", "cyst"], "cyst": ["hemangioma", "metastasis"],
              "kidney cyst": ["metastasis"]}
_ATTRIBUTE_WORDS = {
    "hypoattenuation": ["hypodense", "low-attenuation", "hypoattenuating", "low density"],
    "hyperattenuation": ["hyperdense", "hyperenhancing", "high-density"],
    "enhancing": ["enhancing", "peripherally enhancing", "rim-enhancing"],
    "calcified": ["calcified", "partially calcified"], "cavitary": ["cavitary", "cavitating"],
    "spiculated": ["spiculated", "irregular"], "lobular": ["lobulated", "lobular"], "heterogeneous": ["heterogeneous"],
    "solid": ["solid"], "sclerotic": ["sclerotic", "osteosclerotic", "blastic"], "lytic": ["lytic", "osteolytic"],
    "tiny": ["tiny", "subcentimeter", "small"], "large": ["large", "bulky"],
}
_NEGATIONS = {
    "calcified": "without calcification", "enhancing": "without enhancement", "cavitary": "without cavitation",
    "spiculated": "without spiculation", "heterogeneous": "no internal heterogeneity",
}
_HEDGES = ["likely", "possibly", "suspicious for", "may represent", "consistent with", "compatible with",
           "concerning for", "probably"]
_TAILS = [", unchanged", ", increased in size", ", new since prior", ", decreased in size",
          ", not significantly changed", ", stable"]


def _choice(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _fill(text: str, spec: LesionSpec) -> str:
    x, _, z = spec.center
    side = "right" if x < 0 else "left"
    vertebra = ("T6", "T9", "T11", "L1", "L2", "L3", "L4")[int(abs(z)) % 7]
    nth = ["5th", "6th", "7th", "8th", "9th"][int(abs(z)) % 5]
    return text.format(side=side, vertebra=vertebra, nth=nth)


def _size_text(long_mm: float, short_mm: float, rng: np.random.Generator) -> str:
    if long_mm >= 10 and rng.random() < 0.5:
        return f"{long_mm / 10:.1f} x {short_mm / 10:.1f} cm"
    return f"{long_mm:.0f} mm"


def make_sentence(rng: np.random.Generator, spec: LesionSpec, long_mm: float, short_mm: float,
                  other: LesionSpec | None = None) -> str:
    """One report sentence for ``spec``; mentions ``other`` with OTHER_BMK when given."""
    shown = [a for a in spec.attributes if rng.random() < (0.45 if a in ("tiny", "large") else 0.55)]
    words = [_choice(rng, _ATTRIBUTE_WORDS[a]) for a in shown]
    attr_text = " ".join(words)
    location = _fill(_choice(rng, _LOCATION[spec.bodypart]), spec)
    adjective = _fill(_choice(rng, _ADJECTIVE[spec.bodypart]), spec)
    noun = _choice(rng, _NOUN[spec.type])
    style = rng.random()
    size = f" measuring {_size_text(long_mm, short_mm, rng)}" if rng.random() < 0.35 else ""
    if other is not None and rng.random() < 0.5:
        plural = _PLURAL[spec.type] if other.type == spec.type else "lesions"
        lead = f"Multiple {attr_text + ' ' if attr_text else ''}{adjective} {plural}"
        text = f"{lead}, the largest BOOKMARK{size} and another OTHER_BMK in the {_fill(_choice(rng, _LOCATION[other.bodypart]), other)}"
    elif style < 0.35:
        text = f"{attr_text + ' ' if attr_text else ''}{noun} BOOKMARK in the {location}{size}"
    elif style < 0.6:
        text = f"{adjective} {attr_text + ' ' if attr_text else ''}{noun} BOOKMARK{size}"
    elif style < 0.85 and spec.type in _DIAGNOSIS:
        hedge = _choice(rng, _HEDGES)
        text = f"{attr_text + ' ' if attr_text else ''}lesion BOOKMARK in the {location}{size}, {hedge} {_choice(rng, _DIAGNOSIS[spec.type])}"
    elif spec.type in _LOOKALIKE:
        alt = _choice(rng, _LOOKALIKE[spec.type])
        first, second = (_DIAGNOSIS[spec.type][0], alt) if rng.random() < 0.5 else (alt, _DIAGNOSIS[spec.type][0])
        text = f"{attr_text + ' ' if attr_text else ''}lesion BOOKMARK in the {location}, {first} versus {second}"
    else:
        text = f"{attr_text + ' ' if attr_text else ''}{noun} in the {location} BOOKMARK{size}"
    if other is not None and "OTHER_BMK" not in text:
        text += f" and a second {_choice(rng, _NOUN[other.type])} OTHER_BMK"
    negatable = [a for a in _NEGATIONS if a not in spec.attributes]
    if negatable and rng.random() < 0.2:
        text += f", {_NEGATIONS[_choice(rng, negatable)]}"
    if other is None and spec.type != "lymphadenopathy" and rng.random() < 0.05:
        text += "; no lymphadenopathy"
    text += _choice(rng, _TAILS) if rng.random() < 0.3 else ""
    text = " ".join(text.split())
    return text[0].upper() + text[1:] + "."
