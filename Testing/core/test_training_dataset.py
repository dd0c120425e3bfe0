"""Label vectors, the patch cache built from a tiny DeepLesion-layout folder, and PatchDataset."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from LesaNetCore.errors import LesaNetError
from LesaNetCore.ontology import Ontology, Term, read_label_split
from LesaNetCore.training.dataset import (
    PatchDataset,
    build_patch_cache,
    lesion_label_vectors,
    open_patch_cache,
)

# The 18 columns of DeepLesion's DL_info.csv, in order (checked against the real file below).
DL_COLUMNS = [
    "File_name", "Patient_index", "Study_index", "Series_ID", "Key_slice_index", "Measurement_coordinates",
    "Bounding_boxes", "Lesion_diameters_Pixel_", "Normalized_lesion_location", "Coarse_lesion_type",
    "Possibly_noisy", "Slice_range", "Spacing_mm_px_", "Image_size", "DICOM_windows", "Patient_gender",
    "Patient_age", "Train_Val_Test",
]
TERMS = ["chest", "abdomen", "lung", "liver", "nodule", "mass"]


def tiny_ontology() -> Ontology:
    """chest/abdomen exclusive; lung under chest, liver under abdomen; two types."""
    return Ontology([
        Term("chest", "bodypart"),
        Term("abdomen", "bodypart", exclusive=frozenset({"chest"})),
        Term("lung", "bodypart", parents=frozenset({"chest"})),
        Term("liver", "bodypart", parents=frozenset({"abdomen"})),
        Term("nodule", "type"),
        Term("mass", "type"),
    ], name="tiny")


def make_tiny_deeplesion(root: Path, per_split: dict[str, int], size: int = 64, seed: int = 0) -> dict:
    """A DeepLesion-layout folder: 16-bit PNGs (HU + 32768), DL_info.csv, and a label/split JSON.

    Even lesions are bright "liver masses" in soft tissue, odd ones dark "lung nodules", so a model can learn
    them. Returns paths and the lesion count.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    rows, split_json = [], {"term_list": TERMS}
    lesion = 0
    yy, xx = np.mgrid[0:size, 0:size]
    for split_code, split in enumerate(("train", "val", "test"), start=1):
        idxs, relevant, uncertain, irrelevant = [], [], [], []
        for _ in range(per_split.get(split, 0)):
            patient, key = lesion + 1, 5
            bright = lesion % 2 == 0
            cx, cy, r = rng.uniform(20, size - 20), rng.uniform(20, size - 20), rng.uniform(4, 8)
            folder = root / "Images_png" / f"{patient:06d}_01_01"
            folder.mkdir(parents=True, exist_ok=True)
            for s in (key - 1, key, key + 1):
                hu = np.full((size, size), 40.0 if bright else -850.0) + rng.normal(0, 10, (size, size))
                hu[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = 300.0 if bright else 30.0
                png = np.clip(np.round(hu + 32768), 0, 65535).astype(np.uint16)
                Image.fromarray(png).save(folder / f"{s:03d}.png")
            x1, y1, x2, y2 = cx - r + 1, cy - r + 1, cx + r + 1, cy + r + 1  # DL_info is 1-based
            rows.append([
                f"{patient:06d}_01_01_{key:03d}.png", patient, 1, 1, key,
                f"{x1}, {cy + 1}, {x2}, {cy + 1}, {cx + 1}, {y1}, {cx + 1}, {y2}", f"{x1}, {y1}, {x2}, {y2}",
                f"{2 * r}, {2 * r}", "0.5, 0.5, 0.5", 2 if bright else 5, 1 if lesion == 2 else 0,
                f"{key - 1}, {key + 1}", "0.8, 0.8, 2", f"{size}, {size}", "-175, 275", "F", 50, split_code,
            ])
            idxs.append(lesion)
            relevant.append([3, 5] if bright else [2, 4])  # liver mass / lung nodule (parents not listed)
            uncertain.append([4] if bright else [])  # an uncertain "nodule" on liver lesions
            irrelevant.append([])
            lesion += 1
        split_json[f"{split}_lesion_idxs"] = idxs
        split_json[f"{split}_relevant_labels"] = relevant
        split_json[f"{split}_uncertain_labels"] = uncertain
        split_json[f"{split}_irrelevant_labels"] = irrelevant
    with (root / "DL_info.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(DL_COLUMNS)
        writer.writerows(rows)
    (root / "labels.json").write_text(json.dumps(split_json), encoding="utf-8")
    return {"root": root, "dl_info": root / "DL_info.csv", "labels": root / "labels.json", "lesions": lesion}


def build_tiny_cache(tmp_path: Path, per_split: dict[str, int], out_name: str = "cache", **kw) -> Path:
    from LesaNetCore.imaging import read_dl_info

    layout = make_tiny_deeplesion(tmp_path / "dl", per_split)
    out = tmp_path / out_name
    build_patch_cache(layout["root"], read_dl_info(layout["dl_info"]), read_label_split(layout["labels"]),
                      tiny_ontology(), out, progress=False, **kw)
    return out


# ------------------------------------------------------------------------------------------------ labels
def test_label_vectors_expand_mask_uncertain_and_mark_reliable_negatives():
    onto = tiny_ontology()
    # val: relevant lung; uncertain liver -> liver and its parent abdomen are exclusive with chest (reliable
    # negatives), so they are not masked; an uncertain type label is masked.
    t, v, r = lesion_label_vectors(TERMS, [2], [3, 5], [], onto, split="val")
    assert t.tolist() == [1, 0, 1, 0, 0, 0]
    assert v.tolist() == [True, True, True, True, True, False]
    assert r.tolist() == [True, True, True, True, False, False]


def test_label_vectors_training_uses_relevant_and_uncertain():
    onto = tiny_ontology()
    t, v, _ = lesion_label_vectors(TERMS, [2], [5], [], onto, split="train")
    assert t.tolist() == [1, 0, 1, 0, 0, 1]
    assert v.all()
    t_rel, v_rel, _ = lesion_label_vectors(TERMS, [2], [5], [], onto, split="train", label_mode="relevant")
    assert t_rel.tolist() == [1, 0, 1, 0, 0, 0] and not v_rel[5]


def test_label_vectors_ablations():
    onto = tiny_ontology()
    t, _, _ = lesion_label_vectors(TERMS, [2], [], [], onto, split="train", expand=False)
    assert t.tolist() == [0, 0, 1, 0, 0, 0]
    t_all, _, _ = lesion_label_vectors(TERMS, [2], [], [5], onto, split="train", label_mode="all-mentioned")
    assert t_all[5] == 1
    t_eval, _, _ = lesion_label_vectors(TERMS, [2], [], [5], onto, split="test", label_mode="all-mentioned")
    assert t_eval[5] == 0
    with pytest.raises(LesaNetError, match="label_mode"):
        lesion_label_vectors(TERMS, [2], [], [], onto, split="train", label_mode="everything")


# ------------------------------------------------------------------------------------------------ cache
def test_patch_cache_from_deeplesion_layout(tmp_path):
    out = build_tiny_cache(tmp_path, {"train": 6, "val": 3, "test": 2})
    cache = open_patch_cache(out)
    assert cache.label_names == TERMS
    assert cache.label_classes == ["bodypart"] * 4 + ["type"] * 2
    assert cache.ontology_digest == tiny_ontology().digest()
    assert cache.meta["skipped"]["noisy"] == 1  # lesion 2 is marked possibly noisy
    assert cache.meta["counts"] == {"train": 5, "val": 3, "test": 2}
    images = np.asarray(cache.arrays["images"])
    assert images.dtype == np.uint8 and images.shape == (10, 3, 120, 120)
    assert list(cache.arrays["lesion_idx"][:3]) == [0, 1, 3]
    # a bright liver lesion: brighter at the box centre than the soft tissue, labels expanded with abdomen
    row = 0
    box = cache.arrays["boxes"][row]
    cx, cy = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
    assert images[row, 1, cy, cx] > images[row, 1, 5, 5] + 10
    assert cache.arrays["targets"][row].tolist() == [0, 1, 0, 1, 1, 1]
    # val liver lesion: its uncertain "nodule" is masked
    val_rows = cache.rows("val")
    val_targets = cache.arrays["targets"][val_rows]
    val_valid = cache.arrays["valid"][val_rows]
    liver = [i for i in range(len(val_rows)) if val_targets[i, 3] == 1]
    assert liver and not val_valid[liver[0], 4]
    assert cache.arrays["reliable"][row, 0]  # chest is a reliable negative of an abdomen lesion
    assert isinstance(cache.arrays["images"], np.memmap)


def test_patch_cache_npz_and_refusals(tmp_path):
    out = build_tiny_cache(tmp_path, {"train": 3}, out_name="cache.npz")
    cache = open_patch_cache(out)
    assert len(cache.rows("train")) == 2 and len(cache.rows("val")) == 0
    with pytest.raises(LesaNetError, match="refusing to overwrite"):
        build_tiny_cache(tmp_path, {"train": 3}, out_name="cache.npz")
    with pytest.raises(LesaNetError, match="patch cache"):
        open_patch_cache(tmp_path / "dl")


def test_patch_dataset_items_and_jitter(tmp_path):
    cache = open_patch_cache(build_tiny_cache(tmp_path, {"train": 4}))
    plain = PatchDataset(cache, "train")
    item = plain[0]
    grey = np.asarray(cache.arrays["images"][cache.rows("train")[0]], dtype=np.float32)
    assert np.allclose(item["image"].numpy(), (grey - 50) / 255)
    assert item["target"].dtype.is_floating_point and item["valid"].dtype == item["reliable"].dtype
    jittered = PatchDataset(cache, "train", box_jitter=3.0, seed=1)
    first = jittered[0]["box"].clone()
    assert not np.allclose(first.numpy(), item["box"].numpy())
    assert np.allclose(jittered[0]["box"].numpy(), first.numpy())  # same epoch: same jitter
    jittered.set_epoch(1)
    assert not np.allclose(jittered[0]["box"].numpy(), first.numpy())
    assert np.abs(first.numpy() - item["box"].numpy()).max() <= 3.0


def test_dl_columns_match_the_real_file():
    from conftest import shared_file

    path = shared_file("deeplesion/DL_info_first693.csv")
    with path.open(newline="", encoding="utf-8") as handle:
        assert next(csv.reader(handle)) == DL_COLUMNS
