"""The LesaNet network, its variants and its training losses."""

from __future__ import annotations

from .lesanet import LesaNet, LesaNetOutput, checkpoint_filter_fn, fuse_for_inference
from .losses import (
    LossConfig,
    class_weights,
    label_similarity,
    lesanet_loss,
    rhem_loss,
    select_triplets,
    triplet_loss,
    weighted_ce,
)
from .registry import create_model, list_models, register_model
from .roi_pool import roi_pool

__all__ = [
    "LesaNet",
    "LesaNetOutput",
    "LossConfig",
    "checkpoint_filter_fn",
    "class_weights",
    "create_model",
    "fuse_for_inference",
    "label_similarity",
    "lesanet_loss",
    "list_models",
    "register_model",
    "rhem_loss",
    "roi_pool",
    "select_triplets",
    "triplet_loss",
    "weighted_ce",
]
