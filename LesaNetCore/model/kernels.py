"""Choosing the convolution algorithm per layer by timing them on the user's machine, and remembering the choice.

Why measure: the fastest algorithm for a 3 x 3 layer depends on the CPU, its matmul library and the thread count.
A rule with thresholds measured on two Xeons made a 2-core AMD EPYC's batch-1 forward 30 % slower than direct
convolution. So :func:`tune` runs real forward passes of the fused network (weights and feature maps as cold or
warm as in use) with every eligible layer forced to direct, F(2x2, 3x3) and F(4x4, 3x3) in turn, rotating the
order each round so a drift of the shared machine's speed hits all algorithms alike, and takes the per-layer
median. A layer takes Winograd only when it beats direct by ``margin``; then the whole plan is timed against
all-direct, interleaved, and dropped for that batch unless its median is faster. The chosen path is thus
never slower than direct on the machine that chose it, up to the noise of the check.

The choice is cached in ``kernels.json`` under the user's cache directory (``$LESANET_CACHE_DIR``, else
``$XDG_CACHE_HOME/lesanet`` or ``~/.cache/lesanet``; ``~/Library/Caches/lesanet`` on macOS,
``%LOCALAPPDATA%/lesanet`` on Windows), keyed by :func:`.machine.machine_key` (CPU model, ISA, threads, torch).
``lesanet tune`` runs it explicitly; :class:`.InferenceModel` runs it on first use of a batch size unless
``$LESANET_TUNE`` is ``off``. Without a cached choice every layer runs direct convolution.

Cost, measured on the project's 2-core AMD EPYC: batch 1 about 1-2 s, batch 8 about 5-7 s, once per machine.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import LesaNetError, invalid
from .kernel_plan import ALGORITHMS, KernelPlan, LayerShape, parse_shape, shape_text
from .lesanet import _BLOCK_DEPTHS, LesaNet, _ConvReLU, set_kernel_plan
from .machine import machine_info, machine_key

CACHE_ENV = "LESANET_CACHE_DIR"
TUNE_ENV = "LESANET_TUNE"
CACHE_FILE = "kernels.json"
_FORMAT = "lesanet-kernels"
_VERSION = 1
# Time budget per batch size after the warm-up pass: rounds continue until it is spent (at least MIN_ROUNDS).
BUDGET_S = {1: 1.0, 8: 4.0}
MIN_ROUNDS = 3
MAX_ROUNDS = 9
_HARD_LIMIT = 3.0  # a batch's warm-up, rounds and check stop at this many times its budget, whatever ran
_HOPELESS = 1.5  # an algorithm this many times slower than direct after one round is not timed again there
_BENCH_BOX = (40.0, 42.0, 80.0, 76.0)  # a typical DeepLesion box in a 120-pixel patch

_LOG = logging.getLogger("LesaNetCore.model.kernels")


# ------------------------------------------------------------------------------------------------- cache
def cache_dir() -> Path:
    """Where LesaNet keeps machine-specific measurements; ``$LESANET_CACHE_DIR`` overrides (tests use it)."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "lesanet"
    if sys.platform.startswith("win"):
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "lesanet"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lesanet"


def cache_file() -> Path:
    """The kernel-choice file, ``cache_dir() / "kernels.json"``."""
    return cache_dir() / CACHE_FILE


def tuning_enabled() -> bool:
    """False when ``$LESANET_TUNE`` is ``off`` / ``0`` / ``no``: then nothing is measured on first use."""
    return os.environ.get(TUNE_ENV, "").strip().lower() not in ("off", "0", "no", "false")


def _read_cache(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"format": _FORMAT, "version": _VERSION, "machines": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != _FORMAT or data.get("version") != _VERSION or not isinstance(data["machines"], dict):
            raise ValueError("not a kernel cache of this version")
        return data
    except (OSError, ValueError, KeyError, TypeError) as err:
        # A broken cache must not stop annotation: it only costs a new measurement.
        _LOG.warning("kernel cache %s is unreadable (%s); it will be measured again", path, err)
        return {"format": _FORMAT, "version": _VERSION, "machines": {}}


def cached_plan(path: str | os.PathLike | None = None, key: str | None = None) -> KernelPlan:
    """The plan measured earlier on this machine (:func:`machine_key`); an empty (all-direct) plan if none."""
    path = Path(path) if path is not None else cache_file()
    entry = _read_cache(path)["machines"].get(key or machine_key(), {})
    choices = {}
    for text, layer in entry.get("layers", {}).items():
        try:
            choices[parse_shape(text)] = layer["algorithm"]
        except (LesaNetError, KeyError, TypeError):
            continue
    try:
        return KernelPlan({k: v for k, v in choices.items() if v in ALGORITHMS})
    except LesaNetError:
        return KernelPlan()


def store(result: TuneResult, path: str | os.PathLike | None = None) -> Path:
    """Merges ``result`` into the cache file (atomically: a concurrent reader sees the old or the new file)."""
    from ..fileio import write_text_atomic

    path = Path(path) if path is not None else cache_file()
    data = _read_cache(path)
    entry = data["machines"].setdefault(result.key, {"machine": result.machine, "layers": {}, "checks": {}})
    entry["machine"] = result.machine
    # A batch measured on too busy a machine is not remembered: the next first use measures it again.
    complete = {check["batch"] for check in result.checks if check.get("complete", True)}
    for row in result.rows:
        if row["shape"][0] in complete:
            entry["layers"][shape_text(row["shape"])] = {"algorithm": row["algorithm"], "ms": row["ms"]}
    for check in result.checks:
        if check["batch"] in complete:
            entry.setdefault("checks", {})[f"b{check['batch']} {check['height']}x{check['width']}"] = check
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True), argument=CACHE_ENV, overwrite=True)
    except OSError as err:
        raise LesaNetError(f"{CACHE_ENV}: the kernel cache must be writable, but got {str(path)!r} ({err})") from err
    return path


# ------------------------------------------------------------------------------------------------ shapes
def conv_shapes(model: LesaNet, batch: int, height: int, width: int) -> dict[str, LayerShape]:
    """Input shape ``(batch, C_in, C_out, H, W)`` of every Winograd-eligible conv of a fused LesaNet."""
    shapes, h, w = {}, height, width
    for block, depth in enumerate(_BLOCK_DEPTHS, start=1):
        if block > 1:
            h, w = h // 2, w // 2
        for layer in range(1, depth + 1):
            conv = getattr(model, f"conv{block}_{layer}")
            if isinstance(conv, _ConvReLU) and conv.winograd_ok:
                c_out, c_in = conv.weight.shape[:2]
                shapes[f"conv{block}_{layer}"] = (batch, int(c_in), int(c_out), h, w)
    return shapes


# ------------------------------------------------------------------------------------------------ tuning
@dataclass
class TuneResult:
    """What :func:`tune` measured.

    Attributes:
        plan: the choices (a layer shape -> algorithm), to give :func:`.lesanet.set_kernel_plan`.
        rows: per layer and batch: ``layer``, ``shape``, ``ms`` (median per algorithm), ``algorithm`` (chosen).
        checks: per batch: whole forward passes with the plan and all-direct (``plan_ms``, ``direct_ms``,
            medians of ``rounds``), and ``kept`` (False: the plan was not faster, so that batch runs direct).
        seconds: wall time of the whole tuning.
        key: the machine key the choice is valid for; ``machine`` the details.
    """

    plan: KernelPlan
    rows: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    key: str = ""
    machine: dict[str, Any] = field(default_factory=dict)


def tune(model: LesaNet, batches: Sequence[int] = (1, 8), height: int = 120, width: int = 120, *,
         budget_s: float | dict[int, float] | None = None, margin: float = 0.02, seed: int = 0,
         echo: Callable[[str], None] | None = None) -> TuneResult:
    """Times direct, F2 and F4 for every eligible layer of a fused CPU LesaNet; see the module docstring.

    Args:
        model: a :func:`.fuse_for_inference` copy on the CPU (its plan is restored afterwards).
        batches: the batch sizes to measure (the slices the model runs: 1 for annotation, its chunk for batches).
        height: patch height of the inputs (120 for LesaNet patches).
        width: patch width.
        budget_s: seconds of timed rounds per batch (a dict per batch size; default :data:`BUDGET_S`, 4 s for
            other batches); at least :data:`MIN_ROUNDS` and at most :data:`MAX_ROUNDS` rounds run.
        margin: the fraction by which Winograd must beat direct convolution in a layer to be chosen.
        seed: seed of the random inputs.
        echo: called with a line per batch (progress for ``lesanet tune``).
    """
    layers = {name: m for name, m in model.named_children() if isinstance(m, _ConvReLU) and m.winograd_ok}
    if not layers:
        raise invalid("model", "must be a fused LesaNet (fuse_for_inference) with 3 x 3 conv layers",
                      type(model).__name__)
    if next(model.parameters()).device.type != "cpu":
        raise invalid("model", "must be on the CPU: kernels are chosen for CPU inference only",
                      str(next(model.parameters()).device))
    for batch in batches:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise invalid("batches", "must be positive integers", list(batches))
    if not 0 <= margin < 1:
        raise invalid("margin", "must lie in [0, 1)", margin)
    started = time.perf_counter()
    old_plan = next(iter(layers.values())).plan
    gen = torch.Generator().manual_seed(seed)
    rows, checks, choices = [], [], {}
    try:
        for batch in batches:
            budget = (budget_s.get(batch, 4.0) if isinstance(budget_s, dict)
                      else budget_s if budget_s is not None else BUDGET_S.get(batch, 4.0))
            images = torch.randn(batch, model.in_chans, height, width, generator=gen)
            boxes = torch.tensor([_BENCH_BOX] * batch)
            shapes = conv_shapes(model, batch, height, width)
            deadline = time.perf_counter() + _HARD_LIMIT * budget
            medians, rounds = _layer_medians(model, layers, images, boxes, budget, deadline)
            unmeasured = dict.fromkeys(ALGORITHMS, math.inf)
            medians = {name: medians.get(name, unmeasured) for name in shapes}
            # Layers of one shape (conv3_2 and conv3_3) share a choice: the one with the least summed time.
            summed: dict[LayerShape, dict[str, float]] = {}
            for name, shape in shapes.items():
                for algorithm in ALGORITHMS:
                    summed.setdefault(shape, dict.fromkeys(ALGORITHMS, 0.0))[algorithm] += medians[name][algorithm]
            chosen = {}
            for shape, ms in summed.items():
                best = min(ALGORITHMS, key=ms.get)
                chosen[shape] = best if best == "direct" or ms[best] < ms["direct"] * (1 - margin) else "direct"
            if rounds < MIN_ROUNDS:  # too busy a machine to tell: keep the safe default, measure another time
                chosen = dict.fromkeys(chosen, "direct")
            check = _check_plan(model, layers, KernelPlan(chosen), images, boxes, budget, deadline)
            check.update(batch=batch, height=height, width=width, layer_rounds=rounds, complete=rounds >= MIN_ROUNDS)
            if not check["kept"]:
                chosen = dict.fromkeys(chosen, "direct")
            for name, shape in shapes.items():
                rows.append({"layer": name, "shape": shape, "algorithm": chosen[shape],
                             "ms": {a: round(v, 4) if math.isfinite(v) else None
                                    for a, v in medians[name].items()}})
            checks.append(check)
            choices.update(chosen)
            if echo:
                picked = sum(chosen[shape] != "direct" for shape in shapes.values())
                timing = ("" if check["plan_ms"] is None else f"; forward {check['plan_ms']:.2f} ms with it, "
                          f"{check['direct_ms']:.2f} ms direct{'' if check['kept'] else ': direct kept'}")
                echo(f"batch {batch}: {picked} of {len(shapes)} layers chose Winograd{timing}")
    finally:
        for layer in layers.values():
            layer.forced = None
        set_kernel_plan(model, old_plan)
    return TuneResult(KernelPlan(choices), rows, checks, time.perf_counter() - started, machine_key(),
                      machine_info())


def _forward(model: LesaNet, images: torch.Tensor, boxes: torch.Tensor) -> None:
    with torch.inference_mode():
        model(images, boxes)


def _layer_medians(model: LesaNet, layers: dict[str, _ConvReLU], images: torch.Tensor, boxes: torch.Tensor,
                   budget: float, deadline: float) -> tuple[dict[str, dict[str, float]], int]:
    """Median ms per layer and algorithm over interleaved rounds of in-network forward passes, and the rounds.

    Rounds stop once ``budget`` seconds are spent and :data:`MIN_ROUNDS` ran; no pass starts after
    ``deadline`` (a machine busy with other work then gets fewer rounds, and :func:`tune` keeps direct
    convolution for a batch with fewer than :data:`MIN_ROUNDS`: on a busy 2-core machine every parallel region
    waits for the other core, which hits Winograd's 16-36 matmuls per layer hardest).

    After the first timed round an algorithm that took more than :data:`_HOPELESS` times direct convolution in
    a layer is not run there again (the layer runs direct in its passes): F2 on conv1_2 at batch 8 took 20x
    direct, and would otherwise spend most of the budget.
    """
    times: dict[str, dict[str, list[float]]] = {name: {a: [] for a in ALGORITHMS} for name in layers}
    live = {name: set(ALGORITHMS) for name in layers}
    current = {"algorithm": "direct", "start": 0.0}

    def force(algorithm: str) -> None:
        current["algorithm"] = algorithm
        for name, layer in layers.items():
            layer.forced = algorithm if algorithm in live[name] else "direct"

    def before(module, args) -> None:
        current["start"] = time.perf_counter()

    def after(name: str) -> Callable:
        def hook(module, args, output) -> None:
            if module.forced == current["algorithm"]:
                times[name][current["algorithm"]].append((time.perf_counter() - current["start"]) * 1e3)
        return hook

    handles, rounds = [], 0
    try:
        for algorithm in ALGORITHMS:  # warm-up: transformed weights, oneDNN primitives and packings are built once
            if time.perf_counter() > deadline:
                return {}, 0
            force(algorithm)
            _forward(model, images, boxes)
        for name, layer in layers.items():
            handles.append(layer.register_forward_pre_hook(before))
            handles.append(layer.register_forward_hook(after(name)))
        started = time.perf_counter()
        for round_index in range(MAX_ROUNDS):
            elapsed = time.perf_counter() - started
            if (round_index >= MIN_ROUNDS and elapsed > budget) or elapsed > _HARD_LIMIT * budget:
                break
            shift = round_index % len(ALGORITHMS)
            for algorithm in ALGORITHMS[shift:] + ALGORITHMS[:shift]:
                if time.perf_counter() > deadline:
                    break
                if any(algorithm in algorithms for algorithms in live.values()):
                    force(algorithm)
                    _forward(model, images, boxes)
            else:
                rounds = round_index + 1
                if round_index == 0:
                    for name, per in times.items():
                        live[name] = {a for a in ALGORITHMS
                                      if a == "direct" or per[a][0] <= _HOPELESS * per["direct"][0]}
                continue
            break
    finally:
        for handle in handles:
            handle.remove()
        for layer in layers.values():
            layer.forced = None
    medians = {name: {a: statistics.median(v) if v else math.inf for a, v in per.items()}
               for name, per in times.items()}
    return medians, rounds


def _check_plan(model: LesaNet, layers: dict[str, _ConvReLU], plan: KernelPlan, images: torch.Tensor,
                boxes: torch.Tensor, budget: float, deadline: float) -> dict[str, Any]:
    """Whole forward passes with ``plan`` and all-direct, alternating; medians; the plan kept if faster."""
    if not plan.winograd_count():
        return {"plan_ms": None, "direct_ms": None, "rounds": 0, "kept": True}
    times: dict[str, list[float]] = {"plan": [], "direct": []}
    started = time.perf_counter()
    for round_index in range(MAX_ROUNDS):
        if (round_index >= MIN_ROUNDS and time.perf_counter() - started > budget / 2) or (
                time.perf_counter() > deadline):
            break
        for name in (("plan", "direct") if round_index % 2 == 0 else ("direct", "plan")):
            for layer in layers.values():  # not set_kernel_plan: that frees the transformed weights
                layer.plan = plan if name == "plan" else None
            t = time.perf_counter()
            _forward(model, images, boxes)
            times[name].append((time.perf_counter() - t) * 1e3)
    plan_ms, direct_ms = (statistics.median(v) if v else math.inf for v in (times["plan"], times["direct"]))
    for layer in layers.values():
        layer.drop_winograd_weights()
    return {"plan_ms": round(plan_ms, 3), "direct_ms": round(direct_ms, 3), "rounds": len(times["plan"]),
            "kept": plan_ms < direct_ms and len(times["plan"]) >= MIN_ROUNDS}


def format_table(result: TuneResult) -> str:
    """The measured times as a text table: one row per layer and batch, the chosen algorithm marked ``*``."""
    lines = [f"machine: {result.key}",
             f"{'layer':8s} {'shape':>22s} " + " ".join(f"{a:>9s}" for a in ALGORITHMS) + "  chosen"]
    for row in result.rows:
        cells = [("-" if row["ms"][a] is None else f"{row['ms'][a]:.3f}") + ("*" if a == row["algorithm"] else " ")
                 for a in ALGORITHMS]
        cells = [cell.rjust(10) for cell in cells]
        lines.append(f"{row['layer']:8s} {shape_text(row['shape']):>22s}" + "".join(cells) + f"  {row['algorithm']}")
    for check in result.checks:
        if check["plan_ms"] is None:
            lines.append(f"batch {check['batch']}: every layer runs direct convolution")
        else:
            lines.append(f"batch {check['batch']}: forward {check['plan_ms']:.2f} ms with the choice, "
                         f"{check['direct_ms']:.2f} ms direct (medians of {check['rounds']}, alternating)"
                         + ("" if check["kept"] else ": not faster, direct kept"))
    lines.append(f"measured in {result.seconds:.1f} s (ms per layer: medians inside forward passes)")
    return "\n".join(lines)
