"""Realistic synthetic embeddings for retrieval tests and benchmarks, and brute-force ground truth for recall.

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
