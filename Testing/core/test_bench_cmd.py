"""`lesanet bench`: one JSON object with the numbers of the sections asked for, the machine and the peak; the
docs tables written from that JSON; fractions of peak above 1 reported as a wrong peak."""

from __future__ import annotations

import json

import pytest
import torch

from LesaNetCore.bench.peak import PeakError, PeakMeter
from LesaNetCore.bench.report import BEGIN, END, render, update_markdown
from LesaNetCore.cli import main


def test_bench_patch_section_prints_json_with_the_machine(capsys):
    assert main(["bench", "--only", "patch", "--json"]) == 0
    numbers = json.loads(capsys.readouterr().out)
    assert numbers["sections"] == ["patch"]
    assert numbers["patch_ms"] > 0 and numbers["patch_bench_s"] > 0
    machine = numbers["machine"]
    assert machine["cpu_model"] and machine["isa"] and machine["threads"] == torch.get_num_threads()
    assert "peak_gflops" not in numbers  # nothing timed against it, so no peak measured
    assert numbers["peak_errors"] == [] and len(numbers["load_average"]) == 2


def test_bench_on_a_missing_gpu_names_the_device(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal is for machines without it")
    assert main(["bench", "--only", "model", "--device", "cuda", "--json"]) != 0
    err = capsys.readouterr().err
    assert "device" in err and "'cuda'" in err and "CUDA" in err


def test_a_fraction_above_one_is_a_wrong_peak_not_a_number():
    errors = PeakError()
    assert errors.check("forward_b1", 0.8123, 400.0) == 0.812
    assert errors.check("forward_b32", 1.07, 400.0) is None
    assert len(errors.messages) == 1 and "forward_b32" in errors.messages[0] and "peak is wrong" in errors.messages[0]


def test_peak_meter_samples_matmul_and_the_model_shaped_convolutions():
    meter = PeakMeter("cpu", repeats=1)
    first = meter.sample()
    kernels = meter.samples[0]["by_kernel"]
    assert {"matmul_torch", "conv3x3_30", "conv3x3_15", "conv3x3_7", "conv1x1_15"} <= set(kernels)
    assert first == max(kernels.values()) > 0 and meter.samples[0]["kernel"] in kernels
    summary = meter.summary()
    assert summary["peak_gflops"] == first and summary["peak_samples"] == 1


def _results() -> dict:
    """A run's JSON as `lesanet bench --json` writes it (numbers made up: only the layout matters here)."""
    return {
        "machine": {"cpu_model": "Test CPU", "isa": "AVX512", "isa_flags": ["avx512f"], "threads": 2,
                    "logical_cpus": 2, "torch": "2.x"},
        "load_average": [0.5, 0.7],
        "peak_gflops": 450.0, "peak_kernel": "conv3x3_7", "peak_min_gflops": 400.0, "peak_samples": 9,
        "peak_by_kernel": {"matmul_torch": 170.0, "conv3x3_7": 450.0},
        "bf16_peak_gflops": None, "bf16_note": "not measured: this CPU has neither",
        "annotate_ms": 30.0, "annotate_vs_roofline": 1.5, "annotate_roofline_ms": 20.0, "annotate_peak_gflops": 440.0,
        "annotate_index_size": 32768, "annotate_stage_ms": {"patch": 0.8, "forward": 28.0, "total": 30.0},
        "forward_b1_ms": 28.0, "forward_b1_vs_roofline": 1.4, "forward_b1_peak_fraction": 0.7,
        "forward_b1_direct_ms": 28.5, "forward_b1_direct_vs_roofline": 1.42,
        "forward_b32_ms": 23.0, "forward_b32_vs_roofline": 1.15, "forward_b32_peak_fraction": None,
        "forward_b32_direct_ms": 24.0, "forward_b32_direct_vs_roofline": 1.2,
        "train_step_ms": 120.0, "train_step_peak_fraction": 0.5,
        "kernels_chosen": {"b1": {"conv3_2": "direct"}, "b8": {"conv3_2": "F4"}}, "kernels_tune_s": 0.0,
        "peak_errors": ["forward_b32: ran at 1.07 x the peak"],
    }


def test_report_renders_the_targets_table_from_the_json(tmp_path):
    text = render(_results())
    assert "Test CPU" in text and "450 GFLOP/s" in text and "**1.50 x**" in text
    assert "| conv3_2 | direct | F4 |" in text  # the chosen kernels per layer and batch
    assert "— (see peak errors)" in text and "forward_b32: ran at 1.07 x the peak" in text
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nprose before\n\n{BEGIN}\nold table\n{END}\n\nprose after\n")
    update_markdown(doc, _results())
    written = doc.read_text()
    assert "old table" not in written and "prose before" in written and "prose after" in written
    assert written.count(BEGIN) == 1 and "Test CPU" in written


def test_bench_rewrites_the_docs_from_an_earlier_json_run(tmp_path, capsys):
    run = tmp_path / "run.json"
    run.write_text(json.dumps(_results()))
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"{BEGIN}\n{END}\n")
    assert main(["bench", "--from-json", str(run), "--markdown", str(doc)]) == 0
    assert "Test CPU" in doc.read_text()
    no_markers = tmp_path / "plain.md"
    no_markers.write_text("nothing generated here\n")
    assert main(["bench", "--from-json", str(run), "--markdown", str(no_markers)]) != 0
    assert "--markdown" in capsys.readouterr().err
    assert main(["bench", "--from-json", str(run)]) == 2  # --from-json alone would measure and write nothing


@pytest.mark.slow
def test_annotate_bench_pairs_each_round_with_its_own_peak():
    from LesaNetCore.bench.annotate import bench_annotate

    numbers = bench_annotate(repeats=4, index_size=5000, rounds=2)
    rounds = numbers["annotate_vs_roofline_rounds"]
    assert len(rounds) == 2 and all(r > 0 for r in rounds)
    assert numbers["annotate_vs_roofline"] == pytest.approx(sum(rounds) / 2, abs=2e-3)  # the median of two
    assert numbers["annotate_ms"] > 0 and {"patch", "forward", "search", "decide"} <= set(numbers["annotate_stage_ms"])


@pytest.mark.slow
def test_bench_mine_reports_sentences_per_second():
    from LesaNetCore.bench.mine import bench_mine

    result = bench_mine(seconds=0.5)
    assert result["sentences"] > 0 and result["mentions_per_sentence"] > 2 and result["sentences_per_second"] > 0
