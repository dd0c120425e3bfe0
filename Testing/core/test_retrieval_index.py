"""Exact search of the reference index: brute-force agreement, patient exclusion, input validation."""

from __future__ import annotations

import numpy as np
import pytest

from LesaNetCore.errors import LesaNetError
from LesaNetCore.result import SimilarLesion
from LesaNetCore.retrieval import ReferenceEntry, ReferenceIndex, clustered_embeddings
from LesaNetCore.retrieval import index as index_module

LABELS = ["liver", "lung", "nodule", "mass"]


def _entries(n: int, per_patient: int = 7) -> list[ReferenceEntry]:
    return [ReferenceEntry(f"L{i}", f"P{i // per_patient}", (LABELS[i % 4],), f"sentence {i}") for i in range(n)]


def _brute_force(vectors: np.ndarray, query: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    distances = np.linalg.norm(vectors.astype(np.float64) - query.astype(np.float64), axis=1)
    if allowed is not None:
        distances[~allowed] = np.inf
    order = np.argsort(distances, kind="stable")
    return order[np.isfinite(distances[order])]


@pytest.fixture(scope="module")
def data():
    vectors = clustered_embeddings(1520, dim=32, seed=3, n_clusters=40)
    return vectors[:1500], vectors[1500:]


def test_exact_search_equals_brute_force(data):
    vectors, queries = data
    index = ReferenceIndex.build(vectors, _entries(len(vectors)), model_digest="m1", label_names=LABELS)
    assert index.method == "exact" and len(index) == 1500 and index.dim == 32
    for query in queries:
        hits = index.search(query, k=10)
        truth = _brute_force(vectors, query)[:10]
        assert [h.lesion_id for h in hits] == [f"L{r}" for r in truth]
        expected = np.linalg.norm(vectors[truth] - query, axis=1)
        np.testing.assert_allclose([h.distance for h in hits], expected, atol=1e-4)
        assert all(isinstance(h, SimilarLesion) for h in hits)
        assert hits[0].labels == (LABELS[truth[0] % 4],) and hits[0].sentence == f"sentence {truth[0]}"


def test_batch_search_matches_single_queries(data):
    vectors, queries = data
    index = ReferenceIndex.build(vectors, _entries(len(vectors)), model_digest="m1", label_names=LABELS)
    batch = index.search(queries, k=4)
    assert len(batch) == len(queries)
    for query, hits in zip(queries, batch, strict=True):
        assert [h.lesion_id for h in hits] == [h.lesion_id for h in index.search(query, k=4)]
    rows, distances = index.search_rows(queries, k=4)
    assert rows.shape == (len(queries), 4) and distances.dtype == np.float32
    assert np.all(np.diff(distances, axis=1) >= 0)


def test_exclusion_when_all_top_hits_belong_to_the_patient(data):
    vectors, queries = data
    query = queries[0]
    order = _brute_force(vectors, query)
    patients = np.array([f"Q{i}" for i in range(len(vectors))], dtype=object)
    patients[order[:12]] = "ME"  # the 12 nearest lesions are all the query's own patient
    entries = [ReferenceEntry(f"L{i}", str(patients[i]), ()) for i in range(len(vectors))]
    index = ReferenceIndex.build(vectors, entries, model_digest="m1", label_names=LABELS)
    hits = index.search(query, k=5, exclude_patient="ME")
    assert len(hits) == 5 and all(h.patient_id != "ME" for h in hits)
    assert [h.lesion_id for h in hits] == [f"L{r}" for r in order[12:17]]
    # Without exclusion the same patient fills the list; an unknown patient excludes nothing.
    assert {h.patient_id for h in index.search(query, k=5)} == {"ME"}
    assert [h.lesion_id for h in index.search(query, k=5, exclude_patient="nobody")] == [
        f"L{r}" for r in order[:5]]


def test_exclusion_leaves_fewer_than_k_when_the_index_runs_out():
    vectors = np.eye(4, 8, dtype=np.float32)
    entries = [ReferenceEntry(f"L{i}", "A" if i < 3 else "B", ()) for i in range(4)]
    index = ReferenceIndex.build(vectors, entries, model_digest="m1", label_names=[])
    hits = index.search(vectors[0], k=5, exclude_patient="A")
    assert [h.lesion_id for h in hits] == ["L3"]
    assert hits[0].distance == pytest.approx(np.sqrt(2.0), abs=1e-6)
    rows, distances = index.search_rows(vectors[0], k=3, exclude_patient="A")
    assert rows.tolist() == [[3, -1, -1]] and np.isinf(distances[0, 1:]).all()


def test_per_query_exclusion_in_a_batch(data):
    vectors, queries = data
    entries = _entries(len(vectors), per_patient=50)
    index = ReferenceIndex.build(vectors, entries, model_digest="m1", label_names=LABELS)
    nearest_patient = [index.search(q, k=1)[0].patient_id for q in queries[:3]]
    batch = index.search(queries[:3], k=5, exclude_patient=[nearest_patient[0], None, nearest_patient[2]])
    assert all(h.patient_id != nearest_patient[0] for h in batch[0])
    assert batch[1][0].patient_id == nearest_patient[1]
    assert all(h.patient_id != nearest_patient[2] for h in batch[2])
    with pytest.raises(LesaNetError, match="exclude_patient: must be one patient or one per query"):
        index.search(queries[:3], k=5, exclude_patient=["P1"])


def test_entry_and_read_only_embeddings(data):
    vectors, _ = data
    index = ReferenceIndex.build(vectors, _entries(len(vectors)), model_digest="m1", label_names=LABELS)
    assert index.entry(9) == ReferenceEntry("L9", "P1", ("lung",), "sentence 9")
    with pytest.raises(ValueError):
        index.embeddings[0, 0] = 0.0
    with pytest.raises(LesaNetError, match=r"row: must be an integer in \[0, 1500\), but got 1500"):
        index.entry(1500)


def test_auto_switches_to_approximate_above_the_limit(monkeypatch, data):
    vectors, _ = data
    monkeypatch.setattr(index_module, "AUTO_EXACT_MAX", 1000)
    index = ReferenceIndex.build(vectors, _entries(len(vectors)), model_digest="m1", label_names=LABELS)
    assert index.method == "ivf" and index.params["nlist"] >= 1


@pytest.mark.parametrize(("change", "message"), [
    (lambda v, e: (v * 2, e), "embeddings: rows must be finite and L2-normalised .* row 0 of 1500 has norm"),
    (lambda v, e: (np.where(np.arange(len(v))[:, None] == 7, np.nan, v), e), "row 7 of 1500 has norm, but got nan"),
    (lambda v, e: (v[:, 0], e), r"embeddings: must be a non-empty \(N, D\) array, but got \(1500,\)"),
    (lambda v, e: (v.astype(int), e), "embeddings: must be a float array, but got 'int64'"),
    (lambda v, e: (v, e[:-1]), r"entries: must have one entry per embedding row \(1500\), but got 1499"),
    (lambda v, e: (v, [*e[:-1], e[0]]), "entries\\[1499\\].lesion_id: must be unique in the index, but got 'L0'"),
    (lambda v, e: (v, [ReferenceEntry("x", "p", (), thumbnail=np.zeros((4, 4), np.uint8)),
                      ReferenceEntry("y", "p", (), thumbnail=np.zeros((4, 5), np.uint8)), *e[2:]]),
     r"entries\[1\].thumbnail: must have the shape of the first thumbnail \(4, 4\), but got \(4, 5\)"),
    (lambda v, e: (v, [ReferenceEntry("x", "p", (), thumbnail=np.zeros((4, 4))), *e[1:]]),
     r"entries\[0\].thumbnail: must be a 2-D uint8 array"),
])
def test_build_refuses_bad_input(data, change, message):
    vectors, entries = change(data[0], _entries(len(data[0])))
    with pytest.raises(LesaNetError, match=message):
        ReferenceIndex.build(vectors, entries, model_digest="m1", label_names=LABELS)


def test_build_refuses_bad_options(data):
    vectors, queries = data
    entries = _entries(len(vectors))
    with pytest.raises(LesaNetError, match="method: must be one of"):
        ReferenceIndex.build(vectors, entries, model_digest="m1", label_names=LABELS, method="lsh")
    with pytest.raises(LesaNetError, match="model_digest: must be a non-empty string"):
        ReferenceIndex.build(vectors, entries, model_digest="", label_names=LABELS)
    with pytest.raises(LesaNetError, match="label_names: must not repeat a label, but got 'lung'"):
        ReferenceIndex.build(vectors, entries, model_digest="m1", label_names=["lung", "lung"])
    with pytest.raises(LesaNetError, match="params: must be empty for exact search"):
        ReferenceIndex.build(vectors, entries, model_digest="m1", label_names=LABELS, method="exact",
                             params={"nlist": 8})
    with pytest.raises(LesaNetError, match="params: must be among"):
        ReferenceIndex.build(vectors, entries, model_digest="m1", label_names=LABELS, method="ivf",
                             params={"nlists": 8})
    with pytest.raises(LesaNetError, match="nlist: must be at most the number of entries"):
        ReferenceIndex.build(vectors, entries, model_digest="m1", label_names=LABELS, method="ivf",
                             params={"nlist": 5000})
    index = ReferenceIndex.build(vectors, entries, model_digest="m1", label_names=LABELS)
    with pytest.raises(LesaNetError, match="embedding: must have the index's dimension 32, but got 16"):
        index.search(queries[0, :16])
    with pytest.raises(LesaNetError, match="k: must be a positive integer, but got 0"):
        index.search(queries[0], k=0)
    with pytest.raises(LesaNetError, match="embedding: rows must be finite and L2-normalised"):
        index.search(queries[0] * 3)
    with pytest.raises(LesaNetError, match="nprobe: is not a search parameter of a 'exact' index"):
        index.set_search_params(nprobe=4)


def test_build_keeps_float32_embeddings_without_copying(data):
    vectors, _ = data
    index = ReferenceIndex.build(vectors, _entries(len(vectors)), model_digest="m1", label_names=LABELS)
    assert np.shares_memory(index.embeddings, vectors)
