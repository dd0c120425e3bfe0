"""Throughput of the text miner on one core: sentences per second over a realistic mix.

The mix is the shipped annotated sentences (hand-written report sentences with one or several bookmarks, cue
words, sentences without bookmarks) and the template sentences, with their marks removed. One warm-up pass
fills the lemma cache (as a long mining run does after its first sentences); the timed passes then mine
every sentence afresh: nothing but lemmas is cached between sentences.
"""

from __future__ import annotations

import time


def _one_thread() -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # NumPy's BLAS is barely used here: the classifier runs on tiny matrices
        pass


def benchmark_sentences() -> list[str]:
    """The benchmark's sentences (plain text with BOOKMARK / OTHER_BMK tokens)."""
    from ..textmine.annotated import load_annotated

    return [s.text for s in load_annotated()]


def bench_mine(seconds: float = 2.0, ontology=None, method: str = "combined") -> dict:
    """Mines the benchmark mix repeatedly for about ``seconds`` on one thread.

    Returns:
        ``{"sentences_per_second", "sentences", "seconds", "method", "mentions_per_sentence"}``.
    """
    from ..textmine.mine import TextMiner

    _one_thread()
    miner = TextMiner(ontology, method=method)
    sentences = benchmark_sentences()
    mentions = sum(len(miner.mine(s).mentions) for s in sentences)  # warm-up: lemma cache, lazy imports
    count, start = 0, time.perf_counter()
    while True:
        for s in sentences:
            miner.mine(s)
        count += len(sentences)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    return {"sentences_per_second": count / elapsed, "sentences": count, "seconds": elapsed, "method": method,
            "mentions_per_sentence": mentions / len(sentences)}

