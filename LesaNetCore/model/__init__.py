"""The LesaNet network, its variants, its training losses and its inference path (fused copy, CPU kernels)."""

from __future__ import annotations

from .inference import InferenceModel
from .kernel_plan import KernelPlan
from .lesanet import LesaNet, LesaNetOutput, checkpoint_filter_fn, fuse_for_inference, set_kernel_plan
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
    "InferenceModel",
    "KernelPlan",
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
    "set_kernel_plan",
    "triplet_loss",
    "weighted_ce",
]
