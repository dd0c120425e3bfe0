"""The end-to-end demo on the shipped default (demo model + index), and its folder rules."""

from __future__ import annotations

import json

import pytest

from LesaNetCore.cli import main
from LesaNetCore.errors import LesaNetError


@pytest.mark.slow
def test_demo_writes_every_output(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "not for clinical use" in printed
    for name in ("phantom_ct.nii.gz", "report.json", "report.md", "report_sr.dcm", "figure.png"):
        assert (out / name).stat().st_size > 1000, name
    report = json.loads((out / "report.json").read_text())
    assert len(report["lesions"]) == 3
    assert "not for clinical use" in (out / "report.md").read_text()
    from LesaNetCore.report import read_dicom_sr

    assert len(read_dicom_sr(out / "report_sr.dcm")) == 3
    # A second run replaces its own outputs.
    assert main(["demo", "--out", str(out), "--device", "cpu"]) == 0


def test_demo_refuses_a_folder_with_other_files(tmp_path):
    from LesaNetCore.demo import run_demo

    (tmp_path / "thesis.docx").write_text("precious")
    with pytest.raises(LesaNetError, match="--out: must be empty or an earlier demo folder"):
        run_demo(tmp_path)
    assert (tmp_path / "thesis.docx").read_text() == "precious"
