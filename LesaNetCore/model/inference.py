"""The one inference path: a trained LesaNet as the Annotator, evaluation, index building, validation and the
bench run it.

:class:`InferenceModel` owns what used to be managed by each caller: the fused copy (BN folded, ReLU fused,
channels-last; :func:`.lesanet.fuse_for_inference`), the device, the CPU kernel choice (:mod:`.kernels`: the
plan measured on this machine, measured on first use of a batch size when none is cached), and on CUDA the
batch-1 CUDA graph (:mod:`.cuda_graph`). Every caller thus computes the same numbers: thresholds calibrated in
validation and evaluation fit the scores the Annotator shows.

Example:
    >>> import numpy as np
    >>> from LesaNetCore.model import create_model
    >>> net = InferenceModel(create_model("lesanet_demo", num_labels=3), kernels="direct")
    >>> probs, emb = net.predict(np.zeros((2, 3, 64, 64), np.float32), np.array([[8, 8, 40, 40]] * 2, np.float32))
    >>> probs.shape, emb.shape
    ((2, 3), (2, 256))
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from ..errors import LesaNetError, invalid
from .kernel_plan import KernelPlan
from .lesanet import LesaNet, LesaNetOutput, fuse_for_inference, set_kernel_plan

KERNEL_MODES = ("auto", "cached", "direct")
_LOG = logging.getLogger("LesaNetCore.model.inference")


class InferenceModel:
    """A trained LesaNet ready for inference on one device.

    Args:
        model: a LesaNet (left unchanged; it may be in training mode, on any device).
        device: where inference runs (``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``).
        kernels: on CPU, which convolution algorithms run: ``"auto"`` (the plan cached for this machine; a batch
            size the cache lacks is measured on its first use, about 1-2 s at batch 1 and 5-8 s at batch 8 for
            the full network, once per machine; ``$LESANET_TUNE=off`` turns that off), ``"cached"`` (the cache
            only, never measure), ``"direct"`` (oneDNN direct convolution everywhere), or a
            :class:`.KernelPlan`.
        chunk: CPU batches run in slices of this many patches (activations stay in cache); it is also the batch
            size whose kernels are measured for batched inference.
        cuda_graph: on CUDA, replay batch-1 passes from a CUDA graph (captured on the first batch-1 call; eager
            if capture fails, with a warning).
        lazy_batches: with ``kernels="auto"``, the batch sizes (1 and/or ``chunk``) measured on first use when the
            cache lacks them; a call of 2 to ``chunk - 1`` patches counts as ``chunk``. The Annotator passes
            ``(1,)``: a first multi-box annotation should not wait for the batch-8 measurement (7.7 s here).

    Attributes:
        tuning: the :class:`.kernels.TuneResult` of each measurement this object ran (empty when none ran).
        use_cuda_graph: whether batch-1 CUDA passes replay a graph (set False to time them eager).
    """

    def __init__(self, model: LesaNet, device: str | torch.device = "cpu", *, kernels: str | KernelPlan = "auto",
                 chunk: int = 8, cuda_graph: bool = True, lazy_batches: tuple[int, ...] | None = None) -> None:
        if not isinstance(model, LesaNet):
            raise invalid("model", "must be a LesaNet", type(model).__name__)
        if not isinstance(kernels, KernelPlan) and kernels not in KERNEL_MODES:
            raise invalid("kernels", f"must be one of {KERNEL_MODES} or a KernelPlan", kernels)
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise invalid("device", "must be a device torch accepts ('cpu', 'cuda', 'cuda:N')", device) from err
        cpu = self.device.type == "cpu"
        self.module = fuse_for_inference(model, chunk=chunk if cpu else None).to(self.device)
        self.mode = kernels if isinstance(kernels, str) else "plan"
        self.plan: KernelPlan | None = None
        if cpu and kernels in ("auto", "cached"):
            from .kernels import cached_plan

            self.plan = cached_plan()
        elif isinstance(kernels, KernelPlan):
            self.plan = kernels
        set_kernel_plan(self.module, self.plan)
        self.chunk = chunk
        self.lazy_batches = tuple(lazy_batches) if lazy_batches is not None else (1, chunk)
        self.tuning: list[Any] = []
        self._checked: set[tuple[int, int, int]] = set()
        self.use_cuda_graph = bool(cuda_graph) and self.device.type == "cuda"
        self._graphs: dict[tuple[int, int], Any] = {}

    @property
    def num_labels(self) -> int:
        return self.module.num_labels

    @property
    def emb_dim(self) -> int:
        return self.module.emb_dim

    # ------------------------------------------------------------------------------------------- kernels
    def tune(self, batches: tuple[int, ...] | None = None, height: int = 120, width: int = 120,
             echo: Any = None, budget_s: Any = None) -> Any:
        """Measures the kernels for ``batches`` (default 1 and ``chunk``) now, caches and uses the choice.

        ``echo`` and ``budget_s`` are passed to :func:`.kernels.tune`.
        """
        from .kernels import store, tune

        if self.device.type != "cpu":
            raise invalid("device", "must be the CPU to choose CPU kernels", str(self.device))
        result = tune(self.module, batches or tuple(sorted({1, self.chunk})), height, width, echo=echo,
                      budget_s=budget_s)
        try:
            store(result)
        except LesaNetError as err:  # a read-only cache costs a measurement next time, not the annotation
            _LOG.warning("%s", err)
        self.tuning.append(result)
        self.plan = (self.plan or KernelPlan()).merged(result.plan)
        set_kernel_plan(self.module, self.plan)
        return result

    def _ensure_kernels(self, batch: int, height: int, width: int) -> None:
        """On first use of a batch size, measure its kernels unless the cache has them (``kernels="auto"``)."""
        from .kernels import cache_file, conv_shapes, tuning_enabled

        size = 1 if batch == 1 else self.chunk
        if size not in self.lazy_batches or (size, height, width) in self._checked:
            return
        self._checked.add((size, height, width))
        shapes = list(conv_shapes(self.module, size, height, width).values())
        if not shapes or (self.plan is not None and self.plan.covers(shapes)) or not tuning_enabled():
            return
        # ``panel``: the short text a GUI shows while it waits (the Slicer worker forwards it to the status line).
        _LOG.info("choosing CPU convolution kernels for batch %d on this machine (once, a few seconds; saved in "
                  "%s; `lesanet tune` does it ahead)", size, cache_file(),
                  extra={"panel": "Measuring the fastest convolution kernels for this computer (once, a few "
                                  "seconds)..."})
        result = self.tune((size,), height, width)
        _LOG.info("kernels for batch %d chosen in %.1f s", size, result.seconds)

    # ----------------------------------------------------------------------------------------- inference
    def forward(self, images: torch.Tensor, boxes: torch.Tensor) -> LesaNetOutput:
        """The network's output for normalised patches ``(B, C, H, W)`` and boxes ``(B, 4)`` (any device).

        On CUDA at batch 1 with a graph, the output's tensors are the graph's buffers: read them before the
        next call.
        """
        if images.dim() != 4 or boxes.dim() != 2 or boxes.shape != (images.shape[0], 4):
            raise invalid("images/boxes", "must be (B, C, H, W) patches and (B, 4) boxes",
                          (tuple(images.shape), tuple(boxes.shape)))
        batch, _, height, width = images.shape
        if self.mode == "auto" and self.device.type == "cpu":
            self._ensure_kernels(batch, height, width)
        # NCHW input: the fused first conv reads 3 channels faster that way (its output is channels-last).
        images = images.to(self.device, dtype=torch.float32, non_blocking=True)
        boxes = boxes.to(self.device, dtype=torch.float32, non_blocking=True)
        with torch.inference_mode():
            if self.use_cuda_graph and batch == 1:
                graph = self._graph(height, width)
                if graph is not None:
                    return graph(images, boxes)
            return self.module(images, boxes)

    __call__ = forward

    def _graph(self, height: int, width: int) -> Any:
        from .cuda_graph import capture

        key = (height, width)
        if key not in self._graphs:
            graph, error = capture(self.module, height, width)
            if error is not None:
                _LOG.warning("CUDA graph capture failed (%s); batch-1 inference runs eager", error)
            self._graphs[key] = graph
        return self._graphs[key]

    def predict(self, images: np.ndarray | torch.Tensor,
                boxes: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities ``(N, C)`` and embeddings ``(N, D)`` as float32 arrays for normalised patches."""
        x = images if isinstance(images, torch.Tensor) else torch.from_numpy(
            np.ascontiguousarray(images, dtype=np.float32))
        b = boxes if isinstance(boxes, torch.Tensor) else torch.from_numpy(np.asarray(boxes, dtype=np.float32))
        out = self.forward(x, b)
        return out.probs.float().cpu().numpy(), out.embedding.float().cpu().numpy()

    def predict_dataset(self, dataset: Any, batch_size: int, *, progress: bool = False, desc: str = "predict",
                        return_embeddings: bool = False) -> Any:
        """SPL probabilities ``(N, C)`` float64 of every item (``image``, ``box``) of ``dataset``, in order.

        With ``return_embeddings`` also the embeddings ``(N, D)`` float32, as evaluation and index building need.
        """
        from torch.utils.data import DataLoader
        from tqdm import tqdm

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise invalid("batch_size", "must be a positive integer", batch_size)
        probs, embeddings = [], []
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
        started = time.perf_counter()
        for batch in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False):
            p, e = self.predict(batch["image"], batch["box"])
            probs.append(p)
            if return_embeddings:
                embeddings.append(e)
        _LOG.debug("%s: %d items in %.1f s", desc, sum(len(p) for p in probs), time.perf_counter() - started)
        probs_array = (np.concatenate(probs).astype(np.float64) if probs
                       else np.zeros((0, self.num_labels), dtype=np.float64))
        if not return_embeddings:
            return probs_array
        emb_array = np.concatenate(embeddings) if embeddings else np.zeros((0, self.emb_dim), dtype=np.float32)
        return probs_array, emb_array.astype(np.float32, copy=False)
