"""Typed training configuration: frozen dataclasses, a JSON file, and ``--set a.b=value`` overrides.

Defaults are the paper's (and the released code's) values, so ``TrainConfig()`` is the reference recipe. There is
no configuration language: a JSON file gives values for fields, ``--set`` strings are parsed by the type of the
field they name, and an unknown key or a wrong type is an error naming the key. The final config is written
into the run folder (``config.json``), as timm writes ``args.yaml``.

Example:
    >>> cfg = apply_overrides(TrainConfig(), ["epochs=2", "loss.triplet=false"])
    >>> cfg.epochs, cfg.loss.triplet, cfg.lr
    (2, False, 0.01)
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LesaNetError, invalid

AMP_MODES = ("auto", "bf16", "fp16", "off")


def _default_loss() -> Any:
    from ..model import LossConfig

    return LossConfig()


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run.

    Attributes:
        arch: registered model name (``lesanet_vgg16bn``, ``lesanet_demo``).
        epochs: epochs to train (paper: 15).
        batch_size: lesions per step, summed over all processes (paper: 128).
        lr: SGD learning rate (paper: 0.01).
        lr_step_epoch: the learning rate is multiplied by ``gamma`` every this many epochs (paper: 10).
        gamma: learning-rate factor at each step (paper: 0.1).
        momentum: SGD momentum (paper: 0.9).
        weight_decay: L2 weight decay of weights (paper: 1e-4).
        bias_lr_factor: biases learn this much faster (the released code: 2).
        bias_weight_decay: weight decay of biases (the released code: 0).
        grad_clip: global gradient-norm clip (paper: 10; 0 = off).
        seed: seeds Python, numpy and torch, the shuffling order of every epoch, and the loss' sampling.
        deterministic: ask torch for deterministic kernels where they exist (slower on GPU).
        drop_last: drop the last incomplete batch (the released code does; ignored when the split is smaller
            than one batch).
        box_jitter: augmentation, in patch pixels: each box corner moves by up to this much. The reference uses
            no augmentation, hence 0.
        workers: data-loading worker processes.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
        amp: mixed precision on CUDA: ``auto`` (bf16 where supported, else fp16 with gradient scaling), ``bf16``,
            ``fp16`` or ``off``. Always off on CPU.
        channels_last: NHWC memory layout on CUDA (faster convolutions on tensor cores).
        eval_every: validate every this many epochs (the last epoch always).
        eval_batch_size: lesions per forward pass during validation.
        max_steps_per_epoch: stop an epoch after this many steps (0 = the whole split); for smoke tests.
        loss: loss components and constants (:class:`LesaNetCore.model.LossConfig`).
    """

    arch: str = "lesanet_vgg16bn"
    epochs: int = 15
    batch_size: int = 128
    lr: float = 0.01
    lr_step_epoch: int = 10
    gamma: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    bias_lr_factor: float = 2.0
    bias_weight_decay: float = 0.0
    grad_clip: float = 10.0
    seed: int = 123
    deterministic: bool = True
    drop_last: bool = True
    box_jitter: float = 0.0
    workers: int = 2
    device: str = "auto"
    amp: str = "auto"
    channels_last: bool = True
    eval_every: int = 1
    eval_batch_size: int = 256
    max_steps_per_epoch: int = 0
    loss: Any = field(default_factory=_default_loss)

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "lr_step_epoch", "eval_every", "eval_batch_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise invalid(name, "must be >= 1", getattr(self, name))
        for name in ("workers", "max_steps_per_epoch", "weight_decay", "bias_weight_decay", "grad_clip",
                     "box_jitter", "momentum"):
            if getattr(self, name) < 0:
                raise invalid(name, "must be >= 0", getattr(self, name))
        if not self.lr > 0 or not self.bias_lr_factor > 0:
            raise invalid("lr" if not self.lr > 0 else "bias_lr_factor", "must be > 0",
                          self.lr if not self.lr > 0 else self.bias_lr_factor)
        if not 0 < self.gamma <= 1:
            raise invalid("gamma", "must be in (0, 1]", self.gamma)
        if self.amp not in AMP_MODES:
            raise invalid("amp", f"must be one of {list(AMP_MODES)}", self.amp)
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise invalid("device", "must be 'auto', 'cpu', 'cuda' or 'cuda:N'", self.device)
        if not dataclasses.is_dataclass(self.loss):
            raise invalid("loss", "must be a LossConfig", self.loss)


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as plain JSON-ready data (nested dataclasses become dicts, tuples lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(data: Mapping[str, Any], base: Any = None, where: str = "") -> Any:
    """``base`` (default ``TrainConfig()``) with the values of ``data``, checked against the field types.

    Raises:
        LesaNetError: an unknown key (named with its dotted path) or a value of the wrong type.
    """
    base = TrainConfig() if base is None else base
    if not isinstance(data, Mapping):
        raise invalid(where or "config", "must be a JSON object", data)
    names = {f.name for f in dataclasses.fields(base)}
    changes: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise invalid(path, f"must be a known setting ({', '.join(sorted(names))})", key)
        current = getattr(base, key)
        if dataclasses.is_dataclass(current):
            changes[key] = config_from_dict(value, current, path)
        else:
            changes[key] = _coerce(path, value, current)
    return _replace(base, changes, where)


def apply_overrides(config: Any, overrides: Iterable[str]) -> Any:
    """Applies ``key=value`` strings (``lr=0.02``, ``loss.rhem=false``); values are parsed by the field's type.

    Raises:
        LesaNetError: a string without ``=``, an unknown key, or a value that does not parse as the field's type.
    """
    for text in overrides:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise invalid("--set", "must be key=value (e.g. epochs=20 or loss.rhem=false)", text)
        parts = key.split(".")
        config = _set_path(config, parts, raw.strip(), key)
    return config


def load_config(path: str | os.PathLike, base: Any = None) -> Any:
    """Reads a JSON config file (any subset of the fields) on top of ``base``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LesaNetError(f"--config: must be an existing JSON file, but got {str(path)!r}") from None
    except json.JSONDecodeError as err:
        raise LesaNetError(f"--config {str(path)!r} line {err.lineno}: must be valid JSON ({err.msg}), but got a "
                           "parse error") from err
    return config_from_dict(data, base)


# ------------------------------------------------------------------------------------------------- helpers
def _set_path(config: Any, parts: list[str], raw: str, key: str) -> Any:
    names = {f.name for f in dataclasses.fields(config)}
    head = parts[0]
    if head not in names:
        raise invalid(f"--set {key}", f"must name a known setting ({', '.join(sorted(names))})", head)
    current = getattr(config, head)
    if len(parts) > 1:
        if not dataclasses.is_dataclass(current):
            raise invalid(f"--set {key}", f"{head!r} has no sub-settings", key)
        return _replace(config, {head: _set_path(current, parts[1:], raw, key)}, key)
    if dataclasses.is_dataclass(current):
        raise invalid(f"--set {key}", "must name a single setting, not a group", key)
    return _replace(config, {head: _parse(f"--set {key}", raw, current)}, key)


def _replace(config: Any, changes: Mapping[str, Any], where: str) -> Any:
    try:
        return dataclasses.replace(config, **changes)
    except LesaNetError as err:
        raise LesaNetError(f"{where}: {err}" if where and not str(err).startswith(where) else str(err)) from err
    except (TypeError, ValueError) as err:
        raise LesaNetError(f"{where or 'config'}: {err}") from err


def _parse(argument: str, raw: str, current: Any) -> Any:
    """Parses an override string as the type of the current value."""
    if isinstance(current, bool):
        lowered = raw.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise invalid(argument, "must be true or false", raw)
    if isinstance(current, (int, float)):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        return _coerce(argument, value, current)
    if isinstance(current, (list, tuple)):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as err:
            raise invalid(argument, "must be a JSON list such as [1, 2]", raw) from err
        return _coerce(argument, value, current)
    return _coerce(argument, raw, current)


def _coerce(argument: str, value: Any, current: Any) -> Any:
    """``value`` checked against (and, for int -> float, converted to) the type of ``current``."""
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise invalid(argument, "must be true or false", value)
        return value
    if isinstance(current, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(argument, "must be an integer", value)
        return value
    if isinstance(current, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise invalid(argument, "must be a number", value)
        return float(value)
    if isinstance(current, str):
        if not isinstance(value, str):
            raise invalid(argument, "must be a string", value)
        return value
    if isinstance(current, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            raise invalid(argument, "must be a list", value)
        return type(current)(value)
    if current is None:
        return value
    raise invalid(argument, f"cannot be set (type {type(current).__name__})", value)
