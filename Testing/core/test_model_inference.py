"""InferenceModel, the one inference path: its outputs, its dataset loop, its arguments, the CUDA graph path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from LesaNetCore.errors import LesaNetError
from LesaNetCore.model import InferenceModel, KernelPlan, LesaNet, create_model
from LesaNetCore.model.cuda_graph import cuda_graphs_available
from LesaNetCore.model.roi_pool import roi_pool, roi_pool_static


def _trained_ish(seed: int = 1) -> LesaNet:
    """A small LesaNet whose BN statistics are not the identity, so folding them is really tested."""
    torch.manual_seed(seed)
    model = LesaNet(6, widths=(4, 8, 8, 16, 16), fc_dim=8, emb_dim=5).train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, 48, 48) * 3 + 1, torch.tensor([[6.0, 7.0, 40.0, 30.0]] * 4))
    return model


class _Patches(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        gen = torch.Generator().manual_seed(2)
        self.images = torch.randn(n, 3, 48, 48, generator=gen)
        self.boxes = torch.tensor([[4.0 + i % 5, 6.0, 30.0 + i % 7, 40.0] for i in range(n)])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "box": self.boxes[i]}


def test_predict_matches_the_eval_model_and_leaves_it_alone():
    model = _trained_ish()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = _Patches(11)
    with torch.no_grad():
        ref = model.eval()(data.images, data.boxes)
    model.train()
    for kernels in ("direct", KernelPlan.forced("F2")):
        probs, emb = InferenceModel(model, kernels=kernels, chunk=4).predict(data.images.numpy(), data.boxes.numpy())
        assert probs.dtype == np.float32 and emb.dtype == np.float32
        np.testing.assert_allclose(probs, ref.probs.numpy(), atol=1e-5)
        np.testing.assert_allclose(emb, ref.embedding.numpy(), atol=1e-5)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_predict_dataset_keeps_order_and_types():
    net = InferenceModel(_trained_ish(), kernels="direct")
    data = _Patches(9)
    probs, emb = net.predict_dataset(data, batch_size=4, return_embeddings=True)
    want_probs, want_emb = net.predict(data.images, data.boxes)
    assert probs.dtype == np.float64 and emb.dtype == np.float32 and probs.shape == (9, 6) and emb.shape == (9, 5)
    np.testing.assert_allclose(probs, want_probs, atol=1e-6)
    np.testing.assert_allclose(emb, want_emb, atol=1e-6)
    only = net.predict_dataset(data, batch_size=9)
    np.testing.assert_array_equal(only, probs)
    empty = net.predict_dataset(_Patches(0), batch_size=2, return_embeddings=True)
    assert empty[0].shape == (0, 6) and empty[1].shape == (0, 5)


def test_inference_model_refuses_bad_arguments():
    model = create_model("lesanet_demo", num_labels=3)
    with pytest.raises(LesaNetError, match="kernels"):
        InferenceModel(model, kernels="fast")
    with pytest.raises(LesaNetError, match="device"):
        InferenceModel(model, device="tpu:0")
    with pytest.raises(LesaNetError, match="model"):
        InferenceModel(torch.nn.Linear(2, 2))
    net = InferenceModel(model, kernels="direct")
    with pytest.raises(LesaNetError, match="batch_size"):
        net.predict_dataset(_Patches(2), batch_size=0)
    with pytest.raises(LesaNetError, match="images/boxes"):
        net.forward(torch.zeros(2, 3, 32, 32), torch.zeros(1, 4))


def test_static_roi_pool_gives_roi_pool_numbers():
    """The graph-capturable pooling (device-side rounding, whole-map masks) bin for bin, boxes in and out."""
    gen = torch.Generator().manual_seed(7)
    features = torch.randn(7, 5, 15, 13, generator=gen)
    boxes = torch.tensor([[0.0, 0.0, 120.0, 120.0], [10.0, 12.0, 50.0, 61.0], [-20.0, -5.0, 30.0, 200.0],
                          [100.0, 110.0, 300.0, 300.0], [3.5, 2.5, 4.5, 8.49], [-50.0, -50.0, -10.0, -10.0],
                          [7.5, 7.5, 7.5, 7.5]])
    for scale in (1.0, 0.5, 0.25, 0.125, 0.0625):
        torch.testing.assert_close(roi_pool_static(features, boxes, 5, scale), roi_pool(features, boxes, 5, scale),
                                   atol=0, rtol=0)
    with pytest.raises(LesaNetError, match="boxes"):
        roi_pool_static(features, boxes[:2])


def test_a_static_roi_copy_of_the_model_computes_the_same_output():
    """What the CUDA graph captures (static_roi) is the model, checked here on the CPU."""
    model = _trained_ish().eval()
    images, boxes = torch.randn(1, 3, 48, 48), torch.tensor([[6.0, 9.0, 30.0, 41.0]])
    with torch.no_grad():
        ref = model(images, boxes)
        model.static_roi = True
        got = model(images, boxes)
    torch.testing.assert_close(got.probs, ref.probs, atol=0, rtol=0)
    torch.testing.assert_close(got.embedding, ref.embedding, atol=0, rtol=0)


def test_batch_one_on_cuda_replays_a_graph_with_eager_numbers():
    available, reason = cuda_graphs_available()
    if not available:
        pytest.skip(f"unmeasured here: {reason} (scripts/gpu_check.sh runs this where a GPU is lent)")
    model = _trained_ish()
    graph, eager = InferenceModel(model, "cuda"), InferenceModel(model, "cuda", cuda_graph=False)
    for seed in range(3):  # new inputs each call: the graph's buffers are refilled, not reused stale
        gen = torch.Generator().manual_seed(seed)
        image = torch.randn(1, 3, 48, 48, generator=gen)
        box = torch.tensor([[4.0 + seed, 5.0, 33.0, 40.0 - seed]])
        got, want = graph.predict(image, box), eager.predict(image, box)
        np.testing.assert_allclose(got[0], want[0], atol=1e-5)
        np.testing.assert_allclose(got[1], want[1], atol=1e-5)
    assert graph._graphs[(48, 48)] is not None  # captured, not fallen back to eager


def test_fused_fully_connected_layers_run_packed_and_follow_weight_changes():
    from LesaNetCore.model import fuse_for_inference
    from LesaNetCore.model.lesanet import _Linear

    fused = fuse_for_inference(_trained_ish())
    layers = [m for m in fused.modules() if isinstance(m, _Linear)]
    assert len(layers) == 8  # fc_pool1..5, fc_emb, class_scores1, class_scores2
    layer = fused.fc_pool5
    x = torch.randn(3, layer.in_features)
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias), atol=1e-5,
                                   rtol=1e-5)
    with torch.no_grad():
        layer.weight.mul_(2)  # a changed weight is packed again, not served stale
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias), atol=1e-5,
                                   rtol=1e-5)
