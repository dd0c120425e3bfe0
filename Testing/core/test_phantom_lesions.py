"""Phantom lesions: look follows the labels, centres lie in their body part, RECIST axes and boxes hold them."""

from __future__ import annotations

import numpy as np
import pytest

from LesaNetCore.phantom import PHANTOM_ATTRIBUTES, PHANTOM_BODYPARTS, PHANTOM_TYPES
from LesaNetCore.phantom import anatomy as an
from LesaNetCore.phantom.lesions import background_hu, paint_lesion, recist, sample_lesion

_EXPECTED_LABEL = {
    "right upper lobe": {an.RUL}, "right mid lung": {an.RML}, "right lower lobe": {an.RLL},
    "left upper lung": {an.LUL}, "left lower lobe": {an.LLL}, "liver": {an.LIVER}, "spleen": {an.SPLEEN},
    "right kidney": {an.KIDNEY_R}, "left kidney": {an.KIDNEY_L}, "adrenal gland": {an.ADRENAL},
    "pancreas": {an.PANCREAS}, "spine": {an.SPINE}, "rib": {an.RIB}, "pelvic bone": {an.PELVIC_BONE},
    "chest wall": {an.MUSCLE}, "soft tissue": {an.FAT, an.MUSCLE},
}


@pytest.fixture(scope="module")
def lesions():
    rng = np.random.default_rng(11)
    body = an.make_patient(rng, "F")
    out = []
    for _round in range(3):
        for part in PHANTOM_BODYPARTS:
            out.append(sample_lesion(body, rng, part, 0.8))
    return body, out


def test_terms_are_the_documented_ones(lesions):
    _, specs = lesions
    for spec in specs:
        assert spec.bodypart in PHANTOM_BODYPARTS
        assert spec.type in PHANTOM_TYPES
        assert set(spec.attributes) <= set(PHANTOM_ATTRIBUTES)
        assert not {"hypoattenuation", "hyperattenuation"} <= set(spec.attributes)
        assert not {"sclerotic", "lytic"} <= set(spec.attributes)
        assert ("tiny" in spec.attributes) == (spec.diameter_mm <= 6.0)


def test_centre_lies_in_its_body_part(lesions):
    body, specs = lesions
    for spec in specs:
        if spec.bodypart not in _EXPECTED_LABEL:
            continue
        x, y, z = spec.center
        _, label = an.render_anatomy(body, np.array([x]), np.array([y]), z)
        assert int(label[0, 0]) in _EXPECTED_LABEL[spec.bodypart], spec.bodypart


def _centre_hu(spec, background):
    """HU at the centre pixel and the mean over the inner 40% of the radius (inside any rim)."""
    grid = (np.arange(201) - 100) * 0.5
    hu = np.full((201, 201), background, dtype=np.float32)
    painted = paint_lesion(hu, grid + spec.center[0], grid + spec.center[1], spec.center[2], spec)
    assert painted is not None
    inner = np.hypot(grid[:, None], grid[None, :]) <= 0.4 * min(spec.radii[:2])
    return float(hu[100, 100]), float(hu[inner].mean())


def test_centre_hu_follows_attributes(lesions):
    _, specs = lesions
    checked = set()
    for spec in specs:
        bg = background_hu(spec.bodypart, 0.8)
        centre, inner = _centre_hu(spec, bg)
        attrs = set(spec.attributes)
        if spec.type in ("cyst", "kidney cyst"):
            assert 0 <= centre <= 20
            checked.add("cyst")
        if "calcified" in attrs:
            assert centre > 200
            checked.add("calcified")
        if "cavitary" in attrs:
            assert centre < -500
        if "sclerotic" in attrs:
            assert centre > 600
            checked.add("sclerotic")
        if "lytic" in attrs:
            assert centre < 100
            checked.add("lytic")
        if "hypoattenuation" in attrs and spec.type not in ("cyst", "kidney cyst") and "calcified" not in attrs:
            assert inner < bg - 15
            checked.add("hypo")
        if "hyperattenuation" in attrs and "calcified" not in attrs:
            assert inner > bg + 15
    assert {"cyst", "hypo"} <= checked and checked & {"sclerotic", "lytic"}


def test_recist_axes_of_an_ellipse():
    yy, xx = np.mgrid[0:60, 0:60]
    mask = ((xx - 30) / 20.0) ** 2 + ((yy - 30) / 8.0) ** 2 <= 1.0
    (x1, y1, x2, y2), (x3, y3, x4, y4) = recist(mask)
    assert abs(np.hypot(x2 - x1, y2 - y1) - 40) <= 2
    assert abs(np.hypot(x4 - x3, y4 - y3) - 16) <= 2
    assert abs((x2 - x1) * (x4 - x3) + (y2 - y1) * (y4 - y3)) < 1e-6 + 3 * 16  # roughly perpendicular
