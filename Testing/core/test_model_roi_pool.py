"""RoI max pooling against a literal transcription of the Fast R-CNN RoIPool kernel."""

from __future__ import annotations

import math

import pytest
import torch

from LesaNetCore.errors import LesaNetError
from LesaNetCore.model.roi_pool import roi_cells, roi_pool


def _round_half_away(value: float) -> float:
    return math.copysign(math.floor(abs(value) + 0.5), value)


def _naive_roi_pool(features: torch.Tensor, boxes: torch.Tensor, size: int, scale: float) -> torch.Tensor:
    """One output cell at a time, as roi_pooling_kernel.cu does it (float32 bin arithmetic)."""
    batch, channels, height, width = features.shape
    out = torch.zeros(batch, channels, size, size, dtype=features.dtype)
    cells = {}
    f32 = torch.float32
    for b in range(batch):
        x1, y1, x2, y2 = (float(torch.tensor(float(v), dtype=f32) * torch.tensor(scale, dtype=f32)) for v in boxes[b])
        sw, sh, ew, eh = (int(_round_half_away(v)) for v in (x1, y1, x2, y2))
        roi_w, roi_h = max(ew - sw + 1, 1), max(eh - sh + 1, 1)
        bin_w = torch.tensor(roi_w, dtype=f32) / size
        bin_h = torch.tensor(roi_h, dtype=f32) / size
        for ph in range(size):
            for pw in range(size):
                hs = min(max(math.floor(float(ph * bin_h)) + sh, 0), height)
                he = min(max(math.ceil(float((ph + 1) * bin_h)) + sh, 0), height)
                ws = min(max(math.floor(float(pw * bin_w)) + sw, 0), width)
                we = min(max(math.ceil(float((pw + 1) * bin_w)) + sw, 0), width)
                if he <= hs or we <= ws:
                    continue  # empty bin stays 0
                for c in range(channels):
                    cells[b, c, ph, pw] = features[b, c, hs:he, ws:we].max()
    if cells:  # stack keeps autograd's own max gradient, the reference for ours
        index = tuple(torch.tensor(i) for i in zip(*cells, strict=True))
        out = out.index_put(index, torch.stack(list(cells.values())))
    return out


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.25, 0.125, 0.0625])
def test_roi_pool_matches_naive_kernel_on_random_boxes(scale):
    gen = torch.Generator().manual_seed(int(scale * 1000))
    size = max(int(48 * scale), 3)
    features = torch.randn(6, 3, size, size, generator=gen)
    corners = torch.rand(6, 2, 2, generator=gen) * 60 - 6  # some boxes reach outside the map
    boxes = torch.cat([corners.min(dim=1).values, corners.max(dim=1).values], dim=1)
    boxes[0] = torch.tensor([10.0, 12.0, 10.0, 12.0])  # a degenerate (single-point) box
    boxes[1] = torch.tensor([-40.0, -40.0, -20.0, -30.0])  # entirely outside: all bins empty
    boxes[2] = torch.tensor([0.0, 0.0, 48.0, 48.0])  # the whole-patch box, one past the edge
    expected = _naive_roi_pool(features, boxes, 5, scale)
    got = roi_pool(features, boxes, 5, scale)  # boxes of different sizes: the masked path
    assert got.shape == (6, 3, 5, 5)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert bool((got[1] == 0).all())
    one_by_one = torch.cat([roi_pool(features[i : i + 1], boxes[i : i + 1], 5, scale) for i in range(6)])
    torch.testing.assert_close(one_by_one, expected, rtol=0, atol=0)  # equal-size path (adaptive pooling)
    shifted = boxes[3:4] + torch.tensor([[-7.0, 5.0, -7.0, 5.0]])  # same size, other place, partly outside
    pair = torch.cat([boxes[3:4], shifted])
    torch.testing.assert_close(roi_pool(features[:2], pair, 5, scale), _naive_roi_pool(features[:2], pair, 5, scale))


def test_roi_pool_channels_last_and_gradient_reaches_the_max():
    features = torch.randn(2, 4, 16, 16).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    boxes = torch.tensor([[2.0, 3.0, 11.0, 9.0], [0.0, 0.0, 15.0, 15.0]])
    pooled = roi_pool(features, boxes, 3, 1.0)
    torch.testing.assert_close(pooled, _naive_roi_pool(features.detach().contiguous(), boxes, 3, 1.0))
    pooled.sum().backward()
    grad = features.grad
    # Every output cell sends its gradient to one input: total gradient = number of (non-empty) cells.
    assert grad.sum().item() == pytest.approx(2 * 4 * 9)
    assert grad[0, :, 10:, :].abs().sum().item() == 0  # rows below image 0's box get nothing


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("same_size", [False, True])
def test_roi_pool_gradient_matches_naive_autograd(channels_last, same_size):
    gen = torch.Generator().manual_seed(5)
    base = torch.randn(4, 3, 12, 12, generator=gen)
    boxes = torch.tensor([[1.0, 2.0, 9.0, 7.0], [3.0, 3.0, 4.0, 5.0], [-30.0, -30.0, -20.0, -20.0], [6.0, 0.0, 30.0, 11.0]])
    if same_size:  # the adaptive-pooling path: equal RoI sizes at different places, one partly outside
        boxes = torch.tensor([[1.0, 2.0, 9.0, 7.0], [13.0, 12.0, 21.0, 17.0], [-30.0, -30.0, -22.0, -25.0],
                              [-3.0, -2.0, 5.0, 3.0]])
    weights = torch.randn(4, 3, 5, 5, generator=gen)
    ours = base.clone().contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    ours.requires_grad_(True)
    (roi_pool(ours, boxes, 5, 0.5) * weights).sum().backward()
    naive = base.clone().requires_grad_(True)
    (_naive_roi_pool(naive, boxes, 5, 0.5) * weights).sum().backward()
    torch.testing.assert_close(ours.grad, naive.grad)
    assert ours.grad.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert bool((ours.grad[2] == 0).all())  # the box outside the map gets no gradient
    for i in range(4):  # a batch of one (the annotation path) slices its RoI instead of gathering it
        single = base[i : i + 1].clone().requires_grad_(True)
        (roi_pool(single, boxes[i : i + 1], 5, 0.5) * weights[i : i + 1]).sum().backward()
        torch.testing.assert_close(single.grad, naive.grad[i : i + 1])


def test_roi_pool_rejects_mismatched_boxes():
    with pytest.raises(LesaNetError, match="boxes"):
        roi_pool(torch.zeros(2, 1, 8, 8), torch.zeros(3, 4))


@pytest.mark.parametrize("scale", [1.0, 0.125, 0.0625])
def test_nonnegative_maps_pool_the_same_with_zero_fill_and_given_cells(scale):
    """LesaNet's ReLU maps: zero instead of -inf outside the map gives RoIPool's numbers on every path."""
    gen = torch.Generator().manual_seed(7)
    size = max(int(120 * scale), 3)
    features = torch.relu(torch.randn(6, 8, size, size, generator=gen)).contiguous(memory_format=torch.channels_last)
    features[3] = 0.0  # an all-zero map: a bin's max of 0 from inside the map, not from the fill
    corners = torch.rand(6, 2, 2, generator=gen) * 140 - 10
    boxes = torch.cat([corners.min(dim=1).values, corners.max(dim=1).values], dim=1)
    boxes[0] = torch.tensor([0.0, 0.0, 120.0, 120.0])  # the whole-patch box: overhangs by one or two cells
    boxes[1] = torch.tensor([-60.0, -60.0, -30.0, -40.0])  # entirely outside
    expected = _naive_roi_pool(features, boxes, 5, scale)
    with torch.inference_mode():
        cells = roi_cells(boxes, scale)
        for got in (roi_pool(features, boxes, 5, scale, nonnegative=True),  # sliced path, sizes differ
                    roi_pool(features, boxes, 5, scale, cells=cells, nonnegative=True),
                    torch.cat([roi_pool(features[i:i + 1], boxes[i:i + 1], 5, scale, cells=cells[i:i + 1],
                                        nonnegative=True) for i in range(6)])):  # batch 1, as annotation
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
        whole = boxes[:1].expand(6, 4)  # equal sizes: the gathered path
        torch.testing.assert_close(roi_pool(features, whole, 5, scale, nonnegative=True),
                                   _naive_roi_pool(features, whole, 5, scale), rtol=0, atol=0)
    with pytest.raises(LesaNetError, match="cells"):
        roi_pool(features, boxes, 5, scale, cells=cells[:2])
