"""The axis-aligned fast path of patch sampling equals the general point-by-point path."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from LesaNetCore.imaging import patch as patch_module
from LesaNetCore.imaging.patch import extract_patch, sample_patch
from LesaNetCore.imaging.volume import Volume

_TOL = 1e-4  # grey levels
_PERMUTATIONS = list(itertools.permutations(range(3)))
_SIGNS = list(itertools.product((1.0, -1.0), repeat=3))


def _signed_permutation(order, signs) -> np.ndarray:
    """Direction whose column c is ``signs[c]`` times the LPS unit vector ``order[c]``."""
    direction = np.zeros((3, 3))
    for column, (row, sign) in enumerate(zip(order, signs, strict=True)):
        direction[row, column] = sign
    return direction


def _random_volume(rng, direction, shape_kji=None) -> Volume:
    shape_kji = tuple(rng.integers(2, 40, size=3)) if shape_kji is None else shape_kji
    # Values beyond the window on both sides, so the clip between the K and the in-plane steps matters.
    voxels = rng.uniform(-2000.0, 4000.0, size=shape_kji).astype(np.float32)
    spacing = tuple(rng.uniform(0.3, 3.0, size=3))
    origin = tuple(rng.uniform(-200.0, 200.0, size=3))
    return Volume(voxels, spacing, origin, direction)


def _corners_and_outside(volume: Volume, rng) -> list[np.ndarray]:
    """Centres on every corner of the volume, at the middle of each face, and a few mm outside it."""
    size = np.asarray(volume.size_ijk, dtype=float) - 1.0
    centres = []
    for corner in itertools.product((0.0, 1.0), repeat=3):
        centres.append(volume.ijk_to_lps(np.asarray(corner) * size))
    for axis in range(3):
        for end in (0.0, 1.0):
            ijk = size / 2.0
            ijk[axis] = end * size[axis]
            centres.append(volume.ijk_to_lps(ijk))
    outside = [c + rng.uniform(-6.0, 6.0, size=3) for c in centres]
    inside = [volume.ijk_to_lps(rng.uniform(0.0, 1.0, size=3) * size) for _ in range(4)]
    return centres + outside + inside


def _max_difference(volume: Volume, centres) -> float:
    axes = patch_module._aligned_axes(volume)
    assert axes is not None
    worst = 0.0
    for center in centres:
        fast = patch_module._sample_aligned(volume, np.asarray(center, dtype=float), axes)
        general = patch_module._sample_general(volume, np.asarray(center, dtype=float))
        assert fast.shape == general.shape == (3, 120, 120)
        assert fast.dtype == np.float32 and fast.flags.c_contiguous
        worst = max(worst, float(np.abs(fast - general).max()))
    return worst


@pytest.mark.parametrize("order", _PERMUTATIONS)
@pytest.mark.parametrize("signs", _SIGNS)
def test_fast_path_equals_general_path_for_flipped_and_permuted_axes(order, signs):
    rng = np.random.default_rng(8 * _PERMUTATIONS.index(order) + _SIGNS.index(signs))
    volume = _random_volume(rng, _signed_permutation(order, signs))
    assert _max_difference(volume, _corners_and_outside(volume, rng)) <= _TOL


@pytest.mark.parametrize("seed", range(6))
def test_fast_path_equals_general_path_on_larger_anisotropic_volumes(seed):
    rng = np.random.default_rng(1000 + seed)
    order = _PERMUTATIONS[seed % 6]
    signs = _SIGNS[rng.integers(len(_SIGNS))]
    shape = (int(rng.integers(3, 30)), int(rng.integers(60, 200)), int(rng.integers(60, 200)))
    volume = _random_volume(rng, _signed_permutation(order, signs), shape_kji=shape)
    assert _max_difference(volume, _corners_and_outside(volume, rng)) <= _TOL


def test_fast_path_with_fine_spacing_skips_voxels():
    # 0.25 mm in-plane: the 1 mm patch uses one voxel in four, so the block is narrowed to the distinct indices.
    rng = np.random.default_rng(7)
    voxels = rng.uniform(-1500.0, 3500.0, size=(12, 600, 600)).astype(np.float32)
    volume = Volume(voxels, (0.25, 0.2, 1.0), (0.0, 0.0, 0.0), _signed_permutation((1, 0, 2), (-1.0, 1.0, -1.0)))
    assert _max_difference(volume, _corners_and_outside(volume, rng)) <= _TOL


def test_fast_path_on_single_slice_and_thin_volumes():
    rng = np.random.default_rng(3)
    for shape in [(1, 50, 40), (2, 1, 30), (5, 7, 1), (1, 1, 1)]:
        volume = _random_volume(rng, _signed_permutation((2, 0, 1), (1.0, -1.0, 1.0)), shape_kji=shape)
        assert _max_difference(volume, _corners_and_outside(volume, rng)) <= _TOL


def test_sample_patch_takes_the_fast_path_only_when_axis_aligned(monkeypatch):
    rng = np.random.default_rng(11)
    aligned = _random_volume(rng, _signed_permutation((0, 2, 1), (1.0, 1.0, -1.0)))
    angle = np.deg2rad(10.0)
    oblique = Volume(
        aligned.voxels, aligned.spacing, aligned.origin,
        np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]]),
    )
    # Float noise in the direction (as from DICOM cosines) keeps the fast path.
    noisy = Volume(aligned.voxels, aligned.spacing, aligned.origin, aligned.direction + 1e-15)
    assert patch_module._aligned_axes(aligned) == (0, 2, 1)
    assert patch_module._aligned_axes(noisy) == (0, 2, 1)
    assert patch_module._aligned_axes(oblique) is None

    calls = []
    original = patch_module._sample_aligned
    monkeypatch.setattr(patch_module, "_sample_aligned", lambda *a: calls.append(1) or original(*a))
    center = aligned.ijk_to_lps(np.asarray(aligned.size_ijk) / 2.0)
    sample_patch(aligned, center)
    assert calls == [1]
    expected = patch_module._sample_general(oblique, center)
    np.testing.assert_array_equal(sample_patch(oblique, center), expected)
    assert calls == [1]


def test_extract_patch_matches_general_path_on_a_flipped_axial_volume():
    rng = np.random.default_rng(5)
    voxels = rng.uniform(-1100.0, 1600.0, size=(20, 180, 200)).astype(np.float32)
    # RAS-stored axial volume with reversed slice order, as a NIfTI often is.
    volume = Volume(voxels, (0.8, 0.75, 2.5), (100.0, 90.0, -40.0), np.diag([-1.0, -1.0, -1.0]))
    patch = extract_patch(volume, box_ijk=(30.2, 40.7, 52.9, 61.1, 3))
    general = patch_module._sample_general(volume, patch.center_lps)
    assert np.abs(patch.image - general).max() <= _TOL
