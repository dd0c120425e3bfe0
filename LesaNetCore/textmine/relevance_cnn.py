"""The learned relevance classifier of the paper: a CNN over the word sequence with position features.

LesaNet (Sec. 3.2) follows Peng et al. 2018 (NegBio's successor, "A self-attention ... / CNN" relation
classifier): each (mention, bookmark) pair of a sentence is one sample; the words of the sentence carry two
position features, their offsets from the mention and from the bookmark. Here:

* **Words.** The paper initialised word vectors with BioSentVec, which is not available offline. Instead each
  word is a *hashed* id (CRC-32 of the lower-cased word modulo ``n_buckets``; digits collapse to ``0``), whose
  embedding is learned from the project's own annotated pairs (``LesaNetCore/data/textmine``). Hashing needs
  no vocabulary file and maps unseen words deterministically. The pair's own mention is replaced by one
  ``<m>`` token, other mentions by ``<t>``, the target bookmark group by ``<b>`` and other bookmarks by
  ``<o>``, so the network learns the relation, not the terms.
* **Positions.** Offsets from the ``<m>`` token and the nearest ``<b>`` token, clipped to +/- ``max_distance``
  (one extra id means "no bookmark in the sentence"), each with a learned embedding.
* **Network.** Concatenated embeddings -> 1-D convolution (width 3) -> ReLU -> max over time -> linear ->
  softmax over (irrelevant, uncertain, relevant).

Inference is a NumPy forward pass vectorised over all pairs of a sentence; weights live in an ``.npz`` read
with ``allow_pickle=False``. Training uses PyTorch (an optional dependency) and is reproducible:
``python -m LesaNetCore.textmine.relevance_cnn --train`` rewrites the shipped weights from the shipped pairs.
"""

from __future__ import annotations

import argparse
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LesaNetError, invalid
from .preprocess import Token, data_path
from .relevance_rules import RELEVANCE_CLASSES, bookmark_groups

WEIGHTS_FILE = "relevance_cnn.npz"
PAD, MENTION, OTHER_MENTION, TARGET, OTHER_BOOKMARK = 0, 1, 2, 3, 4
_RESERVED = 5
_DIGITS = re.compile(r"\d")
_PARAMETERS = ("word_embedding", "mention_position", "bookmark_position", "conv_weight", "conv_bias",
               "out_weight", "out_bias")


@dataclass(frozen=True)
class PairInput:
    """One (mention, bookmark) pair as index arrays: word ids, mention offsets, bookmark offsets (same length)."""

    words: np.ndarray
    mention_positions: np.ndarray
    bookmark_positions: np.ndarray


_WORD_IDS: dict[tuple[str, int], int] = {}


def word_id(word: str, n_buckets: int) -> int:
    """Hashed id of a word (deterministic across machines and Python runs, unlike ``hash``)."""
    key = (word, n_buckets)
    wid = _WORD_IDS.get(key)
    if wid is None:
        digest = zlib.crc32(_DIGITS.sub("0", word.lower()).encode("utf-8"))
        wid = _WORD_IDS[key] = _RESERVED + digest % (n_buckets - _RESERVED)
    return wid


def encode_pairs(tokens: Sequence[Token], spans: Sequence[tuple[int, int]], target: str | int,
                 n_buckets: int, max_distance: int) -> list[PairInput]:
    """Encodes every mention of a sentence against one target lesion.

    Args:
        tokens: the sentence's tokens.
        spans: (first, last) token indices of each mention (they may nest).
        target: ``"BOOKMARK"`` (the groups holding a BOOKMARK token) or a bookmark's token index.
    """
    groups = bookmark_groups(tokens)
    if isinstance(target, str):
        target_tokens = {k for g in groups if any(tokens[i].text == target for i in g) for k in g}
    else:
        target_tokens = {k for g in groups if target in g for k in g}
    n = len(tokens)
    base = [(TARGET if i in target_tokens else OTHER_BOOKMARK) if t.is_bookmark else word_id(t.text, n_buckets)
            for i, t in enumerate(tokens)]
    in_mention = [False] * n
    for first, last in spans:
        for k in range(first, last + 1):
            in_mention[k] = True
    no_bookmark = 2 * max_distance + 1
    pairs = []
    for first, last in spans:
        words, positions, mention_at = [], [], 0
        for i in range(n):
            if first <= i <= last:
                if i == first:
                    mention_at = len(words)
                    words.append(MENTION)
                    positions.append(i)
            elif in_mention[i]:
                # A run of other mentions' tokens is one <t>; a run right after the pair's mention starts anew.
                if i == 0 or not in_mention[i - 1] or first <= i - 1 <= last:
                    words.append(OTHER_MENTION)
                    positions.append(i)
            else:
                words.append(base[i])
                positions.append(i)
        index = np.arange(len(words))
        mention_pos = np.clip(index - mention_at, -max_distance, max_distance) + max_distance
        targets = [j for j, k in enumerate(positions) if k in target_tokens]
        if targets:
            offsets = index[:, None] - np.asarray(targets)[None, :]
            nearest = offsets[index, np.abs(offsets).argmin(axis=1)]
            bookmark_pos = np.clip(nearest, -max_distance, max_distance) + max_distance
        else:
            bookmark_pos = np.full(len(words), no_bookmark)
        pairs.append(PairInput(np.asarray(words, dtype=np.int64), mention_pos, bookmark_pos))
    return pairs


def _batch(pairs: Sequence[PairInput]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    length = max(len(p.words) for p in pairs)
    words = np.zeros((len(pairs), length), dtype=np.int64)
    mpos = np.zeros_like(words)
    bpos = np.zeros_like(words)
    mask = np.zeros((len(pairs), length), dtype=bool)
    for k, p in enumerate(pairs):
        n = len(p.words)
        words[k, :n], mpos[k, :n], bpos[k, :n], mask[k, :n] = p.words, p.mention_positions, p.bookmark_positions, True
    return words, mpos, bpos, mask


class RelevanceCNN:
    """NumPy inference for the relevance CNN (see the module docstring).

    Args:
        params: arrays named as in :data:`_PARAMETERS`.
        n_buckets: number of word ids (hash buckets plus reserved ids).
        max_distance: clip of the position features.
    """

    def __init__(self, params: dict[str, np.ndarray], n_buckets: int, max_distance: int) -> None:
        missing = [k for k in _PARAMETERS if k not in params]
        if missing:
            raise invalid("params", f"must hold {', '.join(_PARAMETERS)}", sorted(params))
        self.params = {k: np.asarray(params[k], dtype=np.float32) for k in _PARAMETERS}
        self.n_buckets = int(n_buckets)
        self.max_distance = int(max_distance)
        if self.params["word_embedding"].shape[0] != self.n_buckets:
            raise invalid("word_embedding", f"must have n_buckets={self.n_buckets} rows",
                          self.params["word_embedding"].shape)

    def predict_proba(self, pairs: Sequence[PairInput]) -> np.ndarray:
        """Class probabilities, shape (pairs, 3), columns in :data:`RELEVANCE_CLASSES` order."""
        if not pairs:
            return np.zeros((0, len(RELEVANCE_CLASSES)), dtype=np.float32)
        p = self.params
        words, mpos, bpos, mask = _batch(pairs)
        x = np.concatenate([p["word_embedding"][words], p["mention_position"][mpos], p["bookmark_position"][bpos]],
                           axis=2)
        x[~mask] = 0.0
        width = p["conv_weight"].shape[0]  # (width, channels_in, filters)
        pad = width // 2
        x = np.pad(x, ((0, 0), (pad, pad), (0, 0)))
        length = words.shape[1]
        windows = np.concatenate([x[:, k:k + length] for k in range(width)], axis=2)
        h = windows @ p["conv_weight"].reshape(-1, p["conv_weight"].shape[2]) + p["conv_bias"]
        np.maximum(h, 0.0, out=h)
        h[~mask] = 0.0  # after ReLU every value is >= 0, so zeroed padding never wins the max
        pooled = h.max(axis=1)
        logits = pooled @ p["out_weight"] + p["out_bias"]
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Writes the weights and their hyper-parameters to ``.npz`` (atomically; no pickled objects)."""
        from ..fileio import atomic_path

        with atomic_path(path, "path", overwrite) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, n_buckets=np.int64(self.n_buckets), max_distance=np.int64(self.max_distance),
                     classes=np.asarray(RELEVANCE_CLASSES), **self.params)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> RelevanceCNN:
        """Reads weights written by :meth:`save` (default: the shipped ``relevance_cnn.npz``)."""
        path = Path(path) if path is not None else data_path(WEIGHTS_FILE)
        if not path.is_file():
            raise LesaNetError(f"path: must be a relevance classifier .npz file, but got {str(path)!r}")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as err:
            raise LesaNetError(f"path: must be a readable .npz file ({err}), but got {str(path)!r}") from err
        classes = tuple(str(c) for c in arrays.get("classes", ()))
        if classes != RELEVANCE_CLASSES:
            raise invalid("classes", f"must be {RELEVANCE_CLASSES} in {path}", classes)
        return cls(arrays, int(arrays["n_buckets"]), int(arrays["max_distance"]))


def train_relevance_classifier(
    samples: Sequence[tuple[PairInput, int]],
    n_buckets: int = 4096,
    max_distance: int = 10,
    embedding_dim: int = 32,
    position_dim: int = 8,
    filters: int = 64,
    epochs: int = 40,
    seed: int = 0,
) -> RelevanceCNN:
    """Trains the CNN with PyTorch (Adam, cross-entropy, dropout 0.3 on the pooled features).

    Args:
        samples: (pair encoded with the same ``n_buckets``/``max_distance``, class index into
            :data:`RELEVANCE_CLASSES`).

    Returns:
        The trained classifier, for NumPy inference.
    """
    if not samples:
        raise invalid("samples", "must hold at least one annotated pair", len(samples))
    try:
        import torch
    except ImportError as err:
        raise LesaNetError("torch: training the relevance classifier needs PyTorch (pip install torch), "
                           "but got none") from err
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same weights on every machine (summation order), and fast enough
    try:
        return _train(torch, samples, n_buckets, max_distance, embedding_dim, position_dim, filters, epochs, seed)
    finally:
        torch.set_num_threads(threads)


def _train(torch, samples, n_buckets, max_distance, embedding_dim, position_dim, filters, epochs, seed):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n_pos = 2 * max_distance + 2
    net = torch.nn.ModuleDict({
        "word": torch.nn.Embedding(n_buckets, embedding_dim, padding_idx=PAD),
        "mpos": torch.nn.Embedding(n_pos, position_dim),
        "bpos": torch.nn.Embedding(n_pos, position_dim),
        "conv": torch.nn.Conv1d(embedding_dim + 2 * position_dim, filters, 3, padding=1),
        "out": torch.nn.Linear(filters, len(RELEVANCE_CLASSES)),
    })
    dropout = torch.nn.Dropout(0.3)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-5)
    labels = np.asarray([y for _, y in samples])
    counts = np.bincount(labels, minlength=len(RELEVANCE_CLASSES)).astype(np.float64)
    class_weight = torch.tensor(counts.sum() / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)

    def forward(batch: Sequence[PairInput]):
        words, mpos, bpos, mask = (torch.from_numpy(a) for a in _batch(batch))
        x = torch.cat([net["word"](words), net["mpos"](mpos), net["bpos"](bpos)], dim=2)
        x = x * mask[..., None]
        h = torch.relu(net["conv"](x.transpose(1, 2))).transpose(1, 2) * mask[..., None]
        return net["out"](dropout(h.max(dim=1).values))

    for _ in range(epochs):
        net.train()
        order = rng.permutation(len(samples))
        for start in range(0, len(order), 32):
            chunk = [samples[k] for k in order[start:start + 32]]
            logits = forward([p for p, _ in chunk])
            target = torch.tensor([y for _, y in chunk])
            loss = torch.nn.functional.cross_entropy(logits, target, weight=class_weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    conv = net["conv"].weight.detach().numpy()  # (filters, channels, width)
    params = {
        "word_embedding": net["word"].weight.detach().numpy(),
        "mention_position": net["mpos"].weight.detach().numpy(),
        "bookmark_position": net["bpos"].weight.detach().numpy(),
        "conv_weight": conv.transpose(2, 1, 0).copy(),
        "conv_bias": net["conv"].bias.detach().numpy(),
        "out_weight": net["out"].weight.detach().numpy().T.copy(),
        "out_bias": net["out"].bias.detach().numpy(),
    }
    return RelevanceCNN(params, n_buckets, max_distance)


def main(argv: list[str] | None = None) -> int:
    """``python -m LesaNetCore.textmine.relevance_cnn --train [--out PATH]``: retrains the shipped weights."""
    parser = argparse.ArgumentParser(prog="python -m LesaNetCore.textmine.relevance_cnn")
    parser.add_argument("--train", action="store_true", help="train on the shipped annotated pairs")
    parser.add_argument("--out", default=str(data_path(WEIGHTS_FILE)), help="weights file to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.train:
        parser.error("nothing to do: pass --train")
    from .annotated import (
        HELD_OUT_FILE,
        evaluate_relevance,
        load_annotated,
        split_annotated,
        training_samples,
    )

    sentences = load_annotated()
    train, held_out = split_annotated(sentences)
    model = train_relevance_classifier(training_samples(train), seed=args.seed)
    model.save(args.out, overwrite=True)
    Path(args.out).chmod(0o644)  # package data: readable by everyone
    print(f"trained on {sum(len(s.pairs) for s in train)} pairs; weights: {args.out}")
    for name, sentences in (("split held-out quarter", held_out), ("test file", load_annotated(name=HELD_OUT_FILE))):
        for method, scores in evaluate_relevance(sentences, model).items():
            print(f"{name} {method}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
