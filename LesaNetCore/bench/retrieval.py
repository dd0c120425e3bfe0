"""Retrieval timing for ``lesanet bench``: exact search at DeepLesion's size, approximate search at a million.

The embeddings are :func:`LesaNetCore.retrieval.clustered_embeddings` (clustered like trained ones); recall@k is
against brute force (:func:`LesaNetCore.retrieval.synthetic.exact_neighbours`). Latencies are per
``ReferenceIndex.search`` call with one query, what one annotation costs, including the conversion to
``SimilarLesion``; the exact search is timed in rounds with a large memory sweep before each query, because in
annotation the forward pass has just evicted the index from the caches.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..errors import invalid
from ..retrieval.synthetic import clustered_embeddings, exact_neighbours, recall_at_k


def _entries(n: int):
    from ..retrieval.index import ReferenceEntry

    # ~7 lesions per patient, as in DeepLesion (32,735 lesions of 4,427 patients).
    labels = ("lung", "nodule")
    return [ReferenceEntry(str(i), f"P{i // 7}", labels) for i in range(n)]


def _time_single_queries(index, queries: np.ndarray, k: int, patients: list[str] | None = None,
                         evict: bool = False) -> tuple[float, np.ndarray]:
    """Median milliseconds per ``search`` call with one query at a time, as the annotator calls it.

    ``patients`` gives each query a patient to exclude (the annotator always excludes the query's own).
    ``evict`` sweeps 96 MB of memory before each query (untimed): in annotation a forward pass that reads about
    100 MB of weights has just pushed the index out of the last-level cache.
    """
    patients = patients or [None] * len(queries)
    sweep = np.ones(24 << 20, dtype=np.float32) if evict else None
    index.search(queries[0], k=k, exclude_patient=patients[0])  # warm-up: allocations and lazy tables
    rows = np.full((len(queries), k), -1, dtype=np.int64)
    times = []
    for i, query in enumerate(queries):
        if sweep is not None:
            sweep *= np.float32(1.0)
        start = time.perf_counter()
        hits = index.search(query, k=k, exclude_patient=patients[i])
        times.append(time.perf_counter() - start)
        rows[i, :len(hits)] = [int(hit.lesion_id) for hit in hits]
    return float(np.median(times)) * 1e3, rows


def _nearest_patients(index, queries: np.ndarray) -> list[str]:
    """The patient of each query's nearest lesion: excluding it forces the search to skip real hits."""
    rows, _ = index.search_rows(queries, k=1)
    return [index.entry(int(r)).patient_id for r in rows[:, 0]]


def bench_retrieval(n_small: int = 32768, n_large: int = 1_000_000, dim: int = 256, seed: int = 0, *,
                    n_queries: int = 256, k: int = 5, progress: bool = True) -> dict[str, Any]:
    """Measures the reference index at DeepLesion scale (exact) and at a million lesions (approximate).

    Latencies are medians per ``ReferenceIndex.search`` call with a single query (what one annotation costs),
    including the conversion to ``SimilarLesion``; the 32k exact ones with the index evicted from the caches
    first, as in annotation (``retrieval_ms_32k_hot``: without). Recall@k compares the approximate index with
    brute-force search over ``n_queries`` held-out queries.

    Returns:
        ``retrieval_ms_32k``, ``retrieval_ms_1m``, ``retrieval_recall5_1m``, ``build_s_1m`` (the keys keep
        these names whatever the sizes), plus the latencies when each query excludes the patient of its
        nearest lesion (``*_excluding``), ``exact_ms_1m`` (brute force at the large size, for scale),
        ``build_s_32k``, the sizes, the faiss method and parameters and the thread count.
    """
    import faiss

    from ..retrieval.index import AUTO_EXACT_MAX, ReferenceIndex

    if n_queries < 1 or k < 1:
        raise invalid("n_queries/k", "must be positive", (n_queries, k))
    say = print if progress else (lambda *a, **kw: None)
    digest, labels = "bench", ["lung", "nodule"]

    data = clustered_embeddings(n_small + n_queries, dim, seed=seed)
    start = time.perf_counter()
    small = ReferenceIndex.build(data[:n_small], _entries(n_small), model_digest=digest, label_names=labels,
                                 method="exact")
    build_small = time.perf_counter() - start
    ms_small, _ = _time_single_queries(small, data[n_small:], k, evict=True)
    ms_small_hot, _ = _time_single_queries(small, data[n_small:], k)
    ms_small_excluding, _ = _time_single_queries(small, data[n_small:], k,
                                                 _nearest_patients(small, data[n_small:]), evict=True)
    say(f"exact  {n_small:>9,} x {dim}: {ms_small:.3f} ms/query ({ms_small_excluding:.3f} excluding a patient, "
        f"{ms_small_hot:.3f} with the index in cache)")
    del small, data

    data = clustered_embeddings(n_large + n_queries, dim, seed=seed + 1)
    vectors, queries = data[:n_large], data[n_large:].copy()
    truth = exact_neighbours(vectors, queries, k)
    start = time.perf_counter()
    large = ReferenceIndex.build(vectors, _entries(n_large), model_digest=digest, label_names=labels,
                                 method="auto" if n_large > AUTO_EXACT_MAX else "ivf", progress=progress)
    build_large = time.perf_counter() - start
    ms_large, found = _time_single_queries(large, queries, k)
    recall = recall_at_k(found, truth)
    ms_large_excluding, _ = _time_single_queries(large, queries, k, _nearest_patients(large, queries))
    say(f"{large.method:<6} {n_large:>9,} x {dim}: {ms_large:.3f} ms/query ({ms_large_excluding:.3f} excluding "
        f"a patient), recall@{k} {recall:.4f}, build {build_large:.1f} s, params {large.params}")
    n_exact = min(32, n_queries)
    start = time.perf_counter()
    for query in queries[:n_exact]:
        scores = vectors @ query
        np.argpartition(-scores, k - 1)[:k]
    ms_exact_large = (time.perf_counter() - start) / n_exact * 1e3
    return {
        "retrieval_ms_32k": ms_small,
        "retrieval_ms_1m": ms_large,
        "retrieval_recall5_1m": recall,
        "build_s_1m": build_large,
        "retrieval_ms_32k_excluding": ms_small_excluding,
        "retrieval_ms_32k_hot": ms_small_hot,
        "retrieval_ms_1m_excluding": ms_large_excluding,
        "build_s_32k": build_small,
        "exact_ms_1m": ms_exact_large,
        "n_small": n_small,
        "n_large": n_large,
        "dim": dim,
        "k": k,
        "n_queries": n_queries,
        "method_1m": large.method,
        "params_1m": large.params,
        "threads": faiss.omp_get_max_threads(),
    }
