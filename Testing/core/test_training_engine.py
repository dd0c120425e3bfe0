"""The training engine: a short run lowers the loss; checkpoints, logs, resume after a kill; DDP on CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from LesaNetCore.errors import LesaNetError
from LesaNetCore.training import TrainConfig, apply_overrides, build_model, load_checkpoint, train
from LesaNetCore.training.config import config_from_dict

sys.path.insert(0, str(Path(__file__).parent))
from test_training_dataset import build_tiny_cache  # noqa: E402

TINY = ["arch=lesanet_demo", "batch_size=8", "workers=0", "eval_batch_size=16", "loss.rhem_samples=2000",
        "loss.triplet_count=500"]


def _config(*extra: str) -> TrainConfig:
    return apply_overrides(TrainConfig(), [*TINY, *extra])


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _env() -> dict:
    # one thread: bitwise-reproducible CPU kernels across processes, and polite to a shared 2-core machine
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.mark.slow
def test_short_run_lowers_the_loss_and_writes_the_run_folder(tmp_path):
    cache = build_tiny_cache(tmp_path, {"train": 17, "val": 8})
    summary = train(_config("epochs=5", "lr_step_epoch=4"), cache, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    log = _log(run)
    assert [line["epoch"] for line in log] == [1, 2, 3, 4, 5]
    assert log[-1]["train"]["total"] < 0.7 * log[0]["train"]["total"]
    assert log[3]["lr"] == pytest.approx(0.01) and log[4]["lr"] == pytest.approx(0.001)  # x0.1 after epoch 4
    assert set(log[0]["train"]) >= {"wce1", "rhem", "triplet", "wce2", "total"}
    saved = json.loads((run / "config.json").read_text())
    assert config_from_dict(saved) == _config("epochs=5", "lr_step_epoch=4")
    best = load_checkpoint(run / "best.pt")
    assert best.epoch == summary["best_epoch"] and best.metrics["val"]["f1"] == summary["best_val"]["f1"]
    assert len(best.thresholds) == 6 and all(0.3 <= t <= 1.0 for t in best.thresholds)
    assert best.label_names == ["chest", "abdomen", "lung", "liver", "nodule", "mass"]
    assert best.optimizer_state is None and best.train_config["arch"] == "lesanet_demo"
    last = load_checkpoint(run / "last.pt")
    assert last.epoch == 5 and last.optimizer_state is not None and "scheduler" in last.training_state
    assert best.metrics["val"]["auc"] > 0.8  # bright liver masses vs dark lung nodules are easy
    model = build_model(last)
    assert model.arch_config["widths"] == [8, 16, 32, 64, 64]
    with pytest.raises(LesaNetError, match="already holds a run"):
        train(_config("epochs=1"), cache, run, progress=False)


def test_refusals(tmp_path):
    val_only = build_tiny_cache(tmp_path / "a", {"val": 3})
    with pytest.raises(LesaNetError, match="training split"):
        train(_config("epochs=1"), val_only, tmp_path / "run", progress=False)
    cache = build_tiny_cache(tmp_path / "b", {"train": 3})
    with pytest.raises(LesaNetError, match="--resume: the run folder must hold last.pt"):
        train(_config("epochs=1"), cache, tmp_path / "empty", resume=True, progress=False)


@pytest.mark.slow
def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path):
    cache = build_tiny_cache(tmp_path, {"train": 25, "val": 4})
    base = [sys.executable, "-m", "LesaNetCore.cli", "train", "--data", str(cache), "--no-progress",
            *[arg for item in [*TINY, "epochs=8", "lr_step_epoch=4", "box_jitter=2"] for arg in ("--set", item)]]
    full = tmp_path / "full"
    subprocess.run([*base, "--out", str(full)], check=True, env=_env(), capture_output=True, timeout=120)

    killed = tmp_path / "killed"
    proc = subprocess.Popen([*base, "--out", str(killed)], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None:
        if (killed / "last.pt").is_file():  # renamed into place only when complete
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run must be killed mid-way for this test to mean anything"
    done = load_checkpoint(killed / "last.pt").epoch
    assert 1 <= done < 8

    resumed = subprocess.run([*base, "--out", str(killed), "--resume"], env=_env(), capture_output=True,
                             text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_checkpoint(full / "last.pt"), load_checkpoint(killed / "last.pt")
    assert b.epoch == 8
    for name, tensor in a.state_dict.items():
        assert torch.equal(tensor, b.state_dict[name]), name
    assert [line["train"]["total"] for line in _log(full)] == [line["train"]["total"] for line in _log(killed)]
    assert [line["epoch"] for line in _log(killed)] == list(range(1, 9))
    assert load_checkpoint(full / "best.pt").epoch == load_checkpoint(killed / "best.pt").epoch


@pytest.mark.slow
def test_two_process_ddp_on_cpu_with_gloo(tmp_path):
    cache = build_tiny_cache(tmp_path, {"train": 17, "val": 6})
    run = tmp_path / "ddp"
    # loss.spl=false leaves class_scores2 without gradients: DDP must be told (find_unused_parameters)
    sets = [arg for item in [*TINY, "epochs=2", "loss.spl=false"] for arg in ("--set", item)]
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
         "LesaNetCore.cli", "train", "--data", str(cache), "--out", str(run), "--no-progress", *sets],
        env=_env(), capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    log = _log(run)
    assert [line["epoch"] for line in log] == [1, 2]  # rank 0 alone writes the log
    assert log[0]["train"]["steps"] == 2  # 16 lesions, batch 8 = 4 per process: 2 steps, as with one process
    last = load_checkpoint(run / "last.pt")
    assert last.epoch == 2 and not any(k.startswith("module.") for k in last.state_dict)
    assert json.loads(result.stdout[result.stdout.index("{"):])["world_size"] == 2
