"""RECIST measurements as input: DeepLesion's box rule on its own rows, errors, LPS input, Annotator and CLI."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import shared_file

from LesaNetCore.errors import LesaNetError
from LesaNetCore.imaging import Volume
from LesaNetCore.imaging.recist import Recist, recist_from_lps, recist_from_values


@pytest.mark.shared_data
def test_box_rule_reproduces_every_deeplesion_box():
    """DeepLesion's Bounding_boxes are its Measurement_coordinates' tight box padded by 5 pixels."""
    rows = list(csv.DictReader(shared_file("deeplesion/DL_info_first693.csv").open()))
    worst = 0.0
    for row in rows:
        points = [float(v) for v in row["Measurement_coordinates"].split(",")]
        expected = np.array([float(v) for v in row["Bounding_boxes"].split(",")])
        recist = recist_from_values("Measurement_coordinates", [*points, int(row["Key_slice_index"])])
        box = recist.box_ijk()
        assert box[4] == int(row["Key_slice_index"])
        worst = max(worst, float(np.abs(np.array(box[:4]) - expected).max()))
    assert len(rows) == 693 and worst < 1e-3, worst


@pytest.mark.parametrize(("values", "message"), [
    ([1, 2, 3, 4], "must be 5 or 9 finite numbers"),
    ([1, 2, 3, 4, 5, 6, 7], "must be 5 or 9 finite numbers"),
    ([1, 2, 3, 4, 2.5], "must end with a whole, non-negative slice index"),
    ([1, 2, 1, 2, 3], "long axis must have positive length"),
    ([0, 0, 4, 0, 0, 0, 0, 9, 3], "short axis .* must not be longer than the long axis"),
    ([0, 0, 4, 0, 1, 1, 1, 1, 3], "short axis must have positive length"),
])
def test_bad_measurements_are_named(values, message):
    with pytest.raises(LesaNetError, match=f"--recist-ijk: {message}"):
        recist_from_values("--recist-ijk", values)


def test_lps_points_give_the_ijk_box_on_a_flipped_volume():
    direction = np.diag([-1.0, -1.0, 1.0])  # a RAS-stored volume: I runs to the patient's right
    volume = Volume(np.zeros((10, 64, 64), np.float32), (0.8, 0.8, 2.5), (30.0, 40.0, -5.0), direction)
    ijk = np.array([[20.0, 30.0, 4.0], [31.0, 35.0, 4.0], [25.0, 28.0, 4.0], [26.0, 37.0, 4.0]])
    recist = recist_from_lps("--recist-lps", volume, volume.ijk_to_lps(ijk))
    assert recist.key_slice == 4
    np.testing.assert_allclose(recist.box_ijk(), (15.0, 23.0, 36.0, 42.0, 4.0), atol=1e-9)
    with pytest.raises(LesaNetError, match="must lie on one slice"):
        recist_from_lps("--recist-lps", volume, volume.ijk_to_lps([[20.0, 30.0, 4.0], [31.0, 35.0, 6.0]]))
    sagittal = Volume(np.zeros((10, 64, 64), np.float32), (1, 1, 1), (0, 0, 0),
                      np.array([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]]))
    with pytest.raises(LesaNetError, match="stored as axial slices"):
        recist_from_lps("--recist-lps", sagittal, [[0, 0, 0], [3, 0, 0]])


@pytest.mark.slow
def test_annotator_and_cli_take_a_measurement(tmp_path, capsys):
    pytest.importorskip("torch")
    from LesaNetCore.annotate import Annotator
    from LesaNetCore.cli import main
    from LesaNetCore.demo import demo_volume
    from LesaNetCore.report import read_json_report

    ct, lesions = demo_volume(seed=3)
    i1, j1, i2, j2, k = lesions[0].box_ijk
    long_axis = ((i1 + 5, (j1 + j2) / 2), (i2 - 5, (j1 + j2) / 2))
    recist = Recist(long_axis, int(k))
    annotator = Annotator(device="cpu", index=False)
    result = annotator.annotate(ct, recist=recist)
    box = annotator.annotate(ct, box_ijk=recist.box_ijk())
    assert result.location.recist_ij == long_axis and result.location.box_from == "recist"
    assert box.location.box_from == "box"
    np.testing.assert_allclose([x.score for x in result.labels], [x.score for x in box.labels], atol=1e-6)
    with pytest.raises(LesaNetError, match="exactly one"):
        annotator.annotate(ct, recist=recist, box_ijk=recist.box_ijk())

    ct_path = tmp_path / "ct.nii.gz"
    import SimpleITK as sitk

    sitk.WriteImage(ct.to_sitk(), str(ct_path))
    flat = ",".join(f"{v:g}" for point in long_axis for v in point) + f",{int(k)}"
    out = tmp_path / "r.json"
    assert main(["annotate", str(ct_path), "--recist-ijk", flat, "--json", str(out), "--top-k", "0"]) == 0
    assert "from RECIST long axis" in capsys.readouterr().out
    (read,) = read_json_report(out)
    np.testing.assert_allclose(read.location.recist_ij, long_axis)
    np.testing.assert_allclose(read.location.box_ijk, recist.box_ijk()[:4], atol=1e-6)
