"""The retrieval benchmark and its synthetic embeddings (small sizes; the full run is `bench_retrieval()`)."""

from __future__ import annotations

import numpy as np
import pytest

from LesaNetCore.bench.retrieval import bench_retrieval
from LesaNetCore.errors import LesaNetError
from LesaNetCore.retrieval import clustered_embeddings
from LesaNetCore.retrieval.synthetic import exact_neighbours, recall_at_k


def test_clustered_embeddings_are_unit_deterministic_and_have_neighbour_structure():
    vectors = clustered_embeddings(3000, dim=64, seed=1)
    assert vectors.dtype == np.float32 and vectors.shape == (3000, 64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors, clustered_embeddings(3000, dim=64, seed=1))
    assert not np.array_equal(vectors, clustered_embeddings(3000, dim=64, seed=2))

    def nearest_vs_typical(x: np.ndarray) -> float:
        cos = x[:300] @ x.T
        cos[np.arange(300), np.arange(300)] = -np.inf
        nearest = np.sqrt(2 - 2 * cos.max(axis=1)).mean()
        typical = np.sqrt(2 - 2 * np.median(cos[np.isfinite(cos)]))
        return float(nearest / typical)

    uniform = np.random.default_rng(0).standard_normal((3000, 64)).astype(np.float32)
    uniform /= np.linalg.norm(uniform, axis=1, keepdims=True)
    # Clustered data: neighbours are much closer than a typical pair; on the uniform sphere they are not.
    assert nearest_vs_typical(vectors) < 0.6 < nearest_vs_typical(uniform)
    with pytest.raises(LesaNetError, match="n_clusters: must be a positive integer, but got 0"):
        clustered_embeddings(10, n_clusters=0)


def test_exact_neighbours_and_recall():
    vectors = clustered_embeddings(5000, dim=16, seed=4)
    queries = clustered_embeddings(5010, dim=16, seed=4)[5000:]
    truth = exact_neighbours(vectors, queries, 7)
    brute = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(truth, brute)
    assert recall_at_k(truth, truth) == 1.0
    assert recall_at_k(np.full_like(truth, -1), truth) == 0.0


def test_bench_retrieval_small_run():
    pytest.importorskip("faiss", reason="faiss-cpu is the optional 'ann' dependency of approximate search")
    result = bench_retrieval(n_small=2000, n_large=6000, dim=32, n_queries=30, progress=False)
    for key in ("retrieval_ms_32k", "retrieval_ms_1m", "build_s_1m", "exact_ms_1m"):
        assert 0 < result[key] < 1000, key
    assert 0.9 <= result["retrieval_recall5_1m"] <= 1.0
    assert result["method_1m"] == "ivf" and result["params_1m"]["nlist"] == 64
    assert (result["n_small"], result["n_large"], result["dim"]) == (2000, 6000, 32)
