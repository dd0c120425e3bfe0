"""Worklists: the format, lesanet annotate-list killed midway and resumed, SRs read back, agreement tables."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from LesaNetCore.errors import LesaNetError
from LesaNetCore.worklist import read_worklist

pytest.importorskip("torch")


def _phantom_worklist(folder: Path, volumes: int = 10, per_volume: int = 5, dicom_volumes: int = 1) -> Path:
    """Phantom CTs (NIfTI, and the first ``dicom_volumes`` as DICOM series) with their lesions as a CSV worklist."""
    import SimpleITK as sitk
    from dicom_corpus import write_series

    from LesaNetCore.imaging import Volume
    from LesaNetCore.phantom import make_phantom_volume

    rows = []
    for n in range(volumes):
        voxels, spacing, origin, direction, lesions = make_phantom_volume(seed=100 + n, n_lesions=per_volume,
                                                                          size=128, interval=5.0)
        volume = Volume(voxels, spacing, origin, np.asarray(direction, dtype=float).reshape(3, 3))
        if n < dicom_volumes:
            name = f"dicom{n}"
            write_series(folder / name, voxels, origin, 5.0, signed=True, study_uid=None)
        else:
            name = f"ct{n}.nii.gz"
            sitk.WriteImage(volume.to_sitk(), str(folder / name))
        for m, lesion in enumerate(lesions):
            kind = "recist_ijk" if m == 0 else "box_ijk"
            values = lesion.box_ijk if kind == "box_ijk" else _recist(lesion.box_ijk)
            rows.append({"volume": name, kind: ",".join(f"{v:g}" for v in values), "lesion_id": f"p{n}-{m}",
                         "patient_id": f"p{n}", "sentence": f"Lesion {m} of phantom {n}."})
    path = folder / "worklist.csv"
    columns = ["volume", "box_ijk", "recist_ijk", "lesion_id", "patient_id", "sentence"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _recist(box_ijk):
    i1, j1, i2, j2, k = box_ijk
    return (i1 + 5, (j1 + j2) / 2, i2 - 5, (j1 + j2) / 2, k)


def test_worklist_rows_and_their_errors(tmp_path):
    (tmp_path / "ct.nii.gz").write_bytes(b"")
    good = tmp_path / "list.jsonl"
    good.write_text(json.dumps({"volume": "ct.nii.gz", "box_ijk": [1, 2, 30, 40, 5], "lesion_id": "a"}) + "\n"
                    + json.dumps({"volume": "ct.nii.gz", "recist_lps": "-1,2,3,4,7.5", "patient_id": "p"}) + "\n")
    first, second = read_worklist(good)
    assert first.values == (1, 2, 30, 40, 5) and first.volume == str((tmp_path / "ct.nii.gz").resolve())
    assert second.lesion_id == "row-2" and second.input_kind == "recist_lps" and second.patient_id == "p"
    cases = [
        ("volume,box_ijk\nmissing.nii.gz,\"1,2,3,4,5\"\n", "row 1: volume: must exist"),
        ("volume,box_ijk,box_lps\nct.nii.gz,\"1,2,3,4,5\",\"1,2,3,4,5\"\n", "row 1: must give exactly one of"),
        ("volume,box_ijk\nct.nii.gz,\"1,2,3,4\"\n", "row 1: box_ijk: must be 5 finite numbers"),
        ("volume,box_ijk,lesion_id\nct.nii.gz,\"1,2,3,4,5\",x\nct.nii.gz,\"1,2,3,4,5\",x\n",
         "row 2: lesion_id: must be unique"),
        ("volume,box_ijk,colour\nct.nii.gz,\"1,2,3,4,5\",red\n", "must only have the columns"),
    ]
    for text, message in cases:
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(LesaNetError, match=message):
            read_worklist(bad)


@pytest.mark.slow
def test_deeplesion_dl_info_is_a_worklist_with_the_training_patches(tmp_path):
    from LesaNetCore.annotate import Annotator
    from LesaNetCore.imaging import load_lesion_patch, read_dl_info
    from LesaNetCore.phantom import synthesize
    from LesaNetCore.worklist import annotate_worklist

    synthesize(tmp_path / "dl", n_lesions=6, seed=4)
    items = read_worklist(tmp_path / "dl" / "DL_info.csv")
    records = read_dl_info(tmp_path / "dl" / "DL_info.csv")
    assert [i.lesion_id for i in items] == [str(r.lesion_idx) for r in records]
    assert items[0].sentence  # the phantom's report sentence comes along
    run = annotate_worklist(items, tmp_path / "out", Annotator(device="cpu", index=False), progress=False)
    assert run.annotated == len(items) and not run.failed
    from LesaNetCore.report import read_json_report

    result = read_json_report(next((tmp_path / "out" / "lesions").glob(f"{items[0].lesion_id}-*.json")))[0]
    training = load_lesion_patch(tmp_path / "dl", records[0])
    np.testing.assert_allclose(result.patch_image, training.image, atol=1e-3)


def _lesanet(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "LesaNetCore.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


@pytest.mark.slow
def test_annotate_list_killed_midway_resumes_and_its_srs_read_back(tmp_path):
    from test_report_sr import _dciodvfy_errors

    from LesaNetCore.imaging import read_volume
    from LesaNetCore.report import read_json_report
    from LesaNetCore.report.sr_lesions import read_sr_lesions
    from LesaNetCore.worklist.run import done_lesions

    worklist = _phantom_worklist(tmp_path)
    items = read_worklist(worklist)
    assert len(items) == 50
    out = tmp_path / "out"
    args = ("annotate-list", str(worklist), "--out", str(out), "--batch-size", "2", "--device", "cpu", "--top-k", "2")
    first = _lesanet(*args)
    deadline = time.time() + 300
    while len(done_lesions(out)) < 12:  # killed once a dozen lesions are recorded
        assert first.poll() is None, first.communicate()[0]
        assert time.time() < deadline
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    killed_at = len(done_lesions(out))
    assert 12 <= killed_at < 50 and not (out / "results.json").exists()

    second = _lesanet(*args)
    output, _ = second.communicate(timeout=600)
    assert second.returncode == 0, output
    assert f"resuming: {killed_at} of 50 lesions were annotated before" in output
    assert f"{50 - killed_at} lesions annotated, {killed_at} done before, 0 failed" in output
    state = [json.loads(line)["lesion_id"] for line in (out / "state.jsonl").read_text().splitlines()]
    assert sorted(state) == sorted(i.lesion_id for i in items)  # each lesion once: nothing annotated twice

    results = read_json_report(out / "results.json")
    by_volume: dict[str, list] = {}
    for item, result in zip(items, results, strict=True):
        by_volume.setdefault(item.volume, []).append((item, result))
    srs = sorted((out / "sr").glob("*.dcm"))
    assert len(srs) == 10
    for sr in srs:
        assert _dciodvfy_errors(sr) == [], sr.name
        volume_path = next(v for v in by_volume if Path(v).name.split(".")[0] in sr.name)
        lesions = read_sr_lesions(sr, read_volume(volume_path))
        expected = by_volume[volume_path]
        assert len(lesions) == len(expected)
        for lesion, (item, result) in zip(lesions, expected, strict=True):
            assert set(lesion.labels) == set(result.accepted), item.lesion_id
            np.testing.assert_allclose(lesion.box_ijk, result.location.box_ijk, atol=1e-4)
            assert lesion.key_slice == result.location.key_slice
    assert next(r for r in results if r.location.recist_ij).location.box_from == "recist"
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["lesion_id"] for r in rows] == [i.lesion_id for i in items]
    # The DICOM volume's SR points at its images.
    dicom_sr = next(s for s in srs if "dicom0" in s.name)
    assert read_sr_lesions(dicom_sr)[0].coordinates == "image"


def test_agreement_counts_the_readers_changes(tmp_path):
    from LesaNetCore.result import AnnotationResult, LabelScore, LesionLocation
    from LesaNetCore.worklist import agreement, write_summary

    labels = (LabelScore("liver", "bodypart", 0.9, 0.5, True), LabelScore("kidney", "bodypart", 0.2, 0.5, False),
              LabelScore("cyst", "type", 0.7, 0.5, True), LabelScore("mass", "type", 0.3, 0.5, False))
    base = AnnotationResult(labels, frozenset({"liver", "cyst"}), LesionLocation(3, (1, 2, 9, 9), (0, 0, 0)),
                            np.zeros(4, np.float32))
    kept = base.reviewed("accepted", "Doe^Jane")
    fixed = base.with_edits(accept=["mass"], reject=["cyst"]).reviewed("corrected", "Doe^Jane")
    skipped = base.with_edits(reject=["liver"]).reviewed("skipped")
    rows = {r.term: r for r in agreement([kept, fixed, skipped, base])}
    assert (rows["liver"].tp, rows["liver"].fp, rows["liver"].fn) == (2, 0, 0)
    assert (rows["cyst"].tp, rows["cyst"].fp) == (1, 1) and rows["cyst"].precision == 0.5
    assert (rows["mass"].fn, rows["mass"].recall) == (1, 0.0)
    assert (rows["all labels"].tp, rows["all labels"].fp, rows["all labels"].fn) == (3, 1, 1)
    written = write_summary([kept, fixed], ["a", "b"], tmp_path)
    assert [p.name for p in written] == ["summary.csv", "agreement.csv", "agreement.png"]
    summary = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert summary[1]["added"] == "mass" and summary[1]["removed"] == "cyst" and summary[1]["reader"] == "Doe^Jane"
    assert (tmp_path / "agreement.png").read_bytes()[:4] == b"\x89PNG"
    os.remove(tmp_path / "agreement.png")
