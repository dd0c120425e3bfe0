"""Exact search from the float16 copy with an exact re-rank: the neighbours of the float32 product."""

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
    return _index(data[:32768]), data[32768:]


def test_half_precision_search_finds_the_float32_neighbours_on_a_32k_index(index_32k):
    """Same rows, nearest first, as one float32 product over the whole index, with and without exclusion."""
    index, queries = index_32k
    reference = _index(index.embeddings.copy())
    reference._half_scorer = False  # the float32 matrix product, as before
    patients = [index.entry(int(r)).patient_id for r in reference.search_rows(queries, k=1)[0][:, 0]]
    for i, query in enumerate(queries):
        exclude = patients[i] if i % 2 else None  # half the queries lose their nearest lesion's patient
        rows, distances = index.search_rows(query, k=5, exclude_patient=exclude)
        want_rows, want_distances = reference.search_rows(query, k=5, exclude_patient=exclude)
        np.testing.assert_array_equal(rows, want_rows)
        np.testing.assert_allclose(distances, want_distances, atol=1e-5)
    assert isinstance(index._half_scorer, exact_module.HalfPrecisionScorer)  # the half path really ran
    assert reference._half_scorer is False


def test_half_precision_search_keeps_excluding_and_short_answers():
    pytest.importorskip("torch")
    vectors = clustered_embeddings(5000, dim=32, seed=5)
    index = _index(vectors, per_patient=2500)  # two patients
    rows, distances = index.search_rows(vectors[0], k=3, exclude_patient="P0")
    assert (rows >= 2500).all()  # nothing of P0
    everything = _index(vectors[:4096], per_patient=4095)
    rows, distances = everything.search_rows(vectors[0], k=5, exclude_patient="P0")
    assert rows[0, 0] == 4095 and (rows[0, 1:] == -1).all() and np.isinf(distances[0, 1:]).all()


def test_the_scorer_declines_a_float16_product_less_accurate_than_its_tolerance(monkeypatch):
    torch = pytest.importorskip("torch")
    vectors = clustered_embeddings(5000, dim=64, seed=6)
    assert exact_module.HalfPrecisionScorer.create(vectors, torch) is not None
    monkeypatch.setattr(exact_module, "TOLERANCE", 1e-9)
    assert exact_module.HalfPrecisionScorer.create(vectors, torch) is None
    index = _index(vectors)
    rows, _ = index.search_rows(vectors[10], k=1)
    assert index._half_scorer is False and rows[0, 0] == 10  # declined: the float32 product answers
