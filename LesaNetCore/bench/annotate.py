"""End-to-end annotation of one box, and a fresh ``lesanet annotate`` process, for ``lesanet bench``.

``bench_annotate`` times ``Annotator.annotate`` (patch, forward, decisions, similar-lesion search in a 32k-lesion
exact index) with the full-size network, in rounds each followed by a peak sample, and reports the median of the
per-round ratios to the roofline (nominal FLOPs / that round's peak). On CUDA it also times the same annotation
with the CUDA graph off (``annotate_eager_ms``). ``bench_cold_start`` runs the demo model in a new process.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .flops import model_flops
from .peak import PeakMeter
from .rounds import per_round_roofline_ratio


def _full_size_annotator(index_size: int, seed: int, device: str) -> Any:
    """The Annotator on a randomly initialised full-size LesaNet and a clustered ``index_size``-lesion index."""
    from ..annotate import Annotator
    from ..model import create_model
    from ..ontology import load_default_ontology
    from ..retrieval import ReferenceEntry, ReferenceIndex, clustered_embeddings
    from ..training.checkpoint import checkpoint_digest, load_checkpoint, save_checkpoint

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
    return Annotator(checkpoint, index, device=device)


def bench_annotate(repeats: int = 20, index_size: int = 32768, seed: int = 0, device: str = "cpu",
                   rounds: int = 5, meter: PeakMeter | None = None) -> dict[str, Any]:
    """Median ``Annotator.annotate`` latency for one box and its ratio to the roofline; see the module docstring.

    ``repeats`` annotations run in ``rounds`` rounds; ``annotate_vs_roofline`` is the median over rounds of
    (round's median latency) / (nominal FLOPs / that round's peak), the rounds' ratios in
    ``annotate_vs_roofline_rounds``.
    """
    import numpy as np
    import torch

    from ..demo import demo_volume
    from .rounds import timed_rounds

    meter = meter or PeakMeter(device)
    annotator = _full_size_annotator(index_size, seed, device)
    volume, lesions = demo_volume()
    box = lesions[0].box_ijk
    parts: dict[str, list[float]] = {}

    def annotate() -> None:
        result = annotator.annotate(volume, box_ijk=box)
        for key, value in result.timings_ms.items():
            parts.setdefault(key, []).append(value)

    variants = {"annotate": (annotate, max(1, repeats // rounds))}
    cuda = torch.device(device).type == "cuda"
    if cuda:
        eager = _full_size_annotator(index_size, seed, device)
        eager.inference.use_cuda_graph = False
        variants["annotate_eager"] = (lambda: eager.annotate(volume, box_ijk=box), max(1, repeats // rounds))
    for call, _ in variants.values():
        for _ in range(3):  # warm-up (and, on a CPU without cached kernels, their measurement at batch 1)
            call()
    parts.clear()
    timed = timed_rounds(meter, variants, rounds, torch.cuda.synchronize if cuda else None)
    peaks = timed["peaks"]
    flops = model_flops()["total"]
    ratios = per_round_roofline_ratio(timed["annotate"], peaks, flops)
    result = {
        "annotate_ms": round(statistics.median(timed["annotate"]), 3),
        "annotate_ms_rounds": [round(t, 3) for t in timed["annotate"]],
        "annotate_stage_ms": {k: round(statistics.median(v), 3) for k, v in parts.items()},
        "annotate_roofline_ms": round(flops / (statistics.median(peaks) * 1e9) * 1e3, 3),
        "annotate_vs_roofline": round(statistics.median(ratios), 3),
        "annotate_vs_roofline_rounds": [round(r, 3) for r in ratios],
        "annotate_peak_gflops": round(statistics.median(peaks), 1),
        "annotate_index_size": index_size,
        "annotate_volume_shape": list(np.shape(volume.voxels)),
    }
    if cuda:
        result["annotate_eager_ms"] = round(statistics.median(timed["annotate_eager"]), 3)
    return result


def bench_cold_start() -> dict[str, Any]:
    """Seconds from starting a ``lesanet annotate`` process (demo model and index) to its printed result.

    Run twice with a new, empty kernel cache: ``cold_start_first_use_s`` includes measuring the demo model's
    kernels at batch 1 (the first annotation ever on a machine), ``cold_start_s`` is every later process.
    """
    import os

    import SimpleITK as sitk

    from ..demo import demo_volume

    volume, lesions = demo_volume()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ct.nii.gz"
        sitk.WriteImage(volume.to_sitk(), str(path))
        box = ",".join(str(v) for v in lesions[0].box_ijk)
        command = [sys.executable, "-m", "LesaNetCore.cli", "annotate", str(path), f"--box-ijk={box}"]
        env = {**os.environ, "LESANET_CACHE_DIR": str(Path(tmp) / "cache")}
        for key in ("cold_start_first_use_s", "cold_start_s"):
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            result[key] = round(time.perf_counter() - started, 3)
            if done.returncode != 0:
                return {"cold_start_s": None, "cold_start_error": done.stderr.strip().splitlines()[-1:]}
    return result
