"""Makes NLTK's WordNet available offline, identically on every supported set-up.

The lemmatiser needs WordNet 3.0. Three sources give the same 3.0 database, so results do not depend on which
one a machine has:

1. an NLTK data folder that already holds ``corpora/wordnet`` (``nltk.download("wordnet")`` on users' machines);
2. Debian's ``wordnet-base`` package (``/usr/share/wordnet``): its files are *copied* (NLTK refuses symlinked
   corpora readers on some set-ups) into the project-local folder, together with the ``lexnames`` file that
   Debian lacks and that we rebuild from the package's man page ``lexnames.5WN``;
3. ``nltk.download("wordnet")`` into the project-local folder, when a network is reachable.

The project-local folder is ``$LESANET_NLTK_DATA`` when set, else ``~/.cache/lesanet/nltk_data``. The text
miner adds it to ``nltk.data.path`` on import (:func:`add_local_data_path`), so ``lesanet nltk-data`` needs to
run only once per machine (the setup script does it).
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import tempfile
from pathlib import Path

from ..errors import LesaNetError

DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")
DEBIAN_LEXNAMES_MAN = Path("/usr/share/man/man5/lexnames.5WN.gz")

# Files NLTK's WordNetCorpusReader opens (lexnames is rebuilt; the rest are copied as they are).
_WORDNET_FILES = (
    "adj.exc", "adv.exc", "noun.exc", "verb.exc",
    "data.adj", "data.adv", "data.noun", "data.verb",
    "index.adj", "index.adv", "index.noun", "index.verb",
)
_OPTIONAL_FILES = ("cntlist.rev", "sentidx.vrb", "sents.vrb", "frames.vrb")
_POS_FILES = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}
_SS_TYPE = {"n": 1, "v": 2, "a": 3, "r": 4, "s": 5}
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
_LEXNAME_LINE = re.compile(r"^(\d\d)\t([a-z]+)\.([A-Za-z]+)\s")


def local_data_dir() -> Path:
    """The project-local NLTK data folder: ``$LESANET_NLTK_DATA`` or ``~/.cache/lesanet/nltk_data``."""
    env = os.environ.get("LESANET_NLTK_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lesanet" / "nltk_data"


def add_local_data_path() -> Path:
    """Puts the project-local folder first on ``nltk.data.path`` (idempotent) and returns it."""
    import nltk

    folder = str(local_data_dir())
    if folder not in nltk.data.path:
        nltk.data.path.insert(0, folder)
    return Path(folder)


def wordnet_location() -> str | None:
    """Where NLTK finds WordNet (a path), or None when it finds none."""
    import nltk

    add_local_data_path()
    for resource in ("corpora/wordnet", "corpora/wordnet.zip"):
        try:
            return str(nltk.data.find(resource))
        except LookupError:
            continue
    return None


def lexnames_from_man_page(man_path: str | os.PathLike = DEBIAN_LEXNAMES_MAN) -> str:
    """Rebuilds WordNet's ``lexnames`` file (``NN<TAB>name<TAB>category``) from the ``lexnames.5WN`` man page.

    Raises:
        LesaNetError: the man page is missing or does not list the 45 lexicographer files of WordNet 3.0.
    """
    man_path = Path(man_path)
    if not man_path.exists():
        raise invalid_path("man_path", "must be WordNet's lexnames.5WN man page (Debian wordnet-base)", man_path)
    raw = man_path.read_bytes()
    text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8", "replace")
    lines = []
    for line in text.splitlines():
        match = _LEXNAME_LINE.match(line)
        if match:
            number, pos, rest = match.groups()
            lines.append(f"{number}\t{pos}.{rest}\t{_CATEGORY[pos]}")
    if len(lines) != 45 or [int(line[:2]) for line in lines] != list(range(45)):
        raise invalid_path("man_path", "must list lexicographer files 00..44 (WordNet 3.0)", man_path)
    return "\n".join(lines) + "\n"


def invalid_path(argument: str, rule: str, value: object) -> LesaNetError:
    return LesaNetError(f"{argument}: {rule}, but got {str(value)!r}")


def index_sense_from_data(source: str | os.PathLike = DEBIAN_WORDNET_DIR) -> str:
    """Rebuilds WordNet's ``index.sense`` (sense key, offset, sense number, tag count) from the data files.

    NLTK >= 3.8 opens ``index.sense`` when its reader starts (to map synsets across WordNet versions); Debian
    ships WordNet without it. Sense keys follow ``senseidx(5WN)``: ``lemma%ss_type:lex_filenum:lex_id:head:id``
    where adjective satellites name the first word of their head synset.
    """
    source = Path(source)
    words: dict[tuple[str, str], list[tuple[str, int]]] = {}  # (pos letter, offset) -> [(lemma, lex_id)]
    synsets: list[tuple[str, str, str, int, str | None]] = []  # (offset, ss_type, lex_filenum, ..., head offset)
    for pos_file, letter in _POS_FILES.items():
        with open(source / f"data.{pos_file}", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("  "):
                    continue
                fields = line.split(" ")
                offset, lex_filenum, ss_type, w_cnt = fields[0], fields[1], fields[2], int(fields[3], 16)
                entries = []
                for i in range(w_cnt):
                    lemma = re.sub(r"\([a-z]+\)$", "", fields[4 + 2 * i]).lower()
                    entries.append((lemma, int(fields[5 + 2 * i], 16)))
                words[(letter, offset)] = entries
                rest = fields[4 + 2 * w_cnt :]
                head = None
                if ss_type == "s":
                    for j in range(int(rest[0])):
                        if rest[1 + 4 * j] == "&":
                            head = rest[2 + 4 * j]
                            break
                synsets.append((letter, offset, ss_type, int(lex_filenum), head))
    sense_number: dict[tuple[str, str, str], int] = {}
    for pos_file, letter in _POS_FILES.items():
        with open(source / f"index.{pos_file}", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("  "):
                    continue
                fields = line.split()
                synset_cnt = int(fields[2])
                for number, offset in enumerate(fields[len(fields) - synset_cnt :], start=1):
                    sense_number[(letter, offset, fields[0])] = number
    tag_count: dict[str, int] = {}
    if (source / "cntlist.rev").is_file():
        with open(source / "cntlist.rev", encoding="utf-8") as fh:
            for line in fh:
                key, _, count = line.split()
                tag_count[key] = int(count)
    lines = []
    for letter, offset, ss_type, lex_filenum, head in synsets:
        head_word, head_id = "", ""
        if head is not None:
            head_lemma, head_lex_id = words[("a", head)][0]
            head_word, head_id = head_lemma, f"{head_lex_id:02d}"
        for lemma, lex_id in words[(letter, offset)]:
            key = f"{lemma}%{_SS_TYPE[ss_type]}:{lex_filenum:02d}:{lex_id:02d}:{head_word}:{head_id}"
            number = sense_number.get((letter, offset, lemma), 0)
            lines.append(f"{key} {offset} {number} {tag_count.get(key, 0)}")
    lines.sort()
    return "\n".join(lines) + "\n"


def build_wordnet_from_debian(
    target: str | os.PathLike | None = None,
    source: str | os.PathLike = DEBIAN_WORDNET_DIR,
    man_page: str | os.PathLike = DEBIAN_LEXNAMES_MAN,
) -> Path:
    """Copies Debian's WordNet 3.0 into ``target/corpora/wordnet`` with a rebuilt ``lexnames``.

    The folder is assembled beside its final place and renamed in one step, so a half-copied corpus is never
    visible to NLTK.

    Returns:
        The ``corpora/wordnet`` folder.
    """
    source = Path(source)
    missing = [name for name in _WORDNET_FILES if not (source / name).is_file()]
    if missing:
        raise invalid_path("source", f"must hold WordNet 3.0 files (missing {', '.join(missing)})", source)
    lexnames = lexnames_from_man_page(man_page)
    final = Path(target if target is not None else local_data_dir()) / "corpora" / "wordnet"
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".wordnet.", dir=final.parent))
    try:
        for name in _WORDNET_FILES + _OPTIONAL_FILES:
            if (source / name).is_file():
                # copyfile follows symlinks: NLTK must see real files, never links into /usr/share.
                shutil.copyfile(source / name, staging / name)
        (staging / "lexnames").write_text(lexnames, encoding="ascii")
        index_sense = source / "index.sense"
        if index_sense.is_file():
            shutil.copyfile(index_sense, staging / "index.sense")
        else:
            (staging / "index.sense").write_text(index_sense_from_data(source), encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return final


def wordnet_version() -> str:
    """The version NLTK's WordNet reader reports (``"3.0"`` for every supported source)."""
    add_local_data_path()
    from nltk.corpus import wordnet

    return str(wordnet.get_version())


def ensure_wordnet(download: bool = True) -> tuple[str, str]:
    """Makes WordNet 3.0 available to NLTK, trying the sources in the module's order.

    Returns:
        ``(how, where)``: how it was made available (``"found"``, ``"debian"`` or ``"download"``) and the folder.

    Raises:
        LesaNetError: no source worked; the message says what to install.
    """
    where = wordnet_location()
    how = "found"
    if where is None and DEBIAN_WORDNET_DIR.is_dir():
        where, how = str(build_wordnet_from_debian()), "debian"
    if where is None and download:
        import nltk

        if nltk.download("wordnet", download_dir=str(local_data_dir()), quiet=True, raise_on_error=False):
            where, how = wordnet_location(), "download"
    if where is None:
        raise LesaNetError(
            "wordnet: NLTK's WordNet 3.0 corpus must be available for lemmatisation, but got none; install it "
            "with `apt-get install wordnet-base` (Debian/Ubuntu) and rerun `lesanet nltk-data`, or run "
            f"python -c \"import nltk; nltk.download('wordnet', download_dir='{local_data_dir()}')\""
        )
    version = wordnet_version()
    if version != "3.0":
        raise invalid_path("wordnet", "must be WordNet 3.0 so lemmas match on every set-up", f"{version} at {where}")
    return how, where
