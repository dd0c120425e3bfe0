"""make_phantom_volume: one CT in memory with known lesions (the demo's on-the-fly phantom)."""

from __future__ import annotations

import numpy as np
import pytest

from LesaNetCore.errors import LesaNetError
from LesaNetCore.phantom import make_phantom_volume
from LesaNetCore.phantom.lesions import paint_lesion


@pytest.fixture(scope="module")
def volume():
    return make_phantom_volume(seed=4, region="abdomen", n_lesions=3, size=128, interval=5.0,
                               bodyparts=["liver", "right kidney", "spleen"])


def test_geometry(volume):
    vox, spacing, origin, direction, lesions = volume
    assert vox.dtype == np.float32 and vox.shape[1:] == (128, 128)
    assert spacing[2] == 5.0 and spacing[0] == spacing[1] > 2.0
    assert direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    assert vox.min() >= -1024 and vox.max() <= 3071
    assert [lesion.spec.bodypart for lesion in lesions] == ["liver", "right kidney", "spleen"]


def test_boxes_hold_their_lesions(volume):
    vox, spacing, origin, _, lesions = volume
    x = origin[0] + np.arange(128) * spacing[0]
    y = origin[1] + np.arange(128) * spacing[1]
    for lesion in lesions:
        i1, j1, i2, j2, k = lesion.box_ijk
        assert lesion.key_index == k + 1
        assert abs(origin[2] - k * spacing[2] - lesion.center_lps[2]) < 1e-6  # key slice cuts the centre
        canvas = np.zeros((128, 128), dtype=np.float32)
        window, weight = paint_lesion(canvas, x, y, lesion.center_lps[2], lesion.spec)
        full = np.zeros((128, 128), dtype=np.float32)
        full[window] = weight
        rows, cols = np.nonzero(full >= 0.5)
        assert rows.min() >= j1 and rows.max() <= j2 and cols.min() >= i1 and cols.max() <= i2
        assert lesion.box_lps[0] == pytest.approx(x[i1]) and lesion.box_lps[3] == pytest.approx(y[j2])


def test_reproducible_and_seeded():
    a = make_phantom_volume(seed=2, n_lesions=1, size=64, interval=10.0)
    b = make_phantom_volume(seed=2, n_lesions=1, size=64, interval=10.0)
    c = make_phantom_volume(seed=3, n_lesions=1, size=64, interval=10.0)
    assert np.array_equal(a[0], b[0])
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])


def test_bad_arguments():
    with pytest.raises(LesaNetError, match="region: must be one of"):
        make_phantom_volume(region="head")
    with pytest.raises(LesaNetError, match="bodyparts"):
        make_phantom_volume(region="pelvis", n_lesions=1, bodyparts=["right upper lobe"])


def test_every_body_part_is_reachable():
    from LesaNetCore.phantom import PHANTOM_BODYPARTS
    from LesaNetCore.phantom.volume import REGIONS, sites_for_region

    reachable = set().union(*(sites_for_region(region) for region in REGIONS))
    assert reachable == set(PHANTOM_BODYPARTS)
    assert "mediastinum lymph node" not in sites_for_region("pelvis")
