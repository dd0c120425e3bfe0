"""FLOPs of one LesaNet patch: the network's nominal work, and what the chosen kernels actually execute.

The nominal count (direct convolution) is the roofline's numerator: it is the model's work whatever the
kernels. A fraction of peak must count what ran instead, or Winograd's saved multiplies would make it pass 1:
:func:`executed_flops` counts each Winograd layer's products and its input and output transforms as
:mod:`LesaNetCore.model.winograd` computes them.
"""

from __future__ import annotations

PATCH_SIZE = 120
# A typical DeepLesion box in a 120-pixel patch at 1 mm/pixel (lesions are mostly 10-60 mm).
BENCH_BOX = (40.0, 42.0, 80.0, 76.0)


def model_flops(
    widths: tuple[int, ...] | list[int] = (64, 128, 256, 512, 512),
    fc_dim: int = 256,
    emb_dim: int = 256,
    num_labels: int = 171,
    height: int = PATCH_SIZE,
    width: int = PATCH_SIZE,
    box: tuple[float, float, float, float] = BENCH_BOX,
    in_chans: int = 3,
    roi_size: int = 5,
    use_spl: bool = True,
) -> dict[str, int]:
    """Forward FLOPs of one patch, counted analytically (2 per multiply-add; 1 per RoI max comparison).

    Bias adds, BN, ReLU and pooling are left out, as in the usual convention; they are memory-bound and a few
    per cent of the conv work.

    Example:
        >>> f = model_flops()
        >>> round(f["conv"] / 1e9, 2), round(f["total"] / 1e9, 2)
        (8.71, 8.73)
    """
    from ..model.lesanet import _BLOCK_DEPTHS, _LESION_BLOCKS

    conv = 0
    roi = 0
    h, w, cin = height, width, in_chans
    x1, y1, x2, y2 = box
    for block, (depth, cout) in enumerate(zip(_BLOCK_DEPTHS, widths, strict=True), start=1):
        if block > 1:
            h, w = h // 2, w // 2
        for _ in range(depth):
            conv += 2 * 9 * cin * cout * h * w
            cin = cout
        scale = 0.5 ** (block - 1)
        if block in _LESION_BLOCKS:
            rh = max(round(y2 * scale) - round(y1 * scale) + 1, 1)
            rw = max(round(x2 * scale) - round(x1 * scale) + 1, 1)
        else:
            rh, rw = round(height * scale) + 1, round(width * scale) + 1
        # Every cell of the (clipped) RoI is compared about once per bin it falls in.
        roi += cout * min(rh + roi_size, h + roi_size) * min(rw + roi_size, w + roi_size)
    fc = 2 * roi_size * roi_size * sum(widths) * fc_dim
    concat = fc_dim * len(widths)
    head = 2 * concat * (emb_dim + num_labels) + (2 * num_labels * num_labels if use_spl else 0)
    return {"conv": conv, "fc": fc + head, "roi": roi, "total": conv + fc + head + roi}


def layer_flops(algorithm: str, batch: int, c_in: int, c_out: int, height: int, width: int) -> int:
    """FLOPs one 3 x 3 conv layer executes with ``algorithm`` (``"direct"``, ``"F2"``, ``"F4"``).

    Example:
        >>> round(layer_flops("direct", 1, 256, 256, 30, 30) / layer_flops("F4", 1, 256, 256, 30, 30), 2)
        3.28
    """
    from ..model.kernel_plan import TILES
    from ..model.winograd import output_tiles

    tile = TILES[algorithm]
    if tile is None:
        return 2 * 9 * c_in * c_out * height * width * batch
    k = tile + 2
    tiles = output_tiles(tile, batch, height, width)
    products = 2 * k * k * c_in * c_out
    # Each transform is two 1-D passes (model.winograd._two_sided): k^3 multiply-adds twice per input tile and
    # channel, m k^2 + m^2 k per output tile and channel.
    transforms = 4 * k**3 * c_in + 2 * (tile * k * k + tile * tile * k) * c_out
    return tiles * (products + transforms)


def executed_flops(model, plan, batch: int, height: int = PATCH_SIZE, width: int = PATCH_SIZE) -> float:
    """FLOPs per patch a fused LesaNet executes at ``batch`` with kernel ``plan`` (None: direct everywhere)."""
    from ..model.kernels import conv_shapes

    nominal = model_flops(**model.arch_config, height=height, width=width)
    direct = executed = 0
    for shape in conv_shapes(model, batch, height, width).values():
        algorithm = plan.algorithm(*shape) if plan is not None else "direct"
        direct += layer_flops("direct", *shape)
        executed += layer_flops(algorithm, *shape)
    return nominal["total"] + (executed - direct) / batch
