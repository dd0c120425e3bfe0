"""The lesion ontology: terms in a hierarchy (a DAG) with mutually exclusive pairs.

LesaNet uses the ontology three ways (paper Sec. 3.1): training labels are *expanded* with every ancestor
(a "right mid lung" lesion is also in the "right lung", the "lung" and the "chest"); *exclusive* relations give
reliable negatives for relational hard example mining (a lesion in the liver is certainly not in the lung);
and inference decisions are made consistent with both.

Exclusive relations propagate down the hierarchy: if a and b are exclusive, every descendant of a is exclusive
with b and with every descendant of b. :class:`Ontology` stores the declared relations and computes the
closures once, so queries are dictionary look-ups.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..errors import LesaNetError

LABEL_CLASSES = ("bodypart", "type", "attribute")


@dataclass(frozen=True)
class Term:
    """One ontology term.

    Attributes:
        name: the canonical term name (e.g. ``"right mid lung"``), unique in its ontology.
        label_class: ``"bodypart"``, ``"type"`` or ``"attribute"``.
        synonyms: lower-case surface forms a report may use, the lower-cased name included.
        parents: parent terms. Direct parents are expected, but a full ancestor list (as the official
            workbook stores it) is accepted: the hierarchy is reduced to direct edges when queried.
        exclusive: terms declared mutually exclusive with this one (propagation is computed by the ontology).
        radlex: RadLex identifier (``"RID58"``) when known.
        origin: where the term was read (``"file.xlsx row 12"``), used in error messages only.
    """

    name: str
    label_class: str
    synonyms: tuple[str, ...] = ()
    parents: frozenset[str] = frozenset()
    exclusive: frozenset[str] = frozenset()
    radlex: str | None = None
    origin: str = field(default="", compare=False)

    def where(self) -> str:
        return f" ({self.origin})" if self.origin else ""


class Ontology:
    """An immutable, validated lesion ontology.

    Args:
        terms: the terms, in the order that defines :attr:`names` (label order).
        name: a short description of where the ontology came from.
        warnings: repairs a lenient reader made to its source (kept for reports; see ``read_official_ontology``).

    Raises:
        LesaNetError: a duplicate term, an unknown class, parent or exclusive term, a cycle, a term exclusive
            with its own ancestor (after propagation), or a synonym claimed by two terms; the message names the
            term, where it was read and the offending value.

    Example:
        >>> onto = Ontology([
        ...     Term("chest", "bodypart"), Term("abdomen", "bodypart", exclusive=frozenset({"chest"})),
        ...     Term("lung", "bodypart", parents=frozenset({"chest"})), Term("liver", "bodypart",
        ...     parents=frozenset({"abdomen"}))])
        >>> sorted(onto.expand({"lung"}))
        ['chest', 'lung']
        >>> "lung" in onto.exclusive_with("liver")
        True
    """

    def __init__(self, terms: Iterable[Term], name: str = "", warnings: Iterable[str] = ()) -> None:
        self.name = name
        self.warnings: tuple[str, ...] = tuple(warnings)
        self._terms: dict[str, Term] = {}
        for term in terms:
            if term.name in self._terms:
                raise LesaNetError(f"term{term.where()}: term names must be unique, but got {term.name!r} twice")
            if term.label_class not in LABEL_CLASSES:
                raise LesaNetError(
                    f"class of {term.name!r}{term.where()}: must be one of {', '.join(LABEL_CLASSES)}, "
                    f"but got {term.label_class!r}"
                )
            self._terms[term.name] = term
        self._check_references()
        self._ancestors = self._close_ancestors()
        self._descendants: dict[str, set[str]] = {n: set() for n in self._terms}
        for child, ancestors in self._ancestors.items():
            for ancestor in ancestors:
                self._descendants[ancestor].add(child)
        self._parents = self._reduce_to_direct_parents()
        self._exclusive = self._propagate_exclusive()
        self._synonyms = self._index_synonyms()

    # ----------------------------------------------------------------------------------------- construction
    def _check_references(self) -> None:
        for term in self._terms.values():
            for kind, names in (("parents", term.parents), ("exclusive", term.exclusive)):
                for other in sorted(names):
                    if other not in self._terms:
                        raise LesaNetError(
                            f"{kind} of {term.name!r}{term.where()}: must name terms of the ontology, "
                            f"but got unknown term {other!r}"
                        )
                    if other == term.name:
                        raise LesaNetError(f"{kind} of {term.name!r}{term.where()}: must not name the term itself, "
                                           f"but got {other!r}")

    def _close_ancestors(self) -> dict[str, frozenset[str]]:
        """Ancestor closure by depth-first search; a back edge is a cycle, reported with its path."""
        done: dict[str, frozenset[str]] = {}
        on_path: list[str] = []

        def visit(name: str) -> frozenset[str]:
            if name in done:
                return done[name]
            if name in on_path:
                cycle = on_path[on_path.index(name):] + [name]
                term = self._terms[name]
                raise LesaNetError(f"parents of {name!r}{term.where()}: the hierarchy must be acyclic, but got the "
                                   f"cycle {' -> '.join(cycle)}")
            on_path.append(name)
            result: set[str] = set()
            for parent in self._terms[name].parents:
                result.add(parent)
                result |= visit(parent)
            on_path.pop()
            done[name] = frozenset(result)
            return done[name]

        for name in self._terms:
            visit(name)
        return done

    def _reduce_to_direct_parents(self) -> dict[str, frozenset[str]]:
        """Transitive reduction: a is a direct parent of t when no other ancestor of t lies below a."""
        direct = {}
        for name, ancestors in self._ancestors.items():
            direct[name] = frozenset(a for a in ancestors if not any(a in self._ancestors[b] for b in ancestors))
        return direct

    def _propagate_exclusive(self) -> dict[str, frozenset[str]]:
        """Closes the declared exclusive pairs under "descendants inherit their ancestors' exclusions".

        A declared pair between a term and its own ancestor or descendant is an error. A term that descends
        from both sides of a pair (possible in a DAG: "esophagus lymph node" lies under "mediastinum" and under
        "esophagus", which are exclusive) inherits neither exclusion with its own relatives: it cannot be
        exclusive with its own ancestor.
        """
        for term in self._terms.values():
            related = self._ancestors[term.name] | self._descendants[term.name]
            clash = sorted(term.exclusive & related)
            if clash:
                kind = "ancestor" if clash[0] in self._ancestors[term.name] else "descendant"
                raise LesaNetError(
                    f"exclusive of {term.name!r}{term.where()}: a term must not be exclusive with its own ancestor "
                    f"or descendant, but got {clash[0]!r} (its {kind})"
                )
        exclusive: dict[str, set[str]] = {n: set() for n in self._terms}
        for term in self._terms.values():
            for other in term.exclusive:
                for x in {term.name} | self._descendants[term.name]:
                    lineage = self._ancestors[x] | self._descendants[x] | {x}
                    for y in ({other} | self._descendants[other]) - lineage:
                        exclusive[x].add(y)
                        exclusive[y].add(x)
        return {n: frozenset(v) for n, v in exclusive.items()}

    def _index_synonyms(self) -> dict[str, str]:
        index: dict[str, str] = {}
        for term in self._terms.values():
            for synonym in {term.name.lower(), *term.synonyms}:
                key = " ".join(synonym.lower().split())
                owner = index.get(key)
                if owner is not None and owner != term.name:
                    raise LesaNetError(
                        f"synonyms of {term.name!r}{term.where()}: a synonym must belong to one term, but got "
                        f"{key!r}, already a synonym of {owner!r}"
                    )
                index[key] = term.name
        return index

    # ------------------------------------------------------------------------------------------------ queries
    @property
    def names(self) -> tuple[str, ...]:
        """Term names in ontology order."""
        return tuple(self._terms)

    @property
    def terms(self) -> tuple[Term, ...]:
        return tuple(self._terms.values())

    def __len__(self) -> int:
        return len(self._terms)

    def __contains__(self, name: object) -> bool:
        return name in self._terms

    def __iter__(self):
        return iter(self._terms.values())

    def __repr__(self) -> str:
        return f"Ontology({len(self)} terms{', ' + self.name if self.name else ''})"

    def term(self, name: str) -> Term:
        """The term called ``name``; raises LesaNetError naming it when unknown."""
        try:
            return self._terms[name]
        except KeyError:
            raise LesaNetError(f"term: must be a term of the ontology ({len(self)} terms), but got {name!r}") from None

    def label_class(self, name: str) -> str:
        return self.term(name).label_class

    def parents(self, name: str) -> frozenset[str]:
        """Direct parents (the transitive reduction of the declared hierarchy)."""
        self.term(name)
        return self._parents[name]

    def children(self, name: str) -> frozenset[str]:
        """Direct children."""
        self.term(name)
        return frozenset(c for c in self._descendants[name] if name in self._parents[c])

    def ancestors(self, name: str) -> frozenset[str]:
        self.term(name)
        return self._ancestors[name]

    def descendants(self, name: str) -> frozenset[str]:
        self.term(name)
        return frozenset(self._descendants[name])

    def exclusive_with(self, name: str) -> frozenset[str]:
        """Terms exclusive with ``name`` after propagation down the hierarchy."""
        self.term(name)
        return self._exclusive[name]

    def synonym_index(self) -> dict[str, str]:
        """Lower-case, space-normalised surface form -> term name (the names included)."""
        return dict(self._synonyms)

    def expand(self, labels: Iterable[str]) -> frozenset[str]:
        """``labels`` with every ancestor added (label expansion, paper Sec. 3.1)."""
        result: set[str] = set()
        for name in labels:
            result.add(self.term(name).name)
            result |= self._ancestors[name]
        return frozenset(result)

    def reliable_negatives(self, labels: Iterable[str]) -> frozenset[str]:
        """Terms exclusive with any of ``labels``: certainly absent, so usable as hard negatives (RHEM)."""
        result: set[str] = set()
        for name in labels:
            result |= self.exclusive_with(name)
        return frozenset(result)

    def parent_child_pairs(self) -> list[tuple[str, str]]:
        """Direct (parent, child) edges."""
        return [(p, c) for c in self._terms for p in sorted(self._parents[c])]

    def ancestor_pairs(self) -> list[tuple[str, str]]:
        """(ancestor, descendant) pairs of the hierarchy's closure."""
        return [(a, c) for c in self._terms for a in sorted(self._ancestors[c])]

    def exclusive_pairs(self) -> list[tuple[str, str]]:
        """Unordered exclusive pairs after propagation, each once, in ontology order."""
        order = {n: i for i, n in enumerate(self._terms)}
        return [(a, b) for a in self._terms for b in sorted(self._exclusive[a], key=order.get) if order[a] < order[b]]

    def class_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(LABEL_CLASSES, 0)
        for term in self._terms.values():
            counts[term.label_class] += 1
        return counts

    # ------------------------------------------------------------------------------------------- derivations
    def subset(self, names: Iterable[str], name: str | None = None) -> Ontology:
        """The ontology restricted to ``names`` (in that order), e.g. the official 171-label list.

        Relations among kept terms survive even when they passed through dropped terms: a kept term's parents
        become its nearest kept ancestors, and its exclusive set is the propagated relation restricted to the
        kept terms.
        """
        keep = list(dict.fromkeys(names))
        for term_name in keep:
            self.term(term_name)
        kept = set(keep)
        terms = []
        for term_name in keep:
            term = self._terms[term_name]
            terms.append(Term(
                name=term.name,
                label_class=term.label_class,
                synonyms=term.synonyms,
                parents=frozenset(self._ancestors[term_name] & kept),
                exclusive=frozenset(self._exclusive[term_name] & kept),
                radlex=term.radlex,
                origin=term.origin,
            ))
        return Ontology(terms, name=name or f"{self.name} restricted to {len(keep)} terms", warnings=self.warnings)

    def to_dict(self) -> dict:
        """The project's JSON layout (see :func:`LesaNetCore.ontology.read_ontology_json`)."""
        return {
            "format": "lesanet-ontology",
            "version": 1,
            "name": self.name,
            "terms": [
                {
                    "name": t.name,
                    "class": t.label_class,
                    "synonyms": list(t.synonyms),
                    "parents": sorted(self._parents[t.name]),
                    "exclusive": sorted(t.exclusive),
                    "radlex": t.radlex,
                }
                for t in self._terms.values()
            ],
        }

    def digest(self) -> str:
        """SHA-256 of the ontology's content (terms, classes, hierarchy, propagated exclusivity, codes).

        Checkpoints and reference indexes record it so a model is never paired with another ontology.
        """
        canonical = [
            [t.name, t.label_class, sorted(self._ancestors[t.name]), sorted(self._exclusive[t.name]),
             sorted(set(t.synonyms)), t.radlex]
            for t in self._terms.values()
        ]
        blob = json.dumps(canonical, separators=(",", ":"), ensure_ascii=True).encode()
        return hashlib.sha256(blob).hexdigest()

    def stats(self) -> dict[str, object]:
        """Summary counts, as ``lesanet ontology stats`` prints them."""
        return {
            "terms": len(self),
            "classes": self.class_counts(),
            "parent_child_pairs": len(self.parent_child_pairs()),
            "ancestor_pairs": len(self.ancestor_pairs()),
            "exclusive_pairs": len(self.exclusive_pairs()),
        }


def scores_by_term(ontology: Ontology, scores: Mapping[str, float] | Iterable[float]) -> dict[str, float]:
    """Accepts a term->score mapping or a sequence aligned with ``ontology.names``."""
    if isinstance(scores, Mapping):
        for name in scores:
            ontology.term(name)
        return {str(k): float(v) for k, v in scores.items()}
    values = [float(v) for v in scores]
    if len(values) != len(ontology):
        raise LesaNetError(f"scores: must have one value per term ({len(ontology)}), but got {len(values)} values")
    return dict(zip(ontology.names, values, strict=True))
