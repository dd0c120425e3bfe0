"""Timings of the module's worker process, measured on Slicer's real Python layer (``slicerlayer``).

    .venv/bin/python Testing/slicermodule/bench_worker.py [--version 5.12.3] [--rounds 10] [--json]

Drives the module panel as the tests do, on the demo's phantom CT with the shipped demo model (CPU), and
reports: how long the worker process takes to connect; the first answer (process start, volume transfer, model
load, annotation) and warm answers (model loaded, volume already in the worker), both from the click on Annotate
to the result in the panel; and the longest main-thread stall seen while they ran (the gap between two ticks of
a 5 ms timer: what a user would feel as a frozen Slicer). The model's own time is printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import slicerlayer  # noqa: E402


def run(version: str, rounds: int) -> dict:
    import numpy as np

    layer = slicerlayer.SlicerLayer.load(version)
    try:
        layer.loadModule(slicerlayer.REPO_ROOT / "LesaNetSlicer" / "LesaNetSlicer.py")
        widget = layer.widget("LesaNetSlicer")
        errors = []
        widget.controller.errorHandler = lambda message, details: errors.append(message)
        from LesaNetCore.demo import demo_volume

        volume, lesions = demo_volume(seed=3)
        node = layer.slicer.util.addVolumeFromArray(volume.voxels.astype(np.int16),
                                                    ijkToRAS=volume.ijk_to_ras_matrix(), name="PhantomCT")
        widget._parameterNode.inputVolume = node
        widget._parameterNode.device = "cpu"
        widget.ui.drawBoxButton.click()
        roi = widget._parameterNode.lesion
        x1, y1, x2, y2, z = lesions[0].box_lps
        roi.SetCenter(-(x1 + x2) / 2, -(y1 + y2) / 2, z)
        roi.SetSize(abs(x2 - x1), abs(y2 - y1), volume.spacing[2])

        import qt

        def annotate() -> tuple[float, float, float]:
            ticks: list[float] = []
            timer = qt.QTimer()
            timer.setInterval(5)
            timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
            timer.start()
            started = time.perf_counter()
            widget.ui.annotateButton.click()
            while widget.controller.busy:
                layer.processEvents(0.001)
            seconds = time.perf_counter() - started
            timer.stop()
            if errors:
                raise RuntimeError(errors[-1])
            stall = max((b - a for a, b in zip(ticks, ticks[1:], strict=False)), default=0.0)
            return seconds, stall, widget.logic.resultFor(roi).timings_ms["total"]

        first = annotate()
        warm = [annotate() for _ in range(rounds)]
        info = widget.logic.worker.info
        widget.logic.shutdown()
        return {
            "slicer_python_layer": version,
            "volume_ijk": list(volume.size_ijk),
            "worker_connect_s": round(info["startSeconds"], 3),
            "first_answer_s": round(first[0], 3),
            "first_stall_ms": round(first[1] * 1000, 1),
            "warm_answer_ms_median": round(statistics.median(w[0] for w in warm) * 1000, 1),
            "warm_answer_ms_max": round(max(w[0] for w in warm) * 1000, 1),
            "warm_model_ms_median": round(statistics.median(w[2] for w in warm), 1),
            "longest_stall_ms": round(max([first[1]] + [w[1] for w in warm]) * 1000, 1),
            "rounds": rounds,
        }
    finally:
        layer.unload()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default=slicerlayer.VERSIONS[-1], choices=slicerlayer.VERSIONS)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    reason = slicerlayer.unavailable(args.version)
    if reason:
        print(f"bench_worker: {reason}", file=sys.stderr)
        return 1
    numbers = run(args.version, args.rounds)
    if args.json:
        print(json.dumps(numbers, indent=1))
    else:
        for key, value in numbers.items():
            print(f"{key:>24}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
