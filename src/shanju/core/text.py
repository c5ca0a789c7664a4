"""Text people type: one line (names, titles, contacts) or several (messages, descriptions),
never with control characters, never longer than its field.

The same rules at every edge, so SQLite and PostgreSQL give the same answer: PostgreSQL refuses
a NUL character and a value longer than a ``VARCHAR(n)`` where SQLite would store both. Three
places apply them:

- :func:`check_text` in the services' ``check_*`` functions (forms and API alike), with the
  field's own error code for a value that is too long;
- :data:`SingleLine` and :data:`MultiLine` in the API's pydantic schemas (a 422 naming the
  field before a handler runs);
- :func:`check_flushed_text`, a ``before_flush`` guard of every session (``core.db``): the last
  net for a text that reached a model by a path without the two above.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError
from sqlalchemy import String, inspect

from shanju.core.errors import InvalidInput
from shanju.core.i18n import N_

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators. A multi-line text may
# hold line breaks (\n, and \r of a browser's \r\n) and tabs; a single line holds none of them.
_NOT_IN_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NOT_IN_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
ONE_LINE_MESSAGE = N_("Use plain text on one line, without control characters.")
LINES_MESSAGE = N_("The text may not contain control characters (such as NUL).")


def bad_character(value: str, *, multiline: bool = False) -> str | None:
    """Return the first character ``value`` may not hold, or None."""
    found = (_NOT_IN_LINES if multiline else _NOT_IN_ONE_LINE).search(value)
    return found.group() if found else None


def check_characters(text: str, *, field: str, multiline: bool = False) -> None:
    """Raise InvalidInput naming ``field`` if ``text`` holds a character it may not:
    ``nul_character`` for NUL, ``control_character`` for another control character."""
    bad = bad_character(text, multiline=multiline)
    if bad == "\x00":
        raise InvalidInput("Text may not contain NUL (0x00) characters.", code="nul_character",
                           field=field)
    if bad is not None:
        raise InvalidInput(LINES_MESSAGE if multiline else ONE_LINE_MESSAGE,
                           code="control_character", field=field)


def check_text(
    value: str | None,
    *,
    field: str,
    max_length: int,
    multiline: bool = False,
    code: str = "text_too_long",
    message: str = "This text is too long: at most %(n)s characters.",
) -> str:
    """Return ``value`` stripped, or raise InvalidInput naming ``field``.

    ``nul_character`` or ``control_character`` for a character it may not hold (any control
    character in a single line; all but line breaks and tabs in several); ``code`` with
    ``message`` (which may use ``%(n)s``) when it is longer than ``max_length`` characters.
    """
    text = (value or "").strip()
    check_characters(text, field=field, multiline=multiline)
    if len(text) > max_length:
        raise InvalidInput(message, code=code, field=field, params={"n": max_length})
    return text


def _one_line(value: str) -> str:
    if bad_character(value) is not None:
        raise PydanticCustomError("control_character", ONE_LINE_MESSAGE)
    return value


def _lines(value: str) -> str:
    if bad_character(value, multiline=True) is not None:
        raise PydanticCustomError("control_character", LINES_MESSAGE)
    return value


# For pydantic schemas: ``name: Annotated[SingleLine, Field(max_length=60)]``.
SingleLine = Annotated[str, AfterValidator(_one_line)]
MultiLine = Annotated[str, AfterValidator(_lines)]


def check_flushed_text(session: Any, flush_context: Any, instances: Any) -> None:
    """Refuse, before they reach the database, texts of new or changed rows that one database
    would store and the other refuse: a NUL character, or more characters than the column holds
    (``text_too_long``, naming the column)."""
    del flush_context, instances
    for obj in (*session.new, *session.dirty):
        state = inspect(obj, raiseerr=False)
        if state is None:
            continue
        for attr in state.mapper.column_attrs:
            column = attr.columns[0]
            if not isinstance(column.type, String):
                continue
            value = state.dict.get(attr.key)
            if not isinstance(value, str):
                continue
            if "\x00" in value:
                raise InvalidInput("Text may not contain NUL (0x00) characters.",
                                   code="nul_character", field=attr.key)
            limit = column.type.length
            if limit is not None and len(value) > limit:
                raise InvalidInput("This text is too long: at most %(n)s characters.",
                                   code="text_too_long", field=attr.key, params={"n": limit})
