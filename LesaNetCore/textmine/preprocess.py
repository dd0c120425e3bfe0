"""Tokens with character offsets and normalised forms: the one view of a sentence every text-mining step shares.

Tokenisation is NLTK's ``NLTKWordTokenizer`` (Treebank rules; needs no downloaded data); hyphenated words are
split into their parts so "wedge-shaped" and "wedge shaped" match alike, and the joined form ("paraaortic")
is kept as an alternative. Each token's ``norm`` is its lower-cased WordNet noun lemma ("metastases" ->
"metastasis") passed through a small table of relational adjectives ("hepatic" -> "liver"), applied to
ontology synonyms and report text alike so that both sides meet in the same form.

Lemmas are identical on every set-up: a table shipped as package data (``LesaNetCore/data/textmine/lemma_cache.json``,
built from WordNet 3.0 by ``python -m LesaNetCore.textmine.preprocess --build-lemma-cache``) answers hot
words; other words go to NLTK's WordNet 3.0 (whichever copy :mod:`.nltk_setup` found: all are 3.0), and a
deterministic plural rule covers words WordNet does not know ("hypodensities" -> "hypodensity"). Without
WordNet the rule alone answers the words missing from the table, after one warning.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

BOOKMARK = "BOOKMARK"
OTHER_BOOKMARK = "OTHER_BMK"
BOOKMARK_TOKENS = frozenset({BOOKMARK, OTHER_BOOKMARK})
LEMMA_CACHE_FILE = "lemma_cache.json"

# Relational adjectives and their organ nouns: reports say "hepatic lesion" where an ontology may list only
# "liver lesion". Mapping both sides keeps synonyms such as "renal cyst" matching "kidney cyst".
ADJECTIVE_NOUNS = {
    "hepatic": "liver",
    "renal": "kidney",
    "pulmonary": "lung",
    "splenic": "spleen",
    "pancreatic": "pancreas",
    "osseous": "bone",
    "pleural": "pleura",
    "mediastinal": "mediastinum",
    "hilar": "hilum",
    "axillary": "axilla",
    "adrenals": "adrenal",
    "nodal": "node",
    "peritoneal": "peritoneum",
    "retroperitoneal": "retroperitoneum",
    "mesenteric": "mesentery",
    "pelvic": "pelvis",
    "abdominal": "abdomen",
    "thoracic": "thorax",
    "cardiac": "heart",
    "gastric": "stomach",
    "colonic": "colon",
    "vertebral": "spine",
    "ovarian": "ovary",
    "uterine": "uterus",
    "vesical": "bladder",
    "lobar": "lobe",
}
_ABBREVIATIONS = frozenset({"vs", "approx", "dr", "mr", "mrs", "st", "fig", "no", "cf", "etc", "ca"})
_HYPHENS = re.compile(r"[-\u2010\u2011\u2012\u2013]")
_PLURAL_IES = re.compile(r"^(.{3,})ies$")
_PLURAL_S = re.compile(r"^(.{2,}[^su])s$")


class Token:
    """One token: ``text`` is ``sentence[start:end]``; ``norm`` the form matching uses.

    ``joined`` is set on the first part of a hyphenated word: the norm of the whole word without hyphens and
    the number of parts it spans, so "non-enhancing" can also match "nonenhancing". (A slotted plain class:
    tokens are made by the tens of thousands per second, and a frozen dataclass costs twice as much.)
    """

    __slots__ = ("text", "start", "end", "norm", "joined", "lower", "is_bookmark")

    def __init__(self, text: str, start: int, end: int, norm: str, joined: tuple[str, int] | None = None) -> None:
        self.text = text
        self.start = start
        self.end = end
        self.norm = norm
        self.joined = joined
        self.lower = text.lower()
        self.is_bookmark = text in BOOKMARK_TOKENS

    def __repr__(self) -> str:
        return f"Token({self.text!r}, {self.start}, {self.end}, norm={self.norm!r}, joined={self.joined!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Token) and (self.text, self.start, self.end, self.norm, self.joined) == \
            (other.text, other.start, other.end, other.norm, other.joined)

    __hash__ = None


class Lemmatizer:
    """WordNet 3.0 noun lemmas with a shipped table in front and a deterministic plural rule behind.

    Args:
        use_wordnet: ask NLTK's WordNet for words missing from the table (default); False uses the table and
            the plural rule only (what a machine without WordNet gets).
    """

    def __init__(self, use_wordnet: bool = True) -> None:
        self._cache: dict[str, str] = dict(_shipped_lemmas())
        self._use_wordnet = use_wordnet
        self._wordnet = None
        self._morphy = None

    def __call__(self, word: str) -> str:
        lemma = self._cache.get(word)
        if lemma is None:
            lemma = self._lemmatize(word)
            self._cache[word] = lemma
        return lemma

    def _lemmatize(self, word: str) -> str:
        if not word.isalpha() or len(word) < 4:
            return word
        morphy = self._wordnet_morphy()
        if morphy is not None:
            lemma = morphy(word)
            if lemma is not None:
                return lemma
        return plural_rule(word)

    def _wordnet_morphy(self):
        if not self._use_wordnet:
            return None
        if self._morphy is None:
            try:
                from .nltk_setup import add_local_data_path

                add_local_data_path()
                from nltk.corpus import wordnet

                wordnet.ensure_loaded()

                def morphy(word: str, _wn=wordnet) -> str | None:
                    # Morphy's first noun base form, as WordNetLemmatizer.lemmatize(word, "n") picks it,
                    # but None when WordNet knows no noun form (then the plural rule decides).
                    forms = _wn._morphy(word, "n")
                    return min(forms, key=len) if forms else None

                self._morphy = morphy
            except LookupError:
                warnings.warn(
                    "WordNet not found: lemmas come from the shipped table and a plural rule only; run "
                    "`lesanet nltk-data` to install WordNet 3.0",
                    stacklevel=3,
                )
                self._use_wordnet = False
                return None
        return self._morphy


def plural_rule(word: str) -> str:
    """Deterministic plural -> singular for words WordNet does not know ("hypodensities" -> "hypodensity")."""
    match = _PLURAL_IES.match(word)
    if match:
        return match.group(1) + "y"
    match = _PLURAL_S.match(word)
    if match and not word.endswith(("ous", "is", "ss", "us")):
        return match.group(1)
    return word


def data_path(name: str) -> Path:
    """A file of the text miner's package data (``LesaNetCore/data/textmine``)."""
    return Path(__file__).resolve().parents[1] / "data" / "textmine" / name


def _shipped_lemmas() -> dict[str, str]:
    global _SHIPPED
    if _SHIPPED is None:
        try:
            text = data_path(LEMMA_CACHE_FILE).read_text(encoding="utf-8")
            _SHIPPED = dict(json.loads(text)["lemmas"])
        except FileNotFoundError:
            _SHIPPED = {}
    return _SHIPPED


_SHIPPED: dict[str, str] | None = None
_TOKENIZER = None
_DEFAULT_LEMMATIZER: Lemmatizer | None = None


def default_lemmatizer() -> Lemmatizer:
    """The process-wide lemmatiser (its cache grows as words are seen, so hot words cost one dict lookup)."""
    global _DEFAULT_LEMMATIZER
    if _DEFAULT_LEMMATIZER is None:
        _DEFAULT_LEMMATIZER = Lemmatizer()
    return _DEFAULT_LEMMATIZER


_NORMS: dict[str, str] = {}  # word as written -> norm, for the default lemmatiser (hot path: one lookup)


def normalize_word(word: str, lemmatizer: Lemmatizer | None = None) -> str:
    """The matching form of one word: lower case, noun lemma, adjective for an adverb in "-ly", organ noun for
    a relational adjective."""
    if lemmatizer is None:
        norm = _NORMS.get(word)
        if norm is None:
            norm = _NORMS[word] = _normalize(word, default_lemmatizer())
        return norm
    return _normalize(word, lemmatizer)


def _normalize(word: str, lemmatizer: Lemmatizer) -> str:
    lemma = lemmatizer(word.lower())
    if len(lemma) >= 8 and lemma.endswith("ly") and lemma.isalpha():
        lemma = lemma[:-2]  # adverb -> adjective: "heterogeneously", "diffusely", "irregularly"
    return ADJECTIVE_NOUNS.get(lemma, lemma)


def tokenize(text: str, lemmatizer: Lemmatizer | None = None) -> list[Token]:
    """Splits ``text`` into tokens with offsets into ``text`` and normalised forms.

    Example:
        >>> [(t.text, t.start, t.norm) for t in tokenize("Hepatic metastases BOOKMARK")]
        [('Hepatic', 0, 'liver'), ('metastases', 8, 'metastasis'), ('BOOKMARK', 19, 'BOOKMARK')]
    """
    global _TOKENIZER
    if _TOKENIZER is None:
        from nltk.tokenize import NLTKWordTokenizer

        _TOKENIZER = NLTKWordTokenizer()
    tokens: list[Token] = []
    for start, end in _spans(text):
        word = text[start:end]
        if word in BOOKMARK_TOKENS:
            tokens.append(Token(word, start, end, word))
            continue
        if len(word) > 2 and _HYPHENS.search(word, 1, len(word) - 1):
            parts = [(m.start(), m.end()) for m in re.finditer(r"[^-\u2010\u2011\u2012\u2013]+", word)]
            if len(parts) > 1:
                joined = normalize_word(_HYPHENS.sub("", word), lemmatizer)
                for i, (a, b) in enumerate(parts):
                    tokens.append(Token(word[a:b], start + a, start + b, normalize_word(word[a:b], lemmatizer),
                                        (joined, len(parts)) if i == 0 else None))
                continue
        tokens.append(Token(word, start, end, normalize_word(word, lemmatizer)))
    return tokens


# A sentence made only of these characters is tokenised by one regular expression that reproduces
# NLTKWordTokenizer's rules for them (checked against NLTK on random strings in the tests); anything else
# (quotes, apostrophes, ellipses, other symbols) goes through NLTK itself. NLTK's tokenizer costs ~150 us per
# sentence, more than the rest of mining together.
_FAST_TEXT = re.compile(r"[A-Za-z0-9 ,.;:()\[\]/_+-]*\Z")
_FAST_TOKEN = re.compile(r"[()\[\];]|[,:](?!\d)|(?:[^\s()\[\];,:]|[,:](?=\d))+")
_PUNCT_PAIR = re.compile(r"[,:][,:]")  # NLTK's comma rule consumes the next character: leave pairs to it
_FINAL_PERIOD = re.compile(r"(?<=[^.])\.[\s\])]*\Z")


def _nltk_spans(text: str) -> list[tuple[int, int]]:
    if _FAST_TEXT.match(text) and ".." not in text and "--" not in text and not _PUNCT_PAIR.search(text):
        spans = [m.span() for m in _FAST_TOKEN.finditer(text)]
        final = _FINAL_PERIOD.search(text)
        if final is not None:
            dot = final.start()
            for k, (a, b) in enumerate(spans):
                if a <= dot < b and b - a > 1:
                    spans[k:k + 1] = [(a, dot), (dot, dot + 1)] + ([(dot + 1, b)] if b > dot + 1 else [])
                    break
        return spans
    return list(_TOKENIZER.span_tokenize(text))


def _spans(text: str):
    """NLTK's spans, with a sentence-internal full stop split off a word (NLTK splits only the final one)."""
    for start, end in _nltk_spans(text):
        if end - start > 1 and text[end - 1] == "." and text[start : end - 1].isalpha() \
                and text[start : end - 1].lower() not in _ABBREVIATIONS:
            yield start, end - 1
            yield end - 1, end
        else:
            yield start, end


def build_lemma_cache(words: set[str], known_only: set[str] = frozenset()) -> dict[str, str]:
    """WordNet 3.0 lemmas (with the plural rule behind) of ``words``, for the shipped table.

    Args:
        words: always included.
        known_only: included only when WordNet knows them as noun forms (guessed plurals).
    """
    lemmatizer = Lemmatizer(use_wordnet=True)
    lemmatizer._cache = {}
    morphy = lemmatizer._wordnet_morphy()
    if morphy is None:
        from ..errors import LesaNetError

        raise LesaNetError("wordnet: must be installed to build the lemma table (run `lesanet nltk-data`), but got none")
    chosen = set(words) | {w for w in known_only if morphy(w) is not None}
    return {word: lemmatizer(word) for word in sorted(chosen)}


def _plural_forms(word: str) -> set[str]:
    forms = {word + "s", word + "es"}
    if word.endswith("y"):
        forms.add(word[:-1] + "ies")
    if word.endswith("is"):
        forms.add(word[:-2] + "es")  # metastasis -> metastases
    if word.endswith("um"):
        forms.add(word[:-2] + "a")
    if word.endswith("us"):
        forms.add(word[:-2] + "i")
    if word.endswith("a"):
        forms.add(word + "e")  # vertebra -> vertebrae
    return forms


def main(argv: list[str] | None = None) -> int:
    """``python -m LesaNetCore.textmine.preprocess --build-lemma-cache [--ontology PATH ...]``.

    Rebuilds the shipped lemma table from WordNet 3.0 for the words of the default ontology (and any further
    ontology files given), their plural forms, and the words of the shipped annotated sentences.
    """
    import argparse

    from ..fileio import write_text_atomic
    from ..ontology import load_default_ontology, load_ontology

    parser = argparse.ArgumentParser(prog="python -m LesaNetCore.textmine.preprocess")
    parser.add_argument("--build-lemma-cache", action="store_true")
    parser.add_argument("--ontology", action="append", default=[], help="further ontology file(s)")
    args = parser.parse_args(argv)
    if not args.build_lemma_cache:
        parser.error("nothing to do: pass --build-lemma-cache")
    words: set[str] = set()
    for onto in [load_default_ontology(), *(load_ontology(p) for p in args.ontology)]:
        for name in onto.names:
            for synonym in (name, *onto.term(name).synonyms):
                words.update(w for w in re.split(r"[^a-z]+", synonym.lower()) if len(w) >= 3)
    plurals = {form for w in words for form in _plural_forms(w)} - words
    for name in ("relevance_sentences.txt", "relevance_heldout.txt"):
        path = data_path(name)
        if path.exists():
            words.update(w for w in re.split(r"[^a-z]+", path.read_text(encoding="utf-8").lower()) if len(w) >= 4)
    lemmas = build_lemma_cache(words, plurals)
    text = json.dumps({"wordnet": "3.0", "lemmas": lemmas}, indent=0, sort_keys=True) + "\n"
    write_text_atomic(data_path(LEMMA_CACHE_FILE), text, "lemma_cache", overwrite=True)
    data_path(LEMMA_CACHE_FILE).chmod(0o644)  # package data: readable by everyone
    print(f"{len(lemmas)} lemmas -> {data_path(LEMMA_CACHE_FILE)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
