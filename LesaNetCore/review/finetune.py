"""``lesanet finetune``: a checkpoint trained further on a reader's corrections, thresholds recalibrated.

The child starts from the parent's weights (same architecture and label list) and trains with the paper's loss on
the corrections' training part, optionally mixed with the original training data so it does not forget what the
corrections do not show; every epoch is validated on the corrections' held-out part (see
:mod:`.corrections`), whose scores calibrate the thresholds. A small learning rate and few epochs suit a few
hundred corrections; both are options.

RUN/best.pt is the last epoch (a few dozen held-out lesions are too few to choose an epoch by), with thresholds
recalibrated on the corrections (:func:`recalibrated_thresholds`). It is self-describing as every checkpoint is,
and records its parent (path and digest), the corrections (folder, lesions, readers) and the mixed data in
``metrics["finetune"]``; it carries the parent's label ontology.
RUN/comparison.json holds parent and child on the held-out corrections (:mod:`.compare`, which ``lesanet evaluate
--corrections`` runs again later on a grown folder): per label and mean per-class precision, recall and F1, each
model with its own thresholds and the ontology-consistent decisions the Annotator makes.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import invalid
from ..fileio import write_text_atomic

DEFAULT_EPOCHS = 6
DEFAULT_LR = 0.002
DEFAULT_BATCH = 16
MIN_HELD_OUT_POSITIVES = 3


def _mixed_cache(corrections: Any, data: Any, ratio: float) -> Any:
    """The corrections with (up to ``ratio`` times as many) training lesions of ``data`` added to their train part."""
    from ..training.dataset import SPLITS, PatchCache

    if data.label_names != corrections.label_names:
        raise invalid("--data", "must have the model's label list to be mixed with its corrections",
                      f"{len(data.label_names)} labels")
    rows = data.rows("train")
    count = min(len(rows), int(round(ratio * len(corrections.rows("train")))))
    chosen = np.sort(np.random.default_rng(0).choice(rows, size=count, replace=False)) if count else rows[:0]
    arrays = {}
    for name, array in corrections.arrays.items():
        extra = np.asarray(data.arrays[name][chosen])
        if name == "split":
            extra = np.full(count, SPLITS.index("train"), dtype=array.dtype)
        if name == "lesion_idx":
            extra = extra + int(np.max(array)) + 1
        arrays[name] = np.concatenate([np.asarray(array), extra.astype(np.asarray(array).dtype)])
    meta = dict(corrections.meta, mixed={"source": data.path, "lesions": int(count)})
    return PatchCache(arrays=arrays, meta=meta, path=f"{corrections.path} + {count} lesions of {data.path}")


def finetune(model: str | os.PathLike, corrections: str | os.PathLike, out_dir: str | os.PathLike, *,
             data: str | os.PathLike | None = None, mix_ratio: float = 1.0, epochs: int = DEFAULT_EPOCHS,
             lr: float = DEFAULT_LR, batch_size: int = DEFAULT_BATCH, device: str = "cpu", seed: int = 0,
             progress: bool = True) -> dict[str, Any]:
    """Fine-tunes ``model`` on ``corrections`` into ``out_dir`` (see the module docstring); returns a summary.

    Raises:
        LesaNetError: a corrections folder without a cache, without a held-out part, from another label list;
            bad options; an ``out_dir`` that already holds a run.
    """
    from ..training import TrainConfig, load_checkpoint, open_patch_cache, train
    from ..training.checkpoint import build_model, checkpoint_digest, save_checkpoint
    from .compare import compare_on_held_out, model_scores

    if not isinstance(epochs, int) or epochs < 1:
        raise invalid("--epochs", "must be an integer >= 1", epochs)
    if not lr > 0:
        raise invalid("--lr", "must be > 0", lr)
    if not mix_ratio >= 0:
        raise invalid("--mix-ratio", "must be >= 0", mix_ratio)
    parent = load_checkpoint(model)
    reviewed = open_patch_cache(Path(corrections))
    if reviewed.label_names != list(parent.label_names):
        raise invalid("--corrections", "must be corrections of this model's labels (same label list)",
                      f"{len(reviewed.label_names)} labels vs the model's {len(parent.label_names)}")
    if len(reviewed.rows("val")) == 0:
        raise invalid("--corrections", "must have a held-out part to recalibrate on (corrections of at least two "
                      "patients)", f"{len(reviewed.rows('train'))} lesions, all in training")
    cache = replace(reviewed, meta=dict(reviewed.meta, label_ontology=parent.label_ontology,
                                        ontology_digest=parent.ontology_digest))
    if data is not None:
        cache = _mixed_cache(cache, open_patch_cache(data), mix_ratio)
    config = TrainConfig(arch=parent.arch, epochs=epochs, batch_size=batch_size, lr=lr, lr_step_epoch=epochs,
                         seed=seed, device=device, workers=0, eval_batch_size=64, drop_last=False, amp="off")
    out_dir = Path(out_dir)

    def from_parent(arch: str, num_labels: int) -> Any:
        return frozen_batchnorm(build_model(parent, device="cpu"))

    summary = train(config, cache, out_dir, progress=progress, model_factory=from_parent)
    # The last epoch, not the one that scored best on the held-out part: a few dozen held-out lesions make the
    # per-epoch F1 too noisy to choose by (it chose the first epoch, before the convention was learnt).
    child = load_checkpoint(out_dir / "last.pt")
    provenance = {
        "parent": str(Path(model).resolve()), "parent_digest": checkpoint_digest(parent),
        "corrections": str(Path(corrections).resolve()), "lesions": int(len(reviewed.arrays["split"])),
        "held_out": int(len(reviewed.rows("val"))), "mixed": cache.meta.get("mixed"),
        "readers": _readers(Path(corrections)),
    }
    child_model = build_model(child, device="cpu")
    # The child's scores once: thresholds do not change them, so the comparison reuses the held-out ones.
    child_scores = model_scores(child, reviewed, ("train", "val"))
    thresholds = recalibrated_thresholds(parent, child, reviewed, scores=child_scores)
    child = replace(child, thresholds=thresholds)
    provenance["recalibrated_labels"] = int(sum(a != b for a, b in zip(thresholds, parent.thresholds, strict=True)))
    save_checkpoint(out_dir / "best.pt", child_model, arch=child.arch, label_names=child.label_names,
                    label_classes=child.label_classes, ontology_digest=child.ontology_digest,
                    preprocessing=child.preprocessing, thresholds=thresholds, train_config=child.train_config,
                    metrics={**{k: v for k, v in child.metrics.items()}, "finetune": provenance}, epoch=child.epoch,
                    label_ontology=child.label_ontology, overwrite=True)
    comparison = compare_on_held_out(parent, child, reviewed, scores={"child": child_scores["val"]})
    write_text_atomic(out_dir / "comparison.json", json.dumps(comparison, indent=1) + "\n", "comparison.json",
                      overwrite=True)
    return {"train": summary, "provenance": provenance, "comparison": comparison, "checkpoint": str(out_dir / "best.pt")}


def frozen_batchnorm(model: Any) -> Any:
    """The model with its BatchNorm layers kept in evaluation mode (its scale and shift still learn).

    A few hundred corrections come in batches of 16: their batch statistics are noisy, and updating the running
    means and variances from them shifts every layer's input away from what the rest of the network was trained on.
    Fine-tuning on small data therefore normalises with the parent's statistics. The layers' class becomes a
    BatchNorm2d whose ``train()`` stays in evaluation mode, so the state dict (and the saved child) is unchanged.
    """
    from torch import nn

    frozen = _evaluating_batchnorm_class()
    for module in model.modules():
        if type(module) is nn.BatchNorm2d:
            module.__class__ = frozen
            module.eval()
    return model


@functools.lru_cache(maxsize=1)
def _evaluating_batchnorm_class():
    from torch import nn

    class EvaluatingBatchNorm2d(nn.BatchNorm2d):
        """BatchNorm2d that normalises with its running statistics even while the network trains."""

        def train(self, mode: bool = True):
            return super().train(False)

    return EvaluatingBatchNorm2d


def recalibrated_thresholds(parent: Any, child: Any, cache: Any, minimum: int = MIN_HELD_OUT_POSITIVES,
                            scores: dict[str, np.ndarray] | None = None) -> list:
    """Thresholds for the child, fitted to the corrections (the paper's F1-maximising grid).

    Per label: calibrated on the held-out corrections where they have ``minimum`` positives; else on all the
    corrections (training and held-out) where those have as many (a threshold fitted to one or two held-out
    lesions is noise, and the parent's was set for labels the reader has just corrected); else the parent's.
    ``scores``: the child's scores on ``train`` and ``val`` when the caller has them.
    """
    from ..evaluation.metrics import calibrate_thresholds
    from ..training.dataset import split_arrays
    from .compare import model_scores

    scores = scores if scores is not None else model_scores(child, cache, ("train", "val"))
    labels = {split: split_arrays(cache, split) for split in scores}
    out = [float(t) for t in parent.thresholds]
    for splits in (("train", "val"), ("val",)):  # held-out calibration wins where it is possible
        targets = np.concatenate([labels[s]["targets"] for s in splits]) > 0
        valid = np.concatenate([labels[s]["valid"] for s in splits])
        fitted = calibrate_thresholds(np.concatenate([scores[s] for s in splits]), targets, valid)
        enough = (targets & valid).sum(axis=0) >= minimum
        out = [float(f) if ok else t for f, ok, t in zip(fitted, enough, out, strict=True)]
    return out


def _readers(folder: Path) -> list[str]:
    path = folder / "corrections.json"
    return list(json.loads(path.read_text(encoding="utf-8")).get("readers", [])) if path.is_file() else []
