"""Languages: zh-CN by default, English switchable.

Message ids are English; ``locale/zh_CN/LC_MESSAGES/messages.po`` holds the Chinese. The
``.po`` files are read at start-up (no compiled ``.mo`` files in the repository); extract new
strings with ``pybabel extract -F babel.cfg -o messages.pot src/shanju`` and update with
``pybabel update -i messages.pot -d src/shanju/locale``.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
SUPPORTED = ("zh_CN", "en")
DEFAULT_LOCALE = "zh_CN"
LABELS = {"zh_CN": "中文", "en": "English"}


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


def negotiate(requested: str | None, accept_language: str | None = None) -> str:
    """Pick a supported locale from an explicit choice, else Accept-Language, else zh_CN."""
    if requested:
        normalized = requested.replace("-", "_")
        for loc in SUPPORTED:
            if normalized.lower() == loc.lower() or normalized.lower() == loc[:2]:
                return loc
    if accept_language:
        first = accept_language.split(",")[0].strip().lower()
        if first.startswith("en"):
            return "en"
    return DEFAULT_LOCALE


def gettext(locale: str, message: str) -> str:
    """Translate one message."""
    return translations(locale).gettext(message)
