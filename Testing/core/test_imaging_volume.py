"""Volume geometry: exact IJK <-> LPS for any orientation, agreeing with SimpleITK; RAS helpers; validation."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import shared_file

from LesaNetCore.errors import LesaNetError
from LesaNetCore.imaging.readers import read_volume
from LesaNetCore.imaging.volume import Volume


def _rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


@pytest.mark.shared_data
def test_real_ct_round_trip_agrees_with_simpleitk():
    path = shared_file("ct/abdomen_pelvis_ct.nii.gz")
    volume = read_volume(path)
    image = sitk.ReadImage(str(path))
    assert volume.size_ijk == image.GetSize()
    rng = np.random.default_rng(1)
    ijk = rng.uniform(-5, np.asarray(image.GetSize()) + 5, size=(200, 3))
    lps = volume.ijk_to_lps(ijk)
    expected = np.array([image.TransformContinuousIndexToPhysicalPoint(tuple(p)) for p in ijk])
    np.testing.assert_allclose(lps, expected, atol=1e-6)
    np.testing.assert_allclose(volume.lps_to_ijk(lps), ijk, atol=1e-9)
    # Voxel values are the file's, in HU.
    assert np.array_equal(volume.voxels, sitk.GetArrayFromImage(image).astype(np.float32))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_oblique_round_trip_matches_simpleitk(seed):
    direction = _rotation(seed)
    volume = Volume(np.zeros((4, 5, 6), np.float32), (0.7, 1.3, 2.5), (-10.0, 4.0, 99.0), direction)
    image = volume.to_sitk()
    ijk = np.random.default_rng(seed).uniform(0, 6, size=(50, 3))
    expected = np.array([image.TransformContinuousIndexToPhysicalPoint(tuple(p)) for p in ijk])
    np.testing.assert_allclose(volume.ijk_to_lps(ijk), expected, atol=1e-9)
    np.testing.assert_allclose(volume.lps_to_ijk(expected), ijk, atol=1e-9)


def test_from_ras_flips_x_and_y():
    voxels = np.zeros((3, 4, 5), np.float32)
    volume = Volume.from_ras(voxels, (1.0, 2.0, 3.0), (10.0, 20.0, 30.0), np.eye(3))
    assert volume.origin == (-10.0, -20.0, 30.0)
    np.testing.assert_array_equal(volume.direction, np.diag([-1.0, -1.0, 1.0]))
    # Voxel (1, 1, 1) is 1 mm along R (= -x LPS), 2 mm along A (= -y LPS), 3 mm superior.
    np.testing.assert_allclose(volume.ijk_to_lps([1, 1, 1]), [-11.0, -22.0, 33.0])


def test_ijk_to_ras_matrix_round_trip():
    volume = Volume(np.zeros((3, 4, 5), np.float32), (0.5, 0.8, 2.0), (1.0, 2.0, 3.0), _rotation(5))
    matrix = volume.ijk_to_ras_matrix()
    again = Volume.from_ijk_to_ras(volume.voxels, matrix)
    np.testing.assert_allclose(again.spacing, volume.spacing)
    np.testing.assert_allclose(again.origin, volume.origin)
    np.testing.assert_allclose(again.direction, volume.direction, atol=1e-12)
    ras = matrix @ np.array([2.0, 1.0, 1.0, 1.0])
    lps = volume.ijk_to_lps([2.0, 1.0, 1.0])
    np.testing.assert_allclose(ras[:3], [-lps[0], -lps[1], lps[2]])


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"voxels": np.zeros((4, 5), np.float32)}, "must be a 3D array"),
        ({"voxels": np.full((2, 2, 2), np.nan, np.float32)}, "must all be finite"),
        ({"spacing": (1.0, 0.0, 1.0)}, "spacing"),
        ({"spacing": (1.0, 1.0)}, "spacing"),
        ({"direction": np.zeros((3, 3))}, "direction"),
        ({"origin": (0.0, np.inf, 0.0)}, "origin"),
    ],
)
def test_invalid_volumes_are_rejected(kwargs, fragment):
    args = {"voxels": np.zeros((2, 3, 4), np.float32), "spacing": (1.0, 1.0, 1.0), "origin": (0.0, 0.0, 0.0),
            "direction": np.eye(3), "source": "test.nii"}
    args.update(kwargs)
    with pytest.raises(LesaNetError, match=fragment) as info:
        Volume(**args)
    assert "test.nii" in str(info.value)


def test_voxels_become_float32_contiguous():
    volume = Volume(np.arange(24, dtype=np.int16).reshape(2, 3, 4)[:, ::-1], (1, 1, 1), (0, 0, 0), np.eye(3))
    assert volume.voxels.dtype == np.float32 and volume.voxels.flags.c_contiguous
    assert volume.voxels[0, 0, 0] == 8.0
