"""RoI max pooling, exactly as the classic Fast R-CNN ``RoIPool`` that LesaNet's released code uses.

The reference network pools each feature map inside one box per image with the CUDA ``_RoIPooling`` layer of
faster-rcnn.pytorch. Its arithmetic is reproduced here in pure PyTorch (no torchvision, so the core installs
with plain torch), because a different binning (RoIAlign, other rounding) would change what an official
checkpoint sees:

* box corners are scaled by ``spatial_scale`` and rounded half away from zero;
* the RoI spans ``round(x2) - round(x1) + 1`` cells (at least 1), split into ``P`` bins of size ``roi / P``;
* bin ``i`` covers ``[floor(i * size), ceil((i + 1) * size))`` cells from the RoI start, clipped to the map;
* each output is the max over its bin; an empty bin (entirely outside the map) is 0.

Three paths give the same numbers. A batch of one (annotation), and inference on RoIs of different sizes, slice
each RoI out of its map and pool it with ``adaptive_max_pool2d``. When every RoI of the batch has the same size in cells (batch 1 at
annotation time, and the whole-patch boxes of conv4_3 / conv5_3) the crops are stacked and pooled by
``adaptive_max_pool2d``, whose bins are exactly RoIPool's for a crop of that size. Training on RoIs of different sizes
gathers every RoI into a crop of the largest extent in the batch and the max is taken separably (columns, then rows)
under per-bin masks, with an arg-max scatter for the backward pass. Both touch only the RoI, not the whole
map, which matters at conv1_2 where the map is 120 x 120 x 64.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import invalid


def roi_bins(boxes: Tensor, output_size: int, spatial_scale: float, height: int, width: int) -> tuple[Tensor, ...]:
    """Bin edges of the classic RoIPool for one box per image.

    Args:
        boxes: ``(B, 4)`` ``x1, y1, x2, y2`` in input pixels.
        output_size: number of bins per side (5 in LesaNet).
        spatial_scale: feature-map cells per input pixel (1, 1/2, ..., 1/16).
        height: feature-map height, for clipping.
        width: feature-map width, for clipping.

    Returns:
        ``(h_start, h_end, w_start, w_end)``, each ``(B, output_size)`` int64, half-open and clipped to the map.
    """
    # The CUDA kernel works in float32: scale, round half away from zero, then floor/ceil of i * bin size.
    x1, y1, roi_w, roi_h = _rounded_roi(boxes, spatial_scale)
    index = torch.arange(output_size, dtype=torch.float32, device=boxes.device)
    bin_w = (roi_w / output_size)[:, None]
    bin_h = (roi_h / output_size)[:, None]
    h_start = (torch.floor(index * bin_h) + y1[:, None]).clamp(0, height)
    h_end = (torch.ceil((index + 1) * bin_h) + y1[:, None]).clamp(0, height)
    w_start = (torch.floor(index * bin_w) + x1[:, None]).clamp(0, width)
    w_end = (torch.ceil((index + 1) * bin_w) + x1[:, None]).clamp(0, width)
    return tuple(t.to(torch.int64) for t in (h_start, h_end, w_start, w_end))


def roi_pool(features: Tensor, boxes: Tensor, output_size: int = 5, spatial_scale: float = 1.0,
             cells: np.ndarray | None = None, nonnegative: bool = False) -> Tensor:
    """Max-pools ``features`` inside one box per image into ``output_size x output_size`` bins.

    The gradient goes to the arg-max cell of each bin only (first in row-major order on ties), as in the
    classic layer; it is computed by a scatter, so training does not pay for the masks twice.

    Args:
        features: ``(B, C, H, W)`` feature maps (any memory format).
        boxes: ``(B, 4)`` ``x1, y1, x2, y2`` in input-image pixels (the scale maps them onto ``features``).
        output_size: bins per side.
        spatial_scale: feature-map cells per input pixel.
        cells: ``roi_cells(boxes, spatial_scale)`` when the caller has it already (LesaNet computes all five
            scales before its first convolution: host-side arithmetic between two oneDNN convolutions took
            0.2 ms a call on the 2-core AMD EPYC, ten times its time alone).
        nonnegative: the caller guarantees ``features >= 0`` (LesaNet pools ReLU outputs). Then in inference
            the cells of a RoI that overhang the map are filled with 0 instead of -inf: a bin's max is the same
            and an empty bin is already the 0 RoIPool gives, so no masking pass follows (two small ops fewer per
            overhanging RoI; the whole-patch RoIs of conv4_3 and conv5_3 always overhang by one or two cells).

    Returns:
        ``(B, C, output_size, output_size)``; differentiable with respect to ``features``.

    Example:
        >>> import torch
        >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
        >>> roi_pool(x, torch.tensor([[0.0, 0.0, 3.0, 3.0]]), output_size=2).flatten().tolist()
        [5.0, 7.0, 13.0, 15.0]
    """
    if features.dim() != 4:
        raise invalid("features", "must be a (B, C, H, W) tensor", tuple(features.shape))
    if boxes.dim() != 2 or boxes.shape[1] != 4 or boxes.shape[0] != features.shape[0]:
        raise invalid("boxes", f"must be ({features.shape[0]}, 4) x1, y1, x2, y2, one per image", tuple(boxes.shape))
    if output_size < 1:
        raise invalid("output_size", "must be a positive integer", output_size)
    training = torch.is_grad_enabled() and features.requires_grad
    # adaptive_max_pool2d's CUDA backward adds into overlapping bins with atomics, so its sums vary run to run;
    # when deterministic kernels are asked for, CUDA training takes the masked path (a 1-D scatter, which torch
    # makes deterministic).
    reproducible_cuda = training and features.is_cuda and torch.are_deterministic_algorithms_enabled()
    if not reproducible_cuda:
        if cells is None:
            cells = roi_cells(boxes, spatial_scale)
        elif cells.shape != (features.shape[0], 4):
            raise invalid("cells", f"must be roi_cells of the ({features.shape[0]}, 4) boxes", cells.shape)
        zero_fill = nonnegative and not torch.is_grad_enabled()
        if features.shape[0] == 1:
            return _roi_pool_sliced(features, cells, output_size, zero_fill)
        same_size = _common_roi_size(cells)
        if same_size is not None:
            return _roi_pool_same_size(features, cells, output_size, same_size, zero_fill)
        if not training:
            return _roi_pool_sliced(features, cells, output_size, zero_fill)
        if features.device.type == "cpu":
            return _RoIPoolSlicedFunction.apply(features, cells, output_size)
    bins = roi_bins(boxes.to(features.device), output_size, spatial_scale, features.shape[2], features.shape[3])
    return _RoIPoolFunction.apply(features, bins, output_size)


def roi_cells(boxes: Tensor, spatial_scale: float) -> np.ndarray:
    """``(B, 4)`` int64 RoI start (x, y) and size (w, h) in feature cells, rounded like the CUDA kernel.

    The kernel's arithmetic: float32 scaling, rounding half away from zero, at least one cell. Done in numpy on
    the host: the boxes are a few numbers, and five tiny torch ops per call cost ~0.1 ms (1-2 % of a batch-1
    forward pass).
    """
    scaled = boxes.detach().cpu().numpy().astype(np.float32) * np.float32(spatial_scale)
    x1, y1, x2, y2 = (np.sign(scaled) * np.floor(np.abs(scaled) + np.float32(0.5))).T
    return np.stack([x1, y1, np.maximum(x2 - x1 + 1, 1), np.maximum(y2 - y1 + 1, 1)], axis=1).astype(np.int64)


def _rounded_roi(boxes: Tensor, spatial_scale: float) -> tuple[Tensor, ...]:
    """:func:`roi_cells` as float32 tensors ``x1, y1, roi_w, roi_h`` on the boxes' device."""
    cells = torch.as_tensor(roi_cells(boxes, spatial_scale), dtype=torch.float32, device=boxes.device)
    return tuple(cells.unbind(dim=1))


def _common_roi_size(cells: np.ndarray) -> tuple[int, int] | None:
    """``(roi_h, roi_w)`` when every RoI of the batch has the same size in cells (batch 1, whole-patch boxes)."""
    roi_w, roi_h = cells[:, 2:].T
    if (roi_w == roi_w[0]).all() and (roi_h == roi_h[0]).all():
        return int(roi_h[0]), int(roi_w[0])
    return None


def _roi_pool_sliced(features: Tensor, cells: np.ndarray, p: int, zero_fill: bool = False) -> Tensor:
    """RoIPool image by image: each RoI is a slice of its map, padded with -inf (or, for non-negative maps in
    inference, ``zero_fill``: 0) where it leaves the map.

    Same bins as :func:`_roi_pool_same_size` (adaptive pooling of the RoI-size crop) but no gathers or masks:
    used for a batch of one (annotation), where index tensors cost more than the pooling, and for inference on
    RoIs of different sizes, where the masked path's ``(B, crop, P, crop, C)`` temporaries cost ~9 % of a
    VGG16 forward pass.
    """
    _, channels, height, width = features.shape
    pooled = []
    for i, (x1, y1, roi_w, roi_h) in enumerate(cells.tolist()):
        top, left = max(y1, 0), max(x1, 0)
        bottom, right = min(y1 + roi_h, height), min(x1 + roi_w, width)
        if bottom <= top or right <= left:  # entirely outside the map: every bin is empty
            # (+ an empty sum keeps the zeros in the autograd graph, with zero gradient, like the other paths)
            pooled.append(features.new_zeros(1, channels, p, p) + features[i:i + 1, :, :0, :0].sum())
            continue
        crop = features[i:i + 1, :, top:bottom, left:right]
        padding = (left - x1, x1 + roi_w - right, top - y1, y1 + roi_h - bottom)
        if not any(padding):
            pooled.append(F.adaptive_max_pool2d(crop, p))
            continue
        if zero_fill:
            pooled.append(F.adaptive_max_pool2d(F.pad(crop, padding, value=0.0), p))
            continue
        cell = F.adaptive_max_pool2d(F.pad(crop, padding, value=float("-inf")), p)
        pooled.append(torch.where(cell == float("-inf"), torch.zeros((), dtype=cell.dtype, device=cell.device), cell))
    return pooled[0] if len(pooled) == 1 else torch.cat(pooled)


class _RoIPoolSlicedFunction(torch.autograd.Function):
    """CPU training on RoIs of different sizes: forward by slices with arg-max indices, backward by one scatter.

    The masked path builds ``(B, crop, P, crop, C)`` temporaries, 170 MB at conv1_2 for a batch of 32, and with
    its arg-max bookkeeping took about 9 ms per patch of a CPU training step. Here each RoI is a slice of its map
    pooled by ``adaptive_max_pool2d`` (RoIPool's bins, first maximum in row-major order, as the CUDA kernel),
    whose indices are turned into map positions; the backward scatters every pooled cell's gradient onto its
    position in one zeroed map (empty bins send none). Same numbers and gradients as the other paths.
    """

    @staticmethod
    def forward(ctx, features, cells, output_size):
        batch, channels, height, width = features.shape
        p = output_size
        pooled, positions = [], []
        for i, (x1, y1, roi_w, roi_h) in enumerate(cells.tolist()):
            top, left = max(y1, 0), max(x1, 0)
            bottom, right = min(y1 + roi_h, height), min(x1 + roi_w, width)
            if bottom <= top or right <= left:  # entirely outside the map: every bin is empty
                pooled.append(features.new_zeros(1, channels, p, p))
                positions.append(torch.full((1, channels, p, p), -1, dtype=torch.int64, device=features.device))
                continue
            crop = features[i:i + 1, :, top:bottom, left:right]
            padding = (left - x1, x1 + roi_w - right, top - y1, y1 + roi_h - bottom)
            if any(padding):  # the padded crop spans rows y1 .. y1 + roi_h and columns x1 .. x1 + roi_w exactly
                crop = F.pad(crop, padding, value=float("-inf"))
            cell, index = F.adaptive_max_pool2d(crop, p, return_indices=True)
            position = (y1 + index // roi_w) * width + (x1 + index % roi_w)
            empty = cell == float("-inf")
            pooled.append(cell.masked_fill(empty, 0))
            positions.append(position.masked_fill(empty, -1))
        positions = torch.cat(positions)
        ctx.save_for_backward(positions)
        ctx.shape = features.shape
        ctx.channels_last = features.is_contiguous(memory_format=torch.channels_last) and channels > 1
        return torch.cat(pooled)

    @staticmethod
    def backward(ctx, grad_output):
        (positions,) = ctx.saved_tensors
        batch, channels, height, width = ctx.shape
        valid = positions >= 0
        image = torch.arange(batch, device=positions.device)[:, None, None, None]
        channel = torch.arange(channels, device=positions.device)[None, :, None, None]
        # Flat index into the channels-last (B, H, W, C) layout the maps are stored in.
        flat = ((image * (height * width) + positions.clamp(min=0)) * channels + channel).reshape(-1)
        grad = grad_output.masked_fill(~valid, 0).reshape(-1)
        grad_features = grad_output.new_zeros(batch * height * width * channels)
        grad_features.scatter_add_(0, flat, grad)
        grad_features = grad_features.view(batch, height, width, channels).permute(0, 3, 1, 2)
        if not ctx.channels_last:
            grad_features = grad_features.contiguous()
        return grad_features, None, None


def _roi_pool_same_size(features: Tensor, cells: np.ndarray, p: int, size: tuple[int, int],
                        zero_fill: bool = False) -> Tensor:
    """RoIPool as ``adaptive_max_pool2d`` on equal-size crops: same bins, native kernels forward and backward.

    For a RoI of ``L`` cells, RoIPool's bin ``i`` spans ``[floor(i * L / P), ceil((i + 1) * L / P))`` from the
    RoI start, which is exactly adaptive max pooling of the ``L``-cell crop to ``P`` bins. Cells of the crop that
    fall outside the map are set to -inf so they never win; a bin with no cell inside the map gives 0.
    """
    batch, _, height, width = features.shape
    roi_h, roi_w = size
    start = torch.as_tensor(cells[:, :2], dtype=torch.int64, device=features.device)
    rows = start[:, 1:2] + torch.arange(roi_h, device=features.device)
    cols = start[:, 0:1] + torch.arange(roi_w, device=features.device)
    rows_ok = (rows >= 0) & (rows < height)
    cols_ok = (cols >= 0) & (cols < width)
    whole_map = roi_h == height and roi_w == width and bool(rows_ok.all() & cols_ok.all())
    if whole_map:
        crop = features
    else:
        batch_index = torch.arange(batch, device=features.device)[:, None, None]
        crop = features[batch_index, :, rows.clamp(0, height - 1)[:, :, None], cols.clamp(0, width - 1)[:, None, :]]
        if not bool(rows_ok.all() & cols_ok.all()):
            inside = (rows_ok[:, :, None] & cols_ok[:, None, :])[..., None]  # (B, roi_h, roi_w, 1)
            fill = 0.0 if zero_fill else float("-inf")
            crop = torch.where(inside, crop, torch.tensor(fill, dtype=crop.dtype, device=crop.device))
        crop = crop.permute(0, 3, 1, 2)  # (B, C, roi_h, roi_w), channels-last strides
    pooled = F.adaptive_max_pool2d(crop, p)
    if whole_map or zero_fill:
        return pooled
    return torch.where(pooled == float("-inf"), torch.zeros((), dtype=pooled.dtype, device=pooled.device), pooled)


def _roi_pool_forward(
    features: Tensor, bins: tuple[Tensor, ...], p: int, with_argmax: bool
) -> tuple[Tensor, Tensor | None, Tensor]:
    """Pooled ``(B, C, P, P)``, the flat ``h * W + w`` arg-max per cell as ``(B, P * P, C)`` (if asked), and the
    ``(B, C, P, P)`` mask of empty bins."""
    batch, _, height, width = features.shape
    h_start, h_end, w_start, w_end = bins

    # Crop every RoI to the largest extent in the batch; cells beyond a RoI's own bins are masked below, and
    # indices past the map edge are clamped (their mask is always False because bins are clipped to the map).
    crop_h = max(int((h_end[:, -1] - h_start[:, 0]).max()), 1)
    crop_w = max(int((w_end[:, -1] - w_start[:, 0]).max()), 1)
    rows = h_start[:, :1] + torch.arange(crop_h, device=features.device)  # (B, crop_h), unclamped
    cols = w_start[:, :1] + torch.arange(crop_w, device=features.device)
    rows_in, cols_in = rows.clamp(max=height - 1), cols.clamp(max=width - 1)
    batch_index = torch.arange(batch, device=features.device)[:, None, None]
    # Advanced indexing around the channel slice puts channels last: (B, crop_h, crop_w, C).
    crop = features.detach()[batch_index, :, rows_in[:, :, None], cols_in[:, None, :]]

    in_w = (w_start[:, :, None] <= cols[:, None, :]) & (cols[:, None, :] < w_end[:, :, None])  # (B, P, crop_w)
    in_h = (h_start[:, :, None] <= rows[:, None, :]) & (rows[:, None, :] < h_end[:, :, None])  # (B, P, crop_h)
    neg_inf = torch.tensor(float("-inf"), dtype=features.dtype, device=features.device)
    # Separable max: over each column bin, then over each row bin.
    by_col = torch.where(in_w[:, None, :, :, None], crop[:, :, None, :, :], neg_inf)  # (B, crop_h, P, crop_w, C)
    by_row_input = None
    if with_argmax:
        by_col, col_arg = by_col.max(dim=3)  # (B, crop_h, P, C)
        by_row_input = torch.where(in_h[:, :, :, None, None], by_col[:, None, :, :, :], neg_inf)
        pooled, row_arg = by_row_input.max(dim=2)  # (B, P, P, C)
        col_local = torch.gather(col_arg, 1, row_arg)  # the column of the winning row
        h_abs = torch.gather(rows_in[:, :, None, None].expand(-1, -1, p, pooled.shape[-1]), 1, row_arg)
        w_abs = torch.gather(cols_in[:, :, None, None].expand(-1, -1, p, pooled.shape[-1]), 1, col_local)
        argmax = (h_abs * width + w_abs).reshape(batch, p * p, -1)
    else:
        by_col = by_col.amax(dim=3)
        pooled = torch.where(in_h[:, :, :, None, None], by_col[:, None, :, :, :], neg_inf).amax(dim=2)
        argmax = None
    empty = pooled == neg_inf
    pooled = torch.where(empty, torch.zeros((), dtype=features.dtype, device=features.device), pooled)
    return pooled.permute(0, 3, 1, 2), argmax, empty.permute(0, 3, 1, 2)


class _RoIPoolFunction(torch.autograd.Function):
    """Forward by masked max; backward scatters each cell's gradient onto its arg-max (none for empty bins)."""

    @staticmethod
    def forward(ctx, features, bins, output_size):
        pooled, argmax, empty = _roi_pool_forward(features, bins, output_size, with_argmax=True)
        ctx.save_for_backward(argmax, empty)
        ctx.shape = features.shape
        ctx.channels_last = features.is_contiguous(memory_format=torch.channels_last) and features.shape[1] > 1
        return pooled

    @staticmethod
    def backward(ctx, grad_output):
        argmax, empty = ctx.saved_tensors
        batch, channels, height, width = ctx.shape
        grad = grad_output.masked_fill(empty, 0).permute(0, 2, 3, 1).reshape(batch, -1, channels)
        # Scatter in channels-last order (the pooled cells are stored that way), then view as (B, C, H, W). The
        # scatter is 1-D on flat indices: torch has a deterministic CUDA kernel for that case only.
        cell = argmax + torch.arange(batch, device=argmax.device)[:, None, None] * (height * width)
        flat = (cell * channels + torch.arange(channels, device=argmax.device)).reshape(-1)
        grad_features = grad.new_zeros(batch * height * width * channels)
        grad_features.scatter_add_(0, flat, grad.reshape(-1))
        grad_features = grad_features.view(batch, height, width, channels).permute(0, 3, 1, 2)
        if not ctx.channels_last:
            grad_features = grad_features.contiguous()
        return grad_features, None, None


def roi_pool_static(features: Tensor, boxes: Tensor, output_size: int = 5, spatial_scale: float = 1.0) -> Tensor:
    """:func:`roi_pool`'s numbers without a host synchronisation or a shape that depends on the boxes.

    A CUDA graph replays fixed kernels on fixed shapes, so the box rounding runs on the device (float32, half
    away from zero, as the CUDA kernel) and every bin is a mask over the whole map: a separable masked max over
    columns, then rows. That reads the whole map ``output_size`` times, which the other paths avoid, so it is
    only used where a graph is captured (batch-1 annotation on CUDA). No autograd.
    """
    if features.dim() != 4 or boxes.dim() != 2 or boxes.shape != (features.shape[0], 4):
        raise invalid("boxes", f"must be ({features.shape[0]}, 4) for (B, C, H, W) features",
                      (tuple(boxes.shape), tuple(features.shape)))
    _, _, height, width = features.shape
    scaled = boxes.to(device=features.device, dtype=torch.float32) * spatial_scale
    rounded = torch.sign(scaled) * torch.floor(torch.abs(scaled) + 0.5)
    x1, y1, x2, y2 = rounded.unbind(dim=1)
    roi_w = torch.clamp(x2 - x1 + 1, min=1)
    roi_h = torch.clamp(y2 - y1 + 1, min=1)
    index = torch.arange(output_size, dtype=torch.float32, device=features.device)
    bin_w, bin_h = (roi_w / output_size)[:, None], (roi_h / output_size)[:, None]
    h_start = (torch.floor(index * bin_h) + y1[:, None]).clamp(0, height)
    h_end = (torch.ceil((index + 1) * bin_h) + y1[:, None]).clamp(0, height)
    w_start = (torch.floor(index * bin_w) + x1[:, None]).clamp(0, width)
    w_end = (torch.ceil((index + 1) * bin_w) + x1[:, None]).clamp(0, width)
    rows = torch.arange(height, dtype=torch.float32, device=features.device)
    cols = torch.arange(width, dtype=torch.float32, device=features.device)
    in_h = (h_start[:, :, None] <= rows) & (rows < h_end[:, :, None])  # (B, P, H)
    in_w = (w_start[:, :, None] <= cols) & (cols < w_end[:, :, None])  # (B, P, W)
    # torch.full, not torch.tensor: a host-to-device copy is not allowed while a CUDA graph is being captured
    neg_inf = torch.full((), float("-inf"), dtype=features.dtype, device=features.device)
    by_col = torch.where(in_w[:, None, None, :, :], features[:, :, :, None, :], neg_inf).amax(dim=-1)  # (B, C, H, P)
    pooled = torch.where(in_h[:, None, :, :, None], by_col[:, :, None, :, :], neg_inf).amax(dim=3)  # (B, C, P, P)
    return torch.where(pooled == neg_inf, torch.zeros((), dtype=pooled.dtype, device=pooled.device), pooled)
