"""Retrieval benchmark on realistic synthetic embeddings: latency of exact and approximate search, recall.

Trained LesaNet embeddings are not spread uniformly over the sphere: the triplet loss pulls lesions with the
same labels together, so they cluster by label combination, and combinations of one body part sit near each
other. Uniform random vectors would have no neighbour structure at all (every point nearly equidistant),
which makes approximate search look both harder and meaningless. :func:`clustered_embeddings` draws a
two-level mixture instead: ``n_groups`` body-part directions, ``n_clusters`` label-combination centres around
them with Zipf-like sizes (a few common findings, a long tail), and points spread around each centre.

Example:
    >>> vectors = clustered_embeddings(100, dim=16, seed=0)
    >>> vectors.shape, vectors.dtype.name
    ((100, 16), 'float32')
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..errors import invalid

_CHUNK = 65536


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def clustered_embeddings(n: int, dim: int = 256, *, seed: int = 0, n_groups: int = 32, n_clusters: int = 1000,
                         spread: tuple[float, float] = (0.6, 1.0)) -> np.ndarray:
    """``n`` L2-normalised float32 vectors from a two-level mixture of clusters (see the module docstring).

    A centre is ``unit(group + u)`` with ``u`` a random unit vector (cos ~0.7 to its group); a point is
    ``unit(centre + s * v)`` with ``v`` a random unit-norm direction and ``s`` drawn per cluster from ``spread``
    (s = 0.6-1.0 gives cos ~0.5-0.75 to the centre, nearest-neighbour distances ~0.6-0.8, as between
    embeddings of similar lesions). The same seed gives the same distribution whatever ``n``, so a set of
    ``n + q`` points split in two gives queries held out from the indexed set.
    """
    for name, value in (("n", n), ("dim", dim), ("n_groups", n_groups), ("n_clusters", n_clusters)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise invalid(name, "must be a positive integer", value)
    if not (len(spread) == 2 and 0 <= spread[0] <= spread[1]):
        raise invalid("spread", "must be (low, high) with 0 <= low <= high", spread)
    rng = np.random.default_rng(seed)
    groups = _unit(rng.standard_normal((n_groups, dim)))
    centres = _unit(groups[rng.integers(0, n_groups, n_clusters)] + _unit(rng.standard_normal((n_clusters, dim))))
    centres = centres.astype(np.float32)
    weights = 1.0 / np.arange(1, n_clusters + 1) ** 0.8
    spreads = rng.uniform(spread[0], spread[1], n_clusters).astype(np.float32)
    # Points are drawn in chunks from their own stream so a million rows never need float64 temporaries.
    cluster = rng.choice(n_clusters, size=n, p=weights / weights.sum())
    out = np.empty((n, dim), dtype=np.float32)
    scale = np.float32(1.0 / np.sqrt(dim))
    for start in range(0, n, _CHUNK):
        ids = cluster[start:start + _CHUNK]
        block = rng.standard_normal((len(ids), dim), dtype=np.float32)
        block *= scale * spreads[ids, None]
        block += centres[ids]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:start + len(ids)] = block
    return out


def exact_neighbours(embeddings: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Rows of the ``k`` nearest embeddings per query by brute force, in blocks (ground truth for recall)."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(embeddings), _CHUNK * 2):
        scores = queries @ embeddings[start:start + _CHUNK * 2].T
        take = min(k, scores.shape[1])
        top = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        best_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, axis=1)], axis=1)
        best_rows = np.concatenate([best_rows, top + start], axis=1)
        keep = np.argsort(-best_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(best_scores, keep, axis=1)
        best_rows = np.take_along_axis(best_rows, keep, axis=1)
    return best_rows


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of the true k nearest that were found (``-1`` rows never count)."""
    k = truth.shape[1]
    return float(np.mean([len(set(f[f >= 0].tolist()) & set(t.tolist())) / k
                          for f, t in zip(found, truth, strict=True)]))


def _entries(n: int):
    from .index import ReferenceEntry

    # ~7 lesions per patient, as in DeepLesion (32,735 lesions of 4,427 patients).
    labels = ("lung", "nodule")
    return [ReferenceEntry(str(i), f"P{i // 7}", labels) for i in range(n)]


def _time_single_queries(index, queries: np.ndarray, k: int,
                         patients: list[str] | None = None) -> tuple[float, np.ndarray]:
    """Mean milliseconds per ``search`` call with one query at a time, as the annotator calls it.

    ``patients`` gives each query a patient to exclude (the annotator always excludes the query's own).
    """
    patients = patients or [None] * len(queries)
    index.search(queries[0], k=k, exclude_patient=patients[0])  # warm-up: allocations and lazy tables
    rows = np.full((len(queries), k), -1, dtype=np.int64)
    start = time.perf_counter()
    for i, query in enumerate(queries):
        hits = index.search(query, k=k, exclude_patient=patients[i])
        rows[i, :len(hits)] = [int(hit.lesion_id) for hit in hits]
    return (time.perf_counter() - start) / len(queries) * 1e3, rows


def _nearest_patients(index, queries: np.ndarray) -> list[str]:
    """The patient of each query's nearest lesion: excluding it forces the search to skip real hits."""
    rows, _ = index.search_rows(queries, k=1)
    return [index.entry(int(r)).patient_id for r in rows[:, 0]]


def bench_retrieval(n_small: int = 32768, n_large: int = 1_000_000, dim: int = 256, seed: int = 0, *,
                    n_queries: int = 256, k: int = 5, progress: bool = True) -> dict[str, Any]:
    """Measures the reference index at DeepLesion scale (exact) and at a million lesions (approximate).

    Latencies are per ``ReferenceIndex.search`` call with a single query (what one annotation costs), including
    the conversion to ``SimilarLesion``. Recall@k compares the approximate index with brute-force search over
    ``n_queries`` held-out queries.

    Returns:
        ``retrieval_ms_32k``, ``retrieval_ms_1m``, ``retrieval_recall5_1m``, ``build_s_1m`` (the keys keep
        these names whatever the sizes), plus the latencies when each query excludes the patient of its
        nearest lesion (``*_excluding``), ``exact_ms_1m`` (brute force at the large size, for scale),
        ``build_s_32k``, the sizes, the faiss method and parameters and the thread count.
    """
    import faiss

    from .index import AUTO_EXACT_MAX, ReferenceIndex

    if n_queries < 1 or k < 1:
        raise invalid("n_queries/k", "must be positive", (n_queries, k))
    say = print if progress else (lambda *a, **kw: None)
    digest, labels = "bench", ["lung", "nodule"]

    data = clustered_embeddings(n_small + n_queries, dim, seed=seed)
    start = time.perf_counter()
    small = ReferenceIndex.build(data[:n_small], _entries(n_small), model_digest=digest, label_names=labels,
                                 method="exact")
    build_small = time.perf_counter() - start
    ms_small, _ = _time_single_queries(small, data[n_small:], k)
    ms_small_excluding, _ = _time_single_queries(small, data[n_small:], k,
                                                 _nearest_patients(small, data[n_small:]))
    say(f"exact  {n_small:>9,} x {dim}: {ms_small:.3f} ms/query ({ms_small_excluding:.3f} excluding a patient)")
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
