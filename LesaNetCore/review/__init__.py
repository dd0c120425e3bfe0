"""A reader's review kept as training data, and fine-tuning a model on it.

Modules:
    corrections: reviewed lesions -> a corrections folder (lesion files and a patch cache ``lesanet train`` reads).
    finetune: ``lesanet finetune``: continue a checkpoint on corrections, recalibrate on the held-out part, and
        compare parent and child there.
    compare: parent against child on the held-out corrections (``lesanet evaluate --corrections``).
    reference: reviewed lesions added to a reference index without rebuilding it (``lesanet index add``).
"""

from __future__ import annotations

from .corrections import read_corrections, rebuild_cache, remove_correction, write_correction

__all__ = ["read_corrections", "rebuild_cache", "remove_correction", "write_correction"]
