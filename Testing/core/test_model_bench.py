"""The FLOP counts behind the bench (nominal and executed), checked against the layers; a tiny model bench run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from LesaNetCore.bench.flops import executed_flops, layer_flops, model_flops
from LesaNetCore.bench.model import bench_model
from LesaNetCore.model import KernelPlan, create_model, fuse_for_inference


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


def test_executed_flops_count_what_the_plan_runs():
    """Direct everywhere executes the nominal count; Winograd layers count products and transforms, fewer."""
    fused = fuse_for_inference(create_model("lesanet_vgg16bn", num_labels=171))
    nominal = model_flops()["total"]
    assert executed_flops(fused, None, 1) == nominal
    assert executed_flops(fused, KernelPlan.forced("direct"), 8) == nominal
    f4 = executed_flops(fused, KernelPlan({(1, 256, 256, 30, 30): "F4"}), 1)
    saved = layer_flops("direct", 1, 256, 256, 30, 30) - layer_flops("F4", 1, 256, 256, 30, 30)
    assert f4 == pytest.approx(nominal - 2 * saved)  # conv3_2 and conv3_3 share the shape
    # F(4x4): 36 products per 16 outputs instead of 144, plus two transforms that stay small at 256 channels
    assert 0.25 < layer_flops("F4", 1, 256, 256, 30, 30) / layer_flops("direct", 1, 256, 256, 30, 30) < 0.4


@pytest.mark.slow
def test_bench_model_reports_consistent_numbers():
    """Every time, fraction and ratio the model section prints, on a tiny model with two rounds."""
    result = bench_model(model_name="lesanet_demo", rounds=2, batch=4, num_labels=8)
    for key in ("flops_per_patch", "forward_b1_ms", "forward_b32_ms", "train_step_ms", "forward_b1_direct_ms",
                "forward_b32_direct_ms", "model_peak_gflops"):  # on CPU: also with direct convolution only
        assert result[key] > 0, key
    for key in ("forward_b1_peak_fraction", "forward_b32_direct_peak_fraction", "train_step_peak_fraction"):
        assert result[key] is None or 0 < result[key] <= 1, key  # never above 1: None and a peak error instead
    # A tiny model is far below the roofline: the ratio is the time over FLOPs / peak of the same rounds.
    roofline_ms = result["flops_per_patch"] / (result["model_peak_gflops"] * 1e9) * 1e3
    assert result["forward_b1_direct_vs_roofline"] == pytest.approx(result["forward_b1_direct_ms"] / roofline_ms,
                                                                    rel=0.5)
    assert set(result["kernels_chosen"]) == {"b1", "b8"} and len(result["kernels_chosen"]["b1"]) == 13
    assert len(result["train_step_ms_rounds"]) == 2 and result["train_step_mmap_ms"] > 0  # on CPU: both allocators
