"""``lesanet mine`` and ``lesanet nltk-data`` as users and scripts call them."""

from __future__ import annotations

import json

import pytest

from LesaNetCore.cli import main


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_mine_writes_one_record_per_good_line_and_reports_bad_lines(tmp_path, capsys):
    source = _write(tmp_path / "in.jsonl", [
        json.dumps({"id": "a", "text": "Large nodule BOOKMARK in the right middle lobe"}),
        "{not json",
        json.dumps({"id": "c", "text": 42}),
        "",
        json.dumps({"text": "no id"}),
        json.dumps({"id": 5, "text": "Hypodense liver lesion BOOKMARK, likely a cyst. No adenopathy."}),
    ])
    out = tmp_path / "out.jsonl"
    assert main(["mine", "--input", str(source), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{source}:2:" in err and f"{source}:3:" in err and f"{source}:5:" in err and ":4:" not in err
    records = _read(out)
    assert [r["id"] for r in records] == ["a", 5]
    assert set(records[0]) == {"id", "relevant", "uncertain", "irrelevant", "expanded"}
    assert {"nodule", "large", "right mid lung"} <= set(records[0]["relevant"])
    assert "cyst" in records[1]["uncertain"] and "lung" in records[0]["expanded"]
    assert list(tmp_path.glob("*.part")) == []


def test_mine_refuses_to_overwrite_and_leaves_the_file(tmp_path, capsys):
    source = _write(tmp_path / "in.jsonl", [json.dumps({"id": 1, "text": "liver mass"})])
    out = tmp_path / "out.jsonl"
    out.write_text("keep me")
    assert main(["mine", "--input", str(source), "--output", str(out)]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert out.read_text() == "keep me"
    assert main(["mine", "--input", str(source), "--output", str(out), "--overwrite"]) == 0
    assert _read(out)[0]["id"] == 1


def test_output_appears_only_when_complete(tmp_path, monkeypatch):
    source = _write(tmp_path / "in.jsonl", [json.dumps({"id": k, "text": "liver mass"}) for k in range(3)])
    out = tmp_path / "out.jsonl"
    from LesaNetCore.textmine.mine import TextMiner

    calls = {"n": 0}
    original = TextMiner.mine

    def failing(self, text, id=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk on fire")
        return original(self, text, id)

    monkeypatch.setattr(TextMiner, "mine", failing)
    monkeypatch.setenv("LESANET_LOG_DIR", str(tmp_path / "logs"))
    assert main(["mine", "--input", str(source), "--output", str(out)]) == 1  # one line, the traceback in a log
    assert not out.exists() and list(tmp_path.glob("*.part")) == []


def test_labels_restrict_the_output(tmp_path):
    from conftest import shared_file

    split = shared_file("lesanet/text_mined_labels_171_and_split.json")
    xlsx = shared_file("lesanet/lesion_ontology_181022.xlsx")
    term_list = set(json.loads(split.read_text())["term_list"])
    source = _write(tmp_path / "in.jsonl", [json.dumps({"id": 1, "text": "Left common iliac lymph node BOOKMARK, "
                                                        "possibly hemangioma"})])
    full, restricted = tmp_path / "full.jsonl", tmp_path / "restricted.jsonl"
    assert main(["mine", "--input", str(source), "--output", str(full), "--ontology", str(xlsx)]) == 0
    assert main(["mine", "--input", str(source), "--output", str(restricted), "--ontology", str(xlsx),
                 "--labels", str(split)]) == 0
    a, b = _read(full)[0], _read(restricted)[0]
    assert set(a["expanded"]) - term_list  # the unrestricted run has terms outside the 171 labels...
    for key in ("relevant", "uncertain", "irrelevant", "expanded"):
        assert set(b[key]) <= term_list  # ...the restricted one none
        assert set(b[key]) == set(a[key]) & term_list


def test_mine_needs_input_and_output(tmp_path, capsys):
    assert main(["mine", "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "--input" in capsys.readouterr().err
    assert main(["mine", "--input", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "must be an existing" in capsys.readouterr().err


def test_evaluate_needs_official_files(capsys):
    assert main(["mine", "--evaluate", "x.json"]) == 2
    assert "--ontology" in capsys.readouterr().err


def test_nltk_data_finds_or_builds_wordnet(tmp_path, monkeypatch, capsys):
    import nltk

    from LesaNetCore.textmine import nltk_setup

    if not (nltk_setup.DEBIAN_WORDNET_DIR / "data.noun").is_file() and nltk_setup.wordnet_location() is None:
        pytest.skip("no WordNet source here (neither NLTK data nor Debian's wordnet-base)")
    monkeypatch.setattr(nltk.data, "path", list(nltk.data.path))
    assert main(["nltk-data", "--no-download"]) == 0
    assert "WordNet 3.0" in capsys.readouterr().out
    assert main(["nltk-data", "--quiet", "--no-download"]) == 0
    assert capsys.readouterr().out == ""
