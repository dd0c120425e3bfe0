"""The ontology terms the phantom writes into its truth files.

Names are exactly those of the DeepLesion lesion ontology (lesion_ontology_181022.xlsx) and of the project's
default ontology. Truth lists the most specific terms only (``right lower lobe``, not ``chest``/``lung``/
``right lung``); label expansion adds the ancestors, as it does for text-mined labels.
"""

from __future__ import annotations

PHANTOM_BODYPARTS = (
    "right upper lobe", "right mid lung", "right lower lobe", "left upper lung", "left lower lobe",
    "liver", "spleen", "right kidney", "left kidney", "adrenal gland", "pancreas",
    "mediastinum lymph node", "abdomen lymph node", "retroperitoneum lymph node", "pelvis lymph node",
    "iliac lymph node", "spine", "rib", "pelvic bone", "soft tissue", "pleura", "chest wall",
)
PHANTOM_TYPES = (
    "nodule", "lung nodule", "mass", "lung mass", "liver mass", "cyst", "kidney cyst", "lymphadenopathy",
    "metastasis", "hemangioma",
)
PHANTOM_ATTRIBUTES = (
    "hypoattenuation", "hyperattenuation", "enhancing", "calcified", "cavitary", "spiculated", "lobular",
    "heterogeneous", "solid", "sclerotic", "lytic", "tiny", "large",
)

# DeepLesion's Coarse_lesion_type codes: 1 bone, 2 abdomen, 3 mediastinum, 4 liver, 5 lung, 6 kidney,
# 7 soft tissue, 8 pelvis.
COARSE_TYPE = {
    "right upper lobe": 5, "right mid lung": 5, "right lower lobe": 5, "left upper lung": 5,
    "left lower lobe": 5, "pleura": 5, "liver": 4, "spleen": 2, "right kidney": 6, "left kidney": 6,
    "adrenal gland": 2, "pancreas": 2, "mediastinum lymph node": 3, "abdomen lymph node": 2,
    "retroperitoneum lymph node": 2, "pelvis lymph node": 8, "iliac lymph node": 8, "spine": 1, "rib": 1,
    "pelvic bone": 1, "soft tissue": 7, "chest wall": 7,
}

# Exclusive attribute pairs (from the ontology's term_exclusive column): a lesion never carries both.
EXCLUSIVE_ATTRIBUTES = (
    ("hypoattenuation", "hyperattenuation"), ("cavitary", "solid"), ("sclerotic", "lytic"), ("tiny", "large"),
)
