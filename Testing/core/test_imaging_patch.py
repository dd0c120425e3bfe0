"""LesaNet patches: values at the right LPS positions, orientation independence, boxes, errors, real liver."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import shared_file

from LesaNetCore.errors import LesaNetError
from LesaNetCore.imaging.patch import extract_patch, normalize_patch, patch_from_slices, window_hu
from LesaNetCore.imaging.readers import read_volume
from LesaNetCore.imaging.volume import Volume

# HU = a.x + b.y + c.z + d (LPS mm) stays inside the window [-1024, 3071] over the test volumes.
_COEFF = np.array([2.0, -3.0, 7.0])
_OFFSET = 600.0


def _linear_volume(spacing, direction=None, shape_ijk=None, origin=(0.0, 0.0, 0.0)) -> Volume:
    """A volume whose HU is the linear function of the LPS position of each voxel centre."""
    direction = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
    if shape_ijk is None:
        inplane = int(np.ceil(130 / min(spacing[:2]))) + 2
        shape_ijk = (inplane, inplane, 2 * int(np.ceil(5 / spacing[2])) + 3)
    i, j, k = np.meshgrid(*[np.arange(n, dtype=float) for n in shape_ijk], indexing="ij")
    ijk = np.stack([i, j, k], axis=-1)
    lps = ijk * np.asarray(spacing) @ direction.T + np.asarray(origin)
    hu = lps @ _COEFF + _OFFSET
    voxels = np.transpose(hu, (2, 1, 0)).astype(np.float32)  # (I, J, K) -> (K, J, I)
    return Volume(voxels, tuple(spacing), origin, direction)


def _expected_grey(center) -> np.ndarray:
    """Grey levels of the linear function at the patch pixels, built independently of the code under test."""
    steps = np.arange(120) - 59.5
    x = center[0] + steps[None, None, :]
    y = center[1] + steps[None, :, None]
    z = center[2] + np.array([-2.0, 0.0, 2.0])[:, None, None]
    hu = _COEFF[0] * x + _COEFF[1] * y + _COEFF[2] * z + _OFFSET
    return (hu + 1024.0) / 4095.0 * 255.0


@pytest.mark.parametrize("inplane", [0.5, 1.0, 1.5])
@pytest.mark.parametrize("interval", [1.0, 2.0, 2.5, 5.0])
def test_patch_pixels_equal_the_value_at_their_lps_position(inplane, interval):
    volume = _linear_volume((inplane, inplane * 1.1, interval))
    size_i, size_j, size_k = volume.size_ijk
    key = size_k // 2
    ci, cj = (size_i - 1) / 2, (size_j - 1) / 2
    patch = extract_patch(volume, box_ijk=(ci - 6, cj - 4, ci + 6, cj + 4, key))
    center = volume.ijk_to_lps([ci, cj, key])
    np.testing.assert_allclose(patch.center_lps, center, atol=1e-9)
    assert patch.image.shape == (3, 120, 120) and patch.image.dtype == np.float32
    assert np.abs(patch.image - _expected_grey(center)).max() < 1.0
    # The box is 12 voxels wide and 8 high, in 1 mm patch pixels, centred on 59.5.
    np.testing.assert_allclose(
        patch.box, [59.5 - 6 * inplane, 59.5 - 4 * inplane * 1.1, 59.5 + 6 * inplane, 59.5 + 4 * inplane * 1.1],
        atol=1e-4,
    )


def test_linear_patch_in_an_oblique_volume_with_box_lps():
    q, r = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))
    direction = q * np.sign(np.diag(r))
    volume = _linear_volume((1.0, 1.0, 1.0), direction, shape_ijk=(40, 40, 40), origin=(-5.0, 3.0, 2.0))
    center = volume.ijk_to_lps([19.5, 19.5, 19.5])
    box = (center[0] - 3, center[1] - 2, center[0] + 3, center[1] + 2, center[2])
    patch = extract_patch(volume, box_lps=box)
    # Inside the volume the trilinear interpolation of a linear function is exact.
    inside = np.ones((3, 120, 120), bool)
    inside[:, :, :] = False
    inside[:, 50:70, 50:70] = True
    assert np.abs(patch.image - _expected_grey(center))[inside].max() < 1.0
    np.testing.assert_allclose(patch.box, [56.5, 57.5, 62.5, 61.5], atol=1e-6)


def test_border_is_replicated_and_slices_clamped():
    volume = _linear_volume((1.0, 1.0, 2.0), shape_ijk=(30, 30, 3))
    patch = extract_patch(volume, box_ijk=(10, 10, 14, 14, 0))
    # Left of the volume (x < 0) every column repeats column I = 0; below slice 0 the -2 mm channel repeats it.
    corner = volume.voxels[0, 0, 0]
    assert patch.image[0, 0, 0] == pytest.approx(window_hu(np.float32(corner)), abs=1e-3)
    np.testing.assert_allclose(patch.image[0], patch.image[1], atol=1e-4)
    assert np.all(np.diff(patch.image[1, 60, :40]) >= 0)


def _mask_volume(volume: Volume, mask: np.ndarray) -> Volume:
    return Volume(np.where(mask, 3071.0, -1024.0).astype(np.float32), volume.spacing, volume.origin, volume.direction)


def _reoriented(volume: Volume, box_ijk) -> list[tuple[Volume, tuple]]:
    """The same anatomy stored four other ways, with the same box in each one's own indices."""
    voxels = volume.voxels
    size_i, size_j, size_k = volume.size_ijk
    i1, j1, i2, j2, k = box_ijk
    d = volume.direction
    s = volume.spacing
    out = []
    # In-plane flips: RAS-like <-> LPS-like storage.
    flipped = Volume(voxels[:, ::-1, ::-1], s, tuple(volume.ijk_to_lps([size_i - 1, size_j - 1, 0])),
                     d @ np.diag([-1.0, -1.0, 1.0]))
    out.append((flipped, (size_i - 1 - i2, size_j - 1 - j2, size_i - 1 - i1, size_j - 1 - j1, k)))
    # Reversed slice order.
    reversed_k = Volume(voxels[::-1], s, tuple(volume.ijk_to_lps([0, 0, size_k - 1])), d @ np.diag([1.0, 1.0, -1.0]))
    out.append((reversed_k, (i1, j1, i2, j2, size_k - 1 - k)))
    # Rows and columns swapped (I <-> J).
    swapped = Volume(voxels.transpose(0, 2, 1), (s[1], s[0], s[2]), volume.origin, d[:, [1, 0, 2]])
    out.append((swapped, (j1, i1, j2, i2, k)))
    return out


@pytest.mark.shared_data
def test_liver_patch_from_the_real_ct_and_label_map(tmp_path):
    ct_path = shared_file("ct/abdomen_pelvis_ct.nii.gz")
    labels = json.loads(shared_file("ct/label_maps_total_v1_v2.json").read_text())["v1_commit_5de6e4d"]
    liver = int(next(key for key, name in labels.items() if name == "liver"))
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_file("ct/abdomen_pelvis_seg_v1.nii.gz"))))
    volume = read_volume(ct_path)
    key = int(np.bincount(np.nonzero(seg == liver)[0]).argmax())
    rows, cols = np.nonzero(seg[key] == liver)
    # A 21 x 21 voxel box centred on the liver voxel farthest from the organ's edge on that slice.
    from scipy.ndimage import distance_transform_edt

    depth = distance_transform_edt(seg[key] == liver)
    cj, ci = np.unravel_index(int(depth.argmax()), depth.shape)
    box = (ci - 10, cj - 10, ci + 10, cj + 10, key)
    patch = extract_patch(volume, box_ijk=box)
    liver_hu = volume.voxels[key][seg[key] == liver]
    centre_hu = patch.image[1, 59:61, 59:61].mean() * 4095 / 255 - 1024
    assert 20 < centre_hu < 100, centre_hu
    assert abs(centre_hu - np.median(liver_hu)) < 25
    # 21 voxels of 3 mm = 60 mm between the outer voxel centres.
    np.testing.assert_allclose(patch.box, [29.5, 29.5, 89.5, 89.5], atol=1e-4)
    assert patch.key_slice == key and patch.box_ijk == tuple(float(v) for v in box[:4])
    # This file is stored RAS-like (direction diag(-1, -1, 1)); the patch must still be in display orientation.
    # Around the aorta, the liver (patient's right) lies on the left of the patch and the spine below it.
    aorta_j, aorta_i = (int(round(v)) for v in np.argwhere(seg[key] == 7).mean(axis=0))
    around_aorta = (aorta_i - 3, aorta_j - 3, aorta_i + 3, aorta_j + 3, key)
    liver_mask = extract_patch(_mask_volume(volume, seg == liver), box_ijk=around_aorta).image[1] > 127
    spine_mask = extract_patch(_mask_volume(volume, (seg >= 18) & (seg <= 23)), box_ijk=around_aorta).image[1] > 127
    assert liver_mask[:, :60].sum() > 3 * liver_mask[:, 60:].sum()
    assert spine_mask[60:].sum() > 3 * spine_mask[:60].sum()
    assert liver_mask.sum() > 100 and spine_mask.sum() > 100

    # The same CT stored LPS-like, with reversed slices or swapped axes, and saved as NIfTI, gives this patch.
    for other, other_box in _reoriented(volume, box):
        np.testing.assert_allclose(extract_patch(other, box_ijk=other_box).image, patch.image, atol=1e-3)
    for n, (other, _) in enumerate(_reoriented(volume, box)):
        path = tmp_path / f"variant{n}.nii.gz"
        sitk.WriteImage(other.to_sitk(), str(path))
        again = read_volume(path)
        box_lps = (*patch.center_lps[:2] - 30, *patch.center_lps[:2] + 30, patch.center_lps[2])
        lps_patch = extract_patch(again, box_lps=box_lps)
        np.testing.assert_allclose(lps_patch.image, patch.image, atol=1e-2)
        np.testing.assert_allclose(lps_patch.box, patch.box, atol=1e-3)


def test_flipped_volume_gives_the_same_patch_on_asymmetric_data():
    rng = np.random.default_rng(7)
    volume = Volume(rng.uniform(-1000, 1500, size=(9, 50, 60)).astype(np.float32), (0.8, 0.9, 1.5),
                    (12.0, -40.0, 7.0), np.diag([-1.0, -1.0, 1.0]))
    box = (20.0, 15.0, 31.0, 30.0, 4)
    reference = extract_patch(volume, box_ijk=box)
    assert reference.image.std() > 1.0
    for other, other_box in _reoriented(volume, box):
        got = extract_patch(other, box_ijk=other_box)
        np.testing.assert_allclose(got.image, reference.image, atol=1e-3)
        np.testing.assert_allclose(got.box, reference.box, atol=1e-4)
        np.testing.assert_allclose(got.center_lps, reference.center_lps, atol=1e-9)


def test_a_box_larger_than_the_field_is_clipped_to_the_patch():
    volume = _linear_volume((1.0, 1.0, 2.0), shape_ijk=(300, 300, 5))
    patch = extract_patch(volume, box_ijk=(10, 100, 250, 140, 2))
    np.testing.assert_allclose(patch.box, [0.0, 39.5, 119.0, 79.5], atol=1e-6)


def test_patch_from_slices_interpolates_neighbours_like_the_reference():
    rng = np.random.default_rng(0)
    slices = rng.uniform(-200, 300, size=(5, 64, 64)).astype(np.float32)
    # Interval 2.5 mm: -2 mm is 0.8 of the way from the key slice (index 2) to index 1.
    patch = patch_from_slices(slices, (1.0, 1.0), 2.5, 2, (20.0, 20.0, 40.0, 40.0))
    reference_prev = 0.8 * slices[1] + 0.2 * slices[2]
    reference_next = 0.8 * slices[3] + 0.2 * slices[2]
    # With 1 mm pixels and the box centre at 30.0, patch column c samples image column c - 29.5.
    for channel, hu in zip(range(3), (reference_prev, slices[2], reference_next), strict=True):
        grey = window_hu(hu)
        expected = (grey[10, 0:-1] + grey[10, 1:]) / 2  # halfway between columns
        expected = (expected + (grey[11, 0:-1] + grey[11, 1:]) / 2) / 2  # and between rows 10 and 11
        np.testing.assert_allclose(patch.image[channel, 40, 30:92], expected[0:62], atol=1e-3)
    # A missing interval uses the key slice in all three channels.
    flat = patch_from_slices(slices, (1.0, 1.0), float("nan"), 2, (20.0, 20.0, 40.0, 40.0))
    np.testing.assert_allclose(flat.image[0], flat.image[1])
    np.testing.assert_allclose(flat.image[2], patch.image[1])


def test_normalize_patch_subtracts_the_mean_and_scales():
    image = np.array([[[50.0, 305.0, 0.0]]], np.float32)
    np.testing.assert_allclose(normalize_patch(image), [[[0.0, 1.0, -50 / 255]]], rtol=1e-6)
    assert normalize_patch(image).dtype == np.float32


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"box_ijk": (20, 10, 10, 20, 2)}, "inverted"),
        ({"box_ijk": (10, 20, 20, 10, 2)}, "inverted"),
        ({"box_ijk": (10, 10, 10, 20, 2)}, "empty"),
        ({"box_lps": (5.0, 5.0, 9.0, 5.0, 4.0)}, "empty"),
        ({"box_lps": (9.0, 5.0, 5.0, 8.0, 4.0)}, "inverted"),
        ({"box_ijk": (10, 10, 20, 45, 2)}, "inside the volume"),
        ({"box_ijk": (10, 10, 20, 20, 9)}, "inside the volume"),
        ({"box_ijk": (10, 10, 20, 20, 2.5)}, "whole slice"),
        ({"box_lps": (-30.0, 5.0, -20.0, 8.0, 4.0)}, "inside the volume"),
        ({"box_lps": (5.0, 5.0, 9.0, 8.0, 400.0)}, "inside the volume"),
        ({"box_ijk": (1, 2, 3)}, "5 finite numbers"),
        ({"box_ijk": (1, 2, 3, float("nan"), 1)}, "5 finite numbers"),
        ({}, "exactly one"),
        ({"box_ijk": (1, 1, 5, 5, 1), "box_lps": (1, 1, 5, 5, 1)}, "exactly one"),
    ],
)
def test_bad_boxes_name_the_argument_and_value(kwargs, fragment):
    volume = _linear_volume((1.0, 1.0, 2.0), shape_ijk=(40, 40, 5))
    with pytest.raises(LesaNetError, match=fragment) as info:
        extract_patch(volume, **kwargs)
    assert ("box_ijk" in str(info.value)) or ("box_lps" in str(info.value))


def test_box_ijk_needs_axial_slices():
    sagittal = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # K along x
    volume = Volume(np.zeros((10, 10, 10), np.float32), (1, 1, 1), (0, 0, 0), sagittal)
    with pytest.raises(LesaNetError, match="axial"):
        extract_patch(volume, box_ijk=(2, 2, 5, 5, 3))
    patch = extract_patch(volume, box_lps=(3.0, 2.0, 6.0, 5.0, 4.0))
    assert patch.key_slice == 4  # K runs along x here: x = 4.5 -> k = 4.5, rounded half to even
