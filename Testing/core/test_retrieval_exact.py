"""Exact search from a compressed copy (int8, else float16) with an exact re-rank: the float32 neighbours."""

from __future__ import annotations

import numpy as np
import pytest

from LesaNetCore.retrieval import ReferenceEntry, ReferenceIndex, clustered_embeddings
from LesaNetCore.retrieval import exact as exact_module


def _index(vectors: np.ndarray, per_patient: int = 7) -> ReferenceIndex:
    entries = [ReferenceEntry(str(i), f"P{i // per_patient}", ("liver",)) for i in range(len(vectors))]
    return ReferenceIndex.build(vectors, entries, model_digest="d", label_names=["liver"], method="exact")


@pytest.fixture(scope="module")
def index_32k():
    pytest.importorskip("torch")
    data = clustered_embeddings(32768 + 200, seed=3)
    return data[:32768], data[32768:]


def _same_neighbours_as_float32(vectors: np.ndarray, queries: np.ndarray) -> ReferenceIndex:
    index = _index(vectors)
    reference = _index(vectors.copy())
    reference._scorer = False  # the float32 matrix product, as before
    patients = [index.entry(int(r)).patient_id for r in reference.search_rows(queries, k=1)[0][:, 0]]
    for i, query in enumerate(queries):
        exclude = patients[i] if i % 2 else None  # half the queries lose their nearest lesion's patient
        rows, distances = index.search_rows(query, k=5, exclude_patient=exclude)
        want_rows, want_distances = reference.search_rows(query, k=5, exclude_patient=exclude)
        np.testing.assert_array_equal(rows, want_rows)
        np.testing.assert_allclose(distances, want_distances, atol=1e-5)
    assert reference._scorer is False
    return index


def test_int8_search_finds_the_float32_neighbours_on_a_32k_index(index_32k):
    """Same rows, nearest first, as one float32 product over the whole index, with and without exclusion."""
    index = _same_neighbours_as_float32(*index_32k)
    assert isinstance(index._scorer, exact_module.Int8Scorer)  # the int8 path really ran


def test_half_precision_search_finds_the_float32_neighbours_where_int8_is_missing(index_32k, monkeypatch):
    monkeypatch.setattr(exact_module.Int8Scorer, "create", classmethod(lambda cls, e, t: None))
    index = _same_neighbours_as_float32(*index_32k)
    assert isinstance(index._scorer, exact_module.HalfPrecisionScorer)


def test_int8_error_bound_holds_for_every_row_and_is_not_loose(index_32k):
    """The proven bound covers each row's error, queries off the data included, and stays within ~10x of it."""
    torch = pytest.importorskip("torch")
    vectors, queries = index_32k
    rng = np.random.default_rng(0)
    spiky = vectors[:4096].copy()
    spiky[::7, 0] += 3.0  # rows with one dominant component: coarse per-row scales
    spiky /= np.linalg.norm(spiky, axis=1, keepdims=True)
    for data in (vectors, spiky):
        scorer = exact_module.Int8Scorer.create(data, torch)
        assert scorer is not None
        probes = np.concatenate([queries[:20], rng.standard_normal((20, data.shape[1])).astype(np.float32)])
        probes /= np.linalg.norm(probes, axis=1, keepdims=True)
        for query in probes:
            approx, bound = scorer.scores(query)
            error = np.abs(approx - data @ query).max()
            assert error <= bound
            assert bound < 10 * error + 1e-3


def test_a_margin_without_the_bound_would_miss_neighbours(index_32k, monkeypatch):
    """The re-rank margin matters: with a zero margin (the approximate top k only) some queries lose a true
    neighbour, though every query still gets its five rows."""
    pytest.importorskip("torch")
    vectors, queries = index_32k
    index = _index(vectors)
    reference = _index(vectors.copy())
    reference._scorer = False
    index.search_rows(queries[0], k=1)
    scorer = index._scorer
    assert isinstance(scorer, exact_module.Int8Scorer)
    unbounded = exact_module.Int8Scorer.scores
    monkeypatch.setattr(exact_module.Int8Scorer, "scores", lambda self, q: (unbounded(self, q)[0], 0.0))
    monkeypatch.setattr(exact_module, "FLOAT32_SLACK", 0.0)
    found = [index.search_rows(q, k=5)[0] for q in queries]
    assert all((rows >= 0).all() for rows in found)
    misses = sum(not np.array_equal(rows, reference.search_rows(q, k=5)[0]) for rows, q in zip(found, queries,
                                                                                               strict=True))
    assert misses > 0


def test_compressed_search_keeps_excluding_and_short_answers():
    pytest.importorskip("torch")
    vectors = clustered_embeddings(5000, dim=32, seed=5)
    index = _index(vectors, per_patient=2500)  # two patients
    rows, distances = index.search_rows(vectors[0], k=3, exclude_patient="P0")
    assert isinstance(index._scorer, exact_module.Int8Scorer)  # the compressed path answered
    assert (rows >= 2500).all()  # nothing of P0
    everything = _index(vectors[:4096], per_patient=4095)
    rows, distances = everything.search_rows(vectors[0], k=5, exclude_patient="P0")
    assert rows[0, 0] == 4095 and (rows[0, 1:] == -1).all() and np.isinf(distances[0, 1:]).all()


def test_int8_is_declined_without_a_cpu_int8_gemm_or_with_a_wrong_one(monkeypatch):
    torch = pytest.importorskip("torch")
    vectors = clustered_embeddings(5000, dim=64, seed=6)
    assert exact_module.Int8Scorer.create(vectors, torch) is not None
    monkeypatch.setattr(torch, "_int_mm", lambda a, b: torch.zeros(a.shape[0], b.shape[1], dtype=torch.int32))
    assert exact_module.Int8Scorer.create(vectors, torch) is None
    monkeypatch.delattr(torch, "_int_mm")
    assert exact_module.Int8Scorer.create(vectors, torch) is None
    assert isinstance(exact_module.create_scorer(vectors, torch), exact_module.HalfPrecisionScorer)


def test_the_half_scorer_declines_a_float16_product_less_accurate_than_its_tolerance(monkeypatch):
    torch = pytest.importorskip("torch")
    vectors = clustered_embeddings(5000, dim=64, seed=6)
    assert exact_module.HalfPrecisionScorer.create(vectors, torch) is not None
    monkeypatch.setattr(exact_module, "TOLERANCE", 1e-9)
    monkeypatch.setattr(exact_module.Int8Scorer, "create", classmethod(lambda cls, e, t: None))
    assert exact_module.HalfPrecisionScorer.create(vectors, torch) is None
    index = _index(vectors)
    rows, _ = index.search_rows(vectors[10], k=1)
    assert index._scorer is False and rows[0, 0] == 10  # declined: the float32 product answers
