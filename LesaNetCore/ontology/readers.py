"""Reading ontologies and label lists from files: the official DeepLesion workbook, the project's JSON, and
the official label/split file.

Formats are handled here only; :mod:`.core` knows nothing of files. Every error names the file, the row and
column where it applies, and the value found.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import LesaNetError
from .core import LABEL_CLASSES, Ontology, Term

OFFICIAL_COLUMNS = ("id", "class", "term", "synonyms", "num_detected", "term_exclusive", "term_parents",
                    "term_children")
LIST_SEPARATOR = "|"
DEFAULT_ONTOLOGY_RESOURCE = "data/ontology/default_ontology.json"


def _split_list(value: object) -> list[str]:
    if value is None:
        return []
    return [part.strip() for part in str(value).split(LIST_SEPARATOR) if part.strip()]


def read_official_ontology(path: str | os.PathLike) -> Ontology:
    """Reads the official DeepLesion ontology workbook (``lesion_ontology_181022.xlsx``).

    Columns: id, class, term, synonyms, num_detected, term_exclusive, term_parents (all ancestors),
    term_children; lists are separated by " | ". Term order is the workbook's row order.

    The released workbook (333 terms) is not self-consistent, and the reference code tolerates it, so this
    reader repairs three things and lists each repair in ``ontology.warnings``: references to terms that have no
    row (e.g. "gastrointestinal", "artery", "neoplasm") are dropped — harmless for the hierarchy because
    term_parents lists every ancestor, so the relations that passed through the missing term remain; a term
    declared exclusive with its own ancestor or descendant (e.g. "pretracheal lymph node" with "superior
    mediastinum lymph node") loses that declaration, as a lesion is always in both; and a synonym claimed by
    two terms stays with the term whose name it is. Malformed rows are still errors.
    """
    import openpyxl

    path = Path(path)
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except FileNotFoundError:
        raise LesaNetError(f"ontology: file not found, but got {str(path)!r}") from None
    except Exception as err:  # openpyxl raises several unrelated types for non-workbooks
        raise LesaNetError(f"ontology: must be an .xlsx workbook ({err}), but got {str(path)!r}") from err
    sheet = workbook.worksheets[0]
    rows = sheet.iter_rows(values_only=True)
    header = tuple(str(c).strip() if c is not None else "" for c in next(rows, ()))
    missing = [c for c in OFFICIAL_COLUMNS if c not in header]
    if missing:
        raise LesaNetError(f"{path.name} row 1: must have the columns {', '.join(OFFICIAL_COLUMNS)}, but "
                           f"column {missing[0]!r} is missing (found {[h for h in header if h]})")
    col = {name: header.index(name) for name in OFFICIAL_COLUMNS}
    terms = []
    for row_number, row in enumerate(rows, start=2):
        if row is None or all(v is None for v in row):
            continue
        cells = {name: (row[i] if i < len(row) else None) for name, i in col.items()}
        get = cells.get
        origin = f"{path.name} row {row_number}"
        name = get("term")
        if name is None or not str(name).strip():
            raise LesaNetError(f"{origin} column 'term': must not be empty, but got {name!r}")
        label_class = str(get("class") or "").strip()
        if label_class not in LABEL_CLASSES:
            raise LesaNetError(f"{origin} column 'class': must be one of {', '.join(LABEL_CLASSES)}, but got "
                               f"{get('class')!r}")
        name = str(name).strip()
        synonyms = tuple(dict.fromkeys(" ".join(s.lower().split()) for s in [name, *_split_list(get("synonyms"))]))
        terms.append(Term(
            name=name,
            label_class=label_class,
            synonyms=synonyms,
            parents=frozenset(_split_list(get("term_parents"))),
            exclusive=frozenset(_split_list(get("term_exclusive"))),
            origin=origin,
        ))
    workbook.close()
    terms, warnings = _repair_official_terms(terms)
    return Ontology(terms, name=f"official DeepLesion ontology ({path.name})", warnings=warnings)


def _repair_official_terms(terms: list[Term]) -> tuple[list[Term], list[str]]:
    names = {t.name for t in terms}
    by_name = {t.name: t for t in terms}  # term_parents lists all ancestors, so parents = ancestors here
    warnings: list[str] = []
    owners: dict[str, list[str]] = {}
    for term in terms:
        for synonym in term.synonyms:
            owners.setdefault(synonym, []).append(term.name)
    repaired = []
    for term in terms:
        dropped = sorted((term.parents | term.exclusive) - names)
        for other in dropped:
            warnings.append(f"{term.origin}: dropped reference to {other!r}, which has no row")
        synonyms = []
        for synonym in term.synonyms:
            claimants = owners[synonym]
            if len(claimants) > 1 and synonym != term.name.lower() and synonym in {c.lower() for c in claimants}:
                warnings.append(f"{term.origin}: synonym {synonym!r} left to the term of that name")
                continue
            synonyms.append(synonym)
        exclusive = term.exclusive & names
        lineage = {o for o in exclusive if o in term.parents or term.name in by_name[o].parents}
        for other in sorted(lineage):
            warnings.append(f"{term.origin}: dropped exclusive {other!r}, an ancestor or descendant of {term.name!r}")
        repaired.append(Term(term.name, term.label_class, tuple(synonyms), term.parents & names,
                             exclusive - lineage, term.radlex, term.origin))
    return repaired, warnings


def read_ontology_json(path: str | os.PathLike, text: str | None = None) -> Ontology:
    """Reads the project's JSON ontology layout.

    Layout: ``{"format": "lesanet-ontology", "version": 1, "name": ..., "terms": [{"name", "class",
    "synonyms": [...], "parents": [...] (direct), "exclusive": [...] (declared; propagated on load),
    "radlex": "RID..." | null}, ...]}``.
    """
    path = Path(path)
    try:
        data = json.loads(text if text is not None else path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LesaNetError(f"ontology: file not found, but got {str(path)!r}") from None
    except json.JSONDecodeError as err:
        raise LesaNetError(f"{path.name} line {err.lineno}: must be valid JSON ({err.msg}), but got a parse error") from err
    if not isinstance(data, dict) or data.get("format") != "lesanet-ontology":
        raise LesaNetError(f"{path.name}: must be a 'lesanet-ontology' JSON document, but got format "
                           f"{data.get('format') if isinstance(data, dict) else type(data).__name__!r}")
    if data.get("version") != 1:
        raise LesaNetError(f"{path.name} 'version': must be 1, but got {data.get('version')!r}")
    terms = []
    for index, entry in enumerate(data.get("terms", [])):
        origin = f"{path.name} term #{index + 1}"
        if not isinstance(entry, dict):
            raise LesaNetError(f"{origin}: must be an object, but got {entry!r}")
        for key in ("name", "class"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise LesaNetError(f"{origin} field {key!r}: must be a non-empty string, but got {entry.get(key)!r}")
        for key in ("synonyms", "parents", "exclusive"):
            value = entry.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise LesaNetError(f"{origin} ({entry['name']!r}) field {key!r}: must be a list of strings, but got {value!r}")
        radlex = entry.get("radlex")
        if radlex is not None and (not isinstance(radlex, str) or not radlex.startswith("RID")):
            raise LesaNetError(f"{origin} ({entry['name']!r}) field 'radlex': must be 'RID<number>' or null, but got {radlex!r}")
        name = entry["name"].strip()
        synonyms = tuple(dict.fromkeys(" ".join(s.lower().split()) for s in [name, *entry.get("synonyms", [])]))
        terms.append(Term(name=name, label_class=entry["class"], synonyms=synonyms,
                          parents=frozenset(entry.get("parents", [])), exclusive=frozenset(entry.get("exclusive", [])),
                          radlex=radlex, origin=origin))
    return Ontology(terms, name=str(data.get("name", path.name)))


def load_default_ontology() -> Ontology:
    """The project's own ontology, shipped as package data."""
    resource = resources.files("LesaNetCore").joinpath(DEFAULT_ONTOLOGY_RESOURCE)
    return read_ontology_json(Path(str(resource)), resource.read_text(encoding="utf-8"))


def load_ontology(path: str | os.PathLike | None = None) -> Ontology:
    """The default ontology (``path`` None), an official ``.xlsx`` workbook, or a project ``.json`` file."""
    if path is None:
        return load_default_ontology()
    suffix = Path(path).suffix.lower()
    if suffix == ".xlsx":
        return read_official_ontology(path)
    if suffix == ".json":
        return read_ontology_json(path)
    raise LesaNetError(f"ontology: must be an .xlsx workbook or a .json ontology, but got {str(path)!r}")


@dataclass(frozen=True)
class SplitLabels:
    """Labels of one split of the official label file, aligned with ``lesion_idxs``.

    Each label list holds indices into the term list (the official file repeats some indices; they are kept as
    given, so use sets when counting).
    """

    lesion_idxs: tuple[int, ...]
    relevant: tuple[tuple[int, ...], ...]
    uncertain: tuple[tuple[int, ...], ...]
    irrelevant: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class LabelSplit:
    """The official ``text_mined_labels_171_and_split.json``: a term list and per-split lesion labels."""

    term_list: tuple[str, ...]
    splits: dict[str, SplitLabels]

    def to_dict(self) -> dict:
        """The official JSON layout (keys ``term_list``, ``{split}_lesion_idxs``, ``{split}_relevant_labels``...)."""
        out: dict[str, object] = {"term_list": list(self.term_list)}
        for split, labels in self.splits.items():
            out[f"{split}_lesion_idxs"] = list(labels.lesion_idxs)
            for kind in ("relevant", "uncertain", "irrelevant"):
                out[f"{split}_{kind}_labels"] = [list(x) for x in getattr(labels, kind)]
        return out


def read_label_split(path: str | os.PathLike) -> LabelSplit:
    """Reads the official label/split file; splits lacking irrelevant labels get empty lists."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LesaNetError(f"labels: file not found, but got {str(path)!r}") from None
    except json.JSONDecodeError as err:
        raise LesaNetError(f"{path.name} line {err.lineno}: must be valid JSON ({err.msg}), but got a parse error") from err
    if not isinstance(data, dict) or not isinstance(data.get("term_list"), list):
        raise LesaNetError(f"{path.name}: must be a JSON object with a 'term_list' list, but got keys "
                           f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
    term_list = tuple(str(t) for t in data["term_list"])
    if len(set(term_list)) != len(term_list):
        duplicate = next(t for t in term_list if term_list.count(t) > 1)
        raise LesaNetError(f"{path.name} 'term_list': terms must be unique, but got {duplicate!r} twice")
    splits = {}
    for split in ("train", "val", "test"):
        key = f"{split}_lesion_idxs"
        if key not in data:
            continue
        idxs = tuple(int(i) for i in data[key])
        lists = {}
        for kind in ("relevant", "uncertain", "irrelevant"):
            value = data.get(f"{split}_{kind}_labels", [[] for _ in idxs])
            if len(value) != len(idxs):
                raise LesaNetError(f"{path.name} '{split}_{kind}_labels': must have one list per lesion "
                                   f"({len(idxs)}), but got {len(value)}")
            for row, labels in enumerate(value):
                bad = [i for i in labels if not (isinstance(i, int) and 0 <= i < len(term_list))]
                if bad:
                    raise LesaNetError(f"{path.name} '{split}_{kind}_labels'[{row}]: label indices must be in "
                                       f"0..{len(term_list) - 1}, but got {bad[0]!r}")
            lists[kind] = tuple(tuple(x) for x in value)
        splits[split] = SplitLabels(lesion_idxs=idxs, **lists)
    if not splits:
        raise LesaNetError(f"{path.name}: must hold at least one of train/val/test_lesion_idxs, but got none")
    return LabelSplit(term_list=term_list, splits=splits)
