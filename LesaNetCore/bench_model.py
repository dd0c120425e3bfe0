"""How fast the LesaNet model runs here, against what this machine's matrix unit can do.

``bench_model()`` measures the fp32 matmul peak now (so a shared or throttled machine is judged against itself),
counts the FLOPs of one 3 x 120 x 120 patch analytically, and times inference at batch 1 and 32 (BN folded into
the convs, channels-last, ``torch.inference_mode``; on CPU with Winograd where it pays and again without) and
one training step at batch 32 (forward, the full LesaNet loss, backward, SGD). Each timing is the best of
several runs, because other processes on a shared machine only ever make a run slower. ``lesanet bench --json``
prints the dict.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .errors import invalid

PATCH_SIZE = 120
# A typical DeepLesion box in a 120-pixel patch at 1 mm/pixel (lesions are mostly 10-60 mm).
_BENCH_BOX = (40.0, 42.0, 80.0, 76.0)


def model_flops(
    widths: tuple[int, ...] | list[int] = (64, 128, 256, 512, 512),
    fc_dim: int = 256,
    emb_dim: int = 256,
    num_labels: int = 171,
    height: int = PATCH_SIZE,
    width: int = PATCH_SIZE,
    box: tuple[float, float, float, float] = _BENCH_BOX,
    in_chans: int = 3,
    roi_size: int = 5,
    use_spl: bool = True,
) -> dict[str, int]:
    """Forward FLOPs of one patch, counted analytically (2 per multiply-add; 1 per RoI max comparison).

    Bias adds, BN, ReLU and pooling are left out, as in the usual convention; they are memory-bound and a few
    per cent of the conv work.

    Example:
        >>> f = model_flops()
        >>> round(f["conv"] / 1e9, 2), round(f["total"] / 1e9, 2)
        (8.71, 8.73)
    """
    from .model.lesanet import _BLOCK_DEPTHS, _LESION_BLOCKS

    conv = 0
    roi = 0
    h, w, cin = height, width, in_chans
    x1, y1, x2, y2 = box
    for block, (depth, cout) in enumerate(zip(_BLOCK_DEPTHS, widths, strict=True), start=1):
        if block > 1:
            h, w = h // 2, w // 2
        for _ in range(depth):
            conv += 2 * 9 * cin * cout * h * w
            cin = cout
        scale = 0.5 ** (block - 1)
        if block in _LESION_BLOCKS:
            rh = max(round(y2 * scale) - round(y1 * scale) + 1, 1)
            rw = max(round(x2 * scale) - round(x1 * scale) + 1, 1)
        else:
            rh, rw = round(height * scale) + 1, round(width * scale) + 1
        # Every cell of the (clipped) RoI is compared about once per bin it falls in.
        roi += cout * min(rh + roi_size, h + roi_size) * min(rw + roi_size, w + roi_size)
    fc = 2 * roi_size * roi_size * sum(widths) * fc_dim
    concat = fc_dim * len(widths)
    head = 2 * concat * (emb_dim + num_labels) + (2 * num_labels * num_labels if use_spl else 0)
    return {"conv": conv, "fc": fc + head, "roi": roi, "total": conv + fc + head + roi}


def matmul_peak_gflops(device: str = "cpu", size: int = 2048, repeats: int = 10) -> float:
    """Best fp32 ``torch.mm`` throughput of ``size x size`` matrices over ``repeats`` runs, all threads."""
    import torch

    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    c = torch.empty(size, size, device=device)
    seconds = _best_time(lambda: torch.mm(a, b, out=c), repeats, device)
    return 2 * size**3 / seconds / 1e9


def bench_model(
    device: str = "cpu",
    model_name: str = "lesanet_vgg16bn",
    repeats: int = 5,
    train_repeats: int = 3,
    batch: int = 32,
    num_labels: int = 171,
    seed: int = 0,
) -> dict:
    """Times ``lesanet_vgg16bn`` inference and training; see the module docstring.

    Args:
        device: ``"cpu"`` or a CUDA device.
        model_name: registered variant to time (the targets are for ``lesanet_vgg16bn``).
        repeats: inference runs at the large batch (best kept); batch 1 gets four times as many.
        train_repeats: training steps timed (best kept), after one warm-up step.
        batch: the large batch size (32 in the targets).
        num_labels: label count of the model.
        seed: seed for weights and inputs.

    Returns:
        ``peak_gflops``, ``flops_per_patch``, ``forward_b1_ms``, ``forward_b32_ms`` and ``train_step_ms`` (per
        patch), ``forward_b1_peak_fraction``, ``forward_b32_peak_fraction``, ``train_step_peak_fraction``
        (direct-convolution FLOPs per second over the peak; a training step counts 3x the forward FLOPs), and the
        settings used. On CPU, ``forward_b1_direct_ms``, ``forward_b32_direct_ms`` and their fractions time the
        same inference without Winograd: with it the forward does fewer FLOPs than counted, so its "fraction"
        is an effective speed and can pass 1; the direct fractions say how well the kernels use the cores.
    """
    import torch

    from .model import LossConfig, class_weights, create_model, fuse_for_inference, lesanet_loss

    if repeats < 1 or train_repeats < 1:
        raise invalid("repeats", "must be >= 1", min(repeats, train_repeats))
    if batch < 2:
        raise invalid("batch", "must be >= 2 (the triplet loss needs pairs)", batch)
    dev = torch.device(device)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    # The peak is sampled before, between and after the model runs: on a shared machine each sample can only be
    # too low, so the best one is the closest to what the cores can do.
    peaks = [matmul_peak_best(device)]

    model = create_model(model_name, num_labels=num_labels).to(dev)
    flops = model_flops(**model.arch_config)["total"]

    def inputs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.randn(n, 3, PATCH_SIZE, PATCH_SIZE, generator=gen).to(dev)
        if n == 1:
            return images, torch.tensor([_BENCH_BOX]).to(dev)
        # Lesions of 16-64 px centred in the patch, as the patch extraction makes them; sizes differ per image.
        sizes = torch.randint(16, 65, (n, 2), generator=gen).float()
        centre = PATCH_SIZE / 2
        boxes = torch.cat([centre - sizes / 2, centre + sizes / 2], dim=1)
        return images, boxes.to(dev)

    # Inference: what annotate and index building run; on CPU also with direct convolution only, which is the
    # measure of how well the conv kernels use the cores (Winograd does fewer FLOPs than the count assumes).
    variants = {"": True, "_direct": False} if dev.type == "cpu" else {"": True}
    times = {}
    for suffix, winograd in variants.items():
        fused = fuse_for_inference(model.eval(), winograd=winograd)
        for size, n in (("b1", 1), ("b32", batch)):  # keys say b32 for the large batch, whatever its size
            images, boxes = inputs(n)
            with torch.inference_mode():
                fused(images, boxes)  # warm-up: oneDNN picks kernels and reorders weights once
                runs = repeats if n > 1 else 4 * repeats  # batch-1 runs are short and most disturbed by neighbours
                times[size + suffix] = _best_time(
                    lambda images=images, boxes=boxes, net=fused: net(images, boxes), runs, device) / n
    fused = None  # free its weights before training
    peaks.append(matmul_peak_best(device))

    # Training step at the batch size the targets name.
    model.train()
    model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    images, boxes = inputs(batch)
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

    train_step()
    train_s = _best_time(train_step, train_repeats, device) / batch
    peaks.append(matmul_peak_best(device))
    peak = max(peaks)

    def fraction(seconds_per_patch: float, factor: float = 1.0) -> float:
        return factor * flops / seconds_per_patch / 1e9 / peak

    return {
        "device": str(dev),
        "model": model_name,
        "threads": torch.get_num_threads() if dev.type == "cpu" else None,
        "peak_gflops": round(peak, 1),
        "flops_per_patch": int(flops),
        **{f"forward_{size}{suffix}_ms": round(times[size + suffix] * 1e3, 2)
           for suffix in variants for size in ("b1", "b32")},
        "train_step_ms": round(train_s * 1e3, 2),
        **{f"forward_{size}{suffix}_peak_fraction": round(fraction(times[size + suffix]), 3)
           for suffix in variants for size in ("b1", "b32")},
        "train_step_peak_fraction": round(fraction(train_s, 3.0), 3),
        "settings": {
            "inference": ("fuse_for_inference: BN folded, ReLU fused (oneDNN post-op), Winograd F(4x4|2x2, 3x3) "
                          "where it pays (blocks 2-4 at batch 1), channels_last, slices of 8, torch.inference_mode, "
                          "fp32; *_direct: the same with oneDNN direct convolution only" if dev.type == "cpu" else
                          "fuse_for_inference: BN folded, channels_last, whole batch, torch.inference_mode, fp32 "
                          "(cuDNN may use TF32)"),
            "train": "channels_last, fp32, SGD momentum, grad-norm clip 10, full LesaNet loss",
            "batch": batch,
            "repeats": repeats,
        },
    }


def matmul_peak_best(device: str = "cpu") -> float:
    """Best matmul throughput over three sizes: MKL reaches its peak at different sizes on different CPUs."""
    return max(
        matmul_peak_gflops(device, 1024, 20), matmul_peak_gflops(device, 2048, 10), matmul_peak_gflops(device, 4096, 3)
    )


def _best_time(fn: Callable[[], object], repeats: int, device: str | object = "cpu") -> float:
    """Shortest wall time of ``repeats`` calls (seconds), synchronising CUDA around each."""
    import torch

    cuda = torch.device(device).type == "cuda"
    best = float("inf")
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best
