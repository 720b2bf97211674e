"""Render query results as an aligned text table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

MAX_LIST_ITEMS = 4  # activation vectors are shown as their first few values and their length
MAX_CELL = 60


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        head = ", ".join(_cell(v) for v in value[:MAX_LIST_ITEMS])
        more = f", … ({len(value)})" if len(value) > MAX_LIST_ITEMS else ""
        return f"[{head}{more}]"
    text = ("{" + ", ".join(f"{k}: {_cell(v)}" for k, v in value.items()) + "}"
            if isinstance(value, dict) else str(value))
    text = text.replace("\n", "\\n")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def table(columns: list[str], rows: list[tuple]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "+-" + "-+-".join("-" * w for w in widths) + "-+"
    fmt = lambda row: "| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |"
    out = [line, fmt(columns), line] + [fmt(r) for r in cells] + [line]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def as_json(columns: list[str], rows: list[tuple]) -> str:
    return json.dumps([{c: _jsonable(v) for c, v in zip(columns, row)} for row in rows], indent=1)


def as_csv(columns: list[str], rows: list[tuple]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([json.dumps(_jsonable(v)) if isinstance(v, (list, tuple, dict)) else
                         ("" if v is None else v) for v in row])
    return buffer.getvalue().rstrip("\n")


FORMATS = {"table": table, "csv": as_csv, "json": as_json}
