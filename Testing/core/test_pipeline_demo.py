"""lesanet build-demo: argument checks, the demo recipe, the label ontology in the checkpoint, the shipped files."""

from __future__ import annotations

import pytest

from LesaNetCore.errors import LesaNetError
from LesaNetCore.pipeline.demo_model import (
    MAX_WEIGHTS_MB,
    build_demo,
    check_build_args,
    default_demo_dir,
    demo_train_config,
)


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"lesions": 10}, "--lesions"),
    ({"epochs": 0}, "--epochs"),
    ({"seed": -1}, "--seed"),
    ({"batch_size": 1}, "--batch-size"),
    ({"lesions": 3000.5}, "--lesions"),
])
def test_bad_arguments_are_refused_naming_them(kwargs, argument):
    args = {"lesions": 3000, "epochs": 8, "seed": 0, "batch_size": 64, **kwargs}
    with pytest.raises(LesaNetError, match=argument):
        check_build_args(**args)


def test_cli_refuses_before_any_work(tmp_path, capsys):
    from LesaNetCore.cli import main

    assert main(["build-demo", "--out", str(tmp_path / "demo"), "--lesions", "5"]) == 2
    assert "--lesions" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def test_an_earlier_demo_is_not_replaced_without_overwrite(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(LesaNetError, match="--overwrite"):
        build_demo(tmp_path, lesions=100, epochs=1)


def test_demo_recipe_scales_the_papers_schedule():
    cfg = demo_train_config(9, seed=4, batch_size=32)
    assert (cfg.arch, cfg.epochs, cfg.batch_size, cfg.seed, cfg.device) == ("lesanet_demo", 9, 32, 4, "cpu")
    assert cfg.lr_step_epoch == 6 and cfg.lr == 0.01 and cfg.eval_every == 9
    assert cfg.loss.rhem and cfg.loss.spl and cfg.loss.triplet


def test_label_ontology_is_stored_and_the_checkpoint_still_loads(tmp_path):
    import torch

    from LesaNetCore.model import create_model
    from LesaNetCore.ontology import load_default_ontology, read_ontology_json
    from LesaNetCore.training import load_checkpoint, save_checkpoint

    labels = ["liver", "lung"]
    path = save_checkpoint(tmp_path / "m.pt", create_model("lesanet_demo", num_labels=2), arch="lesanet_demo",
                           label_names=labels, label_ontology=load_default_ontology().subset(labels).to_dict())
    assert load_checkpoint(path).label_ontology["terms"][0]["name"] == "liver"
    payload = torch.load(path, weights_only=True)
    assert [t["name"] for t in payload["label_ontology"]["terms"]] == labels
    assert load_checkpoint(path).label_names == labels
    import json

    assert list(read_ontology_json(tmp_path / "o.json", json.dumps(payload["label_ontology"])).names) == labels


def test_shipped_demo_loads_and_annotates_a_liver_lesion():
    if not (default_demo_dir() / "model.pt").is_file():
        pytest.skip(f"no shipped demo model at {default_demo_dir()} (run `lesanet build-demo`)")
    import numpy as np

    from LesaNetCore.annotate import Annotator
    from LesaNetCore.imaging import Volume
    from LesaNetCore.phantom import make_phantom_volume

    assert (default_demo_dir() / "model.pt").stat().st_size <= MAX_WEIGHTS_MB * 2**20
    assert (default_demo_dir() / "README.md").is_file()
    voxels, spacing, origin, direction, lesions = make_phantom_volume(seed=21, region="abdomen", n_lesions=1,
                                                                      bodyparts=["liver"])
    volume = Volume(voxels, spacing, origin, np.asarray(direction, dtype=float).reshape(3, 3))
    annotator = Annotator(device="cpu")
    assert annotator.index is not None
    result = annotator.annotate(volume, box_ijk=lesions[0].box_ijk)
    assert "liver" in result.accepted
    assert len(result.similar) == 5
