"""Batch-1 LesaNet inference on CUDA replayed from a CUDA graph.

Why: one annotation is one patch, and at batch 1 a GPU forward pass is launch-bound: ~60 kernels that each run
for microseconds, each paid a launch from Python (3.65 ms eager on an H200 against 0.39 ms per patch at batch
32). A CUDA graph records the launches once and replays them in one call. Replaying needs fixed shapes and no
host synchronisation, so the captured copy pools its RoIs with :func:`.roi_pool.roi_pool_static`; inputs are
copied into the graph's own buffers before each replay.

Unmeasured in the project's CI (no GPU there): ``scripts/gpu_check.sh`` reports graph and eager side by side.
"""

from __future__ import annotations

import copy

import torch

from ..errors import invalid
from .lesanet import LesaNet, LesaNetOutput


class GraphedBatchOne:
    """A fused LesaNet's batch-1 forward pass captured in a CUDA graph for one patch size.

    Args:
        model: a fused LesaNet on a CUDA device (copied; the copy pools RoIs without host synchronisation).
        height: patch height the graph is captured for.
        width: patch width.
        warmup: eager passes on a side stream before capture (cuDNN picks its algorithms there).
    """

    def __init__(self, model: LesaNet, height: int, width: int, warmup: int = 3) -> None:
        device = next(model.parameters()).device
        if device.type != "cuda":
            raise invalid("model", "must be on a CUDA device to be captured in a CUDA graph", str(device))
        self.model = copy.deepcopy(model).eval()
        self.model.static_roi = True
        self.shape = (height, width)
        self._images = torch.zeros(1, model.in_chans, height, width, device=device)
        self._boxes = torch.tensor([[0.0, 0.0, width - 1.0, height - 1.0]], device=device)
        stream = torch.cuda.Stream(device=device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.inference_mode(), torch.cuda.stream(stream):
            for _ in range(warmup):
                self.model(self._images, self._boxes)
        torch.cuda.current_stream(device).wait_stream(stream)
        self._graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self._graph):
            self._out: LesaNetOutput = self.model(self._images, self._boxes)

    def __call__(self, images: torch.Tensor, boxes: torch.Tensor) -> LesaNetOutput:
        """The output for one patch; its tensors are the graph's buffers, overwritten by the next call."""
        if tuple(images.shape[2:]) != self.shape or images.shape[0] != 1:
            raise invalid("images", f"must be (1, C, {self.shape[0]}, {self.shape[1]}) for this graph",
                          tuple(images.shape))
        self._images.copy_(images, non_blocking=True)
        self._boxes.copy_(boxes, non_blocking=True)
        self._graph.replay()
        return self._out


def cuda_graphs_available() -> tuple[bool, str]:
    """Whether batch-1 CUDA graphs can be used here, and if not, why (for messages and test skips)."""
    if not torch.cuda.is_available():
        return False, "CUDA graphs need a CUDA device; this machine has none"
    if not hasattr(torch.cuda, "CUDAGraph"):
        return False, f"this torch ({torch.__version__}) has no torch.cuda.CUDAGraph"
    return True, ""


def capture(model: LesaNet, height: int, width: int) -> tuple[GraphedBatchOne | None, RuntimeError | None]:
    """A :class:`GraphedBatchOne`, or None and the error when capture failed (the caller then runs eager)."""
    try:
        return GraphedBatchOne(model, height, width), None
    except RuntimeError as err:  # torch's CUDA errors are RuntimeErrors
        return None, err
