"""The reference index: similar-lesion retrieval over the embeddings of a labelled reference set.

LesaNet shows a radiologist the reference lesions nearest to the query in its 256-D embedding space, as
evidence for the predicted labels, and never a lesion of the query's own patient (that would be the same
lesion seen again, not evidence). Embeddings are L2-normalised, so the L2 distance and the cosine similarity
carry the same order: ``distance^2 = 2 - 2 cos``.

Exact search of one query (annotation) in a process that has torch scores an int8 (else float16) copy and
re-ranks the candidates exactly (``exact.py``: same neighbours, a quarter of the bytes, no dependence on the BLAS
vendor); batches
of queries (evaluation) are one float32 matrix product and an ``argpartition``. Above ``AUTO_EXACT_MAX`` entries ``method="auto"`` switches to a faiss inverted file
(``ann.py``), which keeps latency in milliseconds at millions of entries. Files are handled in ``storage.py``.

Example:
    >>> import numpy as np
    >>> vectors = np.eye(3, 4, dtype=np.float32)
    >>> entries = [ReferenceEntry(f"L{i}", f"P{i % 2}", ("liver",)) for i in range(3)]
    >>> index = ReferenceIndex.build(vectors, entries, model_digest="abc", label_names=["liver"])
    >>> [hit.lesion_id for hit in index.search(vectors[0], k=2, exclude_patient="P0")]
    ['L1']
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import invalid
from ..result import SimilarLesion
from . import ann

METHODS = ("auto", "exact", "ivf", "hnsw")
# Measured on the 2-core CPU: exact search costs 0.7 ms at 32k, 1.4 ms at 64k, then leaves the caches (10 ms at
# 128k, 30 ms at 200k); an inverted file stays near 1-3 ms up to 1M and builds in seconds.
AUTO_EXACT_MAX = 100_000
# Unit-norm tolerance: float32 embeddings written by the model are normalised to ~1e-7.
_NORM_TOLERANCE = 1e-3
# Exact search scores at most this many query x entry pairs at once (128 MB of float32).
_SCORE_BLOCK = 32 * 2**20
# Up to this many queries are searched one by one from the compressed copy (exact.py); more go through one float32
# matrix product, which is compute-bound and where the compressed copy saves nothing.
_SCORER_MAX_QUERIES = 4
# Below this many rows the index fits in cache and the float32 product is as fast: no compressed copy is made.
_SCORER_MIN_ROWS = 4096

PatientFilter = str | Sequence[str | None] | None


@dataclass(frozen=True)
class ReferenceEntry:
    """One reference lesion: who it belongs to and what a radiologist sees of it.

    Attributes:
        lesion_id: unique identifier (e.g. DeepLesion's row index as a string).
        patient_id: patient identifier, used to keep a query's own patient out of its results.
        labels: the lesion's labels (term names), shown as evidence.
        sentence: its report sentence.
        thumbnail: small uint8 grey image (h x w, e.g. 64 x 64) of its key patch, or None.
    """

    lesion_id: str
    patient_id: str
    labels: tuple[str, ...]
    sentence: str = ""
    thumbnail: np.ndarray | None = None


class ReferenceIndex:
    """Embeddings of reference lesions with their metadata, searchable by L2 distance.

    Build with :meth:`build` or :meth:`load`; the constructor is internal. An index remembers the digest of the
    model and the label names that produced its embeddings, so it cannot be used with another model by mistake.
    """

    def __init__(self, embeddings: np.ndarray, columns: dict[str, Any], *, model_digest: str,
                 label_names: Sequence[str], method: str, params: dict[str, Any] | None, faiss_index=None):
        self._embeddings = embeddings
        self._lesion_ids: list[str] = columns["lesion_ids"]
        self._patient_ids: list[str] = columns["patient_ids"]
        self._labels: list[tuple[str, ...]] = columns["labels"]
        self._sentences: list[str] = columns["sentences"]
        self._thumbnails: np.ndarray = columns["thumbnails"]
        self._has_thumbnail: np.ndarray = columns["has_thumbnail"]
        self._model_digest = model_digest
        self._label_names = tuple(label_names)
        self._method = method
        self._params = dict(params) if params else None
        self._faiss = faiss_index
        self._patient_codes: np.ndarray | None = None
        self._patient_lookup: dict[str, int] = {}
        self._patient_rows: list[np.ndarray] = []
        self._torch_embeddings = None
        self._scorer: Any = None  # exact.create_scorer's, built on the first single query; False: declined

    # ----------------------------------------------------------------------------------------------- building
    @classmethod
    def build(cls, embeddings: np.ndarray, entries: Sequence[ReferenceEntry], *, model_digest: str,
              label_names: Sequence[str], method: str = "auto", params: dict[str, Any] | None = None,
              progress: bool = False) -> ReferenceIndex:
        """Indexes ``embeddings`` (N x D, L2-normalised; row i describes ``entries[i]``).

        Args:
            embeddings: float32 array (other float types are converted); kept by reference when already
                C-contiguous float32, so a million rows are not copied.
            entries: one :class:`ReferenceEntry` per row; lesion ids must be unique; thumbnails, where given,
                must share one shape.
            model_digest: digest of the model that computed the embeddings.
            label_names: the model's label names, in order.
            method: ``"exact"``, ``"ivf"`` (faiss IVF-Flat), ``"hnsw"`` (faiss HNSW-Flat) or ``"auto"``
                (exact up to ``AUTO_EXACT_MAX`` entries, IVF above).
            params: faiss parameters overriding :func:`ann.default_params` (``nlist``, ``nprobe``,
                ``train_size``, ``seed`` for IVF; ``hnsw_m``, ``ef_construction``, ``ef_search`` for HNSW).
            progress: show a progress bar while adding vectors to a faiss index.

        Raises:
            LesaNetError: naming the argument, rule and offending value.
        """
        embeddings = _check_embeddings(embeddings, "embeddings")
        count, dim = embeddings.shape
        _check_identity(model_digest, label_names)
        if method not in METHODS:
            raise invalid("method", f"must be one of {METHODS}", method)
        if method == "auto":
            method = "exact" if count <= AUTO_EXACT_MAX else "ivf"
        if method == "exact":
            if params:
                raise invalid("params", "must be empty for exact search (it has no parameters)", params)
            full_params = None
        else:
            full_params = ann.check_params(method, dict(params or {}), count)
        columns = _columns(entries, count)
        faiss_index = ann.build_index(embeddings, method, full_params, progress) if full_params else None
        return cls(embeddings, columns, model_digest=model_digest, label_names=label_names, method=method,
                   params=full_params, faiss_index=faiss_index)

    # ------------------------------------------------------------------------------------------- properties
    def __len__(self) -> int:
        return int(self._embeddings.shape[0])

    def __repr__(self) -> str:
        return (f"ReferenceIndex({len(self)} lesions, dim={self.dim}, method={self.method!r}, "
                f"model_digest={self.model_digest!r})")

    @property
    def dim(self) -> int:
        return int(self._embeddings.shape[1])

    @property
    def method(self) -> str:
        """``"exact"``, ``"ivf"`` or ``"hnsw"`` (``"auto"`` is resolved at build time)."""
        return self._method

    @property
    def model_digest(self) -> str:
        return self._model_digest

    @property
    def label_names(self) -> tuple[str, ...]:
        return self._label_names

    @property
    def params(self) -> dict[str, Any] | None:
        """The faiss parameters of an approximate index (a copy), None for exact search."""
        return dict(self._params) if self._params else None

    @property
    def embeddings(self) -> np.ndarray:
        """The stored embeddings, read-only (N x D float32)."""
        view = self._embeddings.view()
        view.flags.writeable = False
        return view

    def entry(self, row: int) -> ReferenceEntry:
        """The reference lesion stored at ``row`` (0-based), with its thumbnail when it has one."""
        if isinstance(row, bool) or not isinstance(row, int | np.integer) or not 0 <= row < len(self):
            raise invalid("row", f"must be an integer in [0, {len(self)})", row)
        return ReferenceEntry(self._lesion_ids[row], self._patient_ids[row], self._labels[row],
                              self._sentences[row], self._thumbnail(row))

    def set_search_params(self, **params: int) -> None:
        """Changes search breadth of an approximate index (``nprobe`` for IVF, ``ef_search`` for HNSW)."""
        allowed = {"ivf": {"nprobe"}, "hnsw": {"ef_search"}}.get(self._method, set())
        for name, value in params.items():
            if name not in allowed:
                raise invalid(name, f"is not a search parameter of a {self._method!r} index {sorted(allowed)}",
                              value)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise invalid(name, "must be a positive integer", value)
            self._params[name] = min(value, self._params["nlist"]) if name == "nprobe" else value

    # ---------------------------------------------------------------------------------------------- search
    def search(self, embedding: np.ndarray, k: int = 5,
               exclude_patient: PatientFilter = None) -> list[SimilarLesion] | list[list[SimilarLesion]]:
        """The ``k`` reference lesions nearest to the query, nearest first.

        Args:
            embedding: one L2-normalised query (D,) or a batch (Q, D).
            k: number of lesions to return per query (fewer only when the index has fewer eligible lesions).
            exclude_patient: a patient whose lesions are never returned; for a batch, either one patient for
                all queries or one (or None) per query.

        Returns:
            A list of :class:`SimilarLesion` for one query, a list of such lists for a batch.
        """
        single = np.ndim(embedding) == 1
        rows, distances = self.search_rows(embedding, k, exclude_patient)
        results = [[self._similar(int(r), float(d)) for r, d in zip(rr, dd, strict=True) if r >= 0]
                   for rr, dd in zip(rows, distances, strict=True)]
        return results[0] if single else results

    def search_rows(self, queries: np.ndarray, k: int = 5,
                    exclude_patient: PatientFilter = None) -> tuple[np.ndarray, np.ndarray]:
        """Array form of :meth:`search` for evaluation loops (e.g. ACG@K over a test set).

        Returns:
            ``rows`` (Q x k int64, ``-1`` where fewer than k lesions are eligible) and ``distances``
            (Q x k float32 L2 distances, ``inf`` where the row is ``-1``), nearest first. A (D,) query gives
            Q = 1.
        """
        queries = _check_embeddings(queries, "embedding", dim=self.dim)
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise invalid("k", "must be a positive integer", k)
        k = int(k)
        excluded = self._excluded_codes(exclude_patient, len(queries))
        if self._faiss is None:
            return self._exact(queries, k, excluded)
        return self._approximate(queries, k, excluded)

    def _exact(self, queries: np.ndarray, k: int, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        count = len(self)
        rows = np.full((len(queries), k), -1, dtype=np.int64)
        distances = np.full((len(queries), k), np.inf, dtype=np.float32)
        take = min(k, count)
        # A faiss index refills its rare short answers here: no compressed copy of a million rows for that.
        scorer = (self._compressed_scorer() if len(queries) <= _SCORER_MAX_QUERIES and self._faiss is None
                  else None)
        if scorer is not None:
            for i, (query, code) in enumerate(zip(queries, excluded, strict=True)):
                top, top_scores = scorer.top_k(query, k, self._patient_rows[code] if code >= 0 else None)
                rows[i, :len(top)] = top
                distances[i, :len(top)] = np.sqrt(np.maximum(2.0 - 2.0 * top_scores, 0.0))
            return rows, distances
        block = max(1, _SCORE_BLOCK // count)
        for start in range(0, len(queries), block):
            scores = self._similarities(queries[start:start + block])  # cosine similarities
            for i, code in enumerate(excluded[start:start + block]):
                if code >= 0:
                    scores[i, self._patient_rows[code]] = -np.inf
            if take < count:
                top = np.argpartition(-scores, take - 1, axis=1)[:, :take]
            else:
                top = np.broadcast_to(np.arange(count), (len(scores), count))
            top_scores = np.take_along_axis(scores, top, axis=1)
            # Nearest first; equal scores in row order, so results do not depend on argpartition's internals.
            order = np.lexsort((top, -top_scores))
            top = np.take_along_axis(top, order, axis=1)
            top_scores = np.take_along_axis(top_scores, order, axis=1)
            valid = np.isfinite(top_scores)
            rows[start:start + len(scores), :take] = np.where(valid, top, -1)
            distances[start:start + len(scores), :take] = np.where(
                valid, np.sqrt(np.maximum(2.0 - 2.0 * top_scores, 0.0)), np.inf)
        return rows, distances

    def _approximate(self, queries: np.ndarray, k: int, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        count = len(self)
        # Over-fetch by the size of the largest excluded patient: then removing that patient's lesions can
        # never leave fewer than k hits, as long as faiss itself returned enough candidates.
        extra = max((len(self._patient_rows[c]) for c in set(excluded.tolist()) if c >= 0), default=0)
        fetch = min(count, k + extra)
        eligible = np.array([count - (len(self._patient_rows[c]) if c >= 0 else 0) for c in excluded])
        want = np.minimum(k, eligible)
        rows = np.full((len(queries), k), -1, dtype=np.int64)
        distances = np.full((len(queries), k), np.inf, dtype=np.float32)
        pending = np.arange(len(queries))
        widen, widest = 1, ann.max_widen(self._method, self._params, count)
        while len(pending):
            squared, found = ann.search_index(self._faiss, self._method, self._params, queries[pending], fetch,
                                              widen)
            keep = found >= 0
            if (excluded[pending] >= 0).any():
                keep &= self._codes()[np.maximum(found, 0)] != excluded[pending, None]
            short = []
            for j, q in enumerate(pending):
                hits = np.flatnonzero(keep[j])[:k]
                rows[q], distances[q] = -1, np.inf  # a wider search replaces the whole row
                rows[q, :len(hits)] = found[j, hits]
                distances[q, :len(hits)] = np.sqrt(np.maximum(squared[j, hits], 0.0))
                if len(hits) < want[q]:
                    short.append(q)
            pending = np.asarray(short, dtype=np.int64)
            if len(pending) and widen >= min(widest, 8):
                # Refill the rare queries whose candidate lists ran dry even when widened: scan exactly.
                rows[pending], distances[pending] = self._exact(queries[pending], k, excluded[pending])
                break
            widen *= 2
        return rows, distances

    # --------------------------------------------------------------------------------------------- helpers
    def _compressed_scorer(self):
        """The int8 or float16 scorer of :mod:`.exact` in a torch process (built once), else None."""
        if self._scorer is None:
            torch = sys.modules.get("torch")
            if torch is None or len(self) < _SCORER_MIN_ROWS:
                return None
            from .exact import create_scorer

            self._scorer = create_scorer(self._embeddings, torch) or False
        return self._scorer or None

    def _similarities(self, queries: np.ndarray) -> np.ndarray:
        """Query x entry cosine similarities.

        In a process that already uses PyTorch (annotation), the product runs on torch's thread pool: numpy's
        OpenBLAS pool keeps spinning after a call and steals the cores the next forward pass needs (measured:
        forward 31 -> 98 ms), and torch's two threads read the 33 MB of a 32k index from memory about twice as
        fast as one BLAS thread. Elsewhere numpy does it; both give the same float32 products.
        """
        torch = sys.modules.get("torch")
        if torch is None:
            return queries @ self._embeddings.T
        with warnings.catch_warnings():  # read-only arrays are shared with torch, never written
            warnings.simplefilter("ignore", UserWarning)
            if self._torch_embeddings is None:
                self._torch_embeddings = torch.from_numpy(self._embeddings)
            with torch.inference_mode():
                return (torch.from_numpy(np.ascontiguousarray(queries)) @ self._torch_embeddings.T).numpy()

    def _codes(self) -> np.ndarray:
        """Patient of each row as a small integer (built on first use: a set of 1M lesions takes ~0.3 s)."""
        if self._patient_codes is None:
            lookup: dict[str, int] = {}
            codes = np.fromiter((lookup.setdefault(p, len(lookup)) for p in self._patient_ids),
                                dtype=np.int64, count=len(self._patient_ids))
            order = np.argsort(codes, kind="stable")
            bounds = np.searchsorted(codes[order], np.arange(len(lookup) + 1))
            self._patient_rows = [order[bounds[i]:bounds[i + 1]] for i in range(len(lookup))]
            self._patient_lookup = lookup
            self._patient_codes = codes
        return self._patient_codes

    def _excluded_codes(self, exclude_patient: PatientFilter, n_queries: int) -> np.ndarray:
        """Code of the excluded patient per query; -1 for none or a patient absent from the index."""
        if exclude_patient is None or isinstance(exclude_patient, str):
            per_query = [exclude_patient] * n_queries
        else:
            per_query = list(exclude_patient)
            if len(per_query) != n_queries:
                raise invalid("exclude_patient", f"must be one patient or one per query ({n_queries})",
                              f"{len(per_query)} patients")
        if any(p is not None and not isinstance(p, str) for p in per_query):
            raise invalid("exclude_patient", "must be a string or None",
                          next(p for p in per_query if p is not None and not isinstance(p, str)))
        if all(p is None for p in per_query):
            return np.full(n_queries, -1, dtype=np.int64)
        self._codes()
        return np.array([self._patient_lookup.get(p, -1) if p is not None else -1 for p in per_query],
                        dtype=np.int64)

    def _thumbnail(self, row: int) -> np.ndarray | None:
        return self._thumbnails[row].copy() if self._has_thumbnail[row] else None

    def _similar(self, row: int, distance: float) -> SimilarLesion:
        return SimilarLesion(self._lesion_ids[row], self._patient_ids[row], distance, self._labels[row],
                             self._sentences[row], self._thumbnail(row))

    # ------------------------------------------------------------------------------------------------ files
    def save(self, folder: str | os.PathLike, overwrite: bool = False) -> None:
        """Writes the index to ``folder`` atomically; see ``storage.py`` for the format."""
        from .storage import save_index

        save_index(self, folder, overwrite=overwrite)

    @classmethod
    def load(cls, folder: str | os.PathLike, *, model_digest: str | None = None,
             label_names: Sequence[str] | None = None) -> ReferenceIndex:
        """Reads an index written by :meth:`save`, refusing one built by another model or label set.

        Raises:
            LesaNetError: a file is missing or corrupt (naming it), or the stored model digest or label names
                differ from the given ones (naming both digests or the first differing label).
        """
        from .storage import load_index

        return load_index(cls, folder, model_digest=model_digest, label_names=label_names)


def _check_embeddings(values: np.ndarray, argument: str, dim: int | None = None) -> np.ndarray:
    """A C-contiguous float32 2-D view of ``values`` (a copy only when needed), finite and unit-norm."""
    array = np.asarray(values)
    if array.dtype.kind != "f":
        raise invalid(argument, "must be a float array", str(array.dtype))
    if array.ndim == 1 and argument == "embedding":
        array = array[None, :]
    expected = "(Q, D)" if argument == "embedding" else "(N, D)"
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise invalid(argument, f"must be a non-empty {expected} array", array.shape)
    if dim is not None and array.shape[1] != dim:
        raise invalid(argument, f"must have the index's dimension {dim}", array.shape[1])
    array = np.ascontiguousarray(array, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", array, array, dtype=np.float64))
    bad = np.flatnonzero(~(np.abs(norms - 1.0) <= _NORM_TOLERANCE))  # NaN and inf norms are bad too
    if len(bad):
        raise invalid(argument, f"rows must be finite and L2-normalised (norm 1 +- {_NORM_TOLERANCE}); row "
                      f"{int(bad[0])} of {len(array)} has norm", float(norms[bad[0]]))
    return array


def _check_identity(model_digest: str, label_names: Sequence[str]) -> None:
    if not isinstance(model_digest, str) or not model_digest:
        raise invalid("model_digest", "must be a non-empty string", model_digest)
    if isinstance(label_names, str) or not all(isinstance(x, str) for x in label_names):
        raise invalid("label_names", "must be a sequence of strings", label_names)
    seen: set[str] = set()
    for name in label_names:
        if name in seen:
            raise invalid("label_names", "must not repeat a label", name)
        seen.add(name)


def _columns(entries: Sequence[ReferenceEntry], count: int) -> dict[str, Any]:
    """Entries as columns: a million small objects would cost far more memory than lists and one array."""
    if len(entries) != count:
        raise invalid("entries", f"must have one entry per embedding row ({count})", len(entries))
    lesion_ids, patient_ids, labels, sentences = [], [], [], []
    thumb_shape: tuple[int, ...] | None = None
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, ReferenceEntry):
            raise invalid(f"entries[{i}]", "must be a ReferenceEntry", type(entry).__name__)
        for name in ("lesion_id", "patient_id", "sentence"):
            if not isinstance(getattr(entry, name), str):
                raise invalid(f"entries[{i}].{name}", "must be a string", getattr(entry, name))
        if entry.lesion_id in seen:
            raise invalid(f"entries[{i}].lesion_id", "must be unique in the index", entry.lesion_id)
        seen.add(entry.lesion_id)
        entry_labels = tuple(entry.labels)
        if not all(isinstance(x, str) for x in entry_labels):
            raise invalid(f"entries[{i}].labels", "must be term names (strings)", entry.labels)
        if entry.thumbnail is not None:
            thumb = entry.thumbnail
            if not isinstance(thumb, np.ndarray) or thumb.dtype != np.uint8 or thumb.ndim != 2:
                raise invalid(f"entries[{i}].thumbnail", "must be a 2-D uint8 array",
                              getattr(thumb, "shape", type(thumb).__name__))
            if thumb_shape is None:
                thumb_shape = thumb.shape
            elif thumb.shape != thumb_shape:
                raise invalid(f"entries[{i}].thumbnail", f"must have the shape of the first thumbnail "
                              f"{thumb_shape}", thumb.shape)
        lesion_ids.append(entry.lesion_id)
        patient_ids.append(entry.patient_id)
        labels.append(entry_labels)
        sentences.append(entry.sentence)
    height, width = thumb_shape or (0, 0)
    thumbnails = np.zeros((count, height, width), dtype=np.uint8)
    has_thumbnail = np.zeros(count, dtype=bool)
    if thumb_shape is not None:
        for i, entry in enumerate(entries):
            if entry.thumbnail is not None:
                thumbnails[i] = entry.thumbnail
                has_thumbnail[i] = True
    return {"lesion_ids": lesion_ids, "patient_ids": patient_ids, "labels": labels, "sentences": sentences,
            "thumbnails": thumbnails, "has_thumbnail": has_thumbnail}

