"""LesaNet architecture: official names and sizes, output contract, SPL init, gradients, BN folding."""

from __future__ import annotations

import copy

import pytest
import torch

from LesaNetCore.errors import LesaNetError
from LesaNetCore.model import (
    LesaNet,
    checkpoint_filter_fn,
    create_model,
    fuse_for_inference,
    list_models,
)

_TINY = {"widths": (4, 4, 8, 8, 8), "fc_dim": 8, "emb_dim": 6}


@pytest.fixture(scope="module")
def official():
    torch.manual_seed(0)
    return create_model("lesanet_vgg16bn", num_labels=171)


def test_official_state_dict_names_shapes_and_count(official):
    state = official.state_dict()
    assert len(state) == 107
    names = list(state)
    assert names[:7] == ["conv1_1.weight", "conv1_1.bias", "bn1_1.weight", "bn1_1.bias", "bn1_1.running_mean",
                         "bn1_1.running_var", "bn1_1.num_batches_tracked"]
    assert names[-10:] == ["fc_pool4.weight", "fc_pool4.bias", "fc_pool5.weight", "fc_pool5.bias", "fc_emb.weight",
                           "fc_emb.bias", "class_scores1.weight", "class_scores1.bias", "class_scores2.weight",
                           "class_scores2.bias"]
    convs = [n[: -len(".weight")] for n in names if n.startswith("conv") and n.endswith(".weight")]
    assert convs == ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1",
                     "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3"]
    assert state["conv1_1.weight"].shape == (64, 3, 3, 3)
    assert state["conv5_3.weight"].shape == (512, 512, 3, 3)
    assert state["fc_pool1.weight"].shape == (256, 64 * 25)
    assert state["fc_pool3.weight"].shape == (256, 256 * 25)
    assert state["fc_pool5.weight"].shape == (256, 512 * 25)
    assert state["fc_emb.weight"].shape == (256, 1280)
    assert state["class_scores1.weight"].shape == (171, 1280)
    assert state["class_scores2.weight"].shape == (171, 171)
    assert sum(p.numel() for p in official.parameters()) == 24_721_615


def test_forward_shapes_unit_embedding_and_identity_spl(official):
    official.eval()
    images = torch.randn(2, 3, 120, 120)
    boxes = torch.tensor([[40.0, 45.0, 80.0, 70.0], [10.0, 10.0, 110.0, 100.0]])
    with torch.no_grad():
        out = official(images, boxes)
    assert out.logits1.shape == out.logits2.shape == out.probs.shape == (2, 171)
    assert out.embedding.shape == (2, 256)
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(2))
    assert torch.equal(out.logits2, out.logits1)  # SPL starts as the identity
    torch.testing.assert_close(out.probs, torch.sigmoid(out.logits2))
    with torch.no_grad():
        features = official.forward_features(images, boxes)
    assert features.shape == (2, 1280)
    torch.testing.assert_close(official.forward_head(features).logits1, out.logits1)


def test_lesion_box_changes_only_the_lesion_branch():
    torch.manual_seed(1)
    model = LesaNet(5, **_TINY).eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a = model.forward_features(images, torch.tensor([[10.0, 10.0, 30.0, 30.0]]))
        b = model.forward_features(images, torch.tensor([[30.0, 20.0, 50.0, 60.0]]))
    assert not torch.allclose(a[:, :24], b[:, :24])  # fc_pool1..3 see the box
    torch.testing.assert_close(a[:, 24:], b[:, 24:])  # fc_pool4..5 see the whole patch


def test_gradient_reaches_every_parameter():
    torch.manual_seed(2)
    model = LesaNet(5, **_TINY).train()
    out = model(torch.randn(3, 3, 48, 48), torch.tensor([[5.0, 5.0, 30.0, 30.0]] * 3))
    (out.logits1.sum() + out.logits2.square().sum() + out.embedding[:, 0].sum()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert missing == []


def test_without_spl_logits2_is_logits1_and_no_class_scores2():
    model = LesaNet(5, use_spl=False, **_TINY).eval()
    out = model(torch.randn(1, 3, 32, 32), torch.tensor([[4.0, 4.0, 20.0, 20.0]]))
    assert out.logits2 is out.logits1
    assert not any(k.startswith("class_scores2") for k in model.state_dict())


def test_arch_config_rebuilds_the_same_architecture():
    model = create_model("lesanet_demo", num_labels=12)
    clone = LesaNet(**model.arch_config)
    clone.load_state_dict(model.state_dict())  # strict: same names and shapes
    assert clone.arch_config == model.arch_config


def test_demo_variant_is_small_with_same_structure():
    model = create_model("lesanet_demo", num_labels=171)
    size_bytes = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    assert size_bytes <= 4 * 1024 * 1024
    assert len(model.state_dict()) == 107
    out = model.eval()(torch.randn(1, 3, 120, 120), torch.tensor([[40.0, 40.0, 80.0, 80.0]]))
    assert out.embedding.shape == (1, 256)


def test_registry_lists_and_rejects_unknown_names():
    assert {"lesanet_vgg16bn", "lesanet_demo"} <= set(list_models())
    with pytest.raises(LesaNetError, match=r"lesanet_vgg16bn.*but got 'resnet50'"):
        create_model("resnet50", num_labels=3)


def test_bad_inputs_name_the_argument():
    model = LesaNet(3, **_TINY)
    with pytest.raises(LesaNetError, match="images"):
        model(torch.zeros(1, 1, 32, 32), torch.zeros(1, 4))
    with pytest.raises(LesaNetError, match="boxes"):
        model(torch.zeros(2, 3, 32, 32), torch.zeros(1, 4))
    with pytest.raises(LesaNetError, match="widths"):
        LesaNet(3, widths=(4, 4))


def test_fuse_for_inference_keeps_outputs():
    torch.manual_seed(3)
    model = LesaNet(7, **_TINY)
    model.train()
    for _ in range(3):  # give BN non-trivial running statistics
        model(torch.randn(4, 3, 40, 40) * 2 + 1, torch.tensor([[5.0, 8.0, 30.0, 25.0]] * 4))
    model.eval()
    fused = fuse_for_inference(model, chunk=2)  # batch 3 runs as slices of 2 and 1
    images = torch.randn(3, 3, 40, 40)
    boxes = torch.tensor([[5.0, 8.0, 30.0, 25.0], [0.0, 0.0, 39.0, 39.0], [10.0, 12.0, 22.0, 30.0]])
    with torch.no_grad():
        ref, got = model(images, boxes), fused(images, boxes)
    torch.testing.assert_close(got.logits2, ref.logits2, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.embedding, ref.embedding, atol=1e-4, rtol=1e-4)
    with torch.no_grad():  # a copy made after use (cached oneDNN weights) still works and agrees
        again = copy.deepcopy(fused)(images, boxes)
    torch.testing.assert_close(again.logits2, got.logits2)
    with pytest.raises(LesaNetError, match="chunk"):
        fuse_for_inference(model, chunk=0)
    assert not any(k.startswith("bn") for k in fused.state_dict())
    assert any(k.startswith("bn") for k in model.state_dict())  # the original is untouched


def test_checkpoint_filter_strips_dataparallel_prefix_and_adds_bn_counters():
    model = LesaNet(3, **_TINY)
    old = {f"module.{k}": v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    model.load_state_dict(checkpoint_filter_fn(old))  # strict
    assert len(checkpoint_filter_fn(old)) == len(model.state_dict())
