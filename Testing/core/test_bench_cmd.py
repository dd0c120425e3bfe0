"""`lesanet bench` prints one JSON object with the numbers of the sections asked for."""

from __future__ import annotations

import json

import pytest
import torch

from LesaNetCore.cli import main


def test_bench_patch_section_prints_json(capsys):
    assert main(["bench", "--only", "patch", "--json"]) == 0
    numbers = json.loads(capsys.readouterr().out)
    assert numbers["sections"] == ["patch"]
    assert numbers["patch_ms"] > 0 and numbers["patch_bench_s"] > 0


def test_bench_on_a_missing_gpu_names_the_device(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal is for machines without it")
    assert main(["bench", "--only", "model", "--device", "cuda", "--json"]) != 0
    err = capsys.readouterr().err
    assert "device" in err and "'cuda'" in err and "CUDA" in err


@pytest.mark.slow
def test_annotate_bench_pairs_each_round_with_its_own_peak():
    from LesaNetCore.bench import bench_annotate

    numbers = bench_annotate(repeats=4, index_size=512, rounds=2, peak_gflops=1e9)
    rounds = numbers["annotate_vs_roofline_rounds"]
    assert len(rounds) == 2 and all(r > 0 for r in rounds)
    assert numbers["annotate_vs_roofline"] == pytest.approx(sum(rounds) / 2)  # the median of two
    # The stricter yardstick takes the best peak of the run, here the (impossible) one passed in.
    assert numbers["annotate_best_peak_gflops"] == 1e9
    assert numbers["annotate_vs_best_peak"] > max(rounds)
