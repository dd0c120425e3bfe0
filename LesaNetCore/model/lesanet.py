"""The LesaNet network (Yan et al., CVPR 2019), with the parameter names of the released code.

VGG16-BN conv layers without pool5; RoI max-pooling to 5 x 5 on conv1_2, conv2_2, conv3_3 inside the lesion box
(fine detail at scales 1, 1/2, 1/4) and on conv4_3, conv5_3 over the whole patch (context at scales 1/8, 1/16);
each pooled map goes through its own FC (``fc_pool1..5``, no ReLU), the five are concatenated and feed the
classifier ``class_scores1`` and the L2-normalised embedding ``fc_emb``. ``class_scores2`` is the score
propagation layer (SPL): a C x C linear map on the logits, initialised to the identity so training starts
from the plain classifier and learns label correlations.

The module names (``conv{b}_{l}``, ``bn{b}_{l}``, ``fc_pool1``...) and their registration order match the
official ``VGG16bn`` so its ``state_dict`` loads as is (107 entries for 171 labels).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import invalid
from .cpu_memory import keep_freed_memory
from .kernel_plan import TILES, KernelPlan
from .roi_pool import roi_cells, roi_pool, roi_pool_static
from .winograd import WinogradWeight, output_tiles, winograd_conv3x3, winograd_weight

if TYPE_CHECKING:
    from torch import Tensor

# Conv layers per VGG16 block; a 2x2 max-pool follows every block but the last (no pool5).
_BLOCK_DEPTHS = (2, 2, 3, 3, 3)
# Blocks 1-3 pool the lesion box, blocks 4-5 the whole patch (the reference's center_box / out_box).
_LESION_BLOCKS = (1, 2, 3)


@dataclass
class LesaNetOutput:
    """What one forward pass gives.

    Attributes:
        logits1: ``(B, C)`` scores of ``class_scores1`` (the official ``class_score1``).
        logits2: ``(B, C)`` SPL-refined scores (``class_score2``); the same tensor as ``logits1`` when the model
            has no SPL.
        probs: ``(B, C)`` label probabilities the decisions use: ``sigmoid(logits2)``.
        embedding: ``(B, emb_dim)`` L2-normalised embedding for retrieval and the triplet loss.
    """

    logits1: Tensor
    logits2: Tensor
    probs: Tensor
    embedding: Tensor

    @property
    def probs1(self) -> Tensor:
        """Probabilities before score propagation (what WCE(p1) and RHEM train)."""
        return torch.sigmoid(self.logits1)


class LesaNet(nn.Module):
    """Multi-scale multilabel CNN with an embedding head and score propagation.

    Args:
        num_labels: number of labels C.
        widths: output channels of the five conv blocks (VGG16: 64, 128, 256, 512, 512).
        fc_dim: output size of each ``fc_pool`` layer; the concatenated feature is ``5 * fc_dim``.
        emb_dim: embedding size.
        roi_size: RoI pooling bins per side.
        use_spl: add the score propagation layer ``class_scores2``.
        in_chans: input channels (3 slices at -2, 0, +2 mm).

    Example:
        >>> model = LesaNet(num_labels=4, widths=(4, 4, 4, 4, 4), fc_dim=8, emb_dim=6).eval()
        >>> out = model(torch.zeros(2, 3, 32, 32), torch.tensor([[8.0, 8.0, 20.0, 20.0]] * 2))
        >>> tuple(out.probs.shape), tuple(out.embedding.shape)
        ((2, 4), (2, 6))
    """

    def __init__(
        self,
        num_labels: int,
        widths: tuple[int, ...] | list[int] = (64, 128, 256, 512, 512),
        fc_dim: int = 256,
        emb_dim: int = 256,
        roi_size: int = 5,
        use_spl: bool = True,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        for name, value in (("num_labels", num_labels), ("fc_dim", fc_dim), ("emb_dim", emb_dim),
                            ("roi_size", roi_size), ("in_chans", in_chans)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise invalid(name, "must be a positive integer", value)
        if len(widths) != len(_BLOCK_DEPTHS) or min(widths) < 1:
            raise invalid("widths", "must be 5 positive channel counts, one per VGG16 block", widths)
        self.num_labels = num_labels
        self.widths = widths
        self.fc_dim = fc_dim
        self.emb_dim = emb_dim
        self.roi_size = roi_size
        self.use_spl = bool(use_spl)
        self.in_chans = in_chans
        # CPU inference without gradients runs large batches in slices of this many patches (None = whole batch):
        # a slice's feature maps stay in the CPU caches; fuse_for_inference sets it. GPUs take the whole batch.
        self.inference_chunk: int | None = None
        # RoI pooling without host synchronisation or box-dependent shapes, for capture in a CUDA graph
        # (.cuda_graph sets it on its own copy).
        self.static_roi = False

        # Same modules, names and order as the reference's VGG16bn (ReLU and pool modules hold no weights; they
        # are modules so fuse_for_inference can swap conv + BN + ReLU for one fused op without touching forward).
        in_channels = in_chans
        for block, (depth, width) in enumerate(zip(_BLOCK_DEPTHS, widths, strict=True), start=1):
            for layer in range(1, depth + 1):
                setattr(self, f"conv{block}_{layer}", nn.Conv2d(in_channels, width, kernel_size=3, padding=1))
                setattr(self, f"bn{block}_{layer}", nn.BatchNorm2d(width))
                setattr(self, f"relu{block}_{layer}", nn.ReLU(inplace=True))
                in_channels = width
            if block < len(_BLOCK_DEPTHS):
                setattr(self, f"pool{block}", nn.MaxPool2d(kernel_size=2, stride=2))
        for block, width in enumerate(widths, start=1):
            setattr(self, f"fc_pool{block}", nn.Linear(roi_size * roi_size * width, fc_dim))
        self.fc_emb = nn.Linear(fc_dim * len(widths), emb_dim)
        self.class_scores1 = nn.Linear(fc_dim * len(widths), num_labels)
        if self.use_spl:
            self.class_scores2 = nn.Linear(num_labels, num_labels)
            with torch.no_grad():
                self.class_scores2.weight.copy_(torch.eye(num_labels))
                self.class_scores2.bias.zero_()

    @property
    def arch_config(self) -> dict:
        """Constructor arguments that rebuild this architecture: ``LesaNet(**model.arch_config)``."""
        return {
            "num_labels": self.num_labels,
            "widths": list(self.widths),
            "fc_dim": self.fc_dim,
            "emb_dim": self.emb_dim,
            "roi_size": self.roi_size,
            "use_spl": self.use_spl,
            "in_chans": self.in_chans,
        }

    def forward_features(self, images: Tensor, boxes: Tensor) -> Tensor:
        """The concatenated multi-scale RoI feature, ``(B, 5 * fc_dim)``.

        Args:
            images: ``(B, in_chans, H, W)`` normalised patches.
            boxes: ``(B, 4)`` lesion boxes ``x1, y1, x2, y2`` in patch pixels.
        """
        if images.dim() != 4 or images.shape[1] != self.in_chans:
            raise invalid("images", f"must be (B, {self.in_chans}, H, W)", tuple(images.shape))
        if boxes.dim() != 2 or boxes.shape != (images.shape[0], 4):
            raise invalid("boxes", f"must be ({images.shape[0]}, 4) x1, y1, x2, y2 in patch pixels", tuple(boxes.shape))
        batch, _, height, width = images.shape
        chunk = self.inference_chunk
        if chunk is not None and batch > chunk and not torch.is_grad_enabled() and images.device.type == "cpu":
            return torch.cat([self.forward_features(images[i : i + chunk], boxes[i : i + chunk])
                              for i in range(0, batch, chunk)])
        boxes = boxes.to(device=images.device, dtype=torch.float32)
        # The reference's whole-patch box is (0, 0, W, H), not (W - 1, H - 1); keep it for identical bins.
        scales = [0.5 ** (block - 1) for block in range(1, len(_BLOCK_DEPTHS) + 1)]
        if self.static_roi:  # no host-to-device copy inside a CUDA graph capture: fill on the device
            whole = boxes.new_zeros(batch, 4)
            whole[:, 2], whole[:, 3] = float(width), float(height)
            pools = [functools.partial(roi_pool_static, spatial_scale=scale) for scale in scales]
        else:
            whole = torch.tensor([0.0, 0.0, float(width), float(height)], device=images.device).expand(batch, 4)
            # Every scale's RoI cells up front, on the host: between two oneDNN convolutions the same few numpy
            # operations took ~0.2 ms a call on the 2-core AMD EPYC (10x their time alone); up front the batch-1
            # pass was 0.7-1.8 % faster. On CUDA this is one host sync instead of five.
            pools = [functools.partial(roi_pool, spatial_scale=scale, nonnegative=True, cells=roi_cells(
                boxes if block in _LESION_BLOCKS else whole, scale)) for block, scale in enumerate(scales, start=1)]
        # Images stay as given: with channels-last weights oneDNN reads a 3-channel NCHW input with its fast
        # first-layer kernel (2x faster than a channels-last one) and still writes channels-last features.
        x = images
        pooled_features = []
        for block, depth in enumerate(_BLOCK_DEPTHS, start=1):
            if block > 1:
                x = getattr(self, f"pool{block - 1}")(x)
            for layer in range(1, depth + 1):
                x = getattr(self, f"conv{block}_{layer}")(x)
                x = getattr(self, f"bn{block}_{layer}")(x)
                x = getattr(self, f"relu{block}_{layer}")(x)
            pooled = pools[block - 1](x, boxes if block in _LESION_BLOCKS else whole, self.roi_size)
            pooled_features.append(getattr(self, f"fc_pool{block}")(pooled.reshape(batch, -1)))
        return torch.cat(pooled_features, dim=1)

    def forward_head(self, features: Tensor) -> LesaNetOutput:
        """Classifier, SPL and embedding on the ``(B, 5 * fc_dim)`` feature."""
        embedding = F.normalize(self.fc_emb(features), p=2, dim=1)
        logits1 = self.class_scores1(features)
        logits2 = self.class_scores2(logits1) if self.use_spl else logits1
        return LesaNetOutput(logits1=logits1, logits2=logits2, probs=torch.sigmoid(logits2), embedding=embedding)

    def forward(self, images: Tensor, boxes: Tensor) -> LesaNetOutput:
        """Scores, probabilities and embedding for ``images`` with one lesion box each."""
        return self.forward_head(self.forward_features(images, boxes))


def checkpoint_filter_fn(state_dict: dict) -> dict:
    """Maps a released LesaNet ``state_dict`` onto this module's names (timm's checkpoint-filter idea).

    The official checkpoints were saved from ``nn.DataParallel`` (``module.`` prefix) by PyTorch 0.4, whose
    BatchNorm had no ``num_batches_tracked``; both are fixed here so ``load_state_dict(strict=True)`` works and
    ``forward`` needs no special case.
    """
    out = {}
    for key, value in state_dict.items():
        out[key[len("module."):] if key.startswith("module.") else key] = value
    for key in list(out):
        if key.startswith("bn") and key.endswith(".running_mean"):
            tracked = key[: -len("running_mean")] + "num_batches_tracked"
            out.setdefault(tracked, torch.tensor(0, dtype=torch.long))
    return out


class _ConvReLU(nn.Module):
    """3x3 conv with the following BatchNorm folded in and ReLU applied by oneDNN as a post-op on CPU.

    ReLU as a post-op saves one read and write of every feature map, which is most of the non-conv time at
    conv1_2 (120 x 120 x 64). In CPU fp32 inference the layer runs the algorithm its :class:`.KernelPlan` names
    for the input's shape (direct convolution, or Winograd F(2x2 | 4x4, 3x3), see :mod:`.winograd`); without a
    plan it runs direct. Elsewhere (CUDA, autograd, or a torch without the oneDNN op) it is conv then ReLU.
    """

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, plan: KernelPlan | None = None) -> None:
        super().__init__()
        with torch.no_grad():
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            weight = conv.weight * scale[:, None, None, None]
            bias = (conv.bias - bn.running_mean) * scale + bn.bias
        self.weight = nn.Parameter(weight.contiguous(memory_format=torch.channels_last), requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False)
        self.padding = conv.padding
        self.stride = conv.stride
        self.dilation = conv.dilation
        self.groups = conv.groups
        self.winograd_ok = (tuple(conv.kernel_size) == (3, 3) and tuple(conv.stride) == (1, 1)
                            and tuple(conv.padding) == (1, 1) and tuple(conv.dilation) == (1, 1) and conv.groups == 1)
        self.plan = plan
        # Set by .kernels.tune while it times each algorithm; None follows the plan.
        self.forced: str | None = None
        self._winograd_weights: dict[int, tuple[tuple, WinogradWeight]] = {}  # tile -> (weight version, weight)

        # oneDNN wants the weight in a blocked layout chosen for the input shape; reordering it on every call
        # costs as much as the conv itself for the 7 x 7 and 15 x 15 layers at batch 1, so the reordered weight
        # is kept per input shape (and dropped when the weight tensor changes).
        self._packed: dict[tuple, Tensor] = {}

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state = dict(state)
        state["_packed"] = {}  # opaque oneDNN tensors are neither copied nor pickled
        state["_winograd_weights"] = {}  # derived from the weight; rebuilt on first use
        return state

    def algorithm(self, x: Tensor) -> str:
        """The algorithm this layer runs for input ``x`` in CPU fp32 inference."""
        if not self.winograd_ok:
            return "direct"
        if self.forced is not None:
            return self.forced
        if self.plan is None:
            return "direct"
        batch, c_in, height, width = x.shape
        return self.plan.algorithm(batch, c_in, self.weight.shape[0], height, width)

    def drop_winograd_weights(self, keep: set[int] | frozenset[int] = frozenset()) -> None:
        """Frees the transformed weights of the tiles not in ``keep`` (at m = 4 they are 4x the kernel)."""
        for tile in set(self._winograd_weights) - set(keep):
            del self._winograd_weights[tile]

    def _transformed_weight(self, tile: int, x: Tensor) -> WinogradWeight:
        key = (self.weight.data_ptr(), self.weight._version)
        cached = self._winograd_weights.get(tile)
        if cached is None or cached[0] != key:
            rows = output_tiles(tile, x.shape[0], x.shape[2], x.shape[3])
            cached = self._winograd_weights[tile] = (key, winograd_weight(self.weight, tile, pack_rows=rows))
        return cached[1]

    def _packed_weight(self, x: Tensor) -> Tensor:
        key = (tuple(x.shape), self.weight.data_ptr(), self.weight._version)
        packed = self._packed.get(key)
        if packed is None:
            packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
                self.weight.detach().to_mkldnn(), list(self.padding), list(self.stride), list(self.dilation),
                self.groups, list(x.shape),
            )
            if len(self._packed) >= 4:
                self._packed.clear()
            self._packed[key] = packed
        return packed

    def forward(self, x: Tensor) -> Tensor:
        cpu_inference = x.device.type == "cpu" and x.dtype == torch.float32 and not x.requires_grad
        tile = TILES[self.algorithm(x)] if cpu_inference else None
        if tile is not None:
            return winograd_conv3x3(x, self._transformed_weight(tile, x), self.bias, relu=True)
        if cpu_inference and _HAS_ONEDNN_POINTWISE:
            return torch.ops.mkldnn._convolution_pointwise(
                x, self._packed_weight(x), self.bias, self.padding, self.stride, self.dilation, self.groups, "relu",
                [], "",
            )
        return F.relu(F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups))


class _Linear(nn.Module):
    """A fully connected layer that runs as oneDNN's matmul with its weight packed once, in CPU fp32 inference.

    At batch 1 the five ``fc_pool`` layers read 38 MB of weights per patch: MKL's matrix-vector product (the
    ``F.linear`` path) reached 15 GB/s of the 30 a 2-core AMD EPYC reads, oneDNN's packed matmul about 20
    (0.64 against 0.86 ms for fc_pool4, and 0.64 against 1.1 ms at batch 8). Elsewhere it is ``F.linear``.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(linear.bias.detach().clone(), requires_grad=False) if linear.bias is not None else None
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self._packed: tuple[tuple, Tensor] | None = None

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state["_packed"] = None  # opaque oneDNN tensor; rebuilt on first use
        return state

    def forward(self, x: Tensor) -> Tensor:
        if (_HAS_ONEDNN_LINEAR and x.device.type == "cpu" and x.dtype == torch.float32 and not x.requires_grad
                and x.dim() == 2):
            key = (self.weight.data_ptr(), self.weight._version)
            if self._packed is None or self._packed[0] != key:
                self._packed = (key, torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), max(x.shape[0], 1)))
            return torch.ops.mkldnn._linear_pointwise(x, self._packed[1], self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


_HAS_ONEDNN_LINEAR = (
    torch.backends.mkldnn.is_available()
    and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
)

_HAS_ONEDNN_POINTWISE = (
    torch.backends.mkldnn.is_available()
    and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
    and hasattr(torch._C._nn, "mkldnn_reorder_conv2d_weight")
)


def fuse_for_inference(model: LesaNet, chunk: int | None = 8, plan: KernelPlan | None = None) -> LesaNet:
    """A copy of ``model`` for fast inference: BatchNorm folded into the convs, ReLU fused, eval mode, channels-last.

    Most callers want :class:`.InferenceModel`, which owns this copy, its device and its kernel choice. On CPU
    this also asks glibc to keep freed feature maps in the process (:func:`keep_freed_memory`), a process-wide
    allocator setting.

    Folding uses the BN running statistics, so outputs equal ``model.eval()`` outputs up to float rounding
    (about 1e-5). The copy has no ``bn`` entries and no gradients: train and save the original, not this one.

    Args:
        model: a trained LesaNet (left unchanged).
        chunk: run batches larger than this in slices of ``chunk`` patches (None: never split). On a 2-core CPU,
            slices of 4-8 were a few per cent faster per patch than one batch of 16-32 (activations stay in cache).
        plan: on CPU, the convolution algorithm per layer shape (:class:`.KernelPlan`, measured on this machine
            by :func:`.kernels.tune`); None runs oneDNN's direct convolution everywhere. Transformed Winograd
            weights are kept once used (up to 4x a layer's kernel bytes). Change it later with
            :func:`set_kernel_plan`.
    """
    if chunk is not None and (not isinstance(chunk, int) or chunk < 1):
        raise invalid("chunk", "must be a positive integer or None", chunk)
    fused = copy.deepcopy(model).eval()
    fused.inference_chunk = chunk
    for block, depth in enumerate(_BLOCK_DEPTHS, start=1):
        for layer in range(1, depth + 1):
            conv = getattr(fused, f"conv{block}_{layer}")
            bn = getattr(fused, f"bn{block}_{layer}")
            if isinstance(conv, _ConvReLU):
                continue
            setattr(fused, f"conv{block}_{layer}", _ConvReLU(conv, bn))
            setattr(fused, f"bn{block}_{layer}", nn.Identity())
            setattr(fused, f"relu{block}_{layer}", nn.Identity())
    for name, child in list(fused.named_children()):
        if type(child) is nn.Linear:  # fc_pool1..5, fc_emb, class_scores1/2
            setattr(fused, name, _Linear(child))
    set_kernel_plan(fused, plan)
    fused.to(memory_format=torch.channels_last)
    for param in fused.parameters():
        param.requires_grad_(False)
    if next(fused.parameters()).device.type == "cpu":
        keep_freed_memory()  # batched CPU inference otherwise page-faults its feature maps in again each time
    return fused


def set_kernel_plan(fused: LesaNet, plan: KernelPlan | None) -> None:
    """Gives every fused conv layer of ``fused`` the kernel plan ``plan`` (None: direct convolution)."""
    if plan is not None and not isinstance(plan, KernelPlan):
        raise invalid("plan", "must be a KernelPlan or None", type(plan).__name__)
    for layer in fused.modules():
        if isinstance(layer, _ConvReLU):
            layer.plan = plan
            layer.drop_winograd_weights()
