"""The trained-network numerics check of the kernel choice, on a tiny phantom-trained demo network."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_no_decision_changes_with_the_kernel_choice(tmp_path):
    from LesaNetCore.bench.numerics import kernel_numerics, main
    from LesaNetCore.phantom import synthesize
    from LesaNetCore.pipeline.prepare import prepare
    from LesaNetCore.training import TrainConfig, apply_overrides, train

    phantom = synthesize(tmp_path / "phantom", 40, seed=3, n_volumes=1, progress=False).out_dir
    prepare(phantom, tmp_path / "data", min_positives=2, method="rules", progress=False)
    config = apply_overrides(TrainConfig(), ["arch=lesanet_demo", "epochs=1", "batch_size=16", "device=cpu",
                                             "workers=0", "amp=off", "channels_last=false",
                                             "loss.rhem_samples=200", "loss.triplet_count=50"])
    train(config, tmp_path / "data" / "cache", tmp_path / "run", progress=False)
    result = kernel_numerics(str(tmp_path / "run" / "last.pt"), str(tmp_path / "data" / "cache"), batches=(1, 4))
    kinds = {(row["split"], row["kernels"], row["batch"]) for row in result["rows"]}
    assert kinds == {(s, k, b) for s in ("val", "test") for k in ("direct", "F2", "F4", "measured") for b in (1, 4)}
    assert all(row["decisions"] > 0 for row in result["rows"])
    assert result["max_changed_vs_direct"] == 0 and result["max_prob_diff"] < 1e-4
    assert main([str(tmp_path / "run" / "last.pt"), str(tmp_path / "data" / "cache")]) == 0
    beside = kernel_numerics(str(tmp_path / "run" / "last.pt"), str(tmp_path / "data" / "cache"), batches=(1,),
                             splits=("val",), bf16=True)
    (bf16,) = beside["bf16_rows"]
    assert bf16["decisions"] == next(r["decisions"] for r in beside["rows"])
    assert 1e-5 < bf16["max_prob_diff"] < 0.1  # bf16 really ran (fp32 choices stay within 1e-4) and is close
    assert beside["max_changed_vs_direct"] == 0  # reported beside: the verdict is the fp32 kernels' only
