"""Timing against the peak of the same moment: interleaved rounds, each followed by a peak sample.

Why: a shared machine's speed drifts within a minute, and a neighbour's process can halve a 2-core machine's
throughput for seconds. A latency taken at one moment divided by a peak taken at another swings with that
drift. So every timed section runs in rounds; in each round the variants being compared run in rotated order
(a drift hits them alike), then the peak is sampled; a section's result is the median over rounds of the
round's median, and its fraction of peak the median over rounds of (FLOP/s in that round) / (that round's peak).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from .peak import PeakMeter


def timed_rounds(meter: PeakMeter, variants: dict[str, tuple[Callable[[], object], int]], rounds: int,
                 sync: Callable[[], None] | None = None) -> dict[str, Any]:
    """Runs every variant ``calls`` times per round, in rotated order, with a peak sample after each round.

    Args:
        meter: samples the peak after each round.
        variants: name -> (call, calls per round).
        rounds: number of rounds.
        sync: called around each timed call (CUDA synchronisation); None on CPU.

    Returns:
        ``{"peaks": [GFLOP/s per round], name: [round medians in ms], ...}``.
    """
    names = list(variants)
    out: dict[str, Any] = {"peaks": [], **{name: [] for name in names}}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            call, calls = variants[name]
            times = []
            for _ in range(calls):
                if sync:
                    sync()
                start = time.perf_counter()
                call()
                if sync:
                    sync()
                times.append((time.perf_counter() - start) * 1e3)
            out[name].append(statistics.median(times))
        out["peaks"].append(meter.sample())
    return out


def per_round_fraction(ms: list[float], peaks: list[float], flops: float) -> float:
    """Median over rounds of ``flops`` per round time, over that round's peak (GFLOP/s)."""
    return statistics.median(flops / (t / 1e3) / 1e9 / p for t, p in zip(ms, peaks, strict=True))


def per_round_roofline_ratio(ms: list[float], peaks: list[float], flops: float) -> list[float]:
    """Each round's time over the roofline ``flops / peak`` of that round."""
    return [t / (flops / (p * 1e9) * 1e3) for t, p in zip(ms, peaks, strict=True)]
