"""``lesanet bench``: the project's speed numbers, measured in one run on this machine.

Sections (each can be selected): ``model`` (matmul peak, FLOPs per patch, forward and training-step times and
their fraction of the peak), ``patch`` (patch extraction from a loaded volume), ``annotate`` (end-to-end
annotation of one box with the full-size network and a 32k-lesion exact reference index, compared with the
forward roofline FLOPs / peak), ``cold_start`` (a fresh ``lesanet annotate`` process with the demo model, from
process start to its first result), ``retrieval`` (32k exact and 1M approximate search, recall@5) and ``mine``
(text-mining sentences per second on one core; run last because it pins the process to one thread).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SECTIONS = ("model", "patch", "annotate", "cold_start", "retrieval", "mine")


def bench_annotate(repeats: int = 20, index_size: int = 32768, seed: int = 0, device: str = "cpu",
                   peak_gflops: float | None = None, rounds: int = 5) -> dict[str, Any]:
    """Median end-to-end ``Annotator.annotate`` latency (patch, forward, decisions, search) for one box.

    The speed of a shared machine drifts by +-10 % within a minute, so the latency is compared with a matmul
    peak measured at the same moment: ``repeats`` annotations run in ``rounds`` rounds, each followed by a peak
    sample, and ``annotate_vs_roofline`` is the median over rounds of (round's median latency) / (roofline at
    that round's peak). ``annotate_vs_best_peak`` is the stricter yardstick of the model section: the median
    latency against the best peak seen anywhere in the run (``peak_gflops`` from the model section, if it ran),
    which mixes a fast moment's peak with every moment's latency. The roofline counts a direct convolution's
    FLOPs (:func:`.bench_model.model_flops`); the CPU forward does fewer where it uses Winograd.
    """
    import numpy as np

    from .annotate import Annotator
    from .bench_model import matmul_peak_best, model_flops
    from .demo import demo_volume
    from .model import create_model
    from .ontology import load_default_ontology
    from .retrieval import ReferenceEntry, ReferenceIndex, clustered_embeddings
    from .training.checkpoint import checkpoint_digest, load_checkpoint, save_checkpoint

    ontology = load_default_ontology()
    labels = list(ontology.names[:171])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "full.pt"
        save_checkpoint(path, create_model("lesanet_vgg16bn", num_labels=len(labels)), arch="lesanet_vgg16bn",
                        label_names=labels, label_classes=[ontology.label_class(n) for n in labels])
        checkpoint = load_checkpoint(path)
    embeddings = clustered_embeddings(index_size, seed=seed)
    entries = [ReferenceEntry(str(i), f"p{i // 4}", ("liver",)) for i in range(index_size)]
    index = ReferenceIndex.build(embeddings, entries, model_digest=checkpoint_digest(checkpoint), label_names=labels,
                                 method="exact")
    annotator = Annotator(checkpoint, index, device=device)
    volume, lesions = demo_volume()
    box = lesions[0].box_ijk
    for _ in range(3):
        annotator.annotate(volume, box_ijk=box)
    flops = model_flops()["total"]

    def roofline_ms(gflops: float) -> float:
        return flops / (gflops * 1e9) * 1000

    times, parts, peaks, ratios = [], {}, [], []
    per_round = max(1, repeats // rounds)
    for _ in range(rounds):
        round_times = []
        for _ in range(per_round):
            t = time.perf_counter()
            result = annotator.annotate(volume, box_ijk=box)
            round_times.append((time.perf_counter() - t) * 1000)
            for key, value in result.timings_ms.items():
                parts.setdefault(key, []).append(value)
        peaks.append(matmul_peak_best(device))
        ratios.append(statistics.median(round_times) / roofline_ms(peaks[-1]))
        times += round_times
    median = statistics.median(times)
    best_peak = max(max(peaks), peak_gflops or 0.0)
    return {
        "annotate_ms": median,
        "annotate_stage_ms": {k: statistics.median(v) for k, v in parts.items()},
        "annotate_roofline_ms": roofline_ms(statistics.median(peaks)),
        "annotate_vs_roofline": statistics.median(ratios),
        "annotate_vs_roofline_rounds": ratios,
        "annotate_peak_gflops": statistics.median(peaks),
        "annotate_vs_best_peak": median / roofline_ms(best_peak),
        "annotate_best_peak_gflops": best_peak,
        "annotate_index_size": index_size,
        "annotate_volume_shape": list(np.shape(volume.voxels)),
    }


def bench_cold_start() -> dict[str, Any]:
    """Seconds from starting a ``lesanet annotate`` process (demo model and index) to its printed result."""
    import SimpleITK as sitk

    from .demo import demo_volume

    volume, lesions = demo_volume()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ct.nii.gz"
        sitk.WriteImage(volume.to_sitk(), str(path))
        box = ",".join(str(v) for v in lesions[0].box_ijk)
        command = [sys.executable, "-m", "LesaNetCore.cli", "annotate", str(path), f"--box-ijk={box}"]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - started
    if done.returncode != 0:
        return {"cold_start_s": None, "cold_start_error": done.stderr.strip().splitlines()[-1:]}
    return {"cold_start_s": seconds}


def run_bench(sections: tuple[str, ...] = SECTIONS, quick: bool = False, echo=None,
              device: str = "cpu") -> dict[str, Any]:
    """Runs the selected sections in a fixed order and returns one flat dictionary of numbers.

    ``device`` applies to the model and annotate sections (the targets are for ``cpu``).
    """
    if device != "cpu" and ("model" in sections or "annotate" in sections):
        from .annotate import pick_device

        device = pick_device(device)  # a clear error for a device this machine lacks
    results: dict[str, Any] = {"sections": list(sections), "device": device}
    for name in SECTIONS:
        if name not in sections:
            continue
        if echo:
            echo(f"bench: {name} ...")
        started = time.perf_counter()
        if name == "model":
            from .bench_model import bench_model

            results.update(bench_model(device=device))
        elif name == "patch":
            from .bench_patch import bench_patch

            results.update(bench_patch())
        elif name == "annotate":
            results.update(bench_annotate(device=device, peak_gflops=results.get("peak_gflops")))
        elif name == "cold_start":
            results.update(bench_cold_start())
        elif name == "retrieval":
            from .retrieval import bench_retrieval

            results.update(bench_retrieval(n_large=100_000 if quick else 1_000_000, progress=False))
        elif name == "mine":
            from .textmine.bench import bench_mine

            results.update(bench_mine())
        results[f"{name}_bench_s"] = time.perf_counter() - started
    return results
