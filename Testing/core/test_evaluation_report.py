"""The evaluation report: JSON/Markdown/PNG files, refusal to overwrite, the ablation table."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from LesaNetCore.errors import LesaNetError
from LesaNetCore.evaluation.metrics import calibrate_thresholds
from LesaNetCore.evaluation.report import (
    PAPER_REFERENCE,
    REPORT_FILES,
    ablation_table,
    compare_threshold_grids,
    evaluation_report,
    write_evaluation_report,
)

CLASSES = ["bodypart", "bodypart", "type", "type", "attribute", "bodypart"]
TERMS = ["chest", "lung", "nodule", "mass", "calcified", "pericardium"]
TRAIN_POS = [7597, 3895, 3739, 4449, 120, 33]


def _data(seed=0, n=120):
    rng = np.random.default_rng(seed)
    prevalence = np.array([0.4, 0.25, 0.2, 0.2, 0.08, 0.0])
    targets = rng.random((n, len(TERMS))) < prevalence
    scores = np.clip(0.45 * targets + 0.6 * rng.random(targets.shape), 0, 1)
    valid = rng.random(targets.shape) > 0.05
    emb = rng.standard_normal((n, 16)).astype(np.float32) + 2.0 * targets[:, :4].repeat(4, axis=1)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    patients = rng.integers(0, 40, n)
    return scores, targets, valid, emb, patients


@pytest.fixture
def report():
    scores, targets, valid, emb, patients = _data()
    thresholds = calibrate_thresholds(*_data(seed=1)[:3])
    return evaluation_report(
        scores,
        targets,
        valid,
        thresholds,
        TERMS,
        CLASSES,
        TRAIN_POS,
        embeddings=emb,
        patient_ids=patients,
        title="Synthetic check",
        acg_ks=(1, 5),
    )


def test_report_content(report):
    assert report["num_lesions"] == 120 and report["num_labels"] == 6
    # "pericardium" has no test positive: reported, but not part of the per-class average.
    assert report["mean_per_class"]["num_labels"] == 5
    # Rows are sorted by training frequency, most frequent first.
    assert [row["term"] for row in report["per_label"]][:2] == ["chest", "mass"]
    peri = next(r for r in report["per_label"] if r["term"] == "pericardium")
    assert peri["auc"] is None and peri["positives"] == 0  # nan is written as null
    assert set(report["retrieval"]["acg"]) == {"1", "5"}
    assert report["breakdown"]["by_class"]["type"]["num_labels"] == 2
    assert 0.5 < report["mean_per_class"]["auc"] <= 1.0
    json.dumps(report, allow_nan=False)  # strict JSON: no nan anywhere


def test_write_report_files(tmp_path, report):
    scores, targets, valid, _, _ = _data()
    paths = write_evaluation_report(report, tmp_path / "out", scores=scores, targets=targets, valid=valid)
    assert sorted(p.name for p in paths) == sorted(REPORT_FILES)
    loaded = json.loads((tmp_path / "out" / "report.json").read_text())
    assert loaded["mean_per_class"]["f1"] == pytest.approx(report["mean_per_class"]["f1"])
    md = (tmp_path / "out" / "report.md").read_text()
    assert "# Synthetic check" in md
    assert "| Labels | Labels used | AUC | Precision | Recall | F1 |" in md
    assert f"| All labels | 5 | {report['mean_per_class']['auc']:.4f} |" in md
    assert "| chest | bodypart | 7597 |" in md and "ACG@K" in md and "(roc_curves.png)" in md
    assert md.index("| chest |") < md.index("| lung |") < md.index("| pericardium |")
    for name in ("roc_curves.png", "auc_f1_vs_frequency.png", "f1_by_class.png"):
        data = (tmp_path / "out" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not list((tmp_path / "out").glob("*.part"))  # no temporary files left behind


def test_refuses_to_overwrite_and_leaves_files_untouched(tmp_path, report):
    out = tmp_path / "out"
    write_evaluation_report(report, out)
    assert not (out / "roc_curves.png").exists()  # no scores given: no ROC plot
    (out / "report.md").write_text("keep me")
    with pytest.raises(LesaNetError, match="refusing to overwrite"):
        write_evaluation_report(report, out)
    assert (out / "report.md").read_text() == "keep me"
    write_evaluation_report(report, out, overwrite=True)
    assert (out / "report.md").read_text() != "keep me"


def test_report_rejects_mismatched_inputs():
    scores, targets, valid, emb, patients = _data()
    with pytest.raises(LesaNetError, match="term_list: must hold one name per label"):
        evaluation_report(scores, targets, valid, [0.5] * 6, TERMS[:5], CLASSES, TRAIN_POS)
    with pytest.raises(LesaNetError, match="must be given together"):
        evaluation_report(scores, targets, valid, [0.5] * 6, TERMS, CLASSES, TRAIN_POS, embeddings=emb)
    with pytest.raises(LesaNetError, match="must be given together"):
        evaluation_report(scores, targets, valid, [0.5] * 6, TERMS, CLASSES, TRAIN_POS, label_sets=targets)
    with pytest.raises(LesaNetError, match="report: must be the dictionary made by evaluation_report"):
        write_evaluation_report({"title": "x"}, "unused")


def test_ablation_table_layout():
    _, targets, valid, _, _ = _data()
    scores, *_ = _data()
    rep = evaluation_report(scores, targets, valid, [0.5] * 6, TERMS, CLASSES, TRAIN_POS)
    table = ablation_table(
        {
            "Baseline: multiscale CNN": {"auc": 0.9209, "precision": 0.3005, "recall": 0.4936, "f1": 0.2927},
            "LesaNet w/o SPL": {
                "auc": 0.93,
                "precision": 0.35,
                "recall": 0.52,
                "f1": 0.33,
                "hand_f1": 0.42,
                "acg@5": 2.3,
            },
            "LesaNet": rep,
        }
    )
    lines = table.splitlines()
    assert lines[0] == (
        "| Method | AUC | Precision | Recall | F1 | AUC (hand) | Precision (hand) | Recall (hand) "
        "| F1 (hand) | ACG@5 |"
    )
    assert lines[2].startswith("| Baseline: multiscale CNN | 0.9209 | 0.3005 | 0.4936 | 0.2927 | - |")
    assert lines[3].endswith("| 0.4200 | 2.30 |")
    assert lines[4].startswith(f"| LesaNet | {rep['mean_per_class']['auc']:.4f} |")
    paper = lines[5]
    assert "Paper" in paper and "*0.9344*" in paper and "*0.3423*" in paper and "*0.4344*" in paper
    assert "*2.36*" in paper and PAPER_REFERENCE["hand_auc"] == 0.9398
    # Without hand-labeled numbers the hand columns disappear.
    assert "(hand)" not in ablation_table({"x": {"auc": 0.9}}).splitlines()[0]
    with pytest.raises(LesaNetError, match="keys must be among"):
        ablation_table({"x": {"AUC": 0.9}})


def test_compare_threshold_grids_runs_val_to_test():
    val, test = _data(seed=2, n=400)[:3], _data(seed=3, n=400)[:3]
    out = compare_threshold_grids(val, test)
    assert set(out) == {"reference", "fine", "midpoints"}
    # On validation the exact search can only match or beat the coarse grid.
    assert out["midpoints"]["val_f1"] >= out["reference"]["val_f1"] - 1e-12
    assert all(not math.isnan(v["test_f1"]) for v in out.values())
