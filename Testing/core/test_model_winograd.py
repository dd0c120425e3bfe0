"""Winograd F(m x m, 3 x 3) against direct convolution, and its use inside the fused model through a plan."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from LesaNetCore.errors import LesaNetError
from LesaNetCore.model import KernelPlan, LesaNet, fuse_for_inference, set_kernel_plan
from LesaNetCore.model.lesanet import _ConvReLU
from LesaNetCore.model.winograd import winograd_conv3x3, winograd_weight


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("shape", [(1, 5, 8, 8), (2, 3, 15, 15), (1, 4, 7, 9), (3, 2, 1, 6)])
def test_winograd_equals_direct_convolution_in_float64(tile, shape):
    """In float64 the algorithm is exact up to rounding: any wrong transform matrix or tile offset shows."""
    gen = torch.Generator().manual_seed(sum(shape) + tile)
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    weight = torch.randn(6, shape[1], 3, 3, generator=gen, dtype=torch.float64)
    bias = torch.randn(6, generator=gen, dtype=torch.float64)
    got = winograd_conv3x3(x, winograd_weight(weight, tile, torch.float64), bias, relu=True)
    want = F.relu(F.conv2d(x, weight, bias, padding=1))
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)
    assert got.shape == want.shape
    assert got.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(("tile", "bound"), [(2, 5e-6), (4, 5e-5)])
@pytest.mark.parametrize("packed", [False, True])
def test_winograd_float32_error_stays_near_direct_convolution(tile, bound, packed):
    """The documented numerics in float32: about 1e-5 of the largest output for m = 4, 1e-6 for m = 2, with the
    products in torch.bmm or in oneDNN (packed weights)."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 256, 30, 30, generator=gen).relu().contiguous(memory_format=torch.channels_last)
    weight = torch.randn(128, 256, 3, 3, generator=gen) * (2 / (9 * 256)) ** 0.5
    want = F.conv2d(x.double(), weight.double(), padding=1)
    transformed = winograd_weight(weight, tile, pack_rows=64 if packed else None)
    got = winograd_conv3x3(x, transformed)
    relative = ((got.double() - want).abs().max() / want.abs().max()).item()
    print(f"F({tile}x{tile}, 3x3) float32 error: {relative:.2e} of the largest output")
    assert relative < bound
    if packed and transformed.packed is None:
        pytest.skip("this torch lacks oneDNN's linear ops: only the bmm path ran")
    assert (transformed.dense is None) == packed  # one copy of the transformed weights is kept, not two


def test_winograd_refuses_bad_arguments():
    weight = torch.zeros(4, 3, 3, 3)
    with pytest.raises(LesaNetError, match="tile"):
        winograd_weight(weight, 3)
    with pytest.raises(LesaNetError, match="weight"):
        winograd_weight(torch.zeros(4, 3, 5, 5), 4)
    with pytest.raises(LesaNetError, match="pack_rows"):
        winograd_weight(weight, 4, pack_rows=0)
    with pytest.raises(LesaNetError, match="transformed_weight"):
        winograd_conv3x3(torch.zeros(1, 5, 8, 8), winograd_weight(weight, 4))
    with pytest.raises(LesaNetError, match="x"):
        winograd_conv3x3(torch.zeros(1, 3, 8, 8, dtype=torch.float16), winograd_weight(weight, 4))
    with pytest.raises(LesaNetError, match="x"):
        winograd_conv3x3(torch.zeros(3, 8, 8), winograd_weight(weight, 4))


def test_conv_relu_rebuilds_its_transformed_weight_when_the_weight_changes():
    torch.manual_seed(4)
    layer = _ConvReLU(torch.nn.Conv2d(128, 16, 3, padding=1), torch.nn.BatchNorm2d(16).eval(),
                      plan=KernelPlan.forced("F4"))
    x = torch.randn(1, 128, 24, 24)
    with torch.inference_mode():
        first = layer(x)
        assert set(layer._winograd_weights) == {4}
        torch.testing.assert_close(first, F.relu(F.conv2d(x, layer.weight, layer.bias, padding=1)),
                                   atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        layer.weight.mul_(-1)
    with torch.inference_mode():
        second = layer(x)
    torch.testing.assert_close(second, F.relu(F.conv2d(x, layer.weight, layer.bias, padding=1)), atol=1e-4, rtol=1e-4)
    assert not torch.equal(first, second)
    assert copy.deepcopy(layer)._winograd_weights == {}  # derived data is not copied


def test_fused_model_runs_the_algorithm_its_plan_names_per_shape():
    """Widths of 128 make blocks 2-5 eligible; a plan picks F4 for one shape at batch 1, F2 at batch 3."""
    torch.manual_seed(5)
    model = LesaNet(7, widths=(8, 128, 128, 128, 128), fc_dim=8, emb_dim=6)
    model.train()
    for _ in range(2):
        model(torch.randn(4, 3, 40, 40) * 2 + 1, torch.tensor([[5.0, 8.0, 30.0, 25.0]] * 4))
    model.eval()
    plan = KernelPlan({(1, 128, 128, 20, 20): "F4", (3, 128, 128, 10, 10): "F2"})
    planned, direct = fuse_for_inference(model, chunk=None, plan=plan), fuse_for_inference(model)
    used = []
    for layer in planned.modules():
        if isinstance(layer, _ConvReLU):
            layer.register_forward_hook(lambda mod, inp, out: used.append((tuple(inp[0].shape), mod.algorithm(inp[0]))))
    images = torch.randn(3, 3, 40, 40)
    boxes = torch.tensor([[5.0, 8.0, 30.0, 25.0], [0.0, 0.0, 39.0, 39.0], [10.0, 12.0, 22.0, 30.0]])
    with torch.inference_mode():
        ref = model(images, boxes)
        for net in (planned, direct):
            got = net(images, boxes)
            torch.testing.assert_close(got.logits2, ref.logits2, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(got.embedding, ref.embedding, atol=1e-4, rtol=1e-4)
        single = planned(images[:1], boxes[:1])
    torch.testing.assert_close(single.probs, ref.probs[:1], atol=1e-5, rtol=1e-5)
    algorithms = {shape: algorithm for shape, algorithm in used}
    assert algorithms[(3, 128, 10, 10)] == "F2" and algorithms[(1, 128, 20, 20)] == "F4"
    assert algorithms[(3, 128, 20, 20)] == "F4"  # an unmeasured batch takes the nearest measured one
    assert algorithms[(3, 128, 5, 5)] == "direct"  # unmeasured shapes run direct convolution
    assert all(not layer._winograd_weights for layer in direct.modules() if isinstance(layer, _ConvReLU))
    set_kernel_plan(planned, None)  # a new plan frees the transformed weights of the old one
    assert all(not layer._winograd_weights for layer in planned.modules() if isinstance(layer, _ConvReLU))


@pytest.mark.slow
def test_winograd_layers_script_times_every_algorithm(tmp_path):
    """The tool that shows per-layer times on a new CPU runs and records a time per layer and algorithm."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "winograd_layers.py"
    out = tmp_path / "layers.json"
    run = subprocess.run([sys.executable, str(script), "--threads", "2", "--batch", "1", "2", "--budget", "1",
                          "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "chosen" in run.stdout and "conv4_2" in run.stdout
    records = json.loads(out.read_text())
    assert [record["batch"] for record in records] == [1, 2]
    for record in records:
        assert set(record["ms"]) == {"direct", "F2", "F4"}
        # None where the deadline of a busy machine came first; every measured time is positive
        assert all(len(times) == 13 and all(t is None or t > 0 for t in times.values())
                   for times in record["ms"].values())
        assert any(t is not None for t in record["ms"]["direct"].values())
        assert {shape[0] for shape in record["shapes"].values()} == {record["batch"]}  # each its own shapes
    again = subprocess.run([sys.executable, str(script), "--batch", "1", "--budget", "0.1", "--json", str(out)],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "--json" in again.stderr  # an existing file is not overwritten
    bad = subprocess.run([sys.executable, str(script), "--threads", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--threads" in bad.stderr
