"""Phantom anatomy: HU of the main tissues, orientation (DeepLesion/LPS), lobes and organs where they belong."""

from __future__ import annotations

import numpy as np
import pytest

from LesaNetCore.phantom import anatomy as an


@pytest.fixture(scope="module")
def body():
    return an.make_patient(np.random.default_rng(7), "M")


GRID = (np.arange(200) - 99.5) * 2.0


def _slice(body, t, contrast=0.0):
    return an.render_anatomy(body, GRID, GRID, body.z_of(t), contrast)


def test_plain_scan_tissue_hu(body):
    hu, label = _slice(body, 0.5)
    assert abs(np.median(hu[label == an.LIVER]) - 60) < 15
    assert abs(np.median(hu[label == an.FAT]) + 100) < 10
    assert abs(np.median(hu[label == an.MUSCLE]) - 45) < 10
    assert hu[label == an.SPINE].max() > 600          # cortex
    assert 150 < np.median(hu[label == an.SPINE]) < 400  # marrow dominates
    assert hu[label == an.OUTSIDE].max() == -1000
    hu, label = _slice(body, 0.43)
    assert abs(np.median(hu[label == an.SPLEEN]) - 50) < 15
    hu, label = _slice(body, 0.55)
    kidney = np.isin(label, (an.KIDNEY_R, an.KIDNEY_L))
    assert kidney.any() and abs(np.median(hu[kidney]) - 30) < 15


def test_contrast_enhances_organs_and_vessels(body):
    plain, label = _slice(body, 0.5, 0.0)
    enhanced, _ = _slice(body, 0.5, 1.0)
    liver = label == an.LIVER
    assert np.median(enhanced[liver]) - np.median(plain[liver]) > 30
    vessel = label == an.VESSEL
    assert np.median(enhanced[vessel]) > 150


def test_orientation_matches_deeplesion(body):
    """Columns run patient right -> left (+x), rows anterior -> posterior (+y): liver left in the image."""
    _, label = _slice(body, 0.45)
    ys, xs = np.nonzero(label == an.LIVER)
    assert GRID[xs].mean() < 0
    ys, xs = np.nonzero(label == an.SPLEEN)
    assert GRID[xs].mean() > 0
    ys, xs = np.nonzero(label == an.SPINE)
    assert GRID[ys].mean() > 0


def test_lungs_have_five_lobes_and_vessels(body):
    seen, with_vessels, with_lung = set(), 0, 0
    for t in np.linspace(0.05, 0.42, 12):
        hu, label = _slice(body, float(t), 0.8)
        lung = np.isin(label, an.LUNG_LABELS)
        if lung.any():
            assert -900 < np.median(hu[lung]) < -800
            with_lung += 1
            with_vessels += bool((hu[lung] > -200).any())
        seen |= set(np.unique(label[lung]).tolist())
        right = np.isin(label, (an.RUL, an.RML, an.RLL))
        if right.any():
            assert GRID[np.nonzero(right)[1]].max() < 0
    assert seen == set(an.LUNG_LABELS)
    assert with_vessels >= with_lung - 2


def test_pelvis_has_bones_and_bladder(body):
    _, label = _slice(body, 0.93)
    assert (label == an.PELVIC_BONE).any() and (label == an.BLADDER).any()


def test_probe_grid_agrees_with_full_grid(body):
    """Lesion placement renders tiny grids; they must see the same organs as the full slice."""
    hu, label = _slice(body, 0.45)
    j, i = 120, 70
    _, small = an.render_anatomy(body, GRID[i - 1:i + 2], GRID[j - 1:j + 2], body.z_of(0.45), 0.0)
    assert small[1, 1] == label[j, i]
