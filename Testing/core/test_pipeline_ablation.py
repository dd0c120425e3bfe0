"""lesanet ablation: each Table 1 row is the right TrainConfig / model / label override of full LesaNet."""

from __future__ import annotations

import numpy as np
import pytest

from LesaNetCore.errors import LesaNetError
from LesaNetCore.pipeline.ablation import (
    ABLATIONS,
    ablation_config,
    model_factory_for,
    relabeled_cache,
    run_ablation,
)
from LesaNetCore.training import TrainConfig

LOSS_FLAGS = ("wce", "rhem", "spl", "triplet")


def _flags(name: str) -> dict[str, bool]:
    cfg = ablation_config(name, TrainConfig(seed=7, epochs=3))
    assert cfg.seed == 7 and cfg.epochs == 3  # shared settings survive every row
    return {flag: getattr(cfg.loss, flag) for flag in LOSS_FLAGS}


def test_rows_are_the_papers_table_1_in_order():
    assert list(ABLATIONS) == ["baseline", "no_spl", "no_rhem", "no_expansion", "no_textmining", "no_triplet", "full"]


@pytest.mark.parametrize(("name", "expected"), [
    ("baseline", {"wce": True, "rhem": False, "spl": False, "triplet": False}),
    ("no_spl", {"wce": True, "rhem": True, "spl": False, "triplet": True}),
    ("no_rhem", {"wce": True, "rhem": False, "spl": True, "triplet": True}),
    ("no_expansion", {"wce": True, "rhem": True, "spl": True, "triplet": True}),
    ("no_textmining", {"wce": True, "rhem": True, "spl": True, "triplet": True}),
    ("no_triplet", {"wce": True, "rhem": True, "spl": True, "triplet": False}),
    ("full", {"wce": True, "rhem": True, "spl": True, "triplet": True}),
])
def test_loss_overrides(name, expected):
    assert _flags(name) == expected


def test_label_variants_and_spl_layer():
    relabel = {name: (spec.expand, spec.label_mode) for name, spec in ABLATIONS.items() if spec.relabels}
    assert relabel == {"no_expansion": (False, "text-mined"), "no_textmining": (True, "all-mentioned")}
    assert ablation_config("no_expansion", TrainConfig()) == TrainConfig()
    without = model_factory_for("no_spl")("lesanet_demo", num_labels=5)
    with_spl = model_factory_for("full")("lesanet_demo", num_labels=5)
    assert not without.use_spl and not hasattr(without, "class_scores2")
    assert with_spl.use_spl and hasattr(with_spl, "class_scores2")
    assert not model_factory_for("baseline")("lesanet_demo", num_labels=5).use_spl


def test_unknown_row_is_an_error_naming_the_rows(tmp_path):
    with pytest.raises(LesaNetError, match="no_rhem"):
        ablation_config("no_such_row", TrainConfig())
    with pytest.raises(LesaNetError, match="--only"):
        run_ablation(tmp_path, tmp_path / "out", only=["bogus"])


@pytest.mark.slow
def test_relabeled_caches_reuse_the_patches_and_change_only_training_labels(tmp_path):
    from LesaNetCore.phantom import synthesize
    from LesaNetCore.pipeline.prepare import prepare
    from LesaNetCore.training import open_patch_cache

    phantom = synthesize(tmp_path / "phantom", 40, seed=11, n_volumes=0, progress=False).out_dir
    prepare(phantom, tmp_path / "data", min_positives=2, method="rules", progress=False)
    base = open_patch_cache(tmp_path / "data" / "cache")
    relabeled_cache(tmp_path / "data", tmp_path / "all", expand=True, label_mode="all-mentioned", progress=False)
    relabeled_cache(tmp_path / "data", tmp_path / "flat", expand=False, label_mode="text-mined", progress=False)
    mentioned, flat = open_patch_cache(tmp_path / "all"), open_patch_cache(tmp_path / "flat")
    row = {int(v): i for i, v in enumerate(base.arrays["lesion_idx"])}
    for other in (mentioned, flat):
        assert other.label_names == base.label_names
        for i, lesion in enumerate(other.arrays["lesion_idx"]):
            assert np.array_equal(other.arrays["images"][i], base.arrays["images"][row[int(lesion)]])
    more = [mentioned.arrays["targets"][i].sum() >= base.arrays["targets"][row[int(v)]].sum()
            for i, v in enumerate(mentioned.arrays["lesion_idx"]) if mentioned.arrays["split"][i] == 0]
    fewer = [flat.arrays["targets"][i].sum() <= base.arrays["targets"][row[int(v)]].sum()
             for i, v in enumerate(flat.arrays["lesion_idx"])]
    assert all(more) and all(fewer)
    assert sum(flat.arrays["targets"].sum(axis=1)) < sum(base.arrays["targets"].sum(axis=1))  # parents missing
    # An interrupted ablation continues: an evaluated row is read back instead of retrained.
    import json

    row_dir = tmp_path / "ablation" / "full"
    (row_dir / "evaluation").mkdir(parents=True)
    (row_dir / "run").mkdir()
    report = {"mean_per_class": {"auc": 0.91, "precision": 0.4, "recall": 0.5, "f1": 0.45},
              "retrieval": {"acg": {"5": 2.5}}, "hand_labeled": None, "val": {}}
    (row_dir / "evaluation" / "report.json").write_text(json.dumps(report))
    (row_dir / "run" / "summary.json").write_text(json.dumps({"best_epoch": 3}))
    result = run_ablation(tmp_path / "data", tmp_path / "ablation", only=["full"], progress=False)
    assert result["rows"]["full"]["headline"]["auc"] == 0.91 and result["read_back"] == ["full"]
    assert "| LesaNet | 0.9100 | 0.4000 | 0.5000 | 0.4500 | 2.50 |" in (tmp_path / "ablation" / "ablation.md").read_text()
