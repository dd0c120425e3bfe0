"""``lesanet`` failures: one line instead of a traceback, a log file, exit statuses, and plain words for bad input."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from test_report_sr import write_ct_series

from LesaNetCore.cli import build_parser, main
from LesaNetCore.commands._args import check_checkpoint_file
from LesaNetCore.errors import LesaNetError


@pytest.fixture
def series(tmp_path) -> Path:
    folder = tmp_path / "ct"
    folder.mkdir()
    write_ct_series(folder)
    return folder


@pytest.fixture(autouse=True)
def logs(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LESANET_LOG_DIR", str(tmp_path / "logs"))
    return tmp_path / "logs"


def _annotate(series: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["annotate", str(series), "--box-ijk", "3,4,9,11,2", "--device", "cpu", *extra]


def test_help_states_the_exit_statuses(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "exit status" in text and "1 an input or run-time error" in text and "2 a usage error" in text
    assert "--debug" in text


def test_an_unexpected_error_is_one_line_and_a_log(series, tmp_path, capsys, logs, monkeypatch):
    import LesaNetCore.imaging as imaging

    def broken(*args, **kwargs):
        return {}["no such key"]

    monkeypatch.setattr(imaging, "read_volume", broken)
    assert main(_annotate(series, tmp_path)) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("lesanet annotate: error: unexpected KeyError on ")
    assert repr(str(series)) in lines[0] and "'no such key'" in lines[0]
    log = Path(lines[0].split("traceback in ")[1].split(";")[0])
    assert log.parent == logs and "Traceback" in log.read_text() and "broken" in log.read_text()
    assert main(["--debug", *_annotate(series, tmp_path)]) == 1  # --debug also prints the traceback
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    assert main([*_annotate(series, tmp_path), "--debug"]) == 1  # anywhere on the command line
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_exit_status_two_is_the_command_line_one_the_input(series, tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["annotate", str(series), "--no-such-option"])
    assert done.value.code == 2
    capsys.readouterr()
    existing = tmp_path / "r.json"
    existing.write_text("keep")
    assert main([*_annotate(series, tmp_path), "--json", str(existing)]) == 2
    assert "--json: refusing to overwrite" in capsys.readouterr().err
    assert main([*_annotate(series, tmp_path), "--box-ijk", "1,2"]) == 2
    assert main(_annotate(tmp_path / "missing", tmp_path)) == 1
    assert "must be an existing" in capsys.readouterr().err
    assert existing.read_text() == "keep"


def test_a_missing_package_names_what_installs_it(series, tmp_path, capsys, monkeypatch):
    import LesaNetCore.imaging as imaging

    def missing(name):
        def fail(*args, **kwargs):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return fail

    monkeypatch.setattr(imaging, "read_volume", missing("faiss"))
    assert main(_annotate(series, tmp_path)) == 1
    assert "pip install 'LesaNetCore[ann]'" in capsys.readouterr().err
    monkeypatch.setattr(imaging, "read_volume", missing("PIL"))
    assert main(_annotate(series, tmp_path)) == 1
    err = capsys.readouterr().err
    assert "LesaNetCore requires it" in err and "pip install pillow" in err and "Traceback" not in err


def test_reports_are_all_or_nothing(series, tmp_path, capsys, monkeypatch):
    import LesaNetCore.report as report

    def failing_sr(*args, **kwargs):
        raise LesaNetError("sr path: the disk is full, but got nothing written")

    monkeypatch.setattr(report, "write_dicom_sr", failing_sr)
    out = tmp_path / "out"
    code = main([*_annotate(series, tmp_path), "--json", str(out / "r.json"), "--md", str(out / "r.md"),
                 "--sr", str(out / "r.dcm")])
    assert code == 1 and "the disk is full" in capsys.readouterr().err
    assert list(out.iterdir()) == []  # neither the JSON and Markdown written before the SR, nor temporaries


def test_the_reader_says_which_series_it_read(series, tmp_path, capsys):
    other = tmp_path / "ct" / "localizer"
    other.mkdir()
    for name in write_ct_series(other)[:1]:
        import pydicom

        ds = pydicom.dcmread(name)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.SeriesInstanceUID = "1.2.3.999"
        ds.save_as(name)
    for extra in ([], ["--series-uid", pydicom.dcmread(next(series.glob("ct_*.dcm"))).SeriesInstanceUID]):
        assert main([*_annotate(series, tmp_path), *extra]) == 0
        err = capsys.readouterr().err
        assert "lesanet annotate: note: read series" in err and "also here: 1.2.3.999 (CT, localizer" in err
    assert build_parser().parse_args(["patch", "v", "--box-ijk", "1,1,2,2,0", "--out", "p.npz",
                                      "--series", "1.2"]).series_uid == "1.2"


@pytest.mark.parametrize(("content", "says"), [
    (b"# LesaNet\nnot weights", "a text file"),
    (b"\x89PNG\r\n\x1a\n....", "a PNG image"),
    (b"\x1f\x8b\x08\x00....", "a gzip file"),
    (b"\x00\x01\x02\x03\xfe", "a binary file of another format"),
    (b"", "the file is empty"),
])
def test_a_file_that_is_no_checkpoint_says_so(tmp_path, content, says):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(LesaNetError, match=says) as info:
        check_checkpoint_file(str(path), "--model")
    assert str(info.value).startswith("--model: ")


def test_checkpoints_pass_the_check(tmp_path):
    from LesaNetCore.annotate import demo_model_path

    check_checkpoint_file(str(demo_model_path()), "--model")
    legacy = tmp_path / "legacy.pth.tar"
    legacy.write_bytes(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.")  # torch's legacy magic number, pickled
    check_checkpoint_file(str(legacy), "CKPT")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(LesaNetError, match="zip archive of something else"):
        check_checkpoint_file(str(tmp_path / "other.zip"), "--model")


def test_cli_names_a_readme_given_as_model(series, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# notes\n")
    assert main([*_annotate(series, tmp_path), "--model", str(readme)]) == 2
    err = capsys.readouterr().err
    assert "is not a checkpoint at all, it is a text file" in err and "Traceback" not in err
