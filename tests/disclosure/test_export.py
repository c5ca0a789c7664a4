"""The open-data writers on their own: CSV cells never start a formula, JSON stays valid for
any number of rows, the workbook keeps text as text."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from openpyxl import load_workbook

from shanju.core.clock import CHINA_TZ
from shanju.disclosure import export
from shanju.disclosure.service import Movement

WHEN = dt.datetime(2026, 9, 7, 2, 0, 1, tzinfo=dt.UTC)


def _ctx(**usages: Any) -> export.RowContext:
    return export.RowContext(usages={int(k): v for k, v in usages.items()}, attachments={},
                             base_url="https://shanju.example", anonymous_label="Anonymous")


def _usage(purpose: str) -> Any:
    return SimpleNamespace(purpose=purpose, description="+86 ok", spent_on=dt.date(2026, 9, 6))


def test_csv_never_starts_a_cell_with_a_formula() -> None:
    moves = [
        Movement(WHEN, "disbursement", "disbursed", -1_00, "usage:7", 1, usage_id=7),
        Movement(WHEN, "donation", "received", 12_34, "donation:d_1", 1, donor="=**"),
    ]
    body = b"".join(export.csv_chunks(moves, _ctx(**{"7": _usage('=HYPERLINK("x")')})))
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0]["purpose"] == "'=HYPERLINK(\"x\")" and rows[0]["description"] == "'+86 ok"
    assert rows[0]["amount_fen"] == "-100" and rows[0]["amount_yuan"] == "-1.00"
    assert rows[1]["donor"] == "'=**" and rows[1]["amount_yuan"] == "12.34"
    assert rows[1]["time"] == WHEN.astimezone(CHINA_TZ).isoformat(timespec="seconds") == \
        "2026-09-07T10:00:01+08:00"


def test_json_is_valid_for_zero_one_and_many_rows() -> None:
    for n in (0, 1, 1_234):
        moves = [Movement(WHEN, "gift", "received", i + 1, f"gift:o_{i}", 1, anonymous=True)
                 for i in range(n)]
        body = json.loads(b"".join(export.json_chunks({"project": {"id": 1}}, moves, _ctx())))
        assert body["project"] == {"id": 1} and len(body["movements"]) == n
        assert all(m["donor"] == "Anonymous" for m in body["movements"])
    assert json.loads(b"".join(export.json_chunks({}, [], _ctx()))) == {"movements": []}


def test_workbook_keeps_text_as_text(tmp_path: Path) -> None:
    path = tmp_path / "x.xlsx"
    rows = [["=1+1", "0012", "https://x.example", 5]]
    export.write_xlsx(path, [("s", ["a", "b", "c", "d"], rows)])
    book = load_workbook(path)
    values = [c.value for c in book["s"][2]]
    assert values == ["=1+1", "0012", "https://x.example", 5]
    assert book["s"]["A2"].data_type == "s"  # a string, not a formula
