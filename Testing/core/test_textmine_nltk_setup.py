"""Offline WordNet: lexnames and index.sense rebuilt from Debian's wordnet-base, copied (not linked)."""

from __future__ import annotations

from pathlib import Path

import pytest

from LesaNetCore.errors import LesaNetError
from LesaNetCore.textmine import nltk_setup


def _need_debian():
    if not (nltk_setup.DEBIAN_WORDNET_DIR / "data.noun").is_file() or not nltk_setup.DEBIAN_LEXNAMES_MAN.is_file():
        pytest.skip("Debian's wordnet-base is not installed (apt-get install wordnet-base)")


def test_lexnames_from_man_page():
    _need_debian()
    lines = nltk_setup.lexnames_from_man_page().splitlines()
    assert len(lines) == 45
    assert lines[0] == "00\tadj.all\t3" and lines[18] == "18\tnoun.person\t1" and lines[44] == "44\tadj.ppl\t3"


def test_lexnames_rejects_other_files(tmp_path):
    bad = tmp_path / "lexnames.5WN"
    bad.write_text("not a man page")
    with pytest.raises(LesaNetError, match="lexicographer files"):
        nltk_setup.lexnames_from_man_page(bad)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The multilingual functions")  # no OMW reader passed: English only
def test_build_from_debian_gives_a_working_wordnet(tmp_path, monkeypatch):
    _need_debian()
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])  # NLTK opens corpora only under its data path
    folder = nltk_setup.build_wordnet_from_debian(tmp_path)
    assert folder == tmp_path / "corpora" / "wordnet"
    for name in ("data.noun", "index.noun", "noun.exc", "lexnames", "index.sense"):
        assert (folder / name).is_file() and not (folder / name).is_symlink()
    from nltk.corpus.reader.wordnet import WordNetCorpusReader
    from nltk.data import FileSystemPathPointer

    reader = WordNetCorpusReader(FileSystemPathPointer(str(folder)), None)
    assert reader.get_version() == "3.0"
    assert reader.morphy("metastases", "n") == "metastasis"
    assert reader.synsets("liver")[0].lexname() == "noun.body"
    key = reader.synsets("liver")[0].lemmas()[0].key()
    assert any(line.startswith(key + " ") for line in (folder / "index.sense").read_text().splitlines()[:200000])


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(LesaNetError, match="missing"):
        nltk_setup.build_wordnet_from_debian(tmp_path / "out", source=tmp_path)


def test_ensure_wordnet_says_what_to_install(tmp_path, monkeypatch):
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty")])
    monkeypatch.setenv("LESANET_NLTK_DATA", str(tmp_path / "local"))
    monkeypatch.setattr(nltk_setup, "DEBIAN_WORDNET_DIR", Path(tmp_path / "no-debian"))
    with pytest.raises(LesaNetError, match="apt-get install wordnet-base"):
        nltk_setup.ensure_wordnet(download=False)


def test_local_data_dir_follows_the_environment(tmp_path, monkeypatch):
    import nltk

    monkeypatch.setattr(nltk.data, "path", [])
    monkeypatch.setenv("LESANET_NLTK_DATA", str(tmp_path))
    assert nltk_setup.add_local_data_path() == tmp_path
    nltk_setup.add_local_data_path()
    assert nltk.data.path == [str(tmp_path)]
