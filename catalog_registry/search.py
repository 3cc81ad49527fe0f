"""Search and browse the catalogue's information resources: by department, classification and
theme, and by keyword: exact, substring, pinyin (full, and initials: `hjrk` finds 户籍人口信息)
and typo-tolerant.

The catalogue builds a `SearchIndex` from plain `Document`s (nothing here touches a database)
and rebuilds it when resources change. Everything that does not depend on the query is computed
at build: normalised names, codes and text, full pinyin and initials, and the lookups behind the
filters. Each field of all documents is joined into one string, so finding a word is one C-level
`str.find` per matching document rather than a Python loop over every document; edit distances
(rapidfuzz) are computed only for a word that matches no code, name or pinyin exactly.

Ranking, per word (higher first; ties by code):

    code             1000  the resource code, exactly
    name              900  the name, exactly
    name-prefix       800  the name starts with the word
    name-substring    700  the name contains the word
    pinyin-initials   650  the initials of the name start with the word (600: contain it)
    pinyin            550  the full pinyin of the name starts with the word (500: contains it)
    text              300  the secondary text (abstract, data items) contains the word
    typo         200 - 50e  e edits (1; 2 for words of 7+ characters) from the name, the pinyin,
                           or their prefix of the word's length (also without the department
                           the name begins with); tried only when the word
                           matches no code, name or pinyin among the candidates

A query is normalised (NFKC, stripped, lower-case) and split on white space; every word must
match, the scores add up, and a hit's reason is that of its best word.
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pypinyin import lazy_pinyin
from rapidfuzz import process
from rapidfuzz.distance import OSA

MAX_PAGE_SIZE = 200
TYPO_MIN_LENGTH = 3  # shorter words are within one edit of far too many names
TYPO_LONG_WORD = 7  # from this length on, two edits are allowed
_CUTS_KEPT = 16  # prefix lists kept for typo matching: a few query lengths cover most queries

_CODE = 1000
_NAME = 900
_NAME_PREFIX = 800
_NAME_SUBSTRING = 700
_INITIALS_PREFIX = 650
_INITIALS_SUBSTRING = 600
_PINYIN_PREFIX = 550
_PINYIN_SUBSTRING = 500
_TEXT = 300
_TYPO = 200
_TYPO_PER_EDIT = 50

# Joins the documents' values of one field; normalisation removes it from values and queries,
# so no match can run across two documents.
_SEP = "\x00"


@dataclass(frozen=True, slots=True)
class Document:
    """What the index knows of one information resource."""

    key: str  # unique, e.g. the resource code
    code: str  # the resource code, e.g. "101/0001" or "GA-001"
    name: str  # Chinese name, e.g. 户籍人口信息
    provider: str  # department code, e.g. GA
    provider_name: str  # department name, e.g. 市公安局
    classification: str  # classification code (类/项/目/细目 joined); browsing matches a prefix
    themes: tuple[str, ...]  # theme codes
    text: str = ""  # secondary text: abstract, data item labels; searched with lower weight


@dataclass(frozen=True, slots=True)
class Hit:
    document: Document
    score: float
    reason: str  # "code", "name", "name-prefix", ..., "typo"; "browse" for an empty query


@dataclass(frozen=True, slots=True)
class SearchPage:
    hits: tuple[Hit, ...]
    total: int  # all matches, on every page
    page: int
    size: int


def _normalise(text: str) -> str:
    """Full-width forms to ASCII (ＨＪＲＫ -> HJRK), then stripped and lower-cased."""
    return unicodedata.normalize("NFKC", text).replace(_SEP, "").strip().lower()


def _pinyin(name: str) -> tuple[str, str]:
    """The full pinyin of a normalised name, without tones or spaces, and its initials.

    Characters that are not Chinese count whole in both, letters and digits only ("gis地图"
    -> "gisditu", "gisdt"); pypinyin reads each character in the context of its word.
    """
    full: list[str] = []
    initials: list[str] = []
    for syllable in lazy_pinyin(name, errors=lambda chars: _SEP + chars):
        if syllable.startswith(_SEP):
            kept = "".join(c for c in syllable if c.isascii() and c.isalnum())
            full.append(kept)
            initials.append(kept)
        else:
            full.append(syllable)
            initials.append(syllable[:1])
    return "".join(full), "".join(initials)


class _Field:
    """One normalised value per document (by position), searchable for a substring."""

    __slots__ = ("_blob", "_starts", "values")

    def __init__(self, values: Sequence[str]) -> None:
        self.values = tuple(values)
        starts = []
        position = 0
        for value in self.values:
            starts.append(position)
            position += len(value) + 1
        starts.append(position)  # one past the end, so that starts[i + 1] always exists
        self._starts = starts
        self._blob = _SEP.join(self.values) + _SEP

    def find(self, word: str) -> dict[int, int]:
        """Documents whose value contains `word` (non-empty, without the separator), each with
        where the word first occurs in it (0: the value starts with it), in document order."""
        found: dict[int, int] = {}
        blob, starts = self._blob, self._starts
        position = blob.find(word)
        while position >= 0:
            i = bisect_right(starts, position) - 1
            found[i] = position - starts[i]
            position = blob.find(word, starts[i + 1])  # one hit per document is enough
        return found


def _check_paging(page: int, size: int) -> None:
    if page < 1:
        raise ValueError(f"page must be 1 or more (pages count from 1), not {page}")
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise ValueError(f"page size must be between 1 and {MAX_PAGE_SIZE}, not {size}")


class SearchIndex:
    """An immutable index over a set of documents (safe to share between threads); build a new
    one when they change.

    Building takes a few hundred milliseconds for thousands of documents (pinyin is the slow
    part); a search takes a few milliseconds.
    """

    def __init__(self, documents: Iterable[Document]) -> None:
        """Index `documents`; raises ValueError if two share a key."""
        # Position in code order is the tie-break, so ties cost nothing at query time.
        docs = sorted(documents, key=lambda d: (d.code, d.key))
        seen: set[str] = set()
        for doc in docs:
            if doc.key in seen:
                raise ValueError(f"two documents have the key {doc.key!r}: keys must be unique")
            seen.add(doc.key)
        self._docs: tuple[Document, ...] = tuple(docs)

        self._names = _Field([_normalise(d.name) for d in docs])
        spelled = [_pinyin(name) for name in self._names.values]
        self._pinyin = _Field([full for full, _ in spelled])
        self._initials = _Field([initials for _, initials in spelled])
        self._text = _Field([_normalise(d.text) for d in docs])
        # Names often begin with their department (金湾区公安局流动人口信息): a typo in the
        # subject is matched against the name without that beginning too.
        subjects = [name.removeprefix(_normalise(d.provider_name)) or name for name, d in zip(self._names.values, docs)]
        self._subjects = tuple(subjects) if subjects != list(self._names.values) else ()
        self._subject_pinyin = tuple(
            full if subject == name else _pinyin(subject)[0]
            for subject, name, full in zip(self._subjects, self._names.values, self._pinyin.values)
        )

        self._codes: dict[str, list[int]] = {}
        self._providers: dict[str, set[int]] = {}
        self._themes: dict[str, set[int]] = {}
        for i, doc in enumerate(docs):
            self._codes.setdefault(_normalise(doc.code), []).append(i)
            self._providers.setdefault(doc.provider, set()).add(i)
            for theme in doc.themes:
                self._themes.setdefault(theme, set()).add(i)
        by_classification = sorted((d.classification, i) for i, d in enumerate(docs))
        self._classifications = [c for c, _ in by_classification]
        self._classified = [i for _, i in by_classification]
        # (field, length) -> prefixes, for typo matching: the only state a search changes; two
        # threads racing on it at worst slice the same list twice.
        self._cuts: dict[tuple[str, int], list[str]] = {}

    def __len__(self) -> int:
        return len(self._docs)

    def search(
        self,
        query: str = "",
        *,
        department: str | None = None,
        classification: str | None = None,
        theme: str | None = None,
        page: int = 1,
        size: int = 20,
    ) -> SearchPage:
        """One page of the documents that match `query` and every filter given, best first.

        `department` is a provider code (exact), `classification` a prefix of the
        classification code, `theme` one of the theme codes; None or "" filters nothing. An
        empty query browses the filtered documents in code order (reason "browse", score 0).
        `page` counts from 1; a page past the end is empty. Raises ValueError if `page` < 1 or
        `size` is not between 1 and MAX_PAGE_SIZE.
        """
        _check_paging(page, size)
        allowed = self._allowed(department, classification, theme)
        words = _normalise(query).split()
        start, stop = (page - 1) * size, page * size

        if not words:
            order: Sequence[int] = range(len(self._docs)) if allowed is None else sorted(allowed)
            hits = tuple(Hit(self._docs[i], 0.0, "browse") for i in order[start:stop])
            return SearchPage(hits, len(order), page, size)

        matched: dict[int, tuple[int, str, int]] = {}  # position -> total, reason, best score
        for n, word in enumerate(words):
            scores = self._match(word, allowed)
            if n == 0:
                matched = {i: (score, reason, score) for i, (score, reason) in scores.items()}
            else:
                matched = {
                    i: _add(total, reason, best, *scores[i])
                    for i, (total, reason, best) in matched.items()
                    if i in scores
                }
            if not matched:
                break

        # One integer per hit sorts fastest: score descending, then position (code order).
        count = len(self._docs)
        ranked = sorted(-total * count + i for i, (total, _, _) in matched.items())
        hits = []
        for key in ranked[start:stop]:
            i = key % count
            total, reason, _ = matched[i]
            hits.append(Hit(self._docs[i], float(total), reason))
        return SearchPage(tuple(hits), len(matched), page, size)

    def _allowed(
        self, department: str | None, classification: str | None, theme: str | None
    ) -> set[int] | None:
        """Positions of the documents that pass every filter given; None if none is given."""
        groups: list[set[int]] = []
        if department:
            groups.append(self._providers.get(department, set()))
        if theme:
            groups.append(self._themes.get(theme, set()))
        if classification:
            keys = self._classifications
            first = last = bisect_left(keys, classification)
            while last < len(keys) and keys[last].startswith(classification):
                last += 1
            groups.append(set(self._classified[first:last]))
        if not groups:
            return None
        groups.sort(key=len)
        return groups[0].intersection(*groups[1:])

    def _match(self, word: str, allowed: set[int] | None) -> dict[int, tuple[int, str]]:
        """The documents (positions) that `word` matches, among `allowed`, each with its best
        score and reason."""
        found: dict[int, tuple[int, str]] = {}

        def take(positions: Iterable[int], score: int, reason: str) -> None:
            for i in positions:
                if i not in found and (allowed is None or i in allowed):
                    found[i] = (score, reason)

        # The passes run from the strongest reason down, so a document keeps the first it gets.
        take(self._codes.get(word, ()), _CODE, "code")
        names = self._names.values
        at_name = self._names.find(word)
        whole = (i for i, at in at_name.items() if at == 0 and len(names[i]) == len(word))
        take(whole, _NAME, "name")
        take((i for i, at in at_name.items() if at == 0), _NAME_PREFIX, "name-prefix")
        take(at_name, _NAME_SUBSTRING, "name-substring")
        at_initials = self._initials.find(word)
        take((i for i, at in at_initials.items() if at == 0), _INITIALS_PREFIX, "pinyin-initials")
        take(at_initials, _INITIALS_SUBSTRING, "pinyin-initials")
        at_pinyin = self._pinyin.find(word)
        take((i for i, at in at_pinyin.items() if at == 0), _PINYIN_PREFIX, "pinyin")
        take(at_pinyin, _PINYIN_SUBSTRING, "pinyin")
        exact = bool(found)
        take(self._text.find(word), _TEXT, "text")

        if not exact and len(word) >= TYPO_MIN_LENGTH:
            for i, edits in self._typos(word).items():
                take((i,), _TYPO - _TYPO_PER_EDIT * edits, "typo")
        return found

    def _typos(self, word: str) -> dict[int, int]:
        """Positions of the documents within a few edits of `word` -> the fewest edits.

        Compared are the name and, for a word in Latin letters, the full pinyin, each whole and
        cut to the word's length (so that "户藉人口" finds 户籍人口信息), and the same without
        the department's name the name begins with. Transposed letters count as one edit
        ("kuo" for "kou").
        """
        limit = 1 if len(word) < TYPO_LONG_WORD else 2
        fields = [("name", self._names.values), ("subject", self._subjects)]
        if word.isascii() and word.isalnum():
            fields += [("pinyin", self._pinyin.values), ("subject-pinyin", self._subject_pinyin)]
        edits: dict[int, int] = {}
        for field, values in fields:
            if not values:
                continue  # no name begins with its department's
            for choices in (values, self._cut(field, values, len(word))):
                for _, distance, i in process.extract(
                    word, choices, scorer=OSA.distance, score_cutoff=limit, limit=None
                ):
                    if distance < edits.get(i, limit + 1):
                        edits[i] = int(distance)
        return edits

    def _cut(self, field: str, values: tuple[str, ...], length: int) -> list[str]:
        """`values` cut to `length`, kept for the next queries of that length."""
        cut = self._cuts.get((field, length))
        if cut is None:
            if len(self._cuts) >= _CUTS_KEPT:
                self._cuts.clear()  # simpler than LRU, and refilling costs one slicing each
            cut = self._cuts[(field, length)] = [value[:length] for value in values]
        return cut


def _add(total: int, reason: str, best: int, score: int, word_reason: str) -> tuple[int, str, int]:
    """Adds one more word's score to a multi-word match; the reason is that of the best word."""
    if score > best:
        return total + score, word_reason, score
    return total + score, reason, best
