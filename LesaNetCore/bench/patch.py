"""Timing of LesaNet patch extraction from a loaded volume, for ``lesanet bench``."""

from __future__ import annotations

import time

import numpy as np


def bench_patch(repeats: int = 50, seed: int = 0) -> dict:
    """Median milliseconds to cut one patch from a synthetic 512 x 512 x 100 CT (0.7 x 0.7 x 2.5 mm).

    Each repeat uses a different box so caches do not flatter the number; the first call is a warm-up.

    Returns:
        ``{"patch_ms": median, "patch_ms_p90": 90th percentile, "repeats": n, "volume_shape": [K, J, I]}``.
    """
    from ..imaging.patch import extract_patch
    from ..imaging.volume import Volume

    rng = np.random.default_rng(seed)
    voxels = rng.integers(-1024, 1500, size=(100, 512, 512), dtype=np.int16).astype(np.float32)
    volume = Volume(voxels, (0.7, 0.7, 2.5), (-180.0, -180.0, -120.0), np.eye(3), source="bench")
    centres = rng.uniform([40, 40, 2], [470, 470, 97], size=(repeats + 1, 3))
    times = []
    for n, (i, j, k) in enumerate(centres):
        box = (i - 15, j - 10, i + 15, j + 10, round(k))
        start = time.perf_counter()
        extract_patch(volume, box_ijk=box)
        if n:
            times.append((time.perf_counter() - start) * 1000.0)
    return {
        "patch_ms": round(float(np.median(times)), 3),
        "patch_ms_p90": round(float(np.percentile(times, 90)), 3),
        "repeats": repeats,
        "volume_shape": list(voxels.shape),
    }
