"""The relevance CNN: encoding, NumPy inference, save / load without pickle, training."""

from __future__ import annotations

import numpy as np
import pytest

from LesaNetCore.errors import LesaNetError
from LesaNetCore.textmine.annotated import load_annotated, parse_annotated, split_annotated, training_samples
from LesaNetCore.textmine.relevance_cnn import MENTION, OTHER_MENTION, TARGET, RelevanceCNN, encode_pairs


def test_encoding_marks_mention_bookmark_and_other_mentions():
    s = parse_annotated("[Large|R] [nodule|R] BOOKMARK in the [right lower lobe|I] OTHER_BMK")
    pairs = encode_pairs(s.tokens, [(m.first, m.last) for m in s.mentions], "BOOKMARK", 64, 5)
    first = pairs[0]
    assert first.words[0] == MENTION and first.words[1] == OTHER_MENTION and first.words[2] == TARGET
    # "Large nodule" (adjacent other mentions) is one <t>, "right lower lobe" one <m>: <t> <b> in the <m> <o>
    assert pairs[2].words.tolist()[:2] == [OTHER_MENTION, TARGET] and len(pairs[2].words) == 6
    assert first.mention_positions[0] == 5 and first.bookmark_positions[2] == 5  # offset 0 at the token itself


def test_shipped_weights_load_and_predict_probabilities():
    model = RelevanceCNN.load()
    s = parse_annotated("[Liver|R] [lesion|R] BOOKMARK, likely [cyst|U]. No [adenopathy|I].")
    pairs = encode_pairs(s.tokens, [(m.first, m.last) for m in s.mentions], "BOOKMARK", model.n_buckets,
                         model.max_distance)
    proba = model.predict_proba(pairs)
    assert proba.shape == (4, 3)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_save_load_round_trip(tmp_path):
    model = RelevanceCNN.load()
    path = model.save(tmp_path / "cnn.npz")
    again = RelevanceCNN.load(path)
    s = load_annotated(include_templates=False)[0]
    pairs = encode_pairs(s.tokens, [(m.first, m.last) for m in s.mentions], "BOOKMARK", 4096, 10)
    assert np.array_equal(model.predict_proba(pairs), again.predict_proba(pairs))
    with pytest.raises(LesaNetError, match="overwrite"):
        model.save(path)


def test_load_refuses_pickles_and_bad_files(tmp_path):
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, classes=np.array([{"a": 1}], dtype=object))
    with pytest.raises(LesaNetError):
        RelevanceCNN.load(pickled)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(LesaNetError, match="readable"):
        RelevanceCNN.load(garbage)
    with pytest.raises(LesaNetError, match="relevance classifier"):
        RelevanceCNN.load(tmp_path / "missing.npz")


@pytest.mark.slow
def test_training_learns_the_shipped_pairs():
    pytest.importorskip("torch")
    from LesaNetCore.textmine.relevance_cnn import train_relevance_classifier

    train, _ = split_annotated(load_annotated(include_templates=False))
    samples = training_samples(train, n_buckets=512, max_distance=6)
    model = train_relevance_classifier(samples, n_buckets=512, max_distance=6, embedding_dim=8, position_dim=4,
                                       filters=16, epochs=8)
    proba = model.predict_proba([p for p, _ in samples])
    accuracy = float(np.mean(proba.argmax(axis=1) == np.array([y for _, y in samples])))
    majority = np.bincount([y for _, y in samples]).max() / len(samples)
    assert accuracy > majority + 0.05


def test_annotation_marks_must_cover_whole_tokens():
    with pytest.raises(LesaNetError, match="whole tokens"):
        parse_annotated("[Liv|R]er lesion BOOKMARK")
    with pytest.raises(LesaNetError, match="at least one"):
        parse_annotated("no marks here")
