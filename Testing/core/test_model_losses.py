"""LesaNet losses against hand-computed values on tiny cases."""

from __future__ import annotations

import math

import pytest
import torch

from LesaNetCore.errors import LesaNetError
from LesaNetCore.model import (
    LesaNet,
    LossConfig,
    class_weights,
    label_similarity,
    lesanet_loss,
    rhem_loss,
    select_triplets,
    triplet_loss,
    weighted_ce,
)


def test_class_weights_balance_and_clamp():
    positives = torch.zeros(1000, 3, dtype=torch.bool)
    positives[:100, 0] = True  # 10 % positive
    positives[:1, 1] = True  # 1 positive in 1000: 500 clamped to 300
    valid = torch.ones_like(positives)
    valid[500:, 2] = False  # label 2: 500 valid entries, no positive
    pos_w, neg_w = class_weights(positives, valid, clamp=300.0)
    assert pos_w.tolist() == pytest.approx([1000 / 200, 300.0, 300.0])
    assert neg_w.tolist() == pytest.approx([1000 / 1800, 1000 / 1998, 500 / 1000])


def test_weighted_ce_hand_computed_with_clamp_weights_and_uncertain():
    probs = torch.tensor([[0.9, 0.0], [0.2, 1.0]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    valid = torch.tensor([[True, True], [True, False]])
    pos_w, neg_w = torch.tensor([2.0, 3.0]), torch.tensor([0.5, 0.25])
    eps = 1e-7
    # entry (0,1): p clamped to eps, y=0 -> -log(1-eps) * 0.25; entry (1,1) uncertain -> weight 0.
    expected_sum = 2.0 * -math.log(0.9) + 0.25 * -math.log(1 - eps) + 2.0 * -math.log(0.2)
    got_all = weighted_ce(probs, targets, pos_w, neg_w, valid, eps)
    got_valid = weighted_ce(probs, targets, pos_w, neg_w, valid, eps, normalize="valid")
    assert got_all.item() == pytest.approx(expected_sum / 4, rel=1e-5)
    assert got_valid.item() == pytest.approx(expected_sum / 3, rel=1e-5)
    # A confident wrong positive is bounded by the clamp instead of being infinite.
    worst = weighted_ce(torch.tensor([[0.0]]), torch.tensor([[1.0]]), torch.ones(1), torch.ones(1),
                        torch.ones(1, 1, dtype=torch.bool), eps)
    assert worst.item() == pytest.approx(-math.log(eps), rel=1e-3)


def test_rhem_never_draws_unreliable_entries_and_prefers_hard_ones():
    probs = torch.tensor([[0.9, 0.5, 0.1, 0.99], [0.3, 0.6, 0.8, 0.05]], requires_grad=True)
    targets = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]])
    reliable = torch.tensor([[True, True, False, False], [True, False, True, True]])
    gen = torch.Generator().manual_seed(0)
    hardness = ((probs.detach() - targets).abs() ** 2) * reliable
    counts = torch.zeros(8)
    for _ in range(20):
        flat = hardness.flatten()
        idx = torch.multinomial(flat, 10000, replacement=True, generator=gen)
        counts += torch.bincount(idx, minlength=8)
    assert counts[~reliable.flatten()].sum() == 0  # the sampler rhem_loss uses never picks unreliable cells
    expected_freq = hardness.flatten() / hardness.sum()
    torch.testing.assert_close(counts / counts.sum(), expected_freq, atol=5e-3, rtol=0)

    # rhem_loss itself: with one reliable entry every draw is that entry, so the loss is its BCE.
    only = torch.zeros(2, 4, dtype=torch.bool)
    only[1, 2] = True
    loss = rhem_loss(probs, targets, only, samples=500, gamma=2.0, generator=gen)
    assert loss.item() == pytest.approx(-math.log(0.8), rel=1e-5)
    loss.backward()
    grad = probs.grad
    assert grad[1, 2] != 0 and int((grad != 0).sum()) == 1  # no gradient ever reaches an unreliable entry


def test_rhem_with_unreliable_mask_over_many_draws_matches_expectation():
    gen = torch.Generator().manual_seed(1)
    probs = torch.rand(6, 5, generator=gen).clamp(0.05, 0.95)
    targets = (torch.rand(6, 5, generator=gen) < 0.4).float()
    reliable = torch.rand(6, 5, generator=gen) < 0.5
    reliable[0, 0] = True
    bce = -(targets * probs.log() + (1 - targets) * (1 - probs).log())
    w = ((probs - targets).abs() ** 2) * reliable
    expected = float((w * bce).sum() / w.sum())  # E[loss] under the sampling distribution
    draws = torch.stack([rhem_loss(probs, targets, reliable, 10000, 2.0, gen) for _ in range(10)])
    assert draws.mean().item() == pytest.approx(expected, rel=0.02)
    # Changing an unreliable entry's probability cannot change the loss (it is never sampled).
    changed = probs.clone()
    changed[~reliable] = 0.5
    same_gen = [torch.Generator().manual_seed(7) for _ in range(2)]
    a = rhem_loss(probs, targets, reliable, 1000, 2.0, same_gen[0])
    b = rhem_loss(changed, targets, reliable, 1000, 2.0, same_gen[1])
    assert a.item() == pytest.approx(b.item())


def test_label_similarity_is_squared_intersection_over_union():
    t = torch.tensor([[1.0, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]])
    sim = label_similarity(t)
    assert sim[0, 1].item() == pytest.approx(4 / 3)  # |{0,1}|^2 / |{0,1,2}|
    assert sim[0, 2].item() == 0 and sim[3, 3].item() == 0
    assert sim[0, 0].item() == pytest.approx(3.0)


def test_triplet_selection_rules_on_a_hand_made_batch():
    #   0: {a,b,c}   1: {a,b} (sim 4/3 with 0)   2: {a} (sim 1/3)   3: {d} (0)   4: {} (no labels, never an anchor)
    t = torch.tensor([[1.0, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]])
    sim = label_similarity(t)
    gen = torch.Generator().manual_seed(0)
    a, p, n = select_triplets(t, 4000, sim_threshold=1.0, generator=gen)
    assert set(a.tolist()) == {0, 1, 2, 3}  # every labelled sample anchors; sample 4 never does
    assert bool((a != p).all()) and bool((a != n).all())
    for anchor in range(4):
        rows = a == anchor
        sims = sim[anchor]
        candidates = [j for j in range(5) if j != anchor and sims[j] >= 1.0]
        if candidates:
            assert set(p[rows].tolist()) == set(candidates)  # drawn among all sim >= 1
        else:  # none similar enough: the most similar other sample
            best = max((j for j in range(5) if j != anchor), key=lambda j: (sims[j].item(), -j))
            assert set(p[rows].tolist()) == {best}
        for pos, neg in zip(p[rows].tolist(), n[rows].tolist(), strict=True):
            lower = [j for j in range(5) if j != anchor and sims[j] < sims[pos]]
            if lower:
                assert neg in lower
            else:
                least = min((j for j in range(5) if j != anchor), key=lambda j: (sims[j].item(), j))
                assert neg == least
    # anchor 0's positive must be 1 (the only sim >= 1) and its negatives span {2, 3, 4}
    assert set(n[a == 0].tolist()) == {2, 3, 4}
    assert select_triplets(torch.zeros(3, 2), 10) is None


def test_triplet_loss_value_on_known_embeddings():
    t = torch.tensor([[1.0, 0], [1, 0], [0, 1]])
    emb = torch.tensor([[1.0, 0], [0.0, 1.0], [1.0, 0.0]])
    # Anchor 0: positive 1 (sim 1, distance sqrt2), negative 2 (sim 0, distance 0) -> sqrt2 + 0.1.
    # Anchor 1: positive 0, negative 2, both at distance sqrt2 -> 0.1.
    # Anchor 2: nothing similar -> positive is the most similar (0, first index); nothing less similar ->
    # negative is the least similar (0 again) -> 0.1.
    gen = torch.Generator().manual_seed(0)
    a, p, n = select_triplets(t, 3000, generator=gen)
    assert set(zip(a.tolist(), p.tolist(), n.tolist(), strict=True)) == {(0, 1, 2), (1, 0, 2), (2, 0, 0)}
    loss = triplet_loss(emb, t, count=3000, margin=0.1, generator=torch.Generator().manual_seed(0))
    per_anchor = {0: math.sqrt(2) + 0.1, 1: 0.1, 2: 0.1}
    expected = sum(per_anchor[i] for i in a.tolist()) / len(a)  # same generator seed, same anchors
    assert loss.item() == pytest.approx(expected, rel=1e-4)


def test_lesanet_loss_combines_terms_and_switches_them_off():
    torch.manual_seed(0)
    model = LesaNet(6, widths=(4, 4, 8, 8, 8), fc_dim=8, emb_dim=6)
    out = model(torch.randn(4, 3, 32, 32), torch.tensor([[4.0, 4.0, 20.0, 20.0]] * 4))
    targets = torch.tensor([[1.0, 0, 0, 1, 0, 0], [0, 1, 0, 0, 0, 0], [1, 0, 0, 1, 0, 1], [0, 0, 1, 0, 0, 0]])
    valid = torch.ones_like(targets, dtype=torch.bool)
    valid[0, 5] = False
    reliable = targets.bool() | torch.tensor([[False, True, False, False, False, False]] * 4)
    pos_w, neg_w = class_weights(targets.bool(), valid)
    total, parts = lesanet_loss(out, targets, valid, reliable, pos_w, neg_w, LossConfig(),
                                generator=torch.Generator().manual_seed(0))
    assert set(parts) == {"wce1", "rhem", "triplet", "wce2", "total"}
    assert total.item() == pytest.approx(parts["wce1"] + parts["rhem"] + 5 * parts["triplet"] + parts["wce2"],
                                         rel=1e-5)
    assert parts["wce1"] == pytest.approx(parts["wce2"], rel=1e-5)  # SPL is the identity at init
    total.backward()
    assert model.class_scores2.weight.grad is not None and model.conv1_1.weight.grad is not None

    _, ablated = lesanet_loss(out, targets, valid, reliable, pos_w, neg_w,
                              LossConfig(rhem=False, triplet=False, spl=False))
    assert set(ablated) == {"wce1", "total"}
    _, plain = lesanet_loss(out, targets, valid, reliable, pos_w, neg_w, LossConfig(wce=False, rhem=False,
                                                                                     triplet=False, spl=False))
    ones = torch.ones(6)
    assert plain["wce1"] == pytest.approx(weighted_ce(torch.sigmoid(out.logits1), targets, ones, ones,
                                                      valid).item(), rel=1e-6)


def test_lesanet_loss_rejects_spl_term_without_spl_layer_and_bad_config():
    model = LesaNet(3, widths=(4, 4, 4, 4, 4), fc_dim=4, emb_dim=4, use_spl=False)
    out = model(torch.randn(2, 3, 32, 32), torch.tensor([[4.0, 4.0, 20.0, 20.0]] * 2))
    t = torch.zeros(2, 3)
    with pytest.raises(LesaNetError, match="use_spl"):
        lesanet_loss(out, t, t.bool(), t.bool(), torch.ones(3), torch.ones(3), LossConfig())
    total, parts = lesanet_loss(out, t, t.bool(), t.bool(), torch.ones(3), torch.ones(3), LossConfig(spl=False))
    assert parts["rhem"] == 0 and parts["triplet"] == 0  # nothing reliable, no labelled anchor
    with pytest.raises(LesaNetError, match="rhem_samples"):
        LossConfig(rhem_samples=0)
    with pytest.raises(LesaNetError, match="targets"):
        weighted_ce(torch.zeros(2, 3), torch.zeros(3, 2), torch.ones(3), torch.ones(3), torch.ones(2, 3).bool())
