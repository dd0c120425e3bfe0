"""The researcher's pipeline: prepare a data set, evaluate a model as the paper does, build the reference index,
run the paper's ablations, and build the shipped demo model.

Modules:
    prepare: ``prepare`` mines sentences, selects labels, splits and caches a DeepLesion-layout folder.
    evaluate: ``evaluate`` writes the paper's evaluation report for a checkpoint on a prepared folder.
    index_build: ``build_reference_index`` and ``search_lesion`` for the similar-lesion index.
    ablation: ``ABLATIONS`` (Table 1's rows as config overrides) and ``run_ablation``.
    demo_model: ``build_demo`` makes LesaNetCore/data/demo from phantoms in one reproducible command.

Heavy libraries (torch, PIL, matplotlib) are imported inside the functions.
"""

from __future__ import annotations

from .ablation import ABLATIONS, AblationSpec, ablation_config, model_factory_for, run_ablation
from .demo_model import build_demo, check_build_args, demo_train_config
from .evaluate import evaluate, format_headline, headline, read_hand_labeled
from .index_build import build_reference_index, search_lesion
from .prepare import PrepareSummary, prepare, select_labels

__all__ = [
    "ABLATIONS",
    "AblationSpec",
    "PrepareSummary",
    "ablation_config",
    "build_demo",
    "build_reference_index",
    "check_build_args",
    "demo_train_config",
    "evaluate",
    "format_headline",
    "headline",
    "model_factory_for",
    "prepare",
    "read_hand_labeled",
    "run_ablation",
    "search_lesion",
    "select_labels",
]
