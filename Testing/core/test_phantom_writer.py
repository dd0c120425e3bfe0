"""lesanet synth: DeepLesion layout, formats, reproducibility, PNG encoding, splits, volumes, refusals."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_file

from LesaNetCore.cli import main
from LesaNetCore.errors import LesaNetError
from LesaNetCore.phantom import DL_INFO_COLUMNS, synthesize
from LesaNetCore.phantom.writer import png16_bytes


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom") / "ds"
    summary = synthesize(out, 20, seed=5, n_volumes=1, progress=False)
    return out, summary


def _rows(out: Path) -> list[dict]:
    with open(out / "DL_info.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def _png_hu(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        assert im.mode == "I;16"
        return np.asarray(im, dtype=np.int32) - 32768


def test_header_is_deeplesions():
    real = shared_file("deeplesion/DL_info_first693.csv")
    with open(real, newline="", encoding="utf-8") as fh:
        assert tuple(next(csv.reader(fh))) == DL_INFO_COLUMNS


def test_layout_and_value_formats(synth):
    out, summary = synth
    assert summary.n_lesions == 20
    for name in ("DL_info.csv", "sentences.jsonl", "truth.jsonl", "manifest.json", "README.txt"):
        assert (out / name).is_file()
    rows = _rows(out)
    assert len(rows) == 20 and tuple(rows[0]) == DL_INFO_COLUMNS
    for row in rows:
        folder = row["File_name"][:-8]
        assert row["File_name"] == f"{int(row['Patient_index']):06d}_{int(row['Study_index']):02d}_01_{int(row['Key_slice_index']):03d}.png"
        lo, hi = (int(v) for v in row["Slice_range"].split(", "))
        assert lo <= int(row["Key_slice_index"]) <= hi
        for k in range(lo, hi + 1):
            assert (out / "Images_png" / folder / f"{k:03d}.png").is_file()
        assert len(_floats(row["Measurement_coordinates"])) == 8
        x1, y1, x2, y2 = _floats(row["Bounding_boxes"])
        assert 1 <= x1 < x2 <= 256 and 1 <= y1 < y2 <= 256
        assert len(_floats(row["Lesion_diameters_Pixel_"])) == 2
        sx, sy, dz = _floats(row["Spacing_mm_px_"])
        assert sx == sy and 1.0 < sx < 2.0 and dz in (1.0, 1.25, 2.0, 2.5, 5.0)
        assert row["Image_size"] == "256, 256"
        assert len(_floats(row["DICOM_windows"])) == 2
        assert all(0 <= v <= 1 for v in _floats(row["Normalized_lesion_location"]))
        assert row["Train_Val_Test"] in ("1", "2", "3")
        assert (row["Coarse_lesion_type"] == "-1") == (row["Train_Val_Test"] == "1")
        assert row["Patient_gender"] in ("M", "F")


def test_png_decodes_to_hu_and_box_holds_the_lesion(synth):
    out, _ = synth
    rows = _rows(out)
    truth = _jsonl(out / "truth.jsonl")
    for row, lesion in zip(rows, truth, strict=True):
        hu = _png_hu(out / "Images_png" / row["File_name"][:-8] / row["File_name"][-7:])
        assert hu.shape == (256, 256)
        assert hu.min() >= -1024 and hu.max() <= 3071
        assert hu[0, 0] < -900  # air outside the body
        x1, y1, x2, y2 = (v - 1 for v in _floats(row["Bounding_boxes"]))
        cx, cy = (v * 256 for v in _floats(row["Normalized_lesion_location"])[:2])
        assert x1 < cx < x2 and y1 < cy < y2
        if lesion["type"] in ("cyst", "kidney cyst") and lesion["diameter_mm"] > 8:
            patch = hu[int(round(cy)) - 1:int(round(cy)) + 2, int(round(cx)) - 1:int(round(cx)) + 2]
            assert -10 < patch.mean() < 35
    assert len(rows) == 20


def test_same_seed_same_bytes(synth, tmp_path):
    out, _ = synth
    again = tmp_path / "again"
    synthesize(again, 20, seed=5, n_volumes=0, progress=False)
    for name in ("DL_info.csv", "sentences.jsonl", "truth.jsonl"):
        assert (again / name).read_bytes() == (out / name).read_bytes()
    first = _rows(out)[0]["File_name"]
    path = Path("Images_png") / first[:-8] / first[-7:]
    assert (again / path).read_bytes() == (out / path).read_bytes()
    other = tmp_path / "other"
    synthesize(other, 20, seed=6, n_volumes=0, progress=False)
    assert (other / "DL_info.csv").read_bytes() != (out / "DL_info.csv").read_bytes()


def test_sentences_and_truth(synth):
    out, _ = synth
    sentences = _jsonl(out / "sentences.jsonl")
    truth = _jsonl(out / "truth.jsonl")
    assert [s["id"] for s in sentences] == list(range(20)) == [t["id"] for t in truth]
    for s in sentences:
        assert s["text"].count("BOOKMARK") == 1
    for t in truth:
        assert t["labels"][:2] == [t["bodypart"], t["type"]] and t["labels"][2:] == t["attributes"]


def test_split_by_patient(synth):
    out, summary = synth
    splits: dict[str, set[str]] = {}
    for row in _rows(out):
        splits.setdefault(row["Patient_index"], set()).add(row["Train_Val_Test"])
    assert all(len(s) == 1 for s in splits.values())
    assert {next(iter(s)) for s in splits.values()} == {"1", "2", "3"}
    assert sum(summary.splits.values()) == summary.n_patients == len(splits)


def test_volume_matches_pngs(synth):
    import SimpleITK as sitk

    out, _ = synth
    metas = sorted((out / "volumes").glob("*.json"))
    assert len(metas) == 1
    meta = json.loads(metas[0].read_text(encoding="utf-8"))
    image = sitk.ReadImage(str(out / "volumes" / meta["volume"]))
    assert np.allclose(image.GetDirection(), (1, 0, 0, 0, 1, 0, 0, 0, -1))
    vox = sitk.GetArrayFromImage(image)
    for lesion in meta["lesions"]:
        i1, j1, i2, j2, k = lesion["box_ijk"]
        png = out / "Images_png" / meta["volume"][:-7] / f"{k + 1:03d}.png"
        assert np.array_equal(vox[k], _png_hu(png))
        # The box's LPS corners map back to its voxel corners.
        index = image.TransformPhysicalPointToIndex(lesion["box_lps"][:2] + [lesion["box_lps"][4]])
        assert tuple(index) == (i1, j1, k)


def test_refuses_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("user data")
    with pytest.raises(LesaNetError, match="--overwrite"):
        synthesize(tmp_path, 2, progress=False)
    summary = synthesize(tmp_path, 2, overwrite=True, n_volumes=0, progress=False)
    assert summary.n_lesions == 2 and (tmp_path / "keep.txt").exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(LesaNetError, match="--lesions: must be a positive integer, but got 0"):
        synthesize(tmp_path / "x", 0)
    with pytest.raises(LesaNetError, match="--seed"):
        synthesize(tmp_path / "x", 3, seed=-1)


def test_cli(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "c"), "--lesions", "3", "--quiet", "--volumes", "0"]) == 0
    assert "wrote 3 lesions" in capsys.readouterr().out
    assert main(["synth", "--out", str(tmp_path / "c"), "--lesions", "3", "--quiet"]) == 2
    assert "non-empty" in capsys.readouterr().err


def test_png_encoder_round_trip():
    from PIL import Image

    data = np.random.default_rng(0).integers(0, 65536, size=(13, 17)).astype(np.uint16)
    with Image.open(io.BytesIO(png16_bytes(data))) as im:
        assert np.array_equal(np.asarray(im), data)
    with pytest.raises(LesaNetError, match="uint16"):
        png16_bytes(data.astype(np.int32))
