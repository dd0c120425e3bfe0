"""Approximate (faiss) search of the reference index: recall against exact search, exclusion, refill."""

from __future__ import annotations

import numpy as np
import pytest

from LesaNetCore.errors import LesaNetError
from LesaNetCore.retrieval import ReferenceEntry, ReferenceIndex, ann, clustered_embeddings
from LesaNetCore.retrieval.ann import default_params
from LesaNetCore.retrieval.synthetic import exact_neighbours, recall_at_k

pytest.importorskip("faiss", reason="faiss-cpu is the optional 'ann' dependency of approximate search")


def _entries(n: int, per_patient: int = 7) -> list[ReferenceEntry]:
    return [ReferenceEntry(str(i), f"P{i // per_patient}", ()) for i in range(n)]


@pytest.fixture(scope="module")
def clustered():
    data = clustered_embeddings(20_000 + 200, dim=256, seed=11)
    return data[:20_000], data[20_000:]


@pytest.fixture(scope="module")
def ivf(clustered):
    vectors, _ = clustered
    return ReferenceIndex.build(vectors, _entries(len(vectors)), model_digest="m", label_names=[], method="ivf",
                                params={"nlist": 128, "nprobe": 4})


def test_ivf_recall_at_5_on_clustered_points(clustered, ivf):
    vectors, queries = clustered
    truth = exact_neighbours(vectors, queries, 5)
    rows, distances = ivf.search_rows(queries, k=5)
    assert ivf.method == "ivf" and ivf.params["nprobe"] == 4
    assert recall_at_k(rows, truth) >= 0.95
    # IVF-Flat distances are exact for the candidates it found.
    np.testing.assert_allclose(distances[:, 0], np.linalg.norm(vectors[rows[:, 0]] - queries, axis=1), atol=1e-4)


def test_ivf_single_query_gives_similar_lesions(clustered, ivf):
    _, queries = clustered
    hits = ivf.search(queries[0], k=5)
    assert len(hits) == 5 and [h.distance for h in hits] == sorted(h.distance for h in hits)


def test_ivf_exclusion_when_the_patient_owns_the_nearest_lesions(clustered):
    vectors, queries = clustered
    query = queries[3]
    order = np.argsort(np.linalg.norm(vectors - query, axis=1))
    patients = [f"Q{i // 5}" for i in range(len(vectors))]
    for row in order[:40]:
        patients[row] = "ME"
    entries = [ReferenceEntry(str(i), p, ()) for i, p in enumerate(patients)]
    index = ReferenceIndex.build(vectors, entries, model_digest="m", label_names=[], method="ivf",
                                 params={"nlist": 128, "nprobe": 8})
    hits = index.search(query, k=5, exclude_patient="ME")
    assert len(hits) == 5 and all(h.patient_id != "ME" for h in hits)
    assert len({h.lesion_id for h in hits} & {str(r) for r in order[40:45]}) >= 4


def test_refill_when_probed_lists_run_short(monkeypatch):
    # 300 points in 60 lists with nprobe=1: a probe sees ~5 candidates, far fewer than k + exclusions.
    calls = []
    original = ann.search_index
    monkeypatch.setattr(ann, "search_index", lambda *a, **kw: calls.append(a[-1] if len(a) > 5 else 1)
                        or original(*a, **kw))
    vectors = clustered_embeddings(300, dim=16, seed=2, n_clusters=30)
    index = ReferenceIndex.build(vectors, _entries(300, per_patient=20), model_digest="m", label_names=[],
                                 method="ivf", params={"nlist": 60, "nprobe": 1})
    for query in vectors[:20]:
        hits = index.search(query, k=12, exclude_patient="P0")
        assert len(hits) == 12 and all(h.patient_id != "P0" for h in hits)
        assert len({h.lesion_id for h in hits}) == 12
    assert max(calls) > 1  # the search was widened at least once


def test_hnsw_recall_and_search_params():
    data = clustered_embeddings(3000 + 100, dim=64, seed=5, n_clusters=100)
    vectors, queries = data[:3000], data[3000:]
    index = ReferenceIndex.build(vectors, _entries(3000), model_digest="m", label_names=[], method="hnsw",
                                 params={"hnsw_m": 16, "ef_construction": 40, "ef_search": 32})
    rows, _ = index.search_rows(queries, k=5)
    assert recall_at_k(rows, exact_neighbours(vectors, queries, 5)) >= 0.95
    index.set_search_params(ef_search=128)
    assert index.params["ef_search"] == 128
    with pytest.raises(LesaNetError, match="nprobe: is not a search parameter of a 'hnsw' index"):
        index.set_search_params(nprobe=3)


def test_default_params_scale_with_the_set():
    assert default_params("ivf", 1_000_000) == {"nlist": 1024, "nprobe": 32, "train_size": 40960}
    assert default_params("ivf", 20_000)["nlist"] == 128
    with pytest.raises(LesaNetError, match="method: must be one of"):
        default_params("pq", 10)
