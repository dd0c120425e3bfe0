"""``lesanet bench``: the project's speed numbers, measured in one run on this machine.

Modules: ``peak`` (the machine's fp32 limit: best of matmul and oneDNN convolutions shaped like LesaNet's; bf16
beside), ``rounds`` (timing in rounds, each followed by a peak sample), ``flops`` (nominal and executed FLOPs),
``model`` (forward at batch 1 and 32, training step), ``annotate`` (end-to-end annotation, cold start),
``patch`` (patch extraction), ``retrieval`` (32k exact and 1M approximate search), ``mine`` (text mining),
``report`` (the tables of docs/benchmarks.md from the JSON).

Sections run in the order of :data:`SECTIONS`; ``mine`` runs last because it pins the process to one thread.
Every result carries the machine (CPU model, ISA, thread count, torch) and the run's peak.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

SECTIONS = ("model", "patch", "annotate", "cold_start", "retrieval", "mine")

__all__ = ["SECTIONS", "run_bench"]


def run_bench(sections: tuple[str, ...] = SECTIONS, quick: bool = False, echo: Callable[[str], None] | None = None,
              device: str = "cpu") -> dict[str, Any]:
    """Runs the selected sections in a fixed order and returns one flat dictionary of numbers.

    ``device`` applies to the model and annotate sections (the targets are for ``cpu``). Fractions of peak above
    1 are not reported: their sections' messages are in ``peak_errors`` instead.
    """
    from ..model.machine import machine_info
    from .peak import PeakError, PeakMeter, bf16_peak

    if device != "cpu" and ("model" in sections or "annotate" in sections):
        from ..annotate import pick_device

        device = pick_device(device)  # a clear error for a device this machine lacks
    results: dict[str, Any] = {"sections": list(sections), "device": device, "machine": machine_info()}
    load_start = _load_average()
    timed = "model" in sections or "annotate" in sections
    meter = PeakMeter(device) if timed else None
    errors = PeakError()
    if meter is not None and device == "cpu":
        results.update(bf16_peak())  # before "mine", which leaves one thread
    for name in SECTIONS:
        if name not in sections:
            continue
        if echo:
            echo(f"bench: {name} ...")
        started = time.perf_counter()
        if name == "model":
            from .model import bench_model

            results.update(bench_model(device=device, meter=meter, errors=errors))
        elif name == "patch":
            from .patch import bench_patch

            results.update(bench_patch())
        elif name == "annotate":
            from .annotate import bench_annotate

            results.update(bench_annotate(device=device, meter=meter))
        elif name == "cold_start":
            from .annotate import bench_cold_start

            results.update(bench_cold_start())
        elif name == "retrieval":
            from .retrieval import bench_retrieval

            results.update(bench_retrieval(n_large=100_000 if quick else 1_000_000, progress=False))
        elif name == "mine":
            from .mine import bench_mine

            results.update(bench_mine())
        results[f"{name}_bench_s"] = round(time.perf_counter() - started, 2)
    if meter is not None:
        results.update(meter.summary())
    results["peak_errors"] = errors.messages
    # The 1-minute load average before and after: on a shared machine it says how quiet the run was.
    results["load_average"] = [load_start, _load_average()]
    return results


def _load_average() -> float | None:
    import os

    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # Windows
        return None
