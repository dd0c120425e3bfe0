"""Similar-lesion retrieval: the reference index (exact or faiss-approximate), its file format, its benchmark."""

from __future__ import annotations

from .bench import bench_retrieval, clustered_embeddings
from .index import AUTO_EXACT_MAX, ReferenceEntry, ReferenceIndex

__all__ = ["AUTO_EXACT_MAX", "ReferenceEntry", "ReferenceIndex", "bench_retrieval", "clustered_embeddings"]
