"""The machine's fp32 limit, measured now: the yardstick of every "fraction of peak" the bench prints.

Why not one matmul: on a 2-core AMD EPYC, MKL's fp32 ``torch.mm`` ran at 147-196 GFLOP/s while oneDNN's 3 x 3
convolutions ran at 365-450 in the same process, so a matmul peak put batch-32 inference at 157 % "of peak".
The peak here is the best of fp32 matmul (MKL through ``torch.mm`` and oneDNN with a packed weight) and oneDNN
convolutions shaped like LesaNet's (3 x 3 at the conv3, conv4 and conv5 sizes of a batch of 8, and a 1 x 1),
each with its weight packed once as the fused model does. bf16 (AVX512-BF16 / AMX) is measured beside it where
the CPU has it, never mixed in: LesaNet runs fp32.

A shared machine's speed drifts by +-10 % within a minute, so a section's time is judged against a sample
taken right after it (:class:`PeakMeter`), and a fraction above 1 is reported as a wrong peak, not printed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# (name, batch, C_in, C_out, H = W, kernel): LesaNet's conv3-conv5 layers at the batched-inference slice of 8.
_CONV_SHAPES = (("conv3x3_30", 8, 256, 256, 30, 3), ("conv3x3_15", 8, 512, 512, 15, 3),
                ("conv3x3_7", 8, 512, 512, 7, 3), ("conv1x1_15", 8, 512, 512, 15, 1))
_MATMUL_SIZE = 2048


def _best_seconds(fn: Callable[[], object], repeats: int, cuda: bool = False) -> float:
    """Shortest wall time of ``repeats`` calls after one warm-up call (synchronising CUDA around each)."""
    import torch

    fn()
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


def _cpu_kernels(dtype: Any) -> dict[str, tuple[Callable[[], object], float]]:
    """name -> (call, FLOPs) for the CPU peak kernels in ``dtype``, weights packed once."""
    import torch

    kernels: dict[str, tuple[Callable[[], object], float]] = {}
    n = _MATMUL_SIZE
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    kernels["matmul_torch"] = (lambda: torch.mm(a, b), 2.0 * n**3)
    mkldnn = torch.ops.mkldnn
    if torch.backends.mkldnn.is_available() and hasattr(mkldnn, "_reorder_linear_weight"):
        packed = mkldnn._reorder_linear_weight(b.T.contiguous(), n)
        kernels["matmul_onednn"] = (lambda: mkldnn._linear_pointwise(a, packed, None, "none", [], ""), 2.0 * n**3)
    if torch.backends.mkldnn.is_available() and hasattr(mkldnn, "_convolution_pointwise"):
        for name, batch, c_in, c_out, size, k in _CONV_SHAPES:
            x = torch.randn(batch, c_in, size, size).to(dtype).contiguous(memory_format=torch.channels_last)
            w = torch.randn(c_out, c_in, k, k).to(dtype).contiguous(memory_format=torch.channels_last)
            pad = [k // 2] * 2
            wp = torch._C._nn.mkldnn_reorder_conv2d_weight(w.to_mkldnn(), pad, [1, 1], [1, 1], 1, list(x.shape))
            bias = torch.zeros(c_out, dtype=dtype)
            kernels[name] = (lambda x=x, wp=wp, bias=bias, pad=pad: mkldnn._convolution_pointwise(
                x, wp, bias, pad, [1, 1], [1, 1], 1, "none", [], ""), 2.0 * batch * c_in * c_out * k * k * size**2)
    return kernels


def _cuda_kernels(device: str) -> dict[str, tuple[Callable[[], object], float]]:
    """name -> (call, FLOPs) on CUDA: fp32 matmul without TF32 and cuDNN convolutions of LesaNet's shapes."""
    import torch
    import torch.nn.functional as F

    n = 4096
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    kernels: dict[str, tuple[Callable[[], object], float]] = {"matmul_torch": (lambda: torch.mm(a, b), 2.0 * n**3)}
    for name, batch, c_in, c_out, size, k in _CONV_SHAPES:
        x = torch.randn(4 * batch, c_in, size, size, device=device).contiguous(memory_format=torch.channels_last)
        w = torch.randn(c_out, c_in, k, k, device=device).contiguous(memory_format=torch.channels_last)
        kernels[name] = (lambda x=x, w=w, k=k: F.conv2d(x, w, padding=k // 2),
                         2.0 * 4 * batch * c_in * c_out * k * k * size**2)
    return kernels


def bf16_supported() -> tuple[bool, str]:
    """Whether this CPU has bf16 dot products (AVX512-BF16 or AMX), and the flags that say so."""
    from ..model.machine import kernel_flags

    flags = [f for f in kernel_flags() if f in ("avx512_bf16", "amx_bf16")]
    return bool(flags), "+".join(flags) or "neither avx512_bf16 nor amx_bf16"


@dataclass
class PeakMeter:
    """Samples the fp32 peak on demand and keeps every sample of the run.

    Attributes:
        device: ``"cpu"`` or a CUDA device.
        repeats: timed calls per kernel in one sample (best kept: another process only ever slows a call).
        samples: every sample's ``{"gflops", "kernel", "by_kernel"}`` in the order taken.
    """

    device: str = "cpu"
    repeats: int = 3
    samples: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        import torch

        cuda = torch.device(self.device).type == "cuda"
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 peak, not TF32's
        self._cuda = cuda
        self._kernels = _cuda_kernels(self.device) if cuda else _cpu_kernels(torch.float32)

    def sample(self) -> float:
        """The best GFLOP/s of the peak kernels now; recorded in :attr:`samples`."""
        from torch import inference_mode

        by_kernel = {}
        with inference_mode():
            for name, (call, flops) in self._kernels.items():
                by_kernel[name] = round(flops / _best_seconds(call, self.repeats, self._cuda) / 1e9, 1)
        best = max(by_kernel, key=by_kernel.get)
        self.samples.append({"gflops": by_kernel[best], "kernel": best, "by_kernel": by_kernel})
        return by_kernel[best]

    @property
    def best(self) -> float:
        """The highest sample of the run (0 before the first)."""
        return max((s["gflops"] for s in self.samples), default=0.0)

    def summary(self) -> dict[str, Any]:
        """``peak_gflops`` (best sample), ``peak_kernel`` and the spread of the samples, for the JSON."""
        if not self.samples:
            self.sample()
        values = [s["gflops"] for s in self.samples]
        best = max(self.samples, key=lambda s: s["gflops"])
        return {"peak_gflops": best["gflops"], "peak_kernel": best["kernel"], "peak_by_kernel": best["by_kernel"],
                "peak_samples": len(values), "peak_min_gflops": min(values)}


def bf16_peak(repeats: int = 3) -> dict[str, Any]:
    """bf16 GFLOP/s of the same CPU kernels, reported beside the fp32 peak (None where the CPU lacks bf16)."""
    import torch

    supported, flags = bf16_supported()
    if not supported:
        return {"bf16_peak_gflops": None, "bf16_note": f"not measured: this CPU has {flags}"}
    with torch.inference_mode():
        by_kernel = {name: round(flops / _best_seconds(call, repeats) / 1e9, 1)
                     for name, (call, flops) in _cpu_kernels(torch.bfloat16).items()}
    best = max(by_kernel, key=by_kernel.get)
    return {"bf16_peak_gflops": by_kernel[best], "bf16_peak_kernel": best, "bf16_by_kernel": by_kernel,
            "bf16_flags": flags}


class PeakError:
    """Collects fractions of peak above 1: they mean the peak missed a faster kernel, so none is printed."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def check(self, name: str, fraction: float, peak: float) -> float | None:
        """``fraction`` rounded to 3 decimals, or None (and a message) when it is above 1."""
        if fraction > 1.0:
            self.messages.append(f"{name}: ran at {fraction:.2f} x the peak measured with it ({peak:.0f} GFLOP/s): "
                                 f"the peak is wrong (a faster kernel than it samples ran), so no fraction is given")
            return None
        return round(fraction, 3)
