"""Winograd convolution F(m x m, 3 x 3), m = 2 or 4, for CPU inference (Lavin & Gray, CVPR 2016).

Why: at batch 1 the 3 x 3 convolutions of VGG16's blocks 2-4 take about two thirds of a LesaNet forward pass,
and oneDNN's direct convolution already runs them at ~85 % of this machine's fp32 matmul peak, so only doing
less arithmetic makes them faster. Winograd's minimal filtering computes each m x m output tile from an
(m + 2) x (m + 2) input tile with (m + 2)^2 multiplies per channel pair instead of 9 m^2: the layer becomes
(m + 2)^2 independent ``(tiles x C_in) @ (C_in x C_out)`` matmuls between two cheap linear transforms.

The price is weight bytes: the transformed weights are (m + 2)^2 / 9 times the kernel (1.8x for m = 2, 4x for
m = 4), and at batch 1 every byte is read once per call. :func:`choose_tile` therefore takes m = 4 only where
each transformed weight serves many tiles, m = 2 where fewer do, and keeps direct convolution where the matmuls
would be too thin. Measured inside batch-1 forward passes on the project's 2-core AVX-512 Xeon
(``scripts/winograd_layers.py``): conv2_2 3.0 -> 2.4 ms (m = 4), conv3_2 3.1 -> 2.0 ms (m = 4), conv4_2
3.3 -> 2.3 ms (m = 2); conv5 stays direct. On a 16-core Xeon the rule stayed within 3.5 % of the per-layer best
at 2-16 threads.

Numerics: the transforms scale by up to 5 and 1/24 (m = 4) or 1/2 (m = 2). In fp32 a 256-channel layer's
outputs then differ from the exact convolution by about 1e-5 of its largest output for m = 4, some ten times
the rounding of oneDNN's direct convolution, and by about 5e-7 for m = 2, no more than direct. That is the size
of the differences BN folding already makes, and the fully connected layers average it down: a full-size LesaNet
trained on phantoms moved its probabilities by at most 1.2e-7 (direct: 1.5e-7). The transformed weights are
computed in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import invalid

MIN_IN_CHANNELS = 128  # below this the transforms cost as much as the matmuls save
MIN_TILES_F4 = 32  # output tiles per transformed weight for m = 4 to beat m = 2 with cold weights
MIN_TILES_F2 = 64  # and for m = 2 to beat direct convolution


@dataclass(frozen=True)
class _Transforms:
    """The three matrices of F(m x m, 3 x 3); the 2-D input and output transforms as Kronecker products."""

    tile: int
    kernels: torch.Tensor  # kron(G, G), ((m + 2)^2, 9), float64
    inputs: dict  # dtype -> kron(B^T, B^T), ((m + 2)^2, (m + 2)^2)
    outputs: dict  # dtype -> kron(A^T, A^T), (m^2, (m + 2)^2)


def _transforms(tile: int, bt: list, g: list, at: list) -> _Transforms:
    bt64, g64, at64 = (torch.tensor(a, dtype=torch.float64) for a in (bt, g, at))
    # On row-major flattened tiles, vec(B^T d B) = kron(B^T, B^T) vec(d): both 1-D passes in one matmul.
    inputs, outputs = torch.kron(bt64, bt64), torch.kron(at64, at64)
    return _Transforms(tile, torch.kron(g64, g64), {d: inputs.to(d) for d in (torch.float32, torch.float64)},
                       {d: outputs.to(d) for d in (torch.float32, torch.float64)})


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


def choose_tile(batch: int, in_channels: int, height: int, width: int) -> int | None:
    """The Winograd tile m (4 or 2) that beats oneDNN's direct convolution for this shape on CPU, or None.

    Measured (module doc): m = 4 needs 32 output tiles per transformed weight, m = 2 needs 64. At batch 1 that is
    m = 4 for LesaNet's blocks 2-3, m = 2 for block 4 and direct convolution for block 5.

    Example:
        >>> [choose_tile(*shape) for shape in [(1, 256, 30, 30), (1, 512, 15, 15), (1, 512, 7, 7), (8, 512, 7, 7)]]
        [4, 2, None, 4]
    """
    if in_channels < MIN_IN_CHANNELS:
        return None
    if output_tiles(4, batch, height, width) >= MIN_TILES_F4:
        return 4
    if output_tiles(2, batch, height, width) >= MIN_TILES_F2:
        return 2
    return None


def winograd_weight(weight: torch.Tensor, tile: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``G g G^T`` of every 3 x 3 kernel: ``(C_out, C_in, 3, 3)`` -> ``((m + 2)^2, C_in, C_out)`` in ``dtype``.

    Computed in float64 so the only rounding to float32 is the final one.
    """
    if tile not in _BY_TILE:
        raise invalid("tile", f"must be one of {sorted(_BY_TILE)}", tile)
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (3, 3):
        raise invalid("weight", "must be (C_out, C_in, 3, 3)", tuple(weight.shape))
    kernel_transform = _BY_TILE[tile].kernels  # kron(G, G): vec(G g G^T) for every kernel in one matmul
    c_out, c_in = weight.shape[:2]
    transformed = kernel_transform @ weight.detach().cpu().double().reshape(c_out * c_in, 9).T
    return transformed.view(-1, c_out, c_in).permute(0, 2, 1).contiguous().to(dtype)


def winograd_conv3x3(x: torch.Tensor, transformed_weight: torch.Tensor, bias: torch.Tensor | None = None,
                     relu: bool = False) -> torch.Tensor:
    """3 x 3 convolution, stride 1, zero padding 1, of ``x`` ``(B, C_in, H, W)`` with a :func:`winograd_weight`.

    The tile size follows from the transformed weight (16 points: m = 2; 36: m = 4). Returns
    ``(B, C_out, H, W)`` in channels-last memory, the layout oneDNN's following layers read fastest. ``relu``
    applies ReLU after the bias. No autograd: this is an inference kernel.
    """
    if x.dim() != 4:
        raise invalid("x", "must be (B, C_in, H, W)", tuple(x.shape))
    if x.dtype not in (torch.float32, torch.float64) or x.device.type != "cpu":
        raise invalid("x", "must be a float32 or float64 CPU tensor", f"{x.dtype} on {x.device}")
    batch, c_in, height, width = x.shape
    transforms = _BY_POINTS.get(transformed_weight.shape[0]) if transformed_weight.dim() == 3 else None
    if transforms is None or transformed_weight.shape[1] != c_in:
        raise invalid("transformed_weight", f"must be (16 or 36, {c_in}, C_out) for an input with {c_in} channels",
                      tuple(transformed_weight.shape))
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
    data = windows.reshape(points * points, tiles * c_in)  # the one gathering copy
    transformed_input = (transforms.inputs[x.dtype] @ data).view(points * points, tiles, c_in)
    products = torch.bmm(transformed_input, transformed_weight.to(x.dtype))  # ((m + 2)^2, tiles, C_out)
    c_out = products.shape[2]
    out = (transforms.outputs[x.dtype] @ products.view(points * points, -1)).view(
        tile, tile, batch, tiles_h, tiles_w, c_out)
    out = out.permute(2, 3, 0, 4, 1, 5).reshape(batch, tiles_h * tile, tiles_w * tile, c_out)[:, :height, :width]
    out = out + bias if bias is not None else out.contiguous()
    if relu:
        out = torch.relu_(out)
    return out.permute(0, 3, 1, 2)
