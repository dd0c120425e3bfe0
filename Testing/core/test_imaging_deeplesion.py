"""DeepLesion layout: the real DL_info.csv rows, the real key slices' boxes, and patches from PNG stacks."""

from __future__ import annotations

import csv
from dataclasses import replace

import numpy as np
import pytest
from conftest import shared_file
from PIL import Image
from scipy.ndimage import map_coordinates

from LesaNetCore.errors import LesaNetError
from LesaNetCore.imaging.deeplesion import (
    COLUMNS,
    hu_to_png16,
    load_lesion_patch,
    read_dl_info,
    read_png_slice,
    slice_path,
    write_dl_info,
)
from LesaNetCore.imaging.patch import window_hu

pytestmark = pytest.mark.shared_data


def _records():
    return read_dl_info(shared_file("deeplesion/DL_info_first693.csv"))


def test_real_csv_parses_into_693_typed_zero_based_rows():
    path = shared_file("deeplesion/DL_info_first693.csv")
    with path.open(newline="") as handle:
        raw = list(csv.DictReader(handle))
    assert len(raw[0]) == 18 and tuple(raw[0]) == COLUMNS
    records = read_dl_info(path)
    assert len(records) == 693
    first = records[0]
    assert first.lesion_idx == 0 and first.file_name == "000001_01_01_109.png"
    assert (first.patient_index, first.study_index, first.series_id, first.key_slice_index) == (1, 1, 1, 109)
    assert first.series_folder == "000001_01_01"
    np.testing.assert_allclose(first.bbox, (225.169, 89.0204, 240.252, 110.977))
    np.testing.assert_allclose(first.measurement_coordinates[:2], (232.537, 94.0204))
    assert first.spacing == (0.488281, 0.488281, 5.0) and first.slice_interval == 5.0
    assert first.slice_range == (103, 115) and first.image_size == (512, 512)
    assert first.dicom_windows == (-175.0, 275.0)
    assert (first.patient_gender, first.patient_age, first.train_val_test) == ("F", 62, 3)
    assert first.coarse_lesion_type == 3 and first.possibly_noisy is False
    for record, row in zip(records, raw, strict=True):
        assert record.file_name == f"{record.series_folder}_{record.key_slice_index:03d}.png"
        x1, y1, x2, y2 = record.bbox
        assert x1 < x2 and y1 < y2
        csv_box = [float(v) for v in row["Bounding_boxes"].split(",")]
        np.testing.assert_allclose(np.array(record.bbox) + 1, csv_box)
        assert record.slice_range[0] <= record.key_slice_index <= record.slice_range[1]
        assert record.train_val_test in (1, 2, 3) and record.spacing[2] > 0


def test_key_slice_tru_boxes_match_the_csv_boxes():
    records = _records()
    by_name: dict[str, list] = {}
    for record in records:
        by_name.setdefault(record.file_name[:-4], []).append(record)
    folder = shared_file("deeplesion/key_slices")
    checked = 0
    for tru in sorted(folder.glob("*.tru")):
        for line in tru.read_text().splitlines():
            if not line.strip():
                continue
            kind, ymin, xmin, ymax, xmax = line.split()
            # .tru holds the CSV's 1-based box divided by 512; ours is 0-based.
            tru_box = np.array([float(xmin), float(ymin), float(xmax), float(ymax)]) * 512 - 1
            candidates = by_name[tru.stem]
            best = min(candidates, key=lambda r: np.abs(np.array(r.bbox) - tru_box).max())
            assert np.abs(np.array(best.bbox) - tru_box).max() < 0.05, tru.name
            assert best.coarse_lesion_type == int(kind)
            checked += 1
        with Image.open(tru.with_suffix(".jpg")) as image:
            assert image.size == by_name[tru.stem][0].image_size
    assert checked >= 40


def test_write_dl_info_round_trips(tmp_path):
    records = _records()
    out = write_dl_info(tmp_path / "DL_info.csv", records)
    again = read_dl_info(out)
    assert len(again) == len(records)
    for a, b in zip(records, again, strict=True):
        np.testing.assert_allclose(a.bbox, b.bbox, atol=1e-4)
        np.testing.assert_allclose(a.measurement_coordinates, b.measurement_coordinates, atol=1e-4)
        assert replace(a, bbox=b.bbox, measurement_coordinates=b.measurement_coordinates) == b
    with pytest.raises(LesaNetError, match="overwrite"):
        write_dl_info(out, records)


def _write_stack(root, record, slices: dict[int, np.ndarray]) -> None:
    for index, hu in slices.items():
        path = slice_path(root, record, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(hu_to_png16(hu)).save(path)


def _key_slice_hu(record) -> np.ndarray:
    """The real key slice's JPEG turned back to HU (window [-1024, 3071])."""
    jpg = shared_file(f"deeplesion/key_slices/{record.file_name[:-4]}.jpg")
    with Image.open(jpg) as image:
        grey = np.asarray(image.convert("L"), dtype=np.float64)
    return grey / 255.0 * 4095.0 - 1024.0


def test_lesion_patch_from_a_png_stack_built_from_a_real_key_slice(tmp_path):
    record = _records()[0]  # spacing 0.488 mm, interval 5 mm
    key = record.key_slice_index
    hu = _key_slice_hu(record)
    _write_stack(tmp_path, record, {key - 1: hu - 100, key: hu, key + 1: hu + 100})
    np.testing.assert_allclose(read_png_slice(tmp_path, record, key), np.round(hu), atol=0.5)
    patch = load_lesion_patch(tmp_path, record)
    assert patch.key_slice == key and patch.image.shape == (3, 120, 120)
    # In-plane: 1 mm pixels centred on the box centre, bilinear, checked with scipy on the windowed slice.
    sx, sy = record.spacing[:2]
    x1, y1, x2, y2 = record.bbox
    steps = np.arange(120) - 59.5
    rows = (y1 + y2) / 2 + steps[:, None] / sy + 0 * steps[None, :]
    cols = (x1 + x2) / 2 + steps[None, :] / sx + 0 * steps[:, None]
    # Along z: -2 and +2 mm are 0.4 of the 5 mm way to the neighbours, i.e. -40 and +40 HU here; the reference
    # interpolates along z in HU, then windows, then resizes in-plane.
    for channel, shift in ((0, -40.0), (1, 0.0), (2, 40.0)):
        grey = window_hu(np.round(hu) + shift)
        expected = map_coordinates(grey, [rows, cols], order=1, mode="nearest")
        np.testing.assert_allclose(patch.image[channel], expected, atol=1e-3)
    assert patch.image[1].std() > 10
    # The box: width and height in mm, centred on 59.5.
    np.testing.assert_allclose(patch.box, [59.5 - (x2 - x1) / 2 * sx, 59.5 - (y2 - y1) / 2 * sy,
                                           59.5 + (x2 - x1) / 2 * sx, 59.5 + (y2 - y1) / 2 * sy], atol=1e-4)


def test_missing_neighbour_uses_the_nearest_shipped_slice_towards_the_key(tmp_path):
    record = replace(_records()[0], spacing=(0.5, 0.5, 1.0))  # +-2 mm = 2 slices away
    key = record.key_slice_index
    base = np.zeros((64, 64))
    _write_stack(tmp_path, record, {key - 1: base - 10, key: base, key + 1: base + 10, key + 2: base + 20})
    patch = load_lesion_patch(tmp_path, replace(record, bbox=(20.0, 20.0, 40.0, 40.0)))
    # key - 2 is not shipped: key - 1 stands in; key + 2 is used as is.
    assert patch.image[0, 60, 60] == pytest.approx(float(window_hu(np.float32(-10.0))), abs=1e-3)
    assert patch.image[2, 60, 60] == pytest.approx(float(window_hu(np.float32(20.0))), abs=1e-3)


def test_png_errors_name_the_file(tmp_path):
    record = _records()[0]
    with pytest.raises(LesaNetError, match="must exist") as info:
        read_png_slice(tmp_path, record, 5)
    assert "005.png" in str(info.value)
    with pytest.raises(LesaNetError, match="key slice"):
        load_lesion_patch(tmp_path, record)
    path = slice_path(tmp_path, record, 7)
    path.parent.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    with pytest.raises(LesaNetError, match="16-bit"):
        read_png_slice(tmp_path, record, 7)


def test_bad_csv_cells_and_columns_are_reported(tmp_path):
    path = shared_file("deeplesion/DL_info_first693.csv")
    lines = path.read_text().splitlines()
    broken = tmp_path / "broken.csv"
    broken.write_text("\n".join([lines[0], lines[1].replace('"226.169, 90.0204, 241.252, 111.977"', '"1, 2"')]))
    with pytest.raises(LesaNetError, match="row 2 Bounding_boxes"):
        read_dl_info(broken)
    no_column = tmp_path / "no_column.csv"
    no_column.write_text("File_name,Patient_index\nx.png,1\n")
    with pytest.raises(LesaNetError, match="Bounding_boxes"):
        read_dl_info(no_column)
