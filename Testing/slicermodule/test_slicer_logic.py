"""The Slicer logic on real MRML nodes (slicer-core wheel): geometry, annotation in the worker process, table node,
lesion name, exports. (The module's GUI on Slicer's real Python layer: ``test_slicer_widget.py``.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
import slicer_bootstrap as sb

_REASON = sb.slicerCoreAvailable()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=str(_REASON))


appFixture, checkpointFixture, logicFixture = sb.sharedFixtures()


def _smooth_volume(shape, seed=0):
    """Random but smooth HU values, so a mirrored or shifted patch differs clearly from the right one."""
    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    hu = np.zeros(shape, np.float32)
    for _ in range(6):
        a, b, c = rng.uniform(0.05, 0.4, 3)
        hu += rng.uniform(100, 400) * np.sin(a * i + b * j + c * k + rng.uniform(0, 6))
    return hu - 300


def _rotation_z(degrees, translation=(0.0, 0.0, 0.0)):
    t = np.radians(degrees)
    m = np.eye(4)
    m[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    m[:3, 3] = translation
    return m


def _annotate_reference(checkpoint, voxels, ijk_to_world_ras, box_lps):
    """The core alone, from numpy geometry that never went through MRML."""
    from LesaNetCore.annotate import Annotator
    from LesaNetCore.imaging import Volume

    volume = Volume.from_ijk_to_ras(voxels, ijk_to_world_ras, source="reference")
    return Annotator(checkpoint, index=False, device="cpu").annotate(volume, box_lps=box_lps)


def _assert_same(result, reference):
    np.testing.assert_allclose(result.patch_image, reference.patch_image, atol=1e-3)
    np.testing.assert_allclose([x.score for x in result.labels], [x.score for x in reference.labels], atol=1e-5)
    assert result.accepted == reference.accepted


def test_axis_aligned_roi_maps_to_ijk_box(app):
    from LesaNetSlicerLib import geometry

    ijk_to_ras = np.diag([-1.0, -1.0, 2.0, 1.0])
    ijk_to_ras[:3, 3] = [10, 20, 30]
    node = sb.addVolume(app.scene, np.zeros((5, 6, 7), np.float32), ijk_to_ras, "tiny")
    roi = sb.addRoi(app.scene, (8, 17, 34), (4, 4, 1))
    box = geometry.lesionInput(geometry.geometryFromNode(node), roi)
    # x = 10 - i and y = 20 - j: the min/max must be taken after mapping, or i1 > i2.
    assert box.kwargs == {"box_ijk": (0.0, 1.0, 4.0, 5.0, 2.0)} and box.description == "box 'ROI'"


def test_rotated_roi_corners_follow_its_orientation(app):
    from LesaNetSlicerLib import geometry

    quarter = _rotation_z(90)
    roi = sb.addRoi(app.scene, (0, 0, 0), (4, 2, 1), objectToNode=quarter)
    corners = geometry.roiCornersWorldRas(roi)
    assert np.allclose(corners.min(axis=0), [-1, -2, -0.5]) and np.allclose(corners.max(axis=0), [1, 2, 0.5])


@pytest.mark.parametrize("case", ["permuted", "flipped_axial"])
def test_logic_matches_core_under_transforms(app, logic, checkpoint, case):
    """DONE-WHEN: ROI in RAS under a parent transform, volume with a non-identity direction and its own parent
    transform -> the same patch and labels as the core with the equivalent box_lps."""
    voxels = _smooth_volume((30, 40, 50) if case == "permuted" else (12, 60, 70), seed=3)
    ijk_to_ras = np.eye(4)
    if case == "permuted":
        # I -> -z (feet), J -> +x (left in RAS is -x: so +R), K -> -y (anterior): a non-axial stored volume.
        ijk_to_ras[:3, :3] = np.array([[0, 1.2, 0], [0, 0, -0.9], [-2.0, 0, 0]])
    else:
        ijk_to_ras[:3, :3] = np.diag([-0.8, 0.8, -2.5])  # x and z flipped, axial slices
    ijk_to_ras[:3, 3] = [-15.0, 12.0, 40.0]
    volume_node = sb.addVolume(app.scene, voxels, ijk_to_ras, f"vol_{case}")
    volume_tf = _rotation_z(90, (5.0, -3.0, 2.0))
    volume_node.SetAndObserveTransformNodeID(sb.addLinearTransform(app.scene, volume_tf).GetID())
    world = volume_tf @ ijk_to_ras

    # Choose the lesion centre at a voxel of the volume (so it lies on a stored slice) in world RAS.
    centre_ijk = np.array([21.0, 17.0, 6.0, 1.0]) if case == "flipped_axial" else np.array([25.0, 13.0, 17.0, 1.0])
    centre_world = (world @ centre_ijk)[:3]
    roi_tf = _rotation_z(-30, (4.0, 7.0, -6.0))
    roi = sb.addRoi(app.scene, (np.linalg.inv(roi_tf) @ np.append(centre_world, 1))[:3], (14.0, 10.0, 2.0),
                    f"roi_{case}", objectToNode=_rotation_z(30))
    roi.SetAndObserveTransformNodeID(sb.addLinearTransform(app.scene, roi_tf).GetID())
    # Under both transforms the ROI's axes end up aligned with world RAS: 14 mm along x, 10 mm along y.
    half = np.array([7.0, 5.0])
    lps_centre = centre_world * [-1, -1, 1]
    box_lps = (lps_centre[0] - half[0], lps_centre[1] - half[1], lps_centre[0] + half[0], lps_centre[1] + half[1],
               lps_centre[2])

    result = logic.annotate(volume_node, roi)
    reference = _annotate_reference(checkpoint, voxels, world, box_lps)
    _assert_same(result, reference)
    from LesaNetSlicerLib import geometry

    route = geometry.lesionInput(geometry.geometryFromNode(volume_node), roi).kwargs
    assert list(route) == (["box_lps"] if case == "permuted" else ["box_ijk"])
    np.testing.assert_allclose(result.location.center_lps, reference.location.center_lps, atol=1e-6)


@pytest.mark.shared_data
def test_real_ct_roi_around_liver(app, logic, checkpoint, tmp_path):
    """A real CT (RAS-stored NIfTI) and an ROI around the liver from its label map: table, ROI name, exports."""
    from conftest import shared_file

    ct_path = shared_file("ct/abdomen_pelvis_ct.nii.gz")
    seg_path = shared_file("ct/abdomen_pelvis_seg_v1.nii.gz")
    names = json.loads(shared_file("ct/label_maps_total_v1_v2.json").read_text())["v1_commit_5de6e4d"]
    liver = int(next(k for k, v in names.items() if v == "liver"))

    import SimpleITK as sitk
    from LesaNetSlicerLib import tables

    from LesaNetCore.imaging import Volume
    from LesaNetCore.report import read_json_report

    ct = Volume.from_sitk(sitk.ReadImage(str(ct_path)), source=str(ct_path))
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(seg_path)))
    node = sb.addVolume(app.scene, ct.voxels, ct.ijk_to_ras_matrix(), "abdomen_pelvis")
    areas = (seg == liver).sum(axis=(1, 2))
    k = int(np.argmax(areas))
    rows, cols = np.nonzero(seg[k] == liver)
    corners_ijk = np.array([[cols.min(), rows.min(), k], [cols.max(), rows.max(), k]], dtype=float)
    ras = ct.ijk_to_lps(corners_ijk) * [-1, -1, 1]
    roi = sb.addRoi(app.scene, ras.mean(axis=0), np.abs(ras[1] - ras[0]) + [0, 0, 3.0], "liver box")

    result = logic.annotate(node, roi)

    # Slicer's process keeps no copy of the CT per lesion: the record holds the result and node IDs only.
    record = logic.records[roi.GetID()]
    arrays = [v for v in (record.result.patch_image, record.result.embedding) if v is not None]
    assert sum(a.nbytes for a in arrays) < 1_000_000
    assert set(vars(record)) == {"result", "volumeNodeID", "tableNodeID"}  # nothing else kept per lesion
    assert result.location.key_slice == k
    assert np.allclose(result.location.box_ijk, (cols.min(), rows.min(), cols.max(), rows.max()), atol=1e-6)
    table_node = logic.resultsTableNode(roi)
    rows_ = tables.readTable(table_node)
    assert len(rows_) == len(result.labels)
    assert {r["term"] for r in rows_ if r["accepted"]} == set(result.accepted)
    assert roi.GetName() == result.top_finding()

    written = [logic.exportReport(result, tmp_path / f"liver{suffix}") for suffix in (".json", ".md", ".dcm")]
    assert all(p.is_file() and p.stat().st_size > 0 for p in written)
    assert read_json_report(written[0])[0].accepted == result.accepted
    assert written[2].read_bytes()[128:132] == b"DICM"
    with pytest.raises(Exception, match="overwrite"):
        logic.exportReport(result, written[0])
    with pytest.raises(Exception, match="must not exist"):
        logic.exportReport(result, written[2])


def test_edits_reach_table_and_export(app, logic, tmp_path):
    from LesaNetSlicerLib import tables

    from LesaNetCore.report import read_json_report

    voxels = _smooth_volume((10, 48, 48), seed=5)
    ijk_to_ras = np.diag([-1.0, -1.0, 2.0, 1.0])
    node = sb.addVolume(app.scene, voxels, ijk_to_ras, "edits")
    roi = sb.addRoi(app.scene, (-24, -24, 10), (16, 12, 2), "edit roi")
    result = logic.annotate(node, roi)
    dropped = sorted(result.accepted)[0] if result.accepted else None
    added = next(x.term for x in result.labels if x.term not in result.accepted)
    accepted = (set(result.accepted) - {dropped}) | {added}
    edited = logic.setAccepted(roi, accepted)
    assert edited.accepted == frozenset(accepted) and added in edited.added
    table = {r["term"]: r for r in tables.readTable(logic.resultsTableNode(roi))}
    assert table[added]["accepted"] == 1.0 and table[added]["decision"] == 0.0
    if dropped:
        assert table[dropped]["accepted"] == 0.0 and table[dropped]["decision"] == 1.0
    path = logic.exportReport(logic.resultFor(roi), tmp_path / "edited.json")
    assert read_json_report(path)[0].accepted == frozenset(accepted)


def test_bad_inputs_are_named(app, logic):
    from LesaNetCore.errors import LesaNetError

    node = sb.addVolume(app.scene, np.zeros((4, 8, 8), np.float32), np.eye(4), "small")
    outside = sb.addRoi(app.scene, (500, 500, 500), (4, 4, 1), "far")
    with pytest.raises(LesaNetError, match="roi: must overlap the volume"):
        logic.annotate(node, outside)
    with pytest.raises(LesaNetError, match="lesion: must be a markups ROI or line node"):
        logic.annotate(node, None)
    flat = sb.addRoi(app.scene, (3, 3, 1), (0, 0, 0), "flat")
    with pytest.raises(LesaNetError, match="positive width and height"):
        logic.annotate(node, flat)
    with pytest.raises(LesaNetError, match="must have been annotated"):
        logic.setAccepted(flat, set())
