"""Open-data files of movements: CSV (UTF-8 with a BOM), JSON and Excel .xlsx.

Rows carry no personal data: donors' names masked (``张**``), anonymous gifts as anonymous,
no user ids, emails, phone numbers, messages or provinces. Amounts are integer fen and yuan
(``"12.34"``, text so no float rounds them); ``amount_fen`` is the signed change of the
project's fund, so the column sums to the balance. Times are ISO 8601 in China time.

CSV and JSON are produced as a stream of chunks (any number of rows in flat memory); the
workbook is written row by row by XlsxWriter in ``constant_memory`` mode to a temporary file
(an .xlsx is a zip that can only be finished at the end), then sent (ADR 0012).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xlsxwriter

from shanju.core import files
from shanju.core.money import fen_to_yuan_str
from shanju.disclosure.service import Movement
from shanju.projects.models import FundUsage

FORMATS = ("csv", "json", "xlsx")
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
COLUMNS = ("time", "project_id", "kind", "category", "amount_fen", "amount_yuan", "donor",
           "anonymous", "ref", "purpose", "spent_on", "description", "attachments")
BOM = "\ufeff"
_CHUNK_ROWS = 500


@dataclass(frozen=True)
class RowContext:
    """What rows need besides the movement: fund usages' details, the site's address and the
    word for an anonymous donor in the reader's language."""

    usages: Mapping[int, FundUsage]
    attachments: Mapping[int, Sequence[files.Attachment]]
    base_url: str
    anonymous_label: str


def row(m: Movement, ctx: RowContext) -> dict[str, Any]:
    """The open-data row of one movement."""
    usage = ctx.usages.get(m.usage_id) if m.usage_id is not None else None
    attached = ctx.attachments.get(m.usage_id, ()) if m.usage_id is not None else ()
    donor = ""
    if m.is_gift:
        donor = ctx.anonymous_label if m.anonymous else (m.donor or "")
    return {
        "time": m.iso_time,
        "project_id": m.project_id,
        "kind": m.kind,
        "category": m.category,
        "amount_fen": m.amount_fen,
        "amount_yuan": fen_to_yuan_str(m.amount_fen),
        "donor": donor,
        "anonymous": m.anonymous,
        "ref": m.ref,
        "purpose": usage.purpose if usage else "",
        "spent_on": usage.spent_on.isoformat() if usage else "",
        "description": usage.description if usage else "",
        "attachments": " ".join(f"{ctx.base_url}/files/{a.id}#sha256={a.sha256}"
                                for a in attached),
    }


_TEXT_COLUMNS = ("donor", "purpose", "description")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_safe(values: dict[str, Any]) -> dict[str, Any]:
    """Text a person typed never starts a CSV cell as a formula (OWASP "CSV injection")."""
    for column in _TEXT_COLUMNS:
        text = values[column]
        if isinstance(text, str) and text.startswith(_FORMULA_START):
            values[column] = "'" + text
    return values


def csv_chunks(movements: Iterable[Movement], ctx: RowContext) -> Iterator[bytes]:
    """The CSV file in chunks: a BOM (so Excel reads UTF-8 Chinese), a header, the rows."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\r\n")
    buffer.write(BOM)
    writer.writeheader()
    for n, m in enumerate(movements, 1):
        values = _csv_safe(row(m, ctx))
        values["anonymous"] = "true" if values["anonymous"] else "false"
        writer.writerow(values)
        if n % _CHUNK_ROWS == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def json_chunks(head: Mapping[str, Any], movements: Iterable[Movement],
                ctx: RowContext) -> Iterator[bytes]:
    """One JSON object ``{**head, "movements": [...]}`` in chunks."""
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    opening = dumps(dict(head))
    yield (opening[:-1] + ("," if head else "") + '"movements":[').encode()
    parts: list[str] = []
    for n, m in enumerate(movements):
        parts.append(("," if n else "") + dumps(row(m, ctx)))
        if len(parts) >= _CHUNK_ROWS:
            yield "".join(parts).encode()
            parts.clear()
    parts.append("]}")
    yield "".join(parts).encode()


Sheet = tuple[str, Sequence[str], Iterable[Sequence[Any]]]


def write_xlsx(path: Path, sheets: Sequence[Sheet]) -> None:
    """Write a workbook of ``(name, header, rows)`` sheets, row by row in constant memory."""
    workbook = xlsxwriter.Workbook(str(path), {
        "constant_memory": True,
        # Text stays text: a reference or a masked name must never turn into a number/URL.
        "strings_to_numbers": False, "strings_to_formulas": False, "strings_to_urls": False,
    })
    try:
        bold = workbook.add_format({"bold": True})
        for name, header, rows in sheets:
            sheet = workbook.add_worksheet(name[:31])
            sheet.write_row(0, 0, list(header), bold)
            sheet.freeze_panes(1, 0)
            for r, values in enumerate(rows, 1):
                sheet.write_row(r, 0, list(values))
    finally:
        workbook.close()


def movement_rows(movements: Iterable[Movement], ctx: RowContext) -> Iterator[list[Any]]:
    """Rows of :data:`COLUMNS` for a sheet (yuan as text, booleans as words)."""
    for m in movements:
        values = row(m, ctx)
        values["anonymous"] = "true" if values["anonymous"] else "false"
        yield [values[c] for c in COLUMNS]


def summary_rows(header: Sequence[str],
                 rows: Iterable[Mapping[str, Any]]) -> Iterator[list[Any]]:
    """Rows of mappings in ``header`` order, for a summary sheet or a CSV."""
    for values in rows:
        yield [values.get(c, "") for c in header]


def csv_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[bytes]:
    """A small CSV table (with BOM) in one chunk per 500 rows; text cells never start a
    formula."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write(BOM)
    writer.writerow(list(header))
    for n, values in enumerate(rows, 1):
        writer.writerow([("'" + v if isinstance(v, str) and v.startswith(_FORMULA_START)
                          else v) for v in values])
        if n % _CHUNK_ROWS == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()

