"""ACG@K: brute force on tiny sets, the same-patient exclusion, query/gallery subsets, speed at scale."""

from __future__ import annotations

import time

import numpy as np
import pytest

from LesaNetCore.errors import LesaNetError
from LesaNetCore.evaluation import retrieval_metrics
from LesaNetCore.evaluation.retrieval_metrics import acg_at_k


def _normalised(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_acg(emb, labels, patients, k, queries=None, gallery=None):
    n = len(emb)
    queries = range(n) if queries is None else queries
    gallery = list(range(n)) if gallery is None else list(gallery)
    gains = []
    for q in queries:
        cands = [g for g in gallery if patients[g] != patients[q]]
        cands.sort(key=lambda g: (float(((emb[q].astype(np.float64) - emb[g]) ** 2).sum()), g))
        top = cands[:k]
        if top:
            gains.append(np.mean([(labels[q] & labels[g]).sum() for g in top]))
    return float(np.mean(gains))


def test_hand_case_excludes_own_patient():
    # Lesions 0 and 1 belong to the same patient and are identical; without the exclusion 0 would retrieve 1
    # (3 shared labels). With it, 0's nearest is 2 (1 shared label).
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.8, 0.6], [-1.0, 0.0]], dtype=np.float32)
    labels = np.array([[1, 1, 1], [1, 1, 1], [1, 0, 0], [0, 1, 1]], dtype=bool)
    patients = ["p1", "p1", "p2", "p3"]
    acg = acg_at_k(emb, labels, patients, ks=(1,), query_idx=[0])
    assert acg == {1: 1.0}
    assert acg_at_k(emb, labels, ["a", "b", "c", "d"], ks=(1,), query_idx=[0]) == {1: 3.0}


@pytest.mark.parametrize("seed", range(4))
def test_matches_brute_force_with_patients(seed):
    rng = np.random.default_rng(seed)
    n = 40
    emb = _normalised(rng, n, 8)
    labels = rng.random((n, 6)) < 0.4
    patients = rng.integers(0, 12, n)
    acg = acg_at_k(emb, labels, patients, ks=(1, 3, 5))
    for k in (1, 3, 5):
        assert acg[k] == pytest.approx(_brute_acg(emb, labels, patients, k), abs=1e-9)


def test_query_and_gallery_subsets_and_small_blocks(monkeypatch):
    rng = np.random.default_rng(11)
    n = 50
    emb = _normalised(rng, n, 4)
    labels = rng.random((n, 5)) < 0.5
    patients = np.array([f"p{i // 3}" for i in range(n)])
    queries, gallery = np.arange(0, 20), np.arange(15, 50)
    monkeypatch.setattr(retrieval_metrics, "QUERY_BLOCK", 7)  # several blocks, one ragged
    acg = acg_at_k(emb, labels, patients, ks=(5,), query_idx=queries, gallery_idx=gallery)
    assert acg[5] == pytest.approx(_brute_acg(emb, labels, patients, 5, queries, gallery), abs=1e-9)


def test_ties_and_short_galleries():
    # All embeddings equal: every distance ties, so the lowest gallery indices are retrieved.
    emb = np.ones((5, 3), dtype=np.float32) / np.sqrt(3)
    labels = np.eye(5, dtype=bool)
    labels[:, 0] = True
    patients = [0, 0, 1, 2, 3]
    # Query 0: eligible 2, 3, 4 -> K=2 takes 2 and 3, each sharing label 0 only.
    assert acg_at_k(emb, labels, patients, ks=(2,), query_idx=[0]) == {2: 1.0}
    # K larger than the eligible gallery: averages over the 3 available.
    assert acg_at_k(emb, labels, patients, ks=(10,), query_idx=[2]) == {10: 1.0}
    assert np.isnan(acg_at_k(emb, labels, [0] * 5, ks=(1,))[1])  # nobody from another patient


def test_ties_at_the_kth_distance_go_to_the_lowest_index():
    # Query 0; lesions 151-200 coincide with it, lesions 1-150 all sit at the same larger distance. ACG@60 takes
    # the 50 close ones and then, of the 150 tied, the 10 lowest indices (1-10): only those share a label, so
    # an arbitrary choice among the tie (what a plain argpartition makes) gives a lower ACG.
    n = 201
    emb = np.zeros((n, 2), dtype=np.float32)
    emb[0, 0] = emb[151:, 0] = 1.0
    emb[1:151, 1] = 1.0
    labels = np.zeros((n, 1), dtype=bool)
    labels[0] = labels[1:11] = True
    patients = np.arange(n)
    assert acg_at_k(emb, labels, patients, ks=(60,), query_idx=[0]) == {60: pytest.approx(10 / 60)}
    assert _brute_acg(emb, labels, patients, 60, queries=[0]) == pytest.approx(10 / 60)


def test_bad_inputs():
    emb = np.eye(3, dtype=np.float32)
    labels = np.eye(3, dtype=bool)
    with pytest.raises(LesaNetError, match="patient_ids: must hold one patient id per embedding"):
        acg_at_k(emb, labels, [1, 2])
    with pytest.raises(LesaNetError, match="ks: must be positive integers"):
        acg_at_k(emb, labels, [1, 2, 3], ks=(0,))
    with pytest.raises(LesaNetError, match=r"query_idx: indices must lie in \[0, 2\]"):
        acg_at_k(emb, labels, [1, 2, 3], query_idx=[5])
    with pytest.raises(LesaNetError, match="label_sets: must be a 2-D array"):
        acg_at_k(emb, labels[:2], [1, 2, 3])


@pytest.mark.slow
def test_bench_30000_by_256_runs_in_seconds():
    """The DeepLesion-scale case: 30,000 lesions x 256-D, everyone queries everyone."""
    rng = np.random.default_rng(0)
    n = 30_000
    emb = _normalised(rng, n, 256)
    labels = rng.random((n, 171)) < 0.03
    patients = rng.integers(0, 4_000, n)
    start = time.perf_counter()
    acg = acg_at_k(emb, labels, patients, ks=(1, 5, 10))
    elapsed = time.perf_counter() - start
    print(f"acg_at_k 30000 x 256: {elapsed:.1f} s, {acg}")
    assert all(0 < v < 171 for v in acg.values())
    assert elapsed < 60
