"""`lesanet bench` prints one JSON object with the numbers of the sections asked for."""

from __future__ import annotations

import json

from LesaNetCore.cli import main


def test_bench_patch_section_prints_json(capsys):
    assert main(["bench", "--only", "patch", "--json"]) == 0
    numbers = json.loads(capsys.readouterr().out)
    assert numbers["sections"] == ["patch"]
    assert numbers["patch_ms"] > 0 and numbers["patch_bench_s"] > 0
