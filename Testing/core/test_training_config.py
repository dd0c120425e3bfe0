"""TrainConfig: the paper's defaults, JSON files, --set overrides with type checks, and the train command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from LesaNetCore.errors import LesaNetError
from LesaNetCore.training.config import (
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
)


def test_defaults_are_the_paper_recipe():
    cfg = TrainConfig()
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.lr_step_epoch, cfg.gamma) == (15, 128, 0.01, 10, 0.1)
    assert (cfg.momentum, cfg.weight_decay, cfg.grad_clip) == (0.9, 1e-4, 10.0)
    assert cfg.loss.wce and cfg.loss.rhem and cfg.loss.spl and cfg.loss.triplet
    assert cfg.loss.weight_clamp == 300 and cfg.loss.rhem_samples == 10000 and cfg.loss.triplet_count == 5000


def test_overrides_are_typed():
    cfg = apply_overrides(TrainConfig(), ["epochs=3", "lr=1e-3", "loss.rhem=false", "amp=bf16", "grad_clip=5",
                                          "device=cpu", "loss.triplet_weight=2"])
    assert cfg.epochs == 3 and cfg.lr == 0.001 and cfg.loss.rhem is False and cfg.amp == "bf16"
    assert cfg.grad_clip == 5.0 and isinstance(cfg.grad_clip, float) and cfg.loss.triplet_weight == 2.0
    assert TrainConfig().epochs == 15  # frozen: the default is untouched


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("epoch=3", r"--set epoch: must name a known setting .*but got 'epoch'"),
        ("loss.rhm=false", r"--set loss.rhm: must name a known setting"),
        ("epochs=3.5", r"--set epochs: must be an integer, but got 3.5"),
        ("lr=fast", r"--set lr: must be a number, but got 'fast'"),
        ("loss.rhem=maybe", r"--set loss.rhem: must be true or false, but got 'maybe'"),
        ("epochs", r"--set: must be key=value"),
        ("epochs=0", r"epochs: must be >= 1, but got 0"),
        ("amp=fp8", r"amp: must be one of"),
        ("loss=1", r"must name a single setting, not a group"),
        ("lr.x=1", r"'lr' has no sub-settings"),
        ("loss.rhem_samples=0", r"rhem_samples: must be a positive integer"),
    ],
)
def test_override_errors_name_the_key(override, message):
    with pytest.raises(LesaNetError, match=message):
        apply_overrides(TrainConfig(), [override])


def test_json_round_trip_and_errors(tmp_path):
    cfg = apply_overrides(TrainConfig(), ["epochs=4", "loss.spl=false"])
    data = config_to_dict(cfg)
    assert data["loss"]["spl"] is False and json.loads(json.dumps(data)) == data
    assert config_from_dict(data) == cfg
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"batch_size": 32, "loss": {"triplet": False}}))
    loaded = load_config(path)
    assert loaded.batch_size == 32 and loaded.loss.triplet is False and loaded.epochs == 15
    path.write_text(json.dumps({"loss": {"tripletz": False}}))
    with pytest.raises(LesaNetError, match=r"loss.tripletz: must be a known setting"):
        load_config(path)
    path.write_text(json.dumps({"epochs": "3"}))
    with pytest.raises(LesaNetError, match=r"epochs: must be an integer, but got '3'"):
        load_config(path)
    path.write_text("{oops")
    with pytest.raises(LesaNetError, match="must be valid JSON"):
        load_config(path)
    with pytest.raises(LesaNetError, match="existing JSON file"):
        load_config(tmp_path / "none.json")


@pytest.mark.slow
def test_train_command_builds_the_cache_and_reports_errors(tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_training_dataset import make_tiny_deeplesion, tiny_ontology

    from LesaNetCore.cli import main

    layout = make_tiny_deeplesion(tmp_path / "dl", {"train": 5, "val": 2})
    onto = tmp_path / "onto.json"
    onto.write_text(json.dumps(tiny_ontology().to_dict()))
    cache, run = tmp_path / "cache", tmp_path / "run"
    assert main(["train", "--data", str(cache), "--out", str(run), "--set", "epochs=0"]) == 2
    assert "--data: must be an existing patch cache" in capsys.readouterr().err
    args = ["train", "--data", str(cache), "--out", str(run), "--deeplesion", str(layout["root"]), "--labels",
            str(layout["labels"]), "--ontology", str(onto), "--arch", "lesanet_demo", "--epochs", "1",
            "--batch-size", "4", "--workers", "0", "--no-progress", "--set", "loss.rhem_samples=100"]
    assert main([*args[:-2], "--set", "loss.rhm=1"]) == 2
    assert "loss.rhm" in capsys.readouterr().err
    assert (cache / "meta.json").is_file()  # the cache was built before the config error
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs"] == 1 and Path(summary["last"]).is_file()
    assert json.loads((run / "config.json").read_text())["loss"]["rhem_samples"] == 100
    # resuming a finished run with more epochs continues it; --config is refused on resume
    assert main(["train", "--data", str(cache), "--out", str(run), "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["epochs"] == 2
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert main(["train", "--data", str(cache), "--out", str(run), "--resume", "--config", str(onto)]) == 2
