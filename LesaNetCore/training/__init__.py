"""Training LesaNet and handling its checkpoints.

Modules:
    checkpoint: self-describing checkpoints (``save_checkpoint``, ``load_checkpoint``, ``build_model``,
        ``checkpoint_digest``), loaded with ``torch.load(weights_only=True)``.
    official: ``import_official`` converts the released Python 2.7 ``.pth.tar`` through an allow-listing
        unpickler; ``official_state_dict_filter`` maps its weights.
    config: ``TrainConfig`` (frozen dataclass, the paper's values), JSON files and ``--set`` overrides.
    dataset: label vectors, the pre-cropped patch cache and ``PatchDataset``.
    engine: ``train`` (SGD, AMP on CUDA, checkpoints every epoch, resume, best by validation F1).
    distributed: torchrun + DistributedDataParallel helpers.

torch is imported by the functions that need it, not by importing this package.
"""

from __future__ import annotations

from .checkpoint import (
    DEFAULT_PREPROCESSING,
    Checkpoint,
    build_model,
    checkpoint_digest,
    load_checkpoint,
    save_checkpoint,
)
from .config import TrainConfig, apply_overrides, config_from_dict, config_to_dict, load_config
from .dataset import (
    PatchCache,
    PatchDataset,
    build_patch_cache,
    lesion_label_vectors,
    open_patch_cache,
)
from .engine import predict, read_run_config, train
from .official import (
    import_official,
    load_official_checkpoint,
    official_state_dict_filter,
    read_official_thresholds,
)

__all__ = [
    "DEFAULT_PREPROCESSING",
    "Checkpoint",
    "PatchCache",
    "PatchDataset",
    "TrainConfig",
    "apply_overrides",
    "build_model",
    "build_patch_cache",
    "checkpoint_digest",
    "config_from_dict",
    "config_to_dict",
    "import_official",
    "lesion_label_vectors",
    "load_checkpoint",
    "load_config",
    "load_official_checkpoint",
    "official_state_dict_filter",
    "open_patch_cache",
    "predict",
    "read_official_thresholds",
    "read_run_config",
    "save_checkpoint",
    "train",
]
