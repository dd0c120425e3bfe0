"""Self-describing checkpoints: the weights plus everything needed to use them.

A checkpoint file is a ``torch.save`` of a plain dictionary that holds only tensors, strings, numbers, lists and
dicts, so it loads with ``torch.load(weights_only=True)`` and never runs code from the file. Beside the state
dict it names its format and version, the architecture and its constructor arguments (nanoGPT's
``model_args``), the label names and classes, the ontology digest, the preprocessing (timm's pretrained config),
the calibrated thresholds, the training config and the validation metrics, so the CLI and Slicer rebuild the
model from the file alone.

Example:
    >>> ckpt = load_checkpoint("run/best.pt")                   # doctest: +SKIP
    >>> model = build_model(ckpt, "cpu")                         # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LesaNetError
from ..fileio import atomic_path

FORMAT_NAME = "lesanet-checkpoint"
FORMAT_VERSION = 1

#: LesaNet's preprocessing (DESIGN.md): HU window, in-plane spacing, patch size, slice offsets, normalisation.
DEFAULT_PREPROCESSING: dict[str, Any] = {
    "hu_window": [-1024.0, 3071.0],
    "spacing_mm": 1.0,
    "patch_size": 120,
    "z_offsets_mm": [-2.0, 0.0, 2.0],
    "mean": 50.0,
    "scale": 255.0,
}

_REQUIRED_KEYS = ("format", "format_version", "arch", "arch_config", "state_dict", "label_names")


@dataclass
class Checkpoint:
    """A loaded checkpoint: weights and the metadata that describes them.

    Attributes:
        state_dict: parameter and buffer name -> tensor.
        arch: registered model name, for ``create_model``.
        arch_config: the model's constructor arguments (``LesaNet.arch_config``).
        label_names: one name per output, in output order.
        label_classes: ``"bodypart"``, ``"type"`` or ``"attribute"`` per label.
        ontology_digest: :meth:`Ontology.digest` of the ontology the labels come from ("" when unknown).
        preprocessing: HU window, spacing, patch size, z offsets, mean and scale the model expects.
        thresholds: per-label decision thresholds calibrated on validation.
        train_config: the training configuration (plain dict), for provenance.
        metrics: validation (or published) metrics.
        epoch: epochs completed when saved.
        optimizer_state: optimizer state for resuming, when saved.
        training_state: scheduler, scaler, RNG states and best score for resuming, when saved.
        label_ontology: the labels' ontology (``Ontology.to_dict()`` of the label subset), so inference can make
            decisions consistent with hierarchy and exclusivity from the file alone; None when unknown.
        path: the file it was read from.
    """

    state_dict: dict[str, Any]
    arch: str
    arch_config: dict[str, Any]
    label_names: list[str]
    label_classes: list[str] = field(default_factory=list)
    ontology_digest: str = ""
    preprocessing: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_PREPROCESSING))
    thresholds: list[float] = field(default_factory=list)
    train_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    epoch: int = 0
    optimizer_state: dict[str, Any] | None = None
    training_state: dict[str, Any] | None = None
    label_ontology: dict[str, Any] | None = None
    path: str = ""

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


def model_arch_config(model: Any) -> dict[str, Any]:
    """The constructor arguments of ``model`` (unwrapping DDP / compiled modules), without ``num_labels``."""
    model = _unwrap(model)
    config = dict(getattr(model, "arch_config", None) or {})
    if not config:
        raise LesaNetError(f"model: must expose a non-empty arch_config dict, but got {type(model).__name__}")
    config.pop("num_labels", None)
    return config


def save_checkpoint(
    path: str | os.PathLike,
    model: Any,
    *,
    arch: str,
    label_names: Sequence[str],
    label_classes: Sequence[str] = (),
    ontology_digest: str = "",
    preprocessing: Mapping[str, Any] | None = None,
    thresholds: Sequence[float] | None = None,
    train_config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    epoch: int = 0,
    optimizer_state: Mapping[str, Any] | None = None,
    training_state: Mapping[str, Any] | None = None,
    label_ontology: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Writes a self-describing checkpoint atomically (a crash never leaves a half-written file).

    Args:
        path: output file (``.pt``).
        model: the model (a DDP wrapper is unwrapped); its ``arch_config`` is saved as the constructor arguments.
        arch: the registered name the model was created with (``create_model(arch, ...)``).
        label_names: the output labels, in order; must match the model's output count.
        label_classes: class of each label (empty when unknown).
        ontology_digest: digest of the ontology the labels were mined with.
        preprocessing: what the model expects as input; defaults to LesaNet's.
        thresholds: per-label decision thresholds; default 0.5 each.
        train_config: the training configuration as a plain dict.
        metrics: evaluation results (plain numbers, lists, dicts).
        epoch: epochs completed.
        optimizer_state: ``optimizer.state_dict()`` for resuming.
        training_state: other resume state (scheduler, scaler, RNG states): tensors and plain values only.
        label_ontology: ``Ontology.to_dict()`` of the label list's ontology (its term names must equal
            ``label_names``).
        overwrite: replace an existing file.

    Raises:
        LesaNetError: inconsistent label/threshold counts, metadata that is not plain data, or an unwritable path.
    """
    if not isinstance(arch, str) or not arch:
        raise LesaNetError(f"arch: must be the registered model name, but got {arch!r}")
    arch_config = model_arch_config(model)
    module = _unwrap(model)
    state_dict = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    label_names = [str(n) for n in label_names]
    num_outputs = _output_count(state_dict)
    if num_outputs is not None and num_outputs != len(label_names):
        raise LesaNetError(
            f"label_names: must have one name per model output ({num_outputs}), but got {len(label_names)} names"
        )
    if label_ontology is not None:
        ontology_names = [str(t.get("name")) for t in label_ontology.get("terms", [])]
        if ontology_names != label_names:
            raise LesaNetError(f"label_ontology: its terms must be the label names in order, but got "
                               f"{len(ontology_names)} terms starting {ontology_names[:3]}")
    label_classes = [str(c) for c in label_classes]
    if label_classes and len(label_classes) != len(label_names):
        raise invalid_count("label_classes", len(label_names), len(label_classes))
    thresholds = [0.5] * len(label_names) if thresholds is None else [float(t) for t in thresholds]
    if len(thresholds) != len(label_names):
        raise invalid_count("thresholds", len(label_names), len(thresholds))
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "arch_config": _plain(arch_config, "arch_config"),
        "state_dict": state_dict,
        "label_names": label_names,
        "label_classes": label_classes,
        "ontology_digest": str(ontology_digest),
        "preprocessing": _plain(dict(preprocessing or DEFAULT_PREPROCESSING), "preprocessing"),
        "thresholds": thresholds,
        "train_config": _plain(dict(train_config or {}), "train_config"),
        "metrics": _plain(dict(metrics or {}), "metrics"),
        "epoch": int(epoch),
        "optimizer_state": None if optimizer_state is None else _plain(dict(optimizer_state), "optimizer_state"),
        "training_state": None if training_state is None else _plain(dict(training_state), "training_state"),
        "label_ontology": None if label_ontology is None else _plain(dict(label_ontology), "label_ontology"),
    }
    import torch

    with atomic_path(path, "checkpoint", overwrite=overwrite) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def invalid_count(argument: str, expected: int, got: int) -> LesaNetError:
    return LesaNetError(f"{argument}: must have one value per label ({expected}), but got {got}")


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Reads a checkpoint written by :func:`save_checkpoint`, refusing anything else.

    The file is read with ``torch.load(weights_only=True)``: a pickle that asks for any global beyond tensors
    and plain containers is refused before it can run.

    Raises:
        LesaNetError: the file is missing, corrupt, not a LesaNet checkpoint, of another format version, or
            asks for a forbidden global; the message names the file and the reason.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise LesaNetError(f"checkpoint: must be an existing file, but got {str(path)!r}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)|global (\S+)", str(err))
        what = f"the forbidden global {(found.group(1) or found.group(2))!r}" if found else _first_line(err)
        raise LesaNetError(
            f"checkpoint {str(path)!r}: refused, the file asks for {what}, which a weights-only load does not "
            "allow (nothing from the file was executed)"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError, TypeError, KeyError, AttributeError, ImportError) as err:
        raise LesaNetError(f"checkpoint {str(path)!r}: not a readable torch file, it is corrupt or truncated "
                           f"({type(err).__name__}: {_first_line(err)})") from err
    return checkpoint_from_dict(payload, str(path))


def checkpoint_from_dict(payload: Any, source: str = "") -> Checkpoint:
    """Validates a loaded payload and wraps it in a :class:`Checkpoint`."""
    where = f"checkpoint {source!r}" if source else "checkpoint"
    if not isinstance(payload, Mapping):
        raise LesaNetError(f"{where}: must hold a dict, but got {type(payload).__name__}")
    if payload.get("format") != FORMAT_NAME:
        raise LesaNetError(
            f"{where}: must be a LesaNet checkpoint (format {FORMAT_NAME!r}; convert official LesaNet files with "
            f"`lesanet import-official`), but got format {payload.get('format')!r} with keys {sorted(map(str, payload))[:8]}"
        )
    if payload.get("format_version") != FORMAT_VERSION:
        raise LesaNetError(
            f"{where}: format_version must be {FORMAT_VERSION}, but got {payload.get('format_version')!r}"
        )
    missing = [k for k in _REQUIRED_KEYS if k not in payload]
    if missing:
        raise LesaNetError(f"{where}: must contain {list(_REQUIRED_KEYS)}, but got no {missing}")
    if not isinstance(payload["state_dict"], Mapping) or not payload["state_dict"]:
        raise LesaNetError(f"{where}: state_dict must be a non-empty dict, but got {type(payload['state_dict']).__name__}")
    labels = list(payload["label_names"])
    thresholds = list(payload.get("thresholds") or [0.5] * len(labels))
    if len(thresholds) != len(labels):
        raise LesaNetError(f"{where}: thresholds must have one value per label ({len(labels)}), but got {len(thresholds)}")
    return Checkpoint(
        state_dict=dict(payload["state_dict"]),
        arch=str(payload["arch"]),
        arch_config=dict(payload["arch_config"]),
        label_names=[str(n) for n in labels],
        label_classes=[str(c) for c in payload.get("label_classes") or []],
        ontology_digest=str(payload.get("ontology_digest") or ""),
        preprocessing=dict(payload.get("preprocessing") or DEFAULT_PREPROCESSING),
        thresholds=[float(t) for t in thresholds],
        train_config=dict(payload.get("train_config") or {}),
        metrics=dict(payload.get("metrics") or {}),
        epoch=int(payload.get("epoch") or 0),
        optimizer_state=payload.get("optimizer_state"),
        training_state=payload.get("training_state"),
        label_ontology=payload.get("label_ontology"),
        path=source,
    )


def build_model(checkpoint: Checkpoint, device: Any = "cpu", model_factory: Any = None) -> Any:
    """Rebuilds the model from the checkpoint alone, loads its weights strictly, and sets eval mode.

    Args:
        checkpoint: a loaded checkpoint.
        device: where to put the model.
        model_factory: ``create_model``-compatible callable; defaults to ``LesaNetCore.model.create_model``.

    Raises:
        LesaNetError: the architecture is unknown, or the weights do not fit it (missing/unexpected names,
            shape mismatches are listed).
    """
    if model_factory is None:
        from ..model import create_model as model_factory
    kwargs = {k: v for k, v in checkpoint.arch_config.items() if k not in ("name", "arch", "num_labels")}
    model = model_factory(checkpoint.arch, num_labels=checkpoint.num_labels, **kwargs)
    try:
        model.load_state_dict(checkpoint.state_dict, strict=True)
    except RuntimeError as err:
        raise LesaNetError(
            f"checkpoint {checkpoint.path!r}: its weights must fit architecture {checkpoint.arch!r}, but got "
            f"{_first_line(err)}"
        ) from err
    return model.to(device).eval()


def checkpoint_digest(checkpoint: Checkpoint) -> str:
    """SHA-256 of what determines the model's outputs: architecture, label names and every weight.

    Thresholds, metrics and training settings are left out on purpose: re-calibrating thresholds does not change
    embeddings, so a retrieval index stays valid; new weights or labels always change the digest.
    """
    import torch

    h = hashlib.sha256()
    header = {"arch": checkpoint.arch, "arch_config": checkpoint.arch_config, "labels": checkpoint.label_names}
    h.update(json.dumps(header, sort_keys=True, default=str).encode())
    for name in sorted(checkpoint.state_dict):
        tensor = checkpoint.state_dict[name]
        h.update(name.encode())
        if isinstance(tensor, torch.Tensor):
            t = tensor.detach().cpu().contiguous()
            h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(repr(tensor).encode())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------- helpers
def _unwrap(model: Any) -> Any:
    """The bare module under DistributedDataParallel / DataParallel / torch.compile wrappers."""
    for attr in ("module", "_orig_mod"):
        inner = getattr(model, attr, None)
        if inner is not None and hasattr(inner, "state_dict"):
            return _unwrap(inner)
    return model


def _output_count(state_dict: Mapping[str, Any]) -> int | None:
    """Number of labels the weights produce (from the first classifier layer), when recognisable."""
    for key in ("class_scores1.weight", "class_scores2.weight"):
        if key in state_dict:
            return int(state_dict[key].shape[0])
    return None


def _plain(value: Any, where: str) -> Any:
    """``value`` converted to tensors and plain containers/scalars, so weights-only loading accepts it.

    numpy arrays become tensors, numpy scalars Python numbers, tuples lists; anything else is refused here rather
    than producing a file that cannot be loaded safely.
    """
    import numpy as np
    import torch

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {_plain_key(k, where): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (Path, os.PathLike)):
        return str(value)
    raise LesaNetError(f"{where}: checkpoint metadata must be tensors or plain data, but got {type(value).__name__}")


def _plain_key(key: Any, where: str) -> Any:
    if isinstance(key, (str, int)):
        return key
    raise LesaNetError(f"{where}: dict keys must be str or int, but got {key!r}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
