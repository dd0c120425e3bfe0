"""Kernel choice by measurement: the plan's lookup rules, tune's decisions, the cache and first use."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from LesaNetCore.errors import LesaNetError
from LesaNetCore.model import InferenceModel, KernelPlan, LesaNet, fuse_for_inference
from LesaNetCore.model import kernels as kernels_module
from LesaNetCore.model.kernel_plan import parse_shape, shape_text
from LesaNetCore.model.kernels import TuneResult, cached_plan, conv_shapes, store, tune
from LesaNetCore.model.lesanet import _ConvReLU
from LesaNetCore.model.machine import machine_info, machine_key


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LESANET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LESANET_TUNE", raising=False)
    return tmp_path / "cache" / "kernels.json"


def _tiny() -> LesaNet:
    torch.manual_seed(0)
    return LesaNet(5, widths=(4, 8, 8, 16, 16), fc_dim=8, emb_dim=6).eval()


def test_plan_lookup_measured_nearest_batch_and_default():
    plan = KernelPlan({(1, 8, 8, 30, 30): "F4", (8, 8, 8, 30, 30): "direct", (1, 16, 16, 7, 7): "F2"})
    assert plan.algorithm(1, 8, 8, 30, 30) == "F4"
    assert plan.algorithm(2, 8, 8, 30, 30) == "F4" and plan.algorithm(4, 8, 8, 30, 30) == "direct"
    assert plan.algorithm(32, 16, 16, 7, 7) == "F2"  # the only measured batch of that layer
    assert plan.algorithm(1, 8, 16, 30, 30) == "direct"  # never measured
    assert KernelPlan.forced("F2").algorithm(1, 3, 3, 9, 9) == "F2"
    assert plan.batches() == [1, 8] and plan.winograd_count() == 2
    assert plan.covers([(1, 8, 8, 30, 30)]) and not plan.covers([(2, 8, 8, 30, 30)])
    merged = plan.merged(KernelPlan({(1, 8, 8, 30, 30): "direct"}))
    assert merged.algorithm(1, 8, 8, 30, 30) == "direct" and merged.algorithm(1, 16, 16, 7, 7) == "F2"
    assert parse_shape(shape_text((3, 64, 128, 15, 14))) == (3, 64, 128, 15, 14)
    with pytest.raises(LesaNetError, match="choices"):
        KernelPlan({(1, 8, 8, 30, 30): "F3"})
    with pytest.raises(LesaNetError, match="default"):
        KernelPlan.forced("winograd")
    with pytest.raises(LesaNetError, match="layer shape"):
        parse_shape("b1 8x8")


def test_conv_shapes_are_the_shapes_the_layers_see():
    fused = fuse_for_inference(_tiny(), chunk=None)
    seen = {}
    for name, layer in fused.named_children():
        if isinstance(layer, _ConvReLU):
            layer.register_forward_hook(lambda m, inp, out, name=name: seen.__setitem__(
                name, (*inp[0].shape[:2], m.weight.shape[0], *inp[0].shape[2:])))
    with torch.inference_mode():
        fused(torch.zeros(3, 3, 50, 44), torch.tensor([[5.0, 5.0, 30.0, 30.0]] * 3))
    assert {name: tuple(int(v) for v in shape) for name, shape in seen.items()} == conv_shapes(fused, 3, 50, 44)


def _fake_tune(monkeypatch, medians, plan_ms=10.0, direct_ms=11.0, rounds=5):
    """Replaces the measurements with given per-layer medians and a given whole-plan check."""
    monkeypatch.setattr(kernels_module, "_layer_medians", lambda *a, **k: (medians, rounds))

    def check(model, layers, plan, *args):
        if not plan.winograd_count():
            return {"plan_ms": None, "direct_ms": None, "rounds": 0, "kept": True}
        return {"plan_ms": plan_ms, "direct_ms": direct_ms, "rounds": 3, "kept": plan_ms < direct_ms}

    monkeypatch.setattr(kernels_module, "_check_plan", check)


def test_tune_takes_winograd_only_where_it_beats_direct_by_the_margin(monkeypatch):
    fused = fuse_for_inference(_tiny())
    names = list(conv_shapes(fused, 1, 40, 40))
    medians = {name: {"direct": 1.0, "F2": 1.0, "F4": 1.0} for name in names}
    medians["conv3_2"] = {"direct": 1.0, "F2": 0.5, "F4": 0.99}  # a clear win
    medians["conv3_3"] = {"direct": 1.0, "F2": 0.6, "F4": 1.0}  # same shape as conv3_2: decided together
    medians["conv4_2"] = {"direct": 1.0, "F2": 1.2, "F4": 0.99}  # within the 2 % margin: direct
    _fake_tune(monkeypatch, medians)
    result = tune(fused, (1,), 40, 40)
    chosen = {row["layer"]: row["algorithm"] for row in result.rows}
    assert chosen["conv3_2"] == chosen["conv3_3"] == "F2"
    assert chosen["conv4_2"] == "direct" and chosen["conv1_2"] == "direct"
    assert result.plan.algorithm(*conv_shapes(fused, 1, 40, 40)["conv3_2"]) == "F2"
    assert all(layer.plan is None and layer.forced is None for layer in fused.modules() if isinstance(layer, _ConvReLU))


def test_tune_drops_a_plan_that_is_not_faster_as_a_whole(monkeypatch):
    fused = fuse_for_inference(_tiny())
    medians = {name: {"direct": 1.0, "F2": 0.5, "F4": 0.5} for name in conv_shapes(fused, 1, 40, 40)}
    _fake_tune(monkeypatch, medians, plan_ms=12.0, direct_ms=11.0)
    result = tune(fused, (1,), 40, 40)
    assert result.plan.winograd_count() == 0 and not result.checks[0]["kept"]


def test_too_busy_a_machine_keeps_direct_and_nothing_is_cached(monkeypatch, cache):
    fused = fuse_for_inference(_tiny())
    medians = {name: {"direct": 1.0, "F2": 0.5, "F4": 0.5} for name in conv_shapes(fused, 1, 40, 40)}
    _fake_tune(monkeypatch, medians, rounds=1)
    result = tune(fused, (1,), 40, 40)
    assert result.plan.winograd_count() == 0 and result.checks[0]["complete"] is False
    store(result)
    assert cached_plan().choices == {}  # the next first use measures again


def test_tune_really_times_every_algorithm_on_a_small_model_within_its_budget():
    # One thread: on a 2-core machine shared with other work, each of Winograd's many small parallel regions can
    # wait a scheduler slice for the other core, and a busy run would rightly measure nothing.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fused = fuse_for_inference(_tiny())
        result = tune(fused, (2,), 40, 40, budget_s=1.0)
    finally:
        torch.set_num_threads(threads)
    assert {row["shape"][0] for row in result.rows} == {2} and len(result.rows) == 13
    # None: not reached before the deadline (a busy machine); every measured time is positive
    times = [t for row in result.rows for t in row["ms"].values()]
    assert all(t is None or t > 0 for t in times) and any(t is not None for t in times)
    assert result.seconds < 30  # bounded by the budget's hard limit even on a busy machine
    assert result.key == machine_key(threads=1) and result.machine["threads"] == 1
    with pytest.raises(LesaNetError, match="batches"):
        tune(fused, (0,))
    with pytest.raises(LesaNetError, match="model"):
        tune(_tiny())  # not fused


def test_cache_is_keyed_by_machine_and_survives_corruption(cache, caplog):
    plan = KernelPlan({(1, 8, 8, 30, 30): "F4"})
    rows = [{"layer": "conv3_2", "shape": (1, 8, 8, 30, 30), "algorithm": "F4", "ms": {"direct": 2.0}}]
    checks = [{"batch": 1, "height": 30, "width": 30, "complete": True, "kept": True}]
    store(TuneResult(plan, rows, checks, 0.1, machine_key(), machine_info()))
    assert cached_plan().choices == {(1, 8, 8, 30, 30): "F4"}
    assert cached_plan(key=machine_key(threads=machine_info()["threads"] + 1)).choices == {}
    data = json.loads(cache.read_text())
    assert machine_key() in data["machines"] and data["machines"][machine_key()]["machine"]["cpu_model"]
    cache.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="LesaNetCore"):
        assert cached_plan().choices == {}
    assert "unreadable" in caplog.text


def test_first_use_measures_once_and_later_models_read_the_cache(cache, monkeypatch):
    # Measurements that always complete (a busy machine would rightly leave nothing cached: tested above).
    monkeypatch.setattr(kernels_module, "_layer_medians", lambda model, layers, *a: (
        {name: {"direct": 1.0, "F2": 2.0, "F4": 2.0} for name in layers}, 5))
    model = _tiny()
    images, boxes = torch.randn(1, 3, 40, 40), torch.tensor([[5.0, 5.0, 30.0, 30.0]])
    first = InferenceModel(model)
    first.predict(images.numpy(), boxes.numpy())
    first.predict(images.numpy(), boxes.numpy())
    assert len(first.tuning) == 1 and cache.is_file()  # measured on the first call only
    second = InferenceModel(model)
    second.predict(images.numpy(), boxes.numpy())
    assert second.tuning == [] and second.plan.covers(list(conv_shapes(second.module, 1, 40, 40).values()))
    batched = InferenceModel(model, chunk=4)
    batched.predict(torch.randn(6, 3, 40, 40).numpy(), boxes.repeat(6, 1).numpy())
    assert [r.checks[0]["batch"] for r in batched.tuning] == [4]  # a new batch size: its slices are measured
    small_call = InferenceModel(model, chunk=5)
    small_call.predict(torch.randn(3, 3, 40, 40).numpy(), boxes.repeat(3, 1).numpy())
    assert [r.checks[0]["batch"] for r in small_call.tuning] == [5]  # 2-4 patches run the chunk's kernels
    annotator_like = InferenceModel(model, chunk=6, lazy_batches=(1,))
    annotator_like.predict(torch.randn(6, 3, 40, 40).numpy(), boxes.repeat(6, 1).numpy())
    assert annotator_like.tuning == []  # only batch 1 is measured on first use there
    monkeypatch.setenv("LESANET_TUNE", "off")
    off = InferenceModel(model, chunk=2)
    off.predict(torch.randn(2, 3, 40, 40).numpy(), boxes.repeat(2, 1).numpy())
    assert off.tuning == []
    cached_only = InferenceModel(model, kernels="cached", chunk=3)
    cached_only.predict(torch.randn(3, 3, 40, 40).numpy(), boxes.repeat(3, 1).numpy())
    assert cached_only.tuning == []


def test_a_read_only_cache_costs_a_warning_not_the_prediction(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("LESANET_CACHE_DIR", str(blocker / "cache"))  # below a file: cannot be created
    net = InferenceModel(_tiny())
    with caplog.at_level(logging.WARNING, logger="LesaNetCore"):
        probs, _ = net.predict(torch.randn(1, 3, 40, 40).numpy(), [[5.0, 5.0, 30.0, 30.0]])
    assert probs.shape == (1, 5) and "LESANET_CACHE_DIR" in caplog.text


def test_tune_command_prints_json_and_writes_the_cache(cache, capsys):
    from LesaNetCore.cli import main

    assert main(["tune", "--arch", "lesanet_demo", "--batch", "1", "--budget", "0.05", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["key"] == machine_key() and out["cache"] == str(cache) and cache.is_file()
    assert len(out["layers"]) == 13 and {row["algorithm"] for row in out["layers"]} <= {"direct", "F2", "F4"}
    assert main(["tune", "--batch", "0"]) == 2
    assert "--batch" in capsys.readouterr().err
