"""Languages: zh-CN by default, English switchable.

Message ids are English; ``locale/zh_CN/LC_MESSAGES/messages.po`` holds the Chinese. The
``.po`` files are read at start-up (no compiled ``.mo`` files in the repository).

Extract, merge and check messages with ``uv run python -m shanju.core.i18n update`` and
``... check`` (see ``docs/i18n.md``); they use ``babel.cfg`` at the repository root and
:data:`EXTRACT_KEYWORDS`, so the messages of domain errors are found too.
"""

from __future__ import annotations

import fnmatch
import io
import re
import sys
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog, Message
from babel.messages.extract import DEFAULT_KEYWORDS
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po
from babel.support import NullTranslations, Translations

PACKAGE_DIR = Path(__file__).resolve().parent.parent
LOCALE_DIR = PACKAGE_DIR / "locale"
SUPPORTED = ("zh_CN", "en")
DEFAULT_LOCALE = "zh_CN"
LABELS = {"zh_CN": "中文", "en": "English"}

# Calls whose string arguments are messages. Domain errors carry English msgids that pages
# translate with ``tr(request, exc.message)``, so their constructors are keywords too.
# A new DomainError subclass whose message people see belongs in this list.
EXTRACT_KEYWORDS: dict[str, object] = {
    **DEFAULT_KEYWORDS,
    "N_": None,
    "tr": (2,),
    "DomainError": None,
    "NotFound": None,
    "PermissionDenied": None,
    "NotAuthenticated": None,
    "Conflict": None,
    "InvalidInput": None,
    "InsufficientFunds": None,
    "GatewayError": None,
}


class Msg(str):
    """An English message whose ``%(name)s`` placeholders are filled with ``params``.

    The string itself is the filled-in English text (what the API and logs show); ``msgid``
    and ``params`` let pages translate the message first and fill in the values after.
    Values that are :class:`Msg` themselves (labels such as a status) are translated too.
    """

    msgid: str
    params: dict[str, Any]

    def __new__(
        cls, msgid: str, params: dict[str, Any] | None = None, *, plain: str | None = None
    ) -> Msg:
        """Build the message ``msgid`` with ``params``.

        ``plain`` replaces the untranslated text, e.g. an API value such as ``taken_down``
        that pages show by its label (the msgid) instead.
        """
        values = dict(params or {})
        text = plain if plain is not None else msgid % values if values else msgid
        obj = super().__new__(cls, text)
        obj.msgid = msgid
        obj.params = values
        return obj


def N_(message: str) -> str:  # noqa: N802 - the conventional name extractors look for
    """Mark ``message`` for extraction without translating it (translate where it is shown)."""
    return message


@lru_cache
def translations(locale: str) -> NullTranslations:
    """Return the translations for ``locale`` (English ids pass through for ``en``)."""
    po_path = LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po"
    if not po_path.exists():
        return NullTranslations()
    with po_path.open("rb") as fh:
        catalog = read_po(fh, locale=locale)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


def negotiate(requested: str | None) -> str:
    """Return the locale a visitor chose (``?lang=`` or the ``sj_lang`` cookie), else zh_CN.

    The browser's Accept-Language is deliberately not consulted: Chinese is the platform's
    language, and many Chinese donors' phones are set to English; English is a choice.
    """
    if requested:
        normalized = requested.replace("-", "_").lower()
        for loc in SUPPORTED:
            if normalized in (loc.lower(), loc[:2]):
                return loc
    return DEFAULT_LOCALE


def gettext(locale: str, message: str) -> str:
    """Translate one message."""
    return translations(locale).gettext(message)


def translate(locale: str, message: str, params: dict[str, Any] | None = None) -> str:
    """Translate ``message`` (a msgid or a :class:`Msg`) and fill in its ``%(name)s`` values."""
    values = dict(params or {})
    if isinstance(message, Msg):
        values = {**message.params, **values}
        message = message.msgid
    text = gettext(locale, message)
    if not values:
        return text
    return text % {
        key: translate(locale, value) if isinstance(value, Msg) else value
        for key, value in values.items()
    }


_LABEL_KEY = "msgid"


def dump_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """Return ``params`` ready to store as JSON, keeping which values are labels (:class:`Msg`).

    A label is stored as ``{"msgid": ..., "params": {...}}`` so it is translated when shown;
    any other value (free text such as a title or a reason) is stored as it is.
    """
    return {
        key: {_LABEL_KEY: value.msgid, "params": dump_params(value.params)}
        if isinstance(value, Msg) else value
        for key, value in (params or {}).items()
    }


def load_params(data: dict[str, Any] | None) -> dict[str, Any]:
    """Return the values stored by :func:`dump_params`, labels as :class:`Msg` again."""
    return {
        key: Msg(str(value[_LABEL_KEY]), load_params(value.get("params")))
        if isinstance(value, dict) and _LABEL_KEY in value else value
        for key, value in (data or {}).items()
    }


# --- tooling: extract, update and check the catalog ------------------------------------------


def po_path(locale: str = DEFAULT_LOCALE) -> Path:
    """Return where the catalog of ``locale`` lives."""
    return LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po"


def extract(
    mapping_file: Path, *, only: Sequence[str] | None = None, root: Path = PACKAGE_DIR
) -> Catalog:
    """Extract every message under ``root`` with ``mapping_file`` (``babel.cfg``).

    ``only`` limits the result to files matching these glob patterns, relative to ``root``
    (e.g. ``"templates/site/*"``); ``None`` keeps all.
    """
    from babel.messages.extract import extract_from_dir
    from babel.messages.frontend import parse_mapping_cfg

    with mapping_file.open(encoding="utf-8") as fh:
        method_map, options_map = parse_mapping_cfg(fh)  # type: ignore[no-untyped-call]
    catalog = Catalog(locale=None, project="shanju", charset="utf-8")
    for filename, lineno, message, comments, context in extract_from_dir(
        str(root),
        method_map,
        options_map,
        keywords=EXTRACT_KEYWORDS,  # type: ignore[arg-type]
        comment_tags=("Translators:",),
        strip_comment_tags=True,
    ):
        if only is not None and not any(fnmatch.fnmatch(filename, pat) for pat in only):
            continue
        if not message or message == ("",) or message == "":
            continue
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments,
                    context=context)
    return catalog


def load_po(locale: str = DEFAULT_LOCALE) -> Catalog:
    """Read the ``.po`` catalog of ``locale``."""
    with po_path(locale).open("rb") as fh:
        return read_po(fh, locale=locale)


_PLACEHOLDER = re.compile(r"%\(\w+\)[sdif]|\{\w*\}")


def problems(translated: Catalog, wanted: Iterable[Message]) -> list[str]:
    """List messages of ``wanted`` that ``translated`` lacks, leaves fuzzy or mistranslates.

    A translation must exist, not be fuzzy, and use the same placeholders as its msgid.
    """
    found: list[str] = []
    for message in wanted:
        ids = [str(i) for i in message.id] if isinstance(message.id, tuple | list) else [
            str(message.id)]
        key = ids[0]
        if not key:
            continue  # the catalog's header
        entry = translated.get(key)
        if entry is None:
            found.append(f"missing: {key!r}")
            continue
        strings = (
            [str(s) for s in entry.string] if isinstance(entry.string, tuple | list)
            else [str(entry.string or "")]
        )
        if not all(strings):
            found.append(f"missing: {key!r}")
        elif entry.fuzzy:
            found.append(f"fuzzy: {key!r}")
        elif set(_PLACEHOLDER.findall(key)) != set(_PLACEHOLDER.findall(strings[0])):
            found.append(f"placeholders differ: {key!r}")
    return found


def update(mapping_file: Path, locale: str = DEFAULT_LOCALE) -> Catalog:
    """Merge newly extracted messages into the ``.po`` of ``locale`` and write it back."""
    template = extract(mapping_file)
    catalog = load_po(locale) if po_path(locale).exists() else Catalog(locale=locale)
    # Exact matching only: a fuzzy guess from a similar sentence is more often wrong than not.
    catalog.update(template, no_fuzzy_matching=True)
    catalog.project, catalog.version = "Shanju", ""
    catalog.copyright_holder = "The Shanju authors"
    catalog.msgid_bugs_address = ""
    catalog.fuzzy = False
    catalog.obsolete.clear()
    po_path(locale).parent.mkdir(parents=True, exist_ok=True)
    with po_path(locale).open("wb") as fh:
        write_po(fh, catalog, width=100, sort_output=False, include_previous=False)
    translations.cache_clear()
    return catalog


def main(argv: Sequence[str]) -> int:
    """``python -m shanju.core.i18n update|check [babel.cfg]``."""
    command = argv[0] if argv else "check"
    mapping = Path(argv[1]) if len(argv) > 1 else Path("babel.cfg")
    if command == "update":
        catalog = update(mapping)
        missing = problems(catalog, extract(mapping))
        sys.stdout.write(f"{po_path()}: {len(catalog)} messages, {len(missing)} to translate\n")
        return 0
    if command == "check":
        missing = problems(load_po(), extract(mapping))
        for line in missing:
            sys.stdout.write(line + "\n")
        return 1 if missing else 0
    sys.stderr.write("usage: python -m shanju.core.i18n update|check [babel.cfg]\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
