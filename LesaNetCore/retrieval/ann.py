"""Approximate nearest-neighbour search with faiss, for reference sets too large to scan on every query.

Exact search reads every stored embedding per query: at DeepLesion's 32k lesions that is under a millisecond,
but at a million it is tens of milliseconds and grows with the set. An inverted file (IVF-Flat) clusters the
vectors with k-means and scans only the ``nprobe`` lists nearest to the query; distances stay exact, only the
candidate set is approximate. On a 2-core CPU at 1M x 256 it builds in seconds (k-means on a sample, then one
assignment pass) where HNSW needs minutes, and reaches recall@5 ~1.0 at ~3 ms per query
(``LesaNetCore/bench/retrieval.py``).
HNSW is offered for users who prefer its latency profile and can afford its build time.

faiss is imported inside the functions: it is an optional dependency (the ``ann`` extra), needed only here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import LesaNetError, invalid

APPROX_METHODS = ("ivf", "hnsw")

# k-means wants ~40 training points per centroid; more costs time without improving the lists much.
_TRAIN_POINTS_PER_LIST = 40
_ADD_CHUNK = 65536


def _faiss():
    try:
        import faiss
    except ImportError as err:
        raise LesaNetError(
            "method: approximate search needs faiss (pip install 'LesaNetCore[ann]' or faiss-cpu), "
            f"but got ImportError: {err}"
        ) from err
    return faiss


def default_params(method: str, count: int) -> dict[str, Any]:
    """Parameters that meet the project's targets (< 15 ms, recall@5 >= 0.95 at 1M) with margin.

    IVF: ``nlist`` = sqrt(count) rounded to a power of two (1024 lists at 1M: lists of ~1k vectors), and
    ``nprobe`` = nlist / 32 (at least 8), which scans ~3% of the set; measured recall@5 was 0.998-1.0 on
    clustered data at 1M, where nlist / 64 already gave 0.98-0.99.
    HNSW: M = 32 links per node, efConstruction = 80, efSearch = 64.
    """
    if method == "ivf":
        nlist = int(2 ** round(math.log2(max(count, 1) ** 0.5))) if count > 1 else 1
        nlist = max(1, min(nlist, 65536, count))
        return {
            "nlist": nlist,
            "nprobe": min(nlist, max(8, nlist // 32)),
            "train_size": min(count, _TRAIN_POINTS_PER_LIST * nlist),
        }
    if method == "hnsw":
        return {"hnsw_m": 32, "ef_construction": 80, "ef_search": 64}
    raise invalid("method", f"must be one of {APPROX_METHODS}", method)


def check_params(method: str, params: dict[str, Any], count: int) -> dict[str, Any]:
    """Validates user parameters merged over the defaults; returns the complete set."""
    merged = default_params(method, count)
    unknown = sorted(set(params) - set(merged) - {"seed"})
    if unknown:
        raise invalid("params", f"must be among {sorted(merged) + ['seed']} for method {method!r}", unknown)
    merged.update(params)
    merged.setdefault("seed", 0)
    for name, value in merged.items():
        if isinstance(value, bool) or not isinstance(value, int) or (value < 1 and name != "seed"):
            raise invalid(name, "must be a positive integer", value)
    if method == "ivf":
        if merged["nlist"] > count:
            raise invalid("nlist", f"must be at most the number of entries ({count})", merged["nlist"])
        merged["nprobe"] = min(merged["nprobe"], merged["nlist"])
        merged["train_size"] = max(merged["nlist"], min(merged["train_size"], count))
    return merged


def build_index(embeddings: np.ndarray, method: str, params: dict[str, Any], progress: bool = False):
    """Builds a faiss index over ``embeddings`` (N x D float32, L2-normalised; row i gets id i)."""
    faiss = _faiss()
    count, dim = embeddings.shape
    if method == "ivf":
        quantizer = faiss.IndexFlatL2(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, params["nlist"], faiss.METRIC_L2)
        index.cp.seed = params["seed"]
        rng = np.random.default_rng(params["seed"])
        # A sorted sample reads memory in order; k-means needs no more than ~40 points per list.
        sample = np.sort(rng.choice(count, size=params["train_size"], replace=False))
        index.train(np.ascontiguousarray(embeddings[sample]))
        index.nprobe = params["nprobe"]
    else:
        index = faiss.IndexHNSWFlat(dim, params["hnsw_m"], faiss.METRIC_L2)
        index.hnsw.efConstruction = params["ef_construction"]
        index.hnsw.efSearch = params["ef_search"]
    starts = range(0, count, _ADD_CHUNK)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=f"faiss {method} add", unit="chunk", total=math.ceil(count / _ADD_CHUNK))
    for start in starts:
        index.add(np.ascontiguousarray(embeddings[start:start + _ADD_CHUNK]))
    return index


def search_index(index, method: str, params: dict[str, Any], queries: np.ndarray, k: int,
                 widen: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Squared L2 distances and rows (``-1`` where faiss found fewer than ``k``) of the ``k`` nearest.

    ``widen`` multiplies the search breadth (nprobe or efSearch), used to refill queries whose candidate
    lists ran short.
    """
    faiss = _faiss()
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if method == "ivf":
        nprobe = min(params["nlist"], params["nprobe"] * widen)
        search_params = faiss.SearchParametersIVF(nprobe=nprobe)
    else:
        # efSearch below k would cap the number of results at efSearch.
        search_params = faiss.SearchParametersHNSW(efSearch=max(params["ef_search"] * widen, k))
    distances, rows = index.search(queries, k, params=search_params)
    return distances, rows


def max_widen(method: str, params: dict[str, Any], count: int) -> int:
    """The widening factor at which a search is exhaustive (IVF) or as broad as it usefully gets (HNSW)."""
    if method == "ivf":
        return max(1, math.ceil(params["nlist"] / params["nprobe"]))
    return max(1, math.ceil(count / params["ef_search"]))


def write_index(index, path: str) -> None:
    _faiss().write_index(index, path)


def read_index(path: str, *, argument: str):
    """Reads a faiss index file; a damaged file becomes a LesaNetError naming it."""
    faiss = _faiss()
    try:
        return faiss.read_index(path)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise invalid(argument, f"must be a readable faiss index ({first[:200]})", path) from err
