"""Winograd convolution F(m x m, 3 x 3), m = 2 or 4, for CPU inference (Lavin & Gray, CVPR 2016).

Why: the 3 x 3 convolutions of VGG16 are almost all of a LesaNet forward pass, and oneDNN's direct convolution
already runs the large ones at ~85 % of the machine's peak, so only doing less arithmetic makes them faster.
Winograd's minimal filtering computes each m x m output tile from an (m + 2) x (m + 2) input tile with
(m + 2)^2 multiplies per channel pair instead of 9 m^2: the layer becomes (m + 2)^2 independent
``(tiles x C_in) @ (C_in x C_out)`` matmuls between two cheap linear transforms.

Whether it pays depends on the CPU, the thread count and the shape: the transformed weights are (m + 2)^2 / 9
times the kernel (1.8x for m = 2, 4x for m = 4) and at batch 1 every byte is read once per call, and the matmul
library matters (on an AMD EPYC, MKL's batched fp32 matmul ran at 70 GFLOP/s where oneDNN's ran at 300-400).
So nothing here decides: :mod:`.kernels` times direct, F2 and F4 per layer on the user's machine and caches the
choice. The products run as one oneDNN matmul per point with weights packed once (:func:`pack_products`) where
torch has the op, else as one ``torch.bmm``.

Numerics: the transforms scale by up to 5 and 1/24 (m = 4) or 1/2 (m = 2). In fp32 a 256-channel layer's
outputs then differ from the exact convolution by about 1e-5 of its largest output for m = 4, some ten times
the rounding of oneDNN's direct convolution, and by about 5e-7 for m = 2, no more than direct. That is the size
of the differences BN folding already makes, and the fully connected layers average it down (a full-size LesaNet
trained on phantoms moved its probabilities by about 1e-7). The transformed weights are computed in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import invalid


@dataclass(frozen=True)
class _Transforms:
    """The three matrices of F(m x m, 3 x 3); the 2-D input and output transforms as Kronecker products."""

    tile: int
    kernels: torch.Tensor  # kron(G, G), ((m + 2)^2, 9), float64
    inputs: dict  # dtype -> B^T, (m + 2, m + 2)
    outputs: dict  # dtype -> A^T, (m, m + 2)


def _transforms(tile: int, bt: list, g: list, at: list) -> _Transforms:
    bt64, g64, at64 = (torch.tensor(a, dtype=torch.float64) for a in (bt, g, at))
    # On row-major flattened 3 x 3 kernels, vec(G g G^T) = kron(G, G) vec(g): every kernel in one matmul.
    return _Transforms(tile, torch.kron(g64, g64), {d: bt64.to(d) for d in (torch.float32, torch.float64)},
                       {d: at64.to(d) for d in (torch.float32, torch.float64)})


def _two_sided(left: torch.Tensor, tiles: torch.Tensor) -> torch.Tensor:
    """``left @ d @ left^T`` of every tile of ``tiles`` ``(k, k, N)`` (tile rows, columns, tiles x channels).

    Two 1-D passes (rows, then columns) as two skinny matmuls instead of one ``kron(B^T, B^T)`` matmul with 6x
    the FLOPs: on the 2-core AMD EPYC the input transform of conv3 at batch 8 took 5.5 against 9.1 ms, and whole
    F(4x4) layers 2-12 % less (alternating in one process; F(2x2) at batch 1: 4 % more).
    """
    k, n = tiles.shape[0], tiles.shape[2]
    rows = (left @ tiles.reshape(k, k * n)).view(left.shape[0], k, n)  # left over the tile rows
    return torch.matmul(left, rows)  # then over the tile columns, for each transformed row


# Interpolation points 0, 1, -1 and infinity.
_F2 = _transforms(
    2,
    [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
    [[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]],
    [[1, 1, 1, 0], [0, 1, -1, -1]],
)
# Interpolation points 0, 1, -1, 2, -2 and infinity (Lavin & Gray 2016, section 4.2).
_F4 = _transforms(
    4,
    [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
     [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
    [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
     [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
    [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
)
_BY_TILE = {2: _F2, 4: _F4}
_BY_POINTS = {(t.tile + 2) ** 2: t for t in _BY_TILE.values()}


def output_tiles(tile: int, batch: int, height: int, width: int) -> int:
    """How many ``tile`` x ``tile`` output tiles a ``(batch, C, height, width)`` input makes."""
    return batch * -(-height // tile) * -(-width // tile)


@dataclass(frozen=True)
class WinogradWeight:
    """A 3 x 3 kernel transformed for F(m x m, 3 x 3), ready for :func:`winograd_conv3x3`.

    Attributes:
        tile: m (2 or 4).
        c_in: input channels.
        c_out: output channels.
        dense: ``((m + 2)^2, C_in, C_out)`` transformed kernels for ``torch.bmm``; None when packed.
        packed: one oneDNN-packed ``(C_out, C_in)`` matrix per point; None where torch lacks the op or the
            dtype is not float32. Only one of the two is kept: at m = 4 each copy is 4x the kernel's bytes.
    """

    tile: int
    c_in: int
    c_out: int
    dense: torch.Tensor | None
    packed: tuple[torch.Tensor, ...] | None

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32 if self.dense is None else self.dense.dtype


def winograd_weight(weight: torch.Tensor, tile: int, dtype: torch.dtype = torch.float32,
                    pack_rows: int | None = None) -> WinogradWeight:
    """``G g G^T`` of every 3 x 3 kernel of a ``(C_out, C_in, 3, 3)`` weight, in ``dtype``.

    Computed in float64 so the only rounding to ``dtype`` is the final one. With ``pack_rows`` (the tile count
    the layer will see; oneDNN picks its blocking for it, and the packed weights work for any count) a float32
    weight is packed for oneDNN's matmul, one matrix per point.
    """
    if tile not in _BY_TILE:
        raise invalid("tile", f"must be one of {sorted(_BY_TILE)}", tile)
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (3, 3):
        raise invalid("weight", "must be (C_out, C_in, 3, 3)", tuple(weight.shape))
    if pack_rows is not None and (isinstance(pack_rows, bool) or not isinstance(pack_rows, int) or pack_rows < 1):
        raise invalid("pack_rows", "must be a positive integer or None", pack_rows)
    kernel_transform = _BY_TILE[tile].kernels  # kron(G, G): vec(G g G^T) for every kernel in one matmul
    c_out, c_in = weight.shape[:2]
    transformed = kernel_transform @ weight.detach().cpu().double().reshape(c_out * c_in, 9).T
    points = transformed.view(-1, c_out, c_in).to(dtype)  # ((m + 2)^2, C_out, C_in)
    if pack_rows is not None and dtype == torch.float32 and _HAS_ONEDNN_LINEAR:
        packed = tuple(torch.ops.mkldnn._reorder_linear_weight(point.contiguous(), pack_rows) for point in points)
        return WinogradWeight(tile, c_in, c_out, None, packed)
    return WinogradWeight(tile, c_in, c_out, points.permute(0, 2, 1).contiguous(), None)


def winograd_conv3x3(x: torch.Tensor, transformed_weight: WinogradWeight, bias: torch.Tensor | None = None,
                     relu: bool = False) -> torch.Tensor:
    """3 x 3 convolution, stride 1, zero padding 1, of ``x`` ``(B, C_in, H, W)`` with a :func:`winograd_weight`.

    Returns ``(B, C_out, H, W)`` in channels-last memory, the layout oneDNN's following layers read fastest.
    ``relu`` applies ReLU after the bias. No autograd: this is an inference kernel.
    """
    if x.dim() != 4:
        raise invalid("x", "must be (B, C_in, H, W)", tuple(x.shape))
    if x.dtype not in (torch.float32, torch.float64) or x.device.type != "cpu":
        raise invalid("x", "must be a float32 or float64 CPU tensor", f"{x.dtype} on {x.device}")
    batch, c_in, height, width = x.shape
    if not isinstance(transformed_weight, WinogradWeight) or transformed_weight.c_in != c_in:
        raise invalid("transformed_weight", f"must be a WinogradWeight with {c_in} input channels, as the input",
                      getattr(transformed_weight, "c_in", type(transformed_weight).__name__))
    transforms = _BY_TILE[transformed_weight.tile]
    tile, points = transforms.tile, transforms.tile + 2
    tiles_h, tiles_w = -(-height // tile), -(-width // tile)
    tiles = batch * tiles_h * tiles_w
    # Pad 1 on the top/left (the convolution's own padding) and enough on the bottom/right for whole tiles.
    padded = torch.nn.functional.pad(
        x, (1, tiles_w * tile - width + 1, 1, tiles_h * tile - height + 1)
    ).permute(0, 2, 3, 1)  # (B, Hp, Wp, C), contiguous for a channels-last input
    s_b, s_h, s_w, s_c = padded.stride()
    # Overlapping input tiles with stride m, as a view: (m + 2, m + 2, B, tiles_h, tiles_w, C).
    windows = padded.as_strided((points, points, batch, tiles_h, tiles_w, c_in),
                                (s_h, s_w, s_b, tile * s_h, tile * s_w, s_c))
    data = windows.reshape(points, points, tiles * c_in)  # the one gathering copy
    transformed_input = _two_sided(transforms.inputs[x.dtype], data).view(points * points, tiles, c_in)
    if transformed_weight.packed is not None and x.dtype == torch.float32:
        # One oneDNN matmul per point: ~17 us of call overhead each, but 2-4x MKL's batched matmul on some CPUs.
        # Copied into one buffer as they come: torch.stack of the 36 results was slower than the copies.
        linear = torch.ops.mkldnn._linear_pointwise
        products = torch.empty(points * points, tiles, transformed_weight.c_out)
        for p, weight in enumerate(transformed_weight.packed):
            products[p].copy_(linear(transformed_input[p], weight, None, "none", [], ""))
    elif transformed_weight.dense is not None:
        products = torch.bmm(transformed_input, transformed_weight.dense.to(x.dtype))  # ((m + 2)^2, tiles, C_out)
    else:
        raise invalid("x", "must be float32 for a packed Winograd weight", x.dtype)
    c_out = products.shape[2]
    out = _two_sided(transforms.outputs[x.dtype], products.view(points, points, -1)).view(
        tile, tile, batch, tiles_h, tiles_w, c_out)
    out = out.permute(2, 3, 0, 4, 1, 5).reshape(batch, tiles_h * tile, tiles_w * tile, c_out)[:, :height, :width]
    out = out + bias if bias is not None else out.contiguous()
    if relu:
        out = torch.relu_(out)
    return out.permute(0, 3, 1, 2)


_HAS_ONEDNN_LINEAR = (
    torch.backends.mkldnn.is_available()
    and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
)
