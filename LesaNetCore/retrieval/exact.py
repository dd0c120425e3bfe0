"""Exact nearest-neighbour search for one query at a time, from a half-precision copy and an exact re-rank.

Why: one exact query reads the whole index, 33.5 MB at DeepLesion's 32k x 256 in float32, and in annotation the
forward pass has just evicted it from the caches, so the search is a memory-bandwidth problem. Through MKL on an
AMD EPYC the float32 product also ran at a fraction of the machine's bandwidth (3.2 ms per query, 0.8 on a
Xeon). A float16 copy halves the bytes and ``torch.mv`` reads it at full speed whatever the BLAS (0.8 ms per
query measured here with the caches flushed, against 2.7-2.9 for the float32 product).

Exactness: float16 rounds each component by at most 2^-11 of its value, so for unit vectors a half-precision
score differs from the float32 one by at most about 1.5e-3 (both vectors rounded, the result rounded once;
torch accumulates in float32). Every row whose half-precision score is within twice :data:`TOLERANCE` of the
k-th best can be among the true top k; those few candidates are scored again in float32 and ranked as the
float32 search ranks them. :meth:`HalfPrecisionScorer.create` measures the error on sample rows first and
declines (the caller then keeps the float32 product) if this torch's float16 product is less accurate.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

TOLERANCE = 2e-3  # bound on |float16 score - float32 score| for unit vectors, with margin (module docstring)
_PROBES = 8  # index rows used as queries by the accuracy check


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
        probes = embeddings[np.linspace(0, len(embeddings) - 1, min(_PROBES, len(embeddings))).astype(np.int64)]
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
        """Rows and float32 cosine similarities of the ``k`` most similar rows, most similar first.

        Rows in ``excluded_rows`` never appear; fewer than ``k`` come back only when fewer are eligible. Equal
        scores are in row order, as in the float32 search.
        """
        approx = self.scores(query)
        if excluded_rows is not None and len(excluded_rows):
            approx[excluded_rows] = -np.inf
        count = len(approx)
        take = min(k, count)
        kth = np.partition(approx, count - take)[count - take]  # the take-th largest half-precision score
        floor = kth - 2 * TOLERANCE if np.isfinite(kth) else -np.inf
        candidates = np.flatnonzero((approx >= floor) & np.isfinite(approx))
        # einsum, not a BLAS call: a few dozen rows, and no BLAS thread pool woken next to torch's.
        exact = np.einsum("ij,j->i", self._embeddings[candidates], query)
        order = np.lexsort((candidates, -exact))[:take]
        return candidates[order], exact[order]
