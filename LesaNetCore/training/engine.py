"""The training loop: SGD with a step schedule, seeded, resumable, on CPU, one GPU or several (torchrun + DDP).

One run lives in one folder::

    RUN_DIR/config.json     the final TrainConfig (after the JSON file and --set overrides)
    RUN_DIR/last.pt         written atomically after every epoch: weights, optimizer, scheduler, scaler and RNG
                            states, so ``--resume`` continues where an interrupted run stopped
    RUN_DIR/best.pt         the epoch with the best validation mean per-class F1, with thresholds calibrated on
                            validation and its validation metrics
    RUN_DIR/metrics.jsonl   one line per epoch: losses, learning rate, validation metrics, time
    RUN_DIR/summary.json    written at the end

Reproducibility does not depend on saved generator states alone: the shuffling order of epoch ``e`` and the
loss' random draws (RHEM sampling, triplet selection) are seeded from ``(seed, epoch, rank)``, so a resumed
run draws exactly what the uninterrupted run would have drawn.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LesaNetError
from ..fileio import write_text_atomic
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, config_from_dict, config_to_dict
from .dataset import PatchCache, PatchDataset, open_patch_cache, split_arrays
from .distributed import DistributedContext, all_mean, barrier, cleanup, init_distributed, wrap_model

LAST = "last.pt"
BEST = "best.pt"
CONFIG = "config.json"
LOG = "metrics.jsonl"
SUMMARY = "summary.json"


def train(
    config: TrainConfig,
    data: str | os.PathLike | PatchCache,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    model_factory: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Trains LesaNet on a patch cache and writes the run folder (module docstring).

    Args:
        config: the training configuration.
        data: a patch cache (folder or .npz, see :func:`build_patch_cache`) or an opened one.
        out_dir: the run folder.
        resume: continue the run in ``out_dir`` from its ``last.pt``.
        progress: show tqdm bars (rank 0 only).
        model_factory: ``create_model``-compatible callable (default ``LesaNetCore.model.create_model``).

    Returns:
        A summary: epochs done, best epoch and its validation metrics, checkpoint paths.

    Raises:
        LesaNetError: the cache lacks a training split, the run folder already holds a run (without
            ``resume``) or holds none (with ``resume``), or the checkpoint does not match the config.
    """
    if model_factory is None:
        from ..model import create_model as model_factory
    ctx = init_distributed(config.device)
    try:
        return _Run(config, data, Path(out_dir), resume, progress, model_factory, ctx).run()
    finally:
        cleanup(ctx)


class _Run:
    """State of one training run; split into steps so each stays readable."""

    def __init__(self, config: TrainConfig, data: Any, out_dir: Path, resume: bool, progress: bool,
                 model_factory: Callable[..., Any], ctx: DistributedContext) -> None:
        import torch

        from ..model import class_weights

        self.cfg = config
        self.out = out_dir
        self.resume = resume
        self.progress = progress and ctx.is_main
        self.ctx = ctx
        self.torch = torch
        self.cache = data if isinstance(data, PatchCache) else open_patch_cache(data)
        if len(self.cache.rows("train")) == 0:
            raise LesaNetError(f"--data {self.cache.path!r}: must contain a training split, but got 0 train lesions")
        self.has_val = len(self.cache.rows("val")) > 0
        self._prepare_folder()
        _seed_everything(config.seed, config.deterministic)
        self.device = ctx.device
        self.num_labels = len(self.cache.label_names)
        model = model_factory(config.arch, num_labels=self.num_labels).to(self.device)
        self.channels_last = bool(config.channels_last and self.device.type == "cuda")
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.amp_dtype = _amp_dtype(config.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype is torch.float16)
        self.optimizer = torch.optim.SGD(_param_groups(model, config), lr=config.lr, momentum=config.momentum,
                                         weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=config.lr_step_epoch,
                                                         gamma=config.gamma)
        train_labels = split_arrays(self.cache, "train")
        pos_w, neg_w = class_weights(torch.from_numpy(train_labels["targets"] > 0),
                                     torch.from_numpy(train_labels["valid"]), config.loss.weight_clamp)
        self.pos_w, self.neg_w = pos_w.to(self.device), neg_w.to(self.device)
        self.start_epoch = 0
        self.best_score = -math.inf
        self.best_epoch = 0
        self.best_metrics: dict[str, Any] = {}
        if resume:
            self._load_last()
        self.ddp_model = wrap_model(self.model, ctx, static_graph=not (config.loss.spl and config.loss.triplet))

    # ------------------------------------------------------------------------------------------ folder
    def _prepare_folder(self) -> None:
        last = self.out / LAST
        if self.resume and not last.is_file():
            raise LesaNetError(f"--resume: the run folder must hold {LAST}, but got none in {str(self.out)!r}")
        if not self.resume and last.exists():
            raise LesaNetError(f"--out: the folder already holds a run ({LAST}); pass --resume to continue it or "
                               f"choose another folder, but got {str(self.out)!r}")
        if self.ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            text = json.dumps(config_to_dict(self.cfg), indent=2) + "\n"
            write_text_atomic(self.out / CONFIG, text, "config.json", overwrite=True)
        barrier(self.ctx)

    def _load_last(self) -> None:
        ckpt = load_checkpoint(self.out / LAST)
        if ckpt.arch != self.cfg.arch or ckpt.label_names != self.cache.label_names:
            raise LesaNetError(f"--resume: {LAST} must match the config and data (arch {self.cfg.arch!r}, "
                               f"{self.num_labels} labels), but got arch {ckpt.arch!r} with {ckpt.num_labels} labels")
        self.model.load_state_dict(ckpt.state_dict)
        state = ckpt.training_state or {}
        if ckpt.optimizer_state is not None:
            self.optimizer.load_state_dict(ckpt.optimizer_state)
        if "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if "rng" in state:
            _set_rng_state(state["rng"])
        self.start_epoch = ckpt.epoch
        self.best_score = float(state.get("best_score", -math.inf))
        self.best_epoch = int(state.get("best_epoch", 0))
        self.best_metrics = dict(state.get("best_metrics") or {})
        if self.ctx.is_main:
            _truncate_log(self.out / LOG, ckpt.epoch)

    # ------------------------------------------------------------------------------------------ loop
    def run(self) -> dict[str, Any]:
        torch = self.torch
        cfg = self.cfg
        dataset = PatchDataset(self.cache, "train", cfg.box_jitter, cfg.seed)
        per_process = max(1, cfg.batch_size // self.ctx.world_size)
        drop_last = cfg.drop_last and len(dataset) >= per_process * self.ctx.world_size
        for epoch in range(self.start_epoch, cfg.epochs):
            started = time.perf_counter()
            dataset.set_epoch(epoch)
            loader = self._loader(dataset, per_process, drop_last, epoch)
            generator = torch.Generator(device=self.device)
            generator.manual_seed(_mix_seed(cfg.seed, epoch, self.ctx.rank))
            lr = self.optimizer.param_groups[0]["lr"]
            train_parts = self._train_epoch(loader, generator, epoch)
            self.scheduler.step()
            last_epoch = epoch + 1 == cfg.epochs
            val = None
            if self.ctx.is_main and (last_epoch or (epoch + 1) % cfg.eval_every == 0) and self.has_val:
                val = self.validate()
            if self.ctx.is_main:
                # log first: a kill between the two leaves a line that resuming drops, never a missing line
                is_best = self._update_best(epoch + 1, val)
                self._log(epoch + 1, lr, train_parts, val, time.perf_counter() - started, is_best)
                self._save(epoch + 1, val, is_best)
            barrier(self.ctx)
        summary = {
            "epochs": cfg.epochs, "best_epoch": self.best_epoch, "best_val": self.best_metrics.get("val", {}),
            "last": str(self.out / LAST), "best": str(self.out / BEST) if (self.out / BEST).exists() else None,
            "world_size": self.ctx.world_size, "rank": self.ctx.rank, "device": str(self.device),
        }
        if self.ctx.is_main:
            write_text_atomic(self.out / SUMMARY, json.dumps(_json_safe(summary), indent=2) + "\n", "summary",
                              overwrite=True)
        return summary

    def _loader(self, dataset: PatchDataset, per_process: int, drop_last: bool, epoch: int) -> Any:
        torch = self.torch
        from torch.utils.data import DataLoader, RandomSampler
        from torch.utils.data.distributed import DistributedSampler

        if self.ctx.enabled:
            sampler = DistributedSampler(dataset, num_replicas=self.ctx.world_size, rank=self.ctx.rank,
                                         shuffle=True, seed=self.cfg.seed, drop_last=drop_last)
            sampler.set_epoch(epoch)
        else:
            order = torch.Generator()
            order.manual_seed(_mix_seed(self.cfg.seed, epoch, 0))
            sampler = RandomSampler(dataset, generator=order)
        return DataLoader(dataset, batch_size=per_process, sampler=sampler, drop_last=drop_last,
                          num_workers=self.cfg.workers, pin_memory=self.device.type == "cuda",
                          persistent_workers=False)

    def _train_epoch(self, loader: Any, generator: Any, epoch: int) -> dict[str, float]:
        torch = self.torch
        from tqdm import tqdm

        from ..model import lesanet_loss

        cfg = self.cfg
        self.ddp_model.train()
        sums: dict[str, float] = {}
        steps = 0
        total_steps = len(loader) if not cfg.max_steps_per_epoch else min(len(loader), cfg.max_steps_per_epoch)
        bar = tqdm(loader, total=total_steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not self.progress, leave=False)
        for batch in bar:
            if cfg.max_steps_per_epoch and steps >= cfg.max_steps_per_epoch:
                break
            images = batch["image"].to(self.device, non_blocking=True)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            boxes = batch["box"].to(self.device, non_blocking=True)
            targets = batch["target"].to(self.device, non_blocking=True)
            valid = batch["valid"].to(self.device, non_blocking=True)
            reliable = batch["reliable"].to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                out = self.ddp_model(images, boxes)
            out = _float_output(out)  # the loss' logs and clamps need float32
            loss, parts = lesanet_loss(out, targets, valid, reliable, self.pos_w, self.neg_w, cfg.loss, generator)
            if not math.isfinite(parts["total"]):
                raise LesaNetError(f"loss: must be finite, but got {parts['total']} at epoch {epoch + 1} step "
                                   f"{steps + 1} (lower lr or turn amp off)")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.ddp_model.parameters(), cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            steps += 1
            for name, value in parts.items():
                sums[name] = sums.get(name, 0.0) + value
            bar.set_postfix(loss=f"{parts['total']:.4f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2g}")
        bar.close()
        means = {name: all_mean(value / max(steps, 1), self.ctx) for name, value in sums.items()}
        means["steps"] = steps
        return means

    # ------------------------------------------------------------------------------------------ evaluation
    def validate(self) -> dict[str, Any]:
        """Validation scores -> thresholds calibrated on them -> per-label and mean per-class metrics.

        The scores come from ``LesaNetCore.model.InferenceModel``, the fused fp32 path the Annotator uses: thresholds
        calibrated on mixed-precision scores need not fit fp32 ones (on a full network trained 3 epochs on
        phantoms, bf16 autocast moved val scores by up to 2e-3 and one calibrated threshold by 0.3, which changed
        74 of 5,429 decisions). The copy is also about twice as fast on CPU.
        """
        from ..evaluation.metrics import calibrate_thresholds, mean_per_class, per_label_metrics
        from ..model import InferenceModel

        probs = InferenceModel(self.model, self.device).predict_dataset(PatchDataset(self.cache, "val"),
                                                                        self.cfg.eval_batch_size, desc="validate")
        labels = split_arrays(self.cache, "val")
        targets = labels["targets"] > 0
        thresholds = calibrate_thresholds(probs, targets, labels["valid"])
        per_label = per_label_metrics(probs, targets, labels["valid"], thresholds)
        return {"thresholds": [float(t) for t in thresholds], "val": mean_per_class(per_label),
                "val_per_label": {k: np.asarray(v, dtype=np.float64).tolist() for k, v in per_label.items()}}

    # ------------------------------------------------------------------------------------------ outputs
    def _update_best(self, epoch: int, val: dict[str, Any] | None) -> bool:
        """Whether this epoch is the best so far by validation mean per-class F1 (the final one without val)."""
        if val is not None:
            score = float(val["val"].get("f1", float("nan")))
            score = score if math.isfinite(score) else -1.0
            if score > self.best_score:
                self.best_score, self.best_epoch = score, epoch
                self.best_metrics = {"val": val["val"], "epoch": epoch}
                return True
            return False
        if not self.has_val and epoch == self.cfg.epochs:
            self.best_epoch = epoch  # no validation split: the final weights are the result
            return True
        return False

    def _save(self, epoch: int, val: dict[str, Any] | None, is_best: bool) -> None:
        thresholds = val["thresholds"] if val is not None else None
        metrics = {"epoch": epoch, **({"val": val["val"], "val_per_label": val["val_per_label"]} if val else {})}
        common = {
            "arch": self.cfg.arch, "label_names": self.cache.label_names, "label_classes": self.cache.label_classes,
            "ontology_digest": self.cache.ontology_digest, "preprocessing": self.cache.preprocessing,
            "train_config": config_to_dict(self.cfg), "epoch": epoch, "label_ontology": self.cache.label_ontology,
        }
        training_state = {
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": _rng_state(), "best_score": self.best_score, "best_epoch": self.best_epoch,
            "best_metrics": self.best_metrics,
        }
        if is_best:  # best before last: a kill in between makes the resumed run redo (and rewrite) this epoch
            save_checkpoint(self.out / BEST, self.model, thresholds=thresholds, metrics=metrics, overwrite=True,
                            **common)
        save_checkpoint(self.out / LAST, self.model, thresholds=thresholds, metrics=metrics,
                        optimizer_state=self.optimizer.state_dict(), training_state=training_state,
                        overwrite=True, **common)

    def _log(self, epoch: int, lr: float, train_parts: dict[str, float], val: dict[str, Any] | None,
             seconds: float, is_best: bool) -> None:
        line = {"epoch": epoch, "lr": lr, "train": train_parts, "val": val["val"] if val else None,
                "best": is_best, "best_epoch": self.best_epoch,
                "seconds": round(seconds, 3)}
        with open(self.out / LOG, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(_json_safe(line)) + "\n")
        if self.progress:
            from tqdm import tqdm

            scores = f", val F1 {val['val']['f1']:.4f} AUC {val['val']['auc']:.4f}" if val else ""
            tqdm.write(f"epoch {epoch}/{self.cfg.epochs}: loss {train_parts.get('total', float('nan')):.4f}{scores}"
                       f"{' (best)' if is_best else ''}, {seconds:.1f}s")


def predict(model: Any, dataset: Any, batch_size: int, device: Any, amp_dtype: Any = None,
            channels_last: bool = False, progress: bool = False, return_embeddings: bool = False,
            desc: str = "validate") -> Any:
    """SPL-refined probabilities ``(N, C)`` of ``model`` on every item of ``dataset``, in order.

    With ``return_embeddings``, also the L2-normalised embeddings ``(N, D)`` (float32), as evaluation and index
    building need. The model is put in eval mode and given back in the mode it came in.
    """
    import torch
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    device = torch.device(device)
    was_training = model.training
    model.eval()
    probs, embeddings = [], []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    with torch.no_grad():
        for batch in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False):
            images = batch["image"].to(device)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                out = model(images, batch["box"].to(device))
            probs.append(out.probs.float().cpu().numpy())
            if return_embeddings:
                embeddings.append(out.embedding.float().cpu().numpy())
    model.train(was_training)
    probs_array = (np.concatenate(probs).astype(np.float64) if probs
                   else np.zeros((0, getattr(model, "num_labels", 0)), dtype=np.float64))
    if not return_embeddings:
        return probs_array
    embedding_array = (np.concatenate(embeddings).astype(np.float32) if embeddings
                       else np.zeros((0, getattr(model, "emb_dim", 0)), dtype=np.float32))
    return probs_array, embedding_array


def read_run_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The config saved in a run folder (for ``--resume``)."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise LesaNetError(f"--resume: the run folder must hold {CONFIG}, but got none in {str(run_dir)!r}")
    return config_from_dict(json.loads(path.read_text(encoding="utf-8")))


# ------------------------------------------------------------------------------------------------- helpers
def _param_groups(model: Any, config: TrainConfig) -> list[dict[str, Any]]:
    """Weights and biases apart: the released code trains biases at 2x lr without weight decay."""
    weights, biases = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (biases if name.endswith("bias") else weights).append(param)
    groups = [{"params": weights}]
    if biases:
        groups.append({"params": biases, "lr": config.lr * config.bias_lr_factor,
                       "weight_decay": config.bias_weight_decay})
    return groups


def _amp_dtype(mode: str, device: Any) -> Any:
    import torch

    if device.type != "cuda" or mode == "off":
        return None
    if mode == "bf16" or (mode == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def _float_output(out: Any) -> Any:
    """The model output with float32 tensors (autocast may give bf16/fp16), keeping ``logits2 is logits1``."""
    import torch

    if not dataclasses.is_dataclass(out):
        return out
    changes = {f.name: getattr(out, f.name).float() for f in dataclasses.fields(out)
               if isinstance(getattr(out, f.name), torch.Tensor) and getattr(out, f.name).dtype != torch.float32}
    if getattr(out, "logits2", None) is getattr(out, "logits1", 0) and "logits1" in changes:
        changes["logits2"] = changes["logits1"]
    return dataclasses.replace(out, **changes) if changes else out


def _mix_seed(seed: int, epoch: int, rank: int) -> int:
    """A distinct, reproducible seed per (seed, epoch, rank)."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1, dtype=np.uint64)[0] % (2**63 - 1))


def _seed_everything(seed: int, deterministic: bool) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.benchmark = True


def _rng_state() -> dict[str, Any]:
    import torch

    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        s = state["numpy"]
        np.random.set_state(("MT19937", s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["cached"]))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _truncate_log(path: Path, epoch: int) -> None:
    """Drops log lines of epochs after the checkpoint (written by a run killed before it saved them)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("epoch", 0) <= epoch:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a line cut by the kill
    write_text_atomic(path, "".join(f"{line}\n" for line in kept), "metrics.jsonl", overwrite=True)


def _json_safe(value: Any) -> Any:
    """NaN/inf -> None so every log line is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value
