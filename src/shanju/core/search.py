"""Chinese text search: a search box's terms, and the SQL that finds them (ADR 0032).

A query is split into terms at spaces and punctuation; a row matches when it contains every
term as a substring of one of its indexed columns. Chinese has no spaces between words, so a
substring is the unit: "助学" finds "乡村助学计划", "温暖包" finds "冬季温暖包".

* **SQLite**: terms of three characters or more go through the table's FTS5 trigram index
  (``<table>_fts``, revision 0013); shorter terms, which a trigram index cannot hold, are a
  ``LIKE '%term%'`` over the columns (a scan — cheap at a platform's size, see
  docs/search.md).
* **PostgreSQL**: every term is an ``ILIKE '%term%'`` over the columns joined by spaces, the
  exact expression of the table's ``pg_trgm`` GIN index, which answers terms of three
  characters or more; shorter ones are found by a scan.

This module knows tables only through :class:`TextIndex`; the domains describe their own.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    column,
    false,
    func,
    literal_column,
    or_,
    select,
    table,
)
from sqlalchemy.orm import InstrumentedAttribute, Session

from shanju.core.errors import InvalidInput

MAX_QUERY_CHARS = 50
MAX_TERMS = 5
# The trigram indexes hold sequences of three characters: shorter terms cannot use them.
INDEXED_TERM_CHARS = 3
# Spaces and the punctuation people type between words, ASCII and full-width.
_SEPARATORS = re.compile(r"[\s,.;:!?'\"()\[\]{}<>，。、；：！？“”‘’（）【】《》〈〉「」『』·…—\-]+")


def parse_query(raw: str | None, *, field: str = "q") -> tuple[str, ...]:
    """Split a search box's text into terms (at most :data:`MAX_TERMS`, duplicates dropped).

    Raises InvalidInput ``query_too_long`` past :data:`MAX_QUERY_CHARS` characters and
    ``invalid_query`` for control characters. Empty or punctuation only: no terms.
    """
    if raw is None:
        return ()
    value = raw.strip()
    if len(value) > MAX_QUERY_CHARS:
        raise InvalidInput("Search for at most %(n)s characters.", code="query_too_long",
                           field=field, params={"n": MAX_QUERY_CHARS},
                           details={"max_chars": MAX_QUERY_CHARS})
    if any(unicodedata.category(ch) == "Cc" and not ch.isspace() for ch in value):
        raise InvalidInput("The search text contains characters that cannot be searched.",
                           code="invalid_query", field=field)
    terms = tuple(dict.fromkeys(t for t in _SEPARATORS.split(value) if t))
    if len(terms) > MAX_TERMS:
        raise InvalidInput("Search for at most %(n)s words at a time.", code="too_many_terms",
                           field=field, params={"n": MAX_TERMS},
                           details={"max_terms": MAX_TERMS})
    return terms


@dataclass(frozen=True)
class TextIndex:
    """The searched text of one table: its columns in the index's order, its id column and
    its FTS5 table in SQLite (``rowid`` = the id). Must agree with revision 0013."""

    fts_table: str
    id_column: InstrumentedAttribute[int]
    columns: tuple[InstrumentedAttribute[str] | InstrumentedAttribute[str | None], ...]
    nullable: frozenset[str] = frozenset()

    def document(self) -> ColumnElement[str]:
        """The columns joined by spaces: PostgreSQL's index expression, to the letter.

        Literals, not bound parameters: the planner matches the query's expression with the
        index's own, and a parameter would not match. A term never holds a space, so the
        joint between two columns never matches one.
        """
        parts: list[ColumnElement[Any]] = [
            func.coalesce(c, literal_column("''")) if c.key in self.nullable else c.expression
            for c in self.columns
        ]
        doc = parts[0]
        for part in parts[1:]:
            doc = doc.op("||")(literal_column("' '")).op("||")(part)
        return doc


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def contains(column: ColumnElement[str] | InstrumentedAttribute[str] |
             InstrumentedAttribute[str | None], term: str, *, dialect: str
             ) -> ColumnElement[bool]:
    """``column`` holds ``term`` (ASCII letters in any case); NULL holds nothing."""
    pattern = f"%{_escape_like(term)}%"
    if dialect == "postgresql":
        # Backslash is PostgreSQL's own LIKE escape: no ESCAPE clause, which keeps the
        # pattern a plain parameter the trigram index can take.
        return column.ilike(pattern)
    return column.like(pattern, escape="\\")


def _fts_phrase(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def matches(index: TextIndex, term: str, *, dialect: str) -> ColumnElement[bool]:
    """The rows of ``index``'s table that hold ``term`` in one of its columns."""
    if dialect == "postgresql":
        return contains(index.document(), term, dialect=dialect)
    if len(term) >= INDEXED_TERM_CHARS:
        fts = table(index.fts_table, column("rowid"))
        hits = select(fts.c.rowid).where(
            literal_column(index.fts_table).op("MATCH")(_fts_phrase(term)))
        return index.id_column.in_(hits.scalar_subquery())
    return or_(*(contains(c, term, dialect=dialect) for c in index.columns))


def matches_all(index: TextIndex, terms: tuple[str, ...], *, dialect: str
                ) -> ColumnElement[bool]:
    """The rows that hold every term (each anywhere in the indexed columns)."""
    return and_(*(matches(index, t, dialect=dialect) for t in terms))


def all_in(column: ColumnElement[str] | InstrumentedAttribute[str], terms: tuple[str, ...],
           *, dialect: str) -> ColumnElement[bool]:
    """``column`` holds every term (e.g. "the title names all of it", for ranking)."""
    if not terms:
        return false()
    return and_(*(contains(column, t, dialect=dialect) for t in terms))


def dialect_of(session: Session) -> str:
    """The session's database: ``sqlite`` or ``postgresql``."""
    return session.get_bind().dialect.name
