"""LesaNet's training losses: weighted cross-entropy, reliable hard example mining (RHEM) and the label-based
triplet loss, combined as in the released code: ``WCE(p1) + RHEM(p1) + 5 * triplet + WCE(p2)``.

``p1`` are the probabilities of ``class_scores1``, ``p2`` those after the score propagation layer. Targets are
text-mined: ``valid`` marks the entries that may be trusted at all (False = uncertain, weight 0) and
``reliable`` the entries RHEM may mine (the positives and the labels exclusive to a positive, whose negatives
the ontology guarantees). Every component can be switched off for the paper's ablations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..errors import invalid

if TYPE_CHECKING:
    from torch import Generator, Tensor

    from .lesanet import LesaNetOutput


@dataclass(frozen=True)
class LossConfig:
    """Which loss components are on, and their constants (defaults: the reference's ``config.yml``).

    Attributes:
        wce: class-balanced weights in the cross-entropy; off = plain (unit-weight) cross-entropy that still
            ignores uncertain entries (the "w/o weighting" ablation; the classification loss itself stays).
        rhem: add the RHEM term on ``p1``.
        spl: add the cross-entropy on the SPL probabilities ``p2`` (needs a model built with ``use_spl``).
        triplet: add the triplet term, scaled by ``triplet_weight``.
        weight_clamp: upper bound of the positive class weight.
        rhem_samples: entries drawn (with replacement) per batch.
        rhem_gamma: sampling probability is proportional to ``|p - y| ** rhem_gamma``.
        triplet_count: triplets drawn per batch.
        triplet_margin: margin on the L2 distance of embeddings.
        triplet_weight: factor of the triplet term in the total.
        triplet_sim_threshold: label similarity from which a sample counts as a positive for an anchor.
        eps: probabilities are clamped to ``[eps, 1 - eps]`` before the logarithm.
        wce_normalize: ``"all"`` divides the weighted sum by all ``B * C`` entries as the reference's
            ``torch.mean`` does (uncertain entries count in the denominator with weight 0); ``"valid"``
            divides by the number of valid entries instead.
    """

    wce: bool = True
    rhem: bool = True
    spl: bool = True
    triplet: bool = True
    weight_clamp: float = 300.0
    rhem_samples: int = 10000
    rhem_gamma: float = 2.0
    triplet_count: int = 5000
    triplet_margin: float = 0.1
    triplet_weight: float = 5.0
    triplet_sim_threshold: float = 1.0
    eps: float = 1e-7
    wce_normalize: str = "all"

    def __post_init__(self) -> None:
        for name in ("rhem_samples", "triplet_count"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise invalid(name, "must be a positive integer", value)
        for name in ("weight_clamp", "triplet_weight", "eps", "rhem_gamma"):
            if not getattr(self, name) > 0:
                raise invalid(name, "must be > 0", getattr(self, name))
        if not 0 < self.eps < 0.5:
            raise invalid("eps", "must be in (0, 0.5)", self.eps)
        if self.triplet_margin < 0:
            raise invalid("triplet_margin", "must be >= 0", self.triplet_margin)
        if self.wce_normalize not in ("all", "valid"):
            raise invalid("wce_normalize", "must be 'all' or 'valid'", self.wce_normalize)


def class_weights(positives: Tensor, valid: Tensor, clamp: float = 300.0) -> tuple[Tensor, Tensor]:
    """Per-label weights that balance positives and negatives, computed once on the training set.

    With ``N`` valid entries of label ``c`` of which ``P_c`` are positive and ``N_c`` negative, the positive
    weight is ``N / (2 P_c)`` clamped at ``clamp`` (rare labels would otherwise dominate) and the negative weight
    ``N / (2 N_c)``; each side then carries half of the label's total weight. With every entry valid, ``N`` is
    the number of training lesions, exactly as in the reference. A label without negatives gets negative weight
    ``N / 2`` (it is never used).

    Args:
        positives: ``(N, C)`` bool, training targets.
        valid: ``(N, C)`` bool, False where the label is uncertain.
        clamp: upper bound of the positive weight.

    Returns:
        ``(pos_w, neg_w)``, each ``(C,)`` float32.

    Example:
        >>> pos = torch.tensor([[1, 0], [0, 0], [0, 0], [0, 1]], dtype=torch.bool)
        >>> pos_w, neg_w = class_weights(pos, torch.ones_like(pos))
        >>> pos_w.tolist(), [round(w, 4) for w in neg_w.tolist()]
        ([2.0, 2.0], [0.6667, 0.6667])
    """
    if positives.dim() != 2:
        raise invalid("positives", "must be an (N, C) tensor", tuple(positives.shape))
    if valid.shape != positives.shape:
        raise invalid("valid", f"must have the shape of positives {tuple(positives.shape)}", tuple(valid.shape))
    if not clamp > 0:
        raise invalid("clamp", "must be > 0", clamp)
    positives = positives.bool()
    valid = valid.bool()
    pos_count = (positives & valid).sum(0).to(torch.float32)
    neg_count = (~positives & valid).sum(0).to(torch.float32)
    total = pos_count + neg_count
    pos_w = torch.clamp(total / (2 * pos_count), max=clamp)  # P_c = 0 gives inf, clamped
    neg_w = total / (2 * neg_count.clamp(min=1))
    return pos_w, neg_w


def weighted_ce(
    probs: Tensor,
    targets: Tensor,
    pos_w: Tensor,
    neg_w: Tensor,
    valid: Tensor,
    eps: float = 1e-7,
    normalize: str = "all",
) -> Tensor:
    """Class-weighted binary cross-entropy on probabilities, ignoring uncertain entries.

    ``-sum(w * (y log p + (1 - y) log(1 - p))) / n`` with ``p`` clamped to ``[eps, 1 - eps]``,
    ``w = valid * (y * pos_w + (1 - y) * neg_w)`` and ``n = B * C`` (``normalize="all"``, the reference's
    ``torch.mean``) or the number of valid entries (``normalize="valid"``).

    Args:
        probs: ``(B, C)`` probabilities.
        targets: ``(B, C)`` 0/1 float.
        pos_w: ``(C,)`` positive weights (ones for plain cross-entropy).
        neg_w: ``(C,)`` negative weights.
        valid: ``(B, C)`` bool, False = uncertain.
        eps: probability clamp.
        normalize: ``"all"`` or ``"valid"``.
    """
    _check_pair("probs", probs, "targets", targets)
    _check_pair("probs", probs, "valid", valid)
    if normalize not in ("all", "valid"):
        raise invalid("normalize", "must be 'all' or 'valid'", normalize)
    targets = targets.to(probs.dtype)
    p = probs.clamp(min=eps, max=1 - eps)
    weight = valid.to(probs.dtype) * (targets * pos_w.to(probs) + (1 - targets) * neg_w.to(probs))
    total = -(weight * (targets * torch.log(p) + (1 - targets) * torch.log1p(-p))).sum()
    count = probs.numel() if normalize == "all" else valid.sum().clamp(min=1)
    return total / count


def rhem_loss(
    probs: Tensor,
    targets: Tensor,
    reliable: Tensor,
    samples: int = 10000,
    gamma: float = 2.0,
    generator: Generator | None = None,
    eps: float = 1e-7,
) -> Tensor:
    """Reliable hard example mining: cross-entropy on reliable entries drawn in proportion to their error.

    ``samples`` entries are drawn with replacement, each reliable entry with probability proportional to
    ``|p - y| ** gamma`` (unreliable entries have probability 0 and are never drawn); the loss is the
    unweighted mean binary cross-entropy of the draws. Hard entries are thus seen many times. Returns a zero
    (differentiable) loss when the batch has no reliable entry.

    Args:
        probs: ``(B, C)`` probabilities ``p1``.
        targets: ``(B, C)`` 0/1 float.
        reliable: ``(B, C)`` bool: positives and the labels exclusive to a positive.
        samples: draws per batch.
        gamma: hardness exponent.
        generator: random generator (on the tensors' device) for reproducible draws.
        eps: probability clamp.
    """
    _check_pair("probs", probs, "targets", targets)
    _check_pair("probs", probs, "reliable", reliable)
    targets = targets.to(probs.dtype)
    p = probs.clamp(min=eps, max=1 - eps)
    with torch.no_grad():
        hardness = (torch.abs(p - targets) ** gamma) * reliable.to(probs.dtype)
        flat = hardness.reshape(-1)
        if not bool((flat > 0).any()):
            return probs.sum() * 0.0
        # Draw where the generator lives (a CPU generator may drive a CUDA batch), then index on the batch's device.
        sample_device = generator.device if generator is not None else flat.device
        index = torch.multinomial(flat.float().to(sample_device), samples, replacement=True, generator=generator)
        index = index.to(flat.device)
    p = p.reshape(-1)[index]
    y = targets.reshape(-1)[index]
    return -(y * torch.log(p) + (1 - y) * torch.log1p(-p)).mean()


def label_similarity(targets: Tensor) -> Tensor:
    """``sim(A, B) = |X ∩ Y| ** 2 / |X ∪ Y|`` between the label sets of every pair, ``(B, B)``; 0 when both are empty.

    Example:
        >>> label_similarity(torch.tensor([[1.0, 1, 0], [1, 0, 1]]))[0, 1].item()  # 1 ** 2 / 3
        0.3333333432674408
    """
    t = (targets > 0).to(torch.float32)
    inter = t @ t.T
    counts = t.sum(1)
    union = counts[:, None] + counts[None, :] - inter
    return torch.where(union > 0, inter * inter / union.clamp(min=1), torch.zeros_like(inter))


def select_triplets(
    targets: Tensor, count: int, sim_threshold: float = 1.0, generator: Generator | None = None
) -> tuple[Tensor, Tensor, Tensor] | None:
    """Draws ``count`` (anchor, positive, negative) index triplets by label similarity.

    Anchors are drawn uniformly among samples with at least one label. For anchor A the positive B is drawn
    uniformly among the other samples with ``sim(A, B) >= sim_threshold``, or is the most similar other sample
    when none qualifies; the negative C is drawn uniformly among samples with ``sim(A, C) < sim(A, B)``, or is
    the least similar when none qualifies (ties keep the first index, like NumPy's ``nanargmax``).

    Returns:
        Three ``(count,)`` int64 tensors, or None when the batch has fewer than two samples or no labelled one.
    """
    n = targets.shape[0]
    device = generator.device if generator is not None else targets.device
    sim = label_similarity(targets).to(device)
    anchors_pool = torch.nonzero((targets > 0).any(dim=1).to(device)).flatten()
    if n < 2 or anchors_pool.numel() == 0:
        return None
    pick = torch.randint(anchors_pool.numel(), (count,), generator=generator, device=device)
    anchor = anchors_pool[pick]
    rows = sim[anchor]  # (T, B)
    other = torch.ones_like(rows, dtype=torch.bool)
    other[torch.arange(count, device=device), anchor] = False
    inf = torch.tensor(float("inf"), device=device)

    def uniform_choice(candidates: Tensor) -> Tensor:
        # Uniform among the True columns of each row: the argmax of random keys on those columns.
        keys = torch.rand(candidates.shape, generator=generator, device=device)
        return torch.where(candidates, keys, -1.0).argmax(dim=1)

    pos_candidates = other & (rows >= sim_threshold)
    most_similar = torch.where(other, rows, -inf).argmax(dim=1)
    positive = torch.where(pos_candidates.any(dim=1), uniform_choice(pos_candidates), most_similar)
    sim_ap = rows.gather(1, positive[:, None])
    neg_candidates = other & (rows < sim_ap)
    least_similar = torch.where(other, rows, inf).argmin(dim=1)
    negative = torch.where(neg_candidates.any(dim=1), uniform_choice(neg_candidates), least_similar)
    return anchor, positive, negative


def triplet_loss(
    embedding: Tensor,
    targets: Tensor,
    count: int = 5000,
    margin: float = 0.1,
    sim_threshold: float = 1.0,
    generator: Generator | None = None,
) -> Tensor:
    """Triplet margin loss on L2 distances of embeddings, with triplets chosen by :func:`select_triplets`.

    ``mean(max(d(A, B) - d(A, C) + margin, 0))`` (PyTorch's ``triplet_margin_loss``, as the reference's
    ``nn.TripletMarginLoss``); zero when no triplet can be formed.
    """
    if embedding.dim() != 2 or embedding.shape[0] != targets.shape[0]:
        raise invalid("embedding", f"must be ({targets.shape[0]}, D)", tuple(embedding.shape))
    triplets = select_triplets(targets, count, sim_threshold, generator)
    if triplets is None:
        return embedding.sum() * 0.0
    a, p, n = (t.to(embedding.device) for t in triplets)
    return F.triplet_margin_loss(embedding[a], embedding[p], embedding[n], margin=margin)


def lesanet_loss(
    out: LesaNetOutput,
    targets: Tensor,
    valid: Tensor,
    reliable: Tensor,
    pos_w: Tensor,
    neg_w: Tensor,
    cfg: LossConfig | None = None,
    generator: Generator | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The full LesaNet loss ``WCE(p1) + RHEM(p1) + triplet_weight * triplet + WCE(p2)``, per ``cfg``.

    Args:
        out: the model's output on the batch.
        targets: ``(B, C)`` 0/1 float training labels.
        valid: ``(B, C)`` bool, False = uncertain (no cross-entropy weight).
        reliable: ``(B, C)`` bool, entries RHEM may mine.
        pos_w: ``(C,)`` from :func:`class_weights` on the training set.
        neg_w: ``(C,)``.
        cfg: components and constants; the defaults are the reference's.
        generator: random generator for RHEM and triplet draws.

    Returns:
        The total (differentiable) and a dict of the float values of ``wce1``, ``rhem``, ``triplet``, ``wce2``
        (those switched on) and ``total``.
    """
    cfg = cfg or LossConfig()
    if cfg.spl and out.logits2 is out.logits1:
        raise invalid("cfg.spl", "needs a model built with use_spl=True (set LossConfig(spl=False) otherwise)", True)
    if not cfg.wce:
        pos_w = torch.ones_like(pos_w)
        neg_w = torch.ones_like(neg_w)
    probs1 = torch.sigmoid(out.logits1)
    terms: dict[str, Tensor] = {
        "wce1": weighted_ce(probs1, targets, pos_w, neg_w, valid, cfg.eps, cfg.wce_normalize)
    }
    if cfg.rhem:
        terms["rhem"] = rhem_loss(probs1, targets, reliable, cfg.rhem_samples, cfg.rhem_gamma, generator, cfg.eps)
    if cfg.triplet:
        terms["triplet"] = triplet_loss(
            out.embedding, targets, cfg.triplet_count, cfg.triplet_margin, cfg.triplet_sim_threshold, generator
        )
    if cfg.spl:
        terms["wce2"] = weighted_ce(out.probs, targets, pos_w, neg_w, valid, cfg.eps, cfg.wce_normalize)
    total = sum(cfg.triplet_weight * value if name == "triplet" else value for name, value in terms.items())
    values = {name: float(value.detach()) for name, value in terms.items()}
    values["total"] = float(total.detach())
    return total, values


def _check_pair(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    if a.dim() != 2:
        raise invalid(name_a, "must be a (B, C) tensor", tuple(a.shape))
    if b.shape != a.shape:
        raise invalid(name_b, f"must have the shape of {name_a} {tuple(a.shape)}", tuple(b.shape))
