"""``lesanet patch``: box options (negative values both ways), npz contents, preview, no clobbering."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from LesaNetCore.cli import main
from LesaNetCore.imaging.patch import extract_patch
from LesaNetCore.imaging.readers import read_volume


@pytest.fixture
def ct_file(tmp_path):
    rng = np.random.default_rng(0)
    hu = rng.integers(-1000, 1000, size=(12, 80, 90)).astype(np.int16)
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((1.2, 1.2, 2.5))
    image.SetOrigin((-150.0, -60.0, -20.0))
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(image, str(path))
    return path


def test_patch_with_box_lps_in_both_spellings(tmp_path, ct_file, capsys):
    out1, out2, png = tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "a.png"
    box = "-120.5,-40,-100,-20.5,-7.5"
    assert main(["patch", str(ct_file), "--box-lps", box, "--out", str(out1), "--png", str(png)]) == 0
    assert main(["patch", str(ct_file), f"--box-lps={box}", "--out", str(out2)]) == 0
    assert "key slice 5" in capsys.readouterr().out
    first, second = np.load(out1), np.load(out2)
    assert {"image", "box", "center_lps"} <= set(first.files)
    assert first["image"].shape == (3, 120, 120) and first["image"].dtype == np.float32
    np.testing.assert_array_equal(first["image"], second["image"])
    expected = extract_patch(read_volume(ct_file), box_lps=(-120.5, -40, -100, -20.5, -7.5))
    np.testing.assert_allclose(first["image"], expected.image)
    np.testing.assert_allclose(first["box"], [49.25, 49.75, 69.75, 69.25], atol=1e-4)
    np.testing.assert_allclose(first["center_lps"], [-110.25, -30.25, -7.5])
    preview = np.asarray(Image.open(png).convert("RGB"))
    assert preview.shape == (360, 360, 3)
    red = (preview[..., 0] == 255) & (preview[..., 1] == 0) & (preview[..., 2] == 0)
    rows, cols = np.nonzero(red)
    assert (cols.min(), rows.min(), cols.max(), rows.max()) == tuple(round(v * 3 + 1) for v in first["box"])


def test_patch_with_box_ijk_and_no_clobbering(tmp_path, ct_file, capsys):
    out = tmp_path / "p.npz"
    args = ["patch", str(ct_file), "--box-ijk", "20,30,40,45,6", "--out", str(out)]
    assert main(args) == 0
    before = out.read_bytes()
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main([*args, "--overwrite"]) == 0
    assert int(np.load(out)["key_slice"]) == 6


@pytest.mark.parametrize(
    ("box", "message"),
    [
        (["--box-ijk", "1,2,3"], "--box-ijk: must be five comma-separated numbers"),
        (["--box-ijk", "a,b,c,d,e"], "--box-ijk: must be five comma-separated numbers"),
        (["--box-ijk", "40,30,20,45,6"], "box_ijk: must not be inverted"),
        (["--box-lps", "500,0,510,10,0"], "box_lps: must lie inside the volume"),
    ],
)
def test_bad_boxes_give_clear_errors(tmp_path, ct_file, capsys, box, message):
    out = tmp_path / "p.npz"
    assert main(["patch", str(ct_file), *box, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_exactly_one_box_option_is_required(tmp_path, ct_file):
    with pytest.raises(SystemExit):
        main(["patch", str(ct_file), "--out", str(tmp_path / "p.npz")])
    with pytest.raises(SystemExit):
        main(["patch", str(ct_file), "--box-ijk", "1,1,5,5,1", "--box-lps", "1,1,5,5,1", "--out", "x.npz"])


def test_unreadable_volume_is_reported(tmp_path, capsys):
    bad = tmp_path / "bad.nii.gz"
    bad.write_text("nope")
    assert main(["patch", str(bad), "--box-ijk", "1,1,5,5,1", "--out", str(tmp_path / "p.npz")]) == 1
    assert "cannot be read" in capsys.readouterr().err
