"""Similar-lesion retrieval: the reference index (exact or faiss-approximate), its file format, synthetic data."""

from __future__ import annotations

from .index import AUTO_EXACT_MAX, ReferenceEntry, ReferenceIndex
from .synthetic import clustered_embeddings

__all__ = ["AUTO_EXACT_MAX", "ReferenceEntry", "ReferenceIndex", "clustered_embeddings"]
