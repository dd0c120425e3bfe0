"""The reference index on disk: round trips, thumbnails, atomic non-clobbering writes, and refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from LesaNetCore.errors import LesaNetError
from LesaNetCore.retrieval import ReferenceEntry, ReferenceIndex, clustered_embeddings

LABELS = ["liver", "lung", "nodule"]


def _thumb(i: int) -> np.ndarray | None:
    if i % 3 == 0:
        return None
    return ((np.arange(64 * 48).reshape(64, 48) * (i + 1)) % 256).astype(np.uint8)


@pytest.fixture(scope="module")
def built():
    data = clustered_embeddings(410, dim=24, seed=7, n_clusters=20)
    vectors, queries = data[:400], data[400:]
    entries = [ReferenceEntry(f"L{i}", f"P{i // 4}", (LABELS[i % 3], "nodule"), f"Größe {i} mm", _thumb(i))
               for i in range(400)]
    return vectors, queries, entries


def _exact(built) -> ReferenceIndex:
    vectors, _, entries = built
    return ReferenceIndex.build(vectors, entries, model_digest="sha256:aaa", label_names=LABELS)


def test_exact_round_trip_keeps_results_entries_and_thumbnails(built, tmp_path):
    vectors, queries, entries = built
    index = _exact(built)
    index.save(tmp_path / "ref")
    assert sorted(p.name for p in (tmp_path / "ref").iterdir()) == [
        "embeddings.npy", "entries.jsonl", "index.json", "thumbnails.npy"]
    loaded = ReferenceIndex.load(tmp_path / "ref", model_digest="sha256:aaa", label_names=LABELS)
    assert (len(loaded), loaded.dim, loaded.method) == (400, 24, "exact")
    assert loaded.model_digest == "sha256:aaa" and loaded.label_names == tuple(LABELS)
    np.testing.assert_array_equal(loaded.embeddings, vectors)
    for row in (0, 1, 2, 399):
        got, want = loaded.entry(row), entries[row]
        assert (got.lesion_id, got.patient_id, got.labels, got.sentence) == (
            want.lesion_id, want.patient_id, want.labels, want.sentence)
        if want.thumbnail is None:
            assert got.thumbnail is None
        else:
            np.testing.assert_array_equal(got.thumbnail, want.thumbnail)
            assert got.thumbnail.dtype == np.uint8
    for query in queries:
        before = [(h.lesion_id, h.distance) for h in index.search(query, k=6, exclude_patient="P3")]
        after = [(h.lesion_id, h.distance) for h in loaded.search(query, k=6, exclude_patient="P3")]
        assert len(before) == 6 and before == after
    hit = next(h for h in loaded.search(queries[0], k=20) if int(h.lesion_id[1:]) % 3)
    np.testing.assert_array_equal(hit.thumbnail, _thumb(int(hit.lesion_id[1:])))


def test_index_without_thumbnails(tmp_path):
    vectors = np.eye(3, 4, dtype=np.float32)
    entries = [ReferenceEntry(str(i), "p", ()) for i in range(3)]
    ReferenceIndex.build(vectors, entries, model_digest="d", label_names=[]).save(tmp_path / "t")
    loaded = ReferenceIndex.load(tmp_path / "t")
    assert loaded.entry(1).thumbnail is None and loaded.search(vectors[1], k=1)[0].thumbnail is None
    assert np.load(tmp_path / "t" / "thumbnails.npy").shape == (3, 0, 0)


def test_ivf_round_trip(built, tmp_path):
    pytest.importorskip("faiss", reason="faiss-cpu is the optional 'ann' dependency of approximate search")
    vectors, queries, entries = built
    index = ReferenceIndex.build(vectors, entries, model_digest="d", label_names=LABELS, method="ivf",
                                 params={"nlist": 16, "nprobe": 3})
    index.save(tmp_path / "ivf")
    assert (tmp_path / "ivf" / "faiss.index").is_file()
    loaded = ReferenceIndex.load(tmp_path / "ivf")
    assert loaded.method == "ivf" and loaded.params == index.params
    np.testing.assert_array_equal(loaded.search_rows(queries, k=5)[0], index.search_rows(queries, k=5)[0])


def test_save_never_clobbers_without_overwrite(built, tmp_path):
    index = _exact(built)
    index.save(tmp_path / "ref")
    with pytest.raises(LesaNetError, match="folder: refusing to overwrite an existing index"):
        index.save(tmp_path / "ref")
    other = ReferenceIndex.build(np.eye(2, 24, dtype=np.float32), [ReferenceEntry("a", "p", ()),
                                 ReferenceEntry("b", "q", ())], model_digest="other", label_names=LABELS)
    other.save(tmp_path / "ref", overwrite=True)
    assert len(ReferenceIndex.load(tmp_path / "ref")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref"]  # no staging or retired folders left
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    with pytest.raises(LesaNetError, match="must be empty or an existing index"):
        index.save(tmp_path / "notes", overwrite=True)
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(LesaNetError, match="folder: must be a folder path, not a file"):
        index.save(tmp_path / "file", overwrite=True)


def test_load_refuses_another_model_or_label_set(built, tmp_path):
    _exact(built).save(tmp_path / "ref")
    with pytest.raises(LesaNetError) as caught:
        ReferenceIndex.load(tmp_path / "ref", model_digest="sha256:bbb")
    assert "sha256:aaa" in str(caught.value) and "sha256:bbb" in str(caught.value)
    assert str(caught.value).startswith("model_digest:")
    with pytest.raises(LesaNetError, match="first difference at position 1: index has 'lung', but got 'kidney'"):
        ReferenceIndex.load(tmp_path / "ref", label_names=["liver", "kidney", "nodule"])
    with pytest.raises(LesaNetError, match="must equal the 3 label names .* but got '2 labels'"):
        ReferenceIndex.load(tmp_path / "ref", label_names=["liver", "lung"])


def _corrupt(folder, name, content: bytes) -> None:
    (folder / name).write_bytes(content)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("index.json", b"{not json", r"index.json: must be valid JSON"),
    ("index.json", b'{"format": "other"}', r"index.json: must declare format 'lesanet-reference-index'"),
    ("embeddings.npy", b"\x93NUMPY garbage", r"embeddings.npy: must be a readable .npy array"),
    ("entries.jsonl", b'{"lesion_id": "a"}\n', r"entries.jsonl: line 1: must be a JSON object with lesion_id"),
    ("thumbnails.npy", None, r"thumbnails.npy: must be uint8 of shape \(400, 64, 48\)"),
])
def test_load_refuses_corrupt_files_naming_them(built, tmp_path, name, content, message):
    _exact(built).save(tmp_path / "ref")
    if content is None:
        np.save(tmp_path / "ref" / name, np.zeros((400, 8, 8), np.uint8))
    else:
        _corrupt(tmp_path / "ref", name, content)
    with pytest.raises(LesaNetError, match=message):
        ReferenceIndex.load(tmp_path / "ref")


def test_load_refuses_missing_files_and_pickles(built, tmp_path):
    _exact(built).save(tmp_path / "ref")
    (tmp_path / "ref" / "entries.jsonl").unlink()
    with pytest.raises(LesaNetError, match="must contain entries.jsonl .* it is missing from"):
        ReferenceIndex.load(tmp_path / "ref")
    with pytest.raises(LesaNetError, match="folder: must be an existing reference index folder"):
        ReferenceIndex.load(tmp_path / "nowhere")
    _exact(built).save(tmp_path / "pickled")
    np.save(tmp_path / "pickled" / "embeddings.npy", np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(LesaNetError, match="embeddings.npy: must be a readable .npy array"):
        ReferenceIndex.load(tmp_path / "pickled")


def test_load_refuses_a_damaged_faiss_index_and_count_mismatch(built, tmp_path):
    pytest.importorskip("faiss", reason="faiss-cpu is the optional 'ann' dependency of approximate search")
    vectors, _, entries = built
    index = ReferenceIndex.build(vectors, entries, model_digest="d", label_names=LABELS, method="ivf",
                                 params={"nlist": 16})
    index.save(tmp_path / "ivf")
    _corrupt(tmp_path / "ivf", "faiss.index", b"IwFl" + b"\x00" * 10)
    with pytest.raises(LesaNetError, match="faiss.index: must be a readable faiss index"):
        ReferenceIndex.load(tmp_path / "ivf")
    index.save(tmp_path / "ivf2")
    header = json.loads((tmp_path / "ivf2" / "index.json").read_text())
    header["count"] = 399
    (tmp_path / "ivf2" / "index.json").write_text(json.dumps(header))
    with pytest.raises(LesaNetError, match=r"embeddings.npy: must be float32 of shape \(399, 24\)"):
        ReferenceIndex.load(tmp_path / "ivf2")
