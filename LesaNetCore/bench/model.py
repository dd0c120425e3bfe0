"""How fast LesaNet infers and trains here, against the machine's peak of the same moment.

Inference runs through :class:`LesaNetCore.model.InferenceModel`, as the Annotator does: on CPU with the kernels
chosen for this machine (measured first if the cache lacks them; the time that took is ``kernels_tune_s``) and,
beside it, with direct convolution only (``*_direct``); on CUDA with the batch-1 CUDA graph and, beside it,
eager (``*_eager``). Batch 1 is what one annotation costs; batch 32 (in slices of 8 on CPU) what evaluation and
index building cost per patch. The training step is forward, the full LesaNet loss, backward and SGD at batch 32.

Fractions of peak count executed FLOPs (Winograd layers count their products and transforms) and can therefore
not pass 1 unless the peak is wrong; the ``*_vs_roofline`` ratios divide by the nominal (direct-convolution)
roofline FLOPs / peak, the issue's yardstick.
"""

from __future__ import annotations

import statistics
from typing import Any

from ..errors import invalid
from .flops import BENCH_BOX, PATCH_SIZE, executed_flops, model_flops
from .peak import PeakError, PeakMeter
from .rounds import per_round_fraction, per_round_roofline_ratio, timed_rounds


def _inputs(n: int, gen: Any, device: Any) -> tuple[Any, Any]:
    import torch

    images = torch.randn(n, 3, PATCH_SIZE, PATCH_SIZE, generator=gen).to(device)
    if n == 1:
        return images, torch.tensor([BENCH_BOX]).to(device)
    # Lesions of 16-64 px centred in the patch, as the patch extraction makes them; sizes differ per image.
    sizes = torch.randint(16, 65, (n, 2), generator=gen).float()
    centre = PATCH_SIZE / 2
    return images, torch.cat([centre - sizes / 2, centre + sizes / 2], dim=1).to(device)


def kernel_table(inference: Any, batches: tuple[int, ...]) -> dict[str, dict[str, str]]:
    """The algorithm each conv layer runs at each batch size under the model's plan (``"b1": {layer: ...}``)."""
    from ..model.kernels import conv_shapes

    plan = inference.plan
    return {f"b{b}": {name: plan.algorithm(*shape) if plan is not None else "direct"
                      for name, shape in conv_shapes(inference.module, b, PATCH_SIZE, PATCH_SIZE).items()}
            for b in batches}


def bench_model(device: str = "cpu", model_name: str = "lesanet_vgg16bn", rounds: int = 5, batch: int = 32,
                num_labels: int = 171, seed: int = 0, meter: PeakMeter | None = None,
                errors: PeakError | None = None) -> dict[str, Any]:
    """Times inference at batch 1 and ``batch`` and one training step; see the module docstring.

    Returns keys ``forward_b1_ms``, ``forward_b32_ms`` (per patch; "b32" names the large batch whatever its size),
    ``train_step_ms`` (per patch; on CPU with large blocks kept in the heap, ``train_step_mmap_ms`` without),
    with ``_direct`` (CPU) or ``_eager`` (CUDA) variants, their
    ``*_peak_fraction`` and ``*_vs_roofline``, ``kernels_chosen`` and ``kernels_tune_s`` (CPU: seconds of the
    first batch-1 and batch-32 calls, which pack weights and measure the kernels the cache lacks),
    ``model_peak_gflops`` (median of the section's samples) and the settings.
    """

    import torch

    from ..model import create_model

    if rounds < 1:
        raise invalid("rounds", "must be >= 1", rounds)
    if batch < 2:
        raise invalid("batch", "must be >= 2 (the triplet loss needs pairs)", batch)
    dev = torch.device(device)
    cpu = dev.type == "cpu"
    meter = meter or PeakMeter(device)
    errors = errors or PeakError()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = create_model(model_name, num_labels=num_labels)
    nominal = model_flops(**model.arch_config)["total"]
    sync = torch.cuda.synchronize if not cpu else None
    result: dict[str, Any] = {"device": str(dev), "model": model_name,
                              "threads": torch.get_num_threads() if cpu else None,
                              "flops_per_patch": int(nominal)}
    peaks = _bench_inference(model, dev, batch, gen, rounds, meter, errors, nominal, sync, result)
    result.update(_bench_train(model, dev, batch, num_labels, gen, rounds, meter, errors, nominal, sync))
    result["model_peak_gflops"] = round(statistics.median(peaks + result.pop("_train_peaks")), 1)
    result["settings"] = {
        "inference": ("InferenceModel: BN folded, ReLU fused (oneDNN post-op), kernels measured on this machine "
                      "(lesanet tune), channels_last, slices of 8, torch.inference_mode, fp32; *_direct: oneDNN "
                      "direct convolution only" if cpu else
                      "InferenceModel: BN folded, channels_last, whole batch, batch 1 from a CUDA graph, fp32 (cuDNN "
                      "may use TF32); *_eager: batch 1 without the graph"),
        "train": ("channels_last, fp32, SGD momentum, grad-norm clip 10, full LesaNet loss; CPU: train_step with "
                  "blocks of every size kept in the heap (keep_large_blocks), train_step_mmap before that"),
        "batch": batch, "rounds": rounds,
        "timing": "median over rounds of per-round medians; each round followed by a peak sample",
    }
    return result


def _bench_inference(model: Any, dev: Any, batch: int, gen: Any, rounds: int, meter: PeakMeter, errors: PeakError,
                     nominal: float, sync: Any, result: dict[str, Any]) -> list[float]:
    """Batch 1 and ``batch`` through InferenceModel and its direct (CPU) or eager (CUDA) twin; fills ``result``."""
    import time

    from ..model import InferenceModel

    cpu = dev.type == "cpu"
    x1, b1 = _inputs(1, gen, dev)
    xb, bb = _inputs(batch, gen, dev)
    started = time.perf_counter()
    main = InferenceModel(model, dev)  # CPU: the cached kernel plan; a batch size without one is measured here
    main(x1, b1)
    main(xb, bb)
    tune_s = time.perf_counter() - started
    other_name = "direct" if cpu else "eager"
    other = InferenceModel(model, dev, kernels="direct", cuda_graph=False)
    variants = {"b1": (lambda: main(x1, b1), 8), f"b1_{other_name}": (lambda: other(x1, b1), 8),
                "b32": (lambda: main(xb, bb), 1), f"b32_{other_name}": (lambda: other(xb, bb), 1)}
    for call, _ in variants.values():  # warm-up: oneDNN / cuDNN pick kernels, Winograd weights are built
        call()
    timed = timed_rounds(meter, variants, rounds, sync)
    peaks = timed.pop("peaks")
    chunk = main.chunk if cpu else batch
    for name, ms in timed.items():
        size = 1 if name.startswith("b1") else batch
        per_patch = [t / size for t in ms]
        plan = main.plan if cpu and not name.endswith(other_name) else None
        executed = executed_flops(main.module, plan, 1 if size == 1 else min(chunk, batch))
        key = f"forward_{name}"
        result[f"{key}_ms"] = round(statistics.median(per_patch), 3)
        result[f"{key}_peak_fraction"] = errors.check(key, per_round_fraction(per_patch, peaks, executed),
                                                      statistics.median(peaks))
        result[f"{key}_vs_roofline"] = round(statistics.median(per_round_roofline_ratio(per_patch, peaks, nominal)), 3)
        if executed != nominal:
            result[f"{key}_executed_flops"] = int(executed)
    if cpu:
        result["kernels_chosen"] = kernel_table(main, (1, main.chunk))
        result["kernels_tune_s"] = round(tune_s, 2)
    return peaks


def _bench_train(model: Any, dev: Any, batch: int, num_labels: int, gen: Any, rounds: int, meter: PeakMeter,
                 errors: PeakError, nominal: float, sync: Any) -> dict[str, Any]:
    """One training step per round at ``batch``; per patch, against the peak after each round."""
    import torch

    from ..model import LossConfig, class_weights, lesanet_loss

    model = model.to(dev).train()
    model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    images, boxes = _inputs(batch, gen, dev)
    targets = (torch.rand(batch, num_labels, generator=gen) < 0.05).float().to(dev)
    valid = torch.ones_like(targets, dtype=torch.bool)
    pos_w, neg_w = class_weights(targets.bool(), valid)
    reliable = targets.bool() | (torch.rand(batch, num_labels, generator=gen) < 0.2).to(dev)
    cfg = LossConfig()

    def train_step() -> None:
        out = model(images, boxes)
        loss, _ = lesanet_loss(out, targets, valid, reliable, pos_w, neg_w, cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()

    out: dict[str, Any] = {}
    peaks: list[float] = []
    # On CPU twice: as the allocator is (blocks above 32 MiB mmapped, page-faulted in again every step), then with
    # them kept in the heap (cpu_memory.keep_large_blocks); on CUDA the allocator caches by itself.
    settings = (("train_step_mmap", False), ("train_step", True)) if dev.type == "cpu" else (("train_step", False),)
    for key, keep in settings:
        if keep:
            from ..model.cpu_memory import keep_large_blocks

            keep_large_blocks()
        train_step()  # warm-up (and, with large blocks kept, the heap grows once)
        timed = timed_rounds(meter, {"train": (train_step, 1)}, rounds, sync)
        per_patch = [t / batch for t in timed["train"]]
        out[f"{key}_ms"] = round(statistics.median(per_patch), 2)
        out[f"{key}_peak_fraction"] = errors.check(key, per_round_fraction(per_patch, timed["peaks"], 3 * nominal),
                                                   statistics.median(timed["peaks"]))
        out[f"{key}_ms_rounds"] = [round(t, 2) for t in per_patch]
        peaks += timed["peaks"]
    return {**out, "_train_peaks": peaks}
