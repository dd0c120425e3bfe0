"""What CPU this is, in the terms that decide which kernels are fast on it.

The kernel choice (:mod:`.kernels`) and the bench's peak are only valid for the machine they were measured on:
the same network ran its Winograd convolutions 30 % slower than direct on a 2-core AMD EPYC and 20 % faster on
a 2-core Xeon with the same torch. A choice is therefore cached under :func:`machine_key` (CPU model, the ISA
torch dispatches to and the extensions that change kernels, thread count, torch version), and the bench puts
:func:`machine_info` in its JSON so a number always says where it came from.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from functools import lru_cache

# Extensions that change which kernels oneDNN and MKL run (vector width, bf16/fp16/int8 dot products, AMX tiles).
_KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni",
                 "amx_tile", "amx_bf16", "amx_int8", "amx_fp16")


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    """``(model name, flags)`` from /proc/cpuinfo on Linux, from sysctl on macOS, else the platform string."""
    model, flags = "", frozenset()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model", "cpu model") and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = frozenset(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    if not model and sys.platform == "darwin":
        try:
            model = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                   timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            model = ""
    return model or platform.processor() or platform.machine() or "unknown CPU", flags


def cpu_model() -> str:
    """The CPU's model name as the operating system reports it (e.g. ``"AMD EPYC"``)."""
    return _cpuinfo()[0]


def kernel_flags() -> list[str]:
    """The CPU extensions of :data:`_KERNEL_FLAGS` this machine has (Linux; empty where flags are unknown)."""
    flags = _cpuinfo()[1]
    return [flag for flag in _KERNEL_FLAGS if flag in flags]


def machine_info(threads: int | None = None) -> dict:
    """CPU model, ISA, extensions, core and thread counts, torch and oneDNN availability, for reports and keys."""
    import torch

    return {
        "cpu_model": cpu_model(),
        "isa": torch.backends.cpu.get_cpu_capability(),
        "isa_flags": kernel_flags(),
        "logical_cpus": os.cpu_count(),
        "threads": int(threads if threads is not None else torch.get_num_threads()),
        "torch": torch.__version__,
        "onednn": bool(torch.backends.mkldnn.is_available()),
        "platform": f"{sys.platform} {platform.machine()}",
    }


def machine_key(threads: int | None = None) -> str:
    """One string naming what a kernel measurement depends on: CPU model, ISA and extensions, threads, torch."""
    info = machine_info(threads)
    flags = "+".join(info["isa_flags"]) or "-"
    return f"{info['cpu_model']} | {info['isa']} {flags} | {info['threads']} threads | torch {info['torch']}"
