"""The analytic FLOP count behind bench_model, checked against the model's own layers; a tiny bench run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from LesaNetCore.bench_model import bench_model, model_flops
from LesaNetCore.model import create_model


def _counted_flops(model: nn.Module, images: torch.Tensor, boxes: torch.Tensor) -> int:
    """2 x multiply-adds of every conv and linear layer, counted from the shapes seen in a real forward."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += 2 * output.numel() * module.in_channels * kh * kw
        else:
            total += 2 * output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.no_grad():
        model.eval()(images, boxes)
    for handle in handles:
        handle.remove()
    return total


@pytest.mark.parametrize("name", ["lesanet_vgg16bn", "lesanet_demo"])
def test_analytic_flops_match_the_layers(name):
    model = create_model(name, num_labels=171)
    flops = model_flops(**model.arch_config)
    counted = _counted_flops(model, torch.zeros(1, 3, 120, 120), torch.tensor([[40.0, 42.0, 80.0, 76.0]]))
    assert flops["conv"] + flops["fc"] == counted
    if name == "lesanet_vgg16bn":
        assert flops["conv"] == 8_706_023_424
        assert flops["roi"] < 0.001 * flops["total"]


@pytest.mark.slow
def test_bench_model_reports_consistent_numbers():
    """Fractions are rounded to 3 decimals, so a tiny model on a busy machine needs the absolute tolerance."""
    result = bench_model(model_name="lesanet_demo", repeats=1, train_repeats=1, batch=4, num_labels=8)
    for key in ("peak_gflops", "flops_per_patch", "forward_b1_ms", "forward_b32_ms", "train_step_ms",
                "forward_b1_direct_ms", "forward_b32_direct_ms"):  # on CPU: also without Winograd
        assert result[key] > 0
    gflops_b32 = result["flops_per_patch"] / (result["forward_b32_ms"] / 1e3) / 1e9
    assert result["forward_b32_peak_fraction"] == pytest.approx(
        gflops_b32 / result["peak_gflops"], rel=0.02, abs=5e-4)
    gflops_direct = result["flops_per_patch"] / (result["forward_b1_direct_ms"] / 1e3) / 1e9
    assert result["forward_b1_direct_peak_fraction"] == pytest.approx(
        gflops_direct / result["peak_gflops"], rel=0.02, abs=5e-4)
    gflops_train = 3 * result["flops_per_patch"] / (result["train_step_ms"] / 1e3) / 1e9
    assert result["train_step_peak_fraction"] == pytest.approx(
        gflops_train / result["peak_gflops"], rel=0.02, abs=5e-4)
