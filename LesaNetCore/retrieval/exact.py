"""Exact nearest-neighbour search for one query at a time, from a compressed copy and an exact re-rank.

Why: one exact query reads the whole index, 33.5 MB at DeepLesion's 32k x 256 in float32, and in annotation the
forward pass has just evicted it from the caches, so the search is a memory-bandwidth problem. Through MKL on an
AMD EPYC the float32 product also ran at a fraction of the machine's bandwidth (3.2 ms per query, 0.8 on a
Xeon). A compressed copy reads fewer bytes, and both products below run at the memory's speed whatever the BLAS.
Measured on the project's 2-core AMD EPYC with the caches flushed before each query: the float32 product 2.3-2.7
ms, the float16 copy (16.8 MB) 0.5-0.8 ms, the int8 copy (8.4 MB, oneDNN's s8 x s8 -> s32 GEMM) 0.25-0.31 ms.

Two scorers, tried in this order by :func:`create_scorer`:

- :class:`Int8Scorer`: each row ``x`` is stored as ``s * x8`` (``x8`` int8, ``s = max|x| / 127``) and the query
  likewise as ``t * q8``; ``s t (q8 . x8)`` is computed exactly in int32. Its distance from the real ``q . x`` is
  at most ``|q| |x - s x8| + s |q - t q8| |x8|`` (Cauchy-Schwarz on both rounding residuals), a bound computed
  from the stored residual norms, not estimated: no row can be missed.
- :class:`HalfPrecisionScorer` (torch without an int8 GEMM on the CPU): float16 rounds each component by at
  most 2^-11 of its value, so for unit vectors a half-precision score differs from the float32 one by at most
  about 1.5e-3; :meth:`HalfPrecisionScorer.create` measures the error on sample rows and declines (the caller
  keeps the float32 product) if this torch's float16 product is less accurate than :data:`TOLERANCE`.

Exactness of the re-rank: with every approximate score within ``B`` of the true one, the k-th best true score is
at least the k-th best approximate score minus ``B``, so each true top-k row has an approximate score of at least
that minus ``2 B``. Those few candidates (a few dozen on a 32k index) are scored again in float32 and ranked as the
float32 search ranks them: nearest first, equal scores in row order.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

TOLERANCE = 2e-3  # bound on |float16 score - float32 score| for unit vectors, with margin (module docstring)
# Slack for the float32 product the re-rank reproduces: 256 rounded products and sums of unit vectors stay
# within 256 * 2^-24 ~ 1.5e-5 of the real score; ties at that level must not fall out of the candidates.
FLOAT32_SLACK = 1e-4
_PROBES = 8  # index rows used as queries by the accuracy checks


def create_scorer(embeddings: np.ndarray, torch: Any) -> Int8Scorer | HalfPrecisionScorer | None:
    """The fastest trustworthy scorer for ``embeddings`` (N x D float32, unit rows), or None (use float32)."""
    return Int8Scorer.create(embeddings, torch) or HalfPrecisionScorer.create(embeddings, torch)


def _probe_rows(embeddings: np.ndarray) -> np.ndarray:
    return embeddings[np.linspace(0, len(embeddings) - 1, min(_PROBES, len(embeddings))).astype(np.int64)]


def _rerank(embeddings: np.ndarray, approx: np.ndarray, query: np.ndarray, k: int, margin: float,
            excluded_rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The exact top ``k`` among the rows whose approximate score is within ``margin`` of the k-th best."""
    if excluded_rows is not None and len(excluded_rows):
        approx[excluded_rows] = -np.inf
    count = len(approx)
    take = min(k, count)
    kth = np.partition(approx, count - take)[count - take]  # the take-th largest approximate score
    floor = kth - margin if np.isfinite(kth) else -np.inf
    candidates = np.flatnonzero((approx >= floor) & np.isfinite(approx))
    # einsum, not a BLAS call: a few dozen rows, and no BLAS thread pool woken next to torch's.
    exact = np.einsum("ij,j->i", embeddings[candidates], query)
    order = np.lexsort((candidates, -exact))[:take]
    return candidates[order], exact[order]


class Int8Scorer:
    """An int8 copy of an index's embeddings with per-row scales, and the exact top-k of one query from it.

    Build with :meth:`create`; it returns None where this torch has no CPU int8 GEMM (``torch._int_mm``) or it
    gives a wrong product.
    """

    def __init__(self, embeddings: np.ndarray, torch: Any) -> None:
        self._embeddings = embeddings
        self._torch = torch
        peak = np.abs(embeddings).max(axis=1)
        self._scales = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        codes = np.clip(np.rint(embeddings / self._scales[:, None]), -127, 127).astype(np.int8)
        residual = np.linalg.norm(embeddings - self._scales[:, None] * codes.astype(np.float32), axis=1)
        self._max_residual = float(residual.max(initial=0.0))
        self._max_scaled_norm = float((self._scales * np.linalg.norm(codes.astype(np.float32), axis=1)).max(initial=0.0))
        self._codes = torch.from_numpy(codes)

    @classmethod
    def create(cls, embeddings: np.ndarray, torch: Any) -> Int8Scorer | None:
        """A scorer for ``embeddings``, or None where ``torch._int_mm`` is missing or disagrees with int64 sums."""
        if not hasattr(torch, "_int_mm") or embeddings.shape[1] < 8:
            return None
        scorer = cls(embeddings, torch)
        try:
            sample = scorer._codes.numpy()[:2048].astype(np.int64)
            for query in _probe_rows(embeddings):
                q8, _ = scorer._quantize(query)
                if not np.array_equal(scorer._dots(q8)[:len(sample)], sample @ q8.astype(np.int64)):
                    return None
        except (RuntimeError, TypeError, ValueError):  # an older torch without the CPU kernel, or other shapes
            return None
        return scorer

    def _quantize(self, query: np.ndarray) -> tuple[np.ndarray, float]:
        peak = float(np.abs(query).max())
        scale = peak / 127.0 if peak > 0 else 1.0
        return np.clip(np.rint(query / scale), -127, 127).astype(np.int8), scale

    def _dots(self, q8: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            return torch._int_mm(self._codes, torch.from_numpy(q8).view(-1, 1)).view(-1).numpy()

    def scores(self, query: np.ndarray) -> tuple[np.ndarray, float]:
        """Approximate similarities of one query with every row (float32, N) and their proven error bound."""
        query = np.ascontiguousarray(query, dtype=np.float32)
        q8, scale = self._quantize(query)
        approx = np.multiply(self._dots(q8), self._scales, dtype=np.float32)
        approx *= scale
        query_residual = float(np.linalg.norm(query - scale * q8.astype(np.float32)))
        bound = float(np.linalg.norm(query)) * self._max_residual + query_residual * self._max_scaled_norm
        return approx, bound * (1 + 1e-3)  # the bound's own float32 rounding

    def top_k(self, query: np.ndarray, k: int, excluded_rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Rows and float32 cosine similarities of the ``k`` most similar rows, most similar first.

        Rows in ``excluded_rows`` never appear; fewer than ``k`` come back only when fewer are eligible. Equal
        scores are in row order, as in the float32 search.
        """
        approx, bound = self.scores(query)
        return _rerank(self._embeddings, approx, query, k, 2 * bound + FLOAT32_SLACK, excluded_rows)


class HalfPrecisionScorer:
    """The float16 copy of an index's unit-norm embeddings, and the exact top-k of one query from it.

    Build with :meth:`create`; it returns None where the half-precision product cannot be trusted or torch is
    not loaded.
    """

    def __init__(self, embeddings: np.ndarray, half: Any, torch: Any) -> None:
        self._embeddings = embeddings
        self._half = half
        self._torch = torch

    @classmethod
    def create(cls, embeddings: np.ndarray, torch: Any) -> HalfPrecisionScorer | None:
        """A scorer for ``embeddings`` (N x D float32, unit rows), or None if the float16 error check fails."""
        with warnings.catch_warnings():  # read-only arrays are shared with torch, never written
            warnings.simplefilter("ignore", UserWarning)
            full = torch.from_numpy(embeddings)
        scorer = cls(embeddings, full.half(), torch)
        probes = _probe_rows(embeddings)
        with torch.inference_mode():
            exact = (torch.from_numpy(np.ascontiguousarray(probes)) @ full.T).numpy()
        worst = max(float(np.max(np.abs(scorer.scores(query) - row))) for query, row in zip(probes, exact,
                                                                                           strict=True))
        return scorer if worst <= TOLERANCE / 2 else None

    def scores(self, query: np.ndarray) -> np.ndarray:
        """Half-precision similarities of one query with every row, as float32 (N,)."""
        torch = self._torch
        with torch.inference_mode():
            return torch.mv(self._half, torch.from_numpy(np.ascontiguousarray(query)).half()).float().numpy()

    def top_k(self, query: np.ndarray, k: int, excluded_rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`Int8Scorer.top_k`, from the float16 scores (within :data:`TOLERANCE` of float32)."""
        return _rerank(self._embeddings, self.scores(query), query, k, 2 * TOLERANCE, excluded_rows)
