"""Query files: SQL with a comment header saying where the result goes and how to draw it.

    -- section: Residual stream
    -- title: Mean residual-stream norm per layer
    -- chart: line x=layer y=mean_norm series=model
    -- note: one sentence on how to read it
    select model, layer, ...

The header is the run of `-- key: value` lines at the top of the file; the first other line ends it.
`section` and `title` are required, `chart` defaults to `table` (no figure), `note` is optional.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cortexlens.errors import ConfigError

HEADER_LINE = re.compile(r"^--\s*([A-Za-z_][\w-]*)\s*:\s*(.*?)\s*$")
COLUMN = r"^[A-Za-z_][A-Za-z0-9_]*$"  # options name result columns; a typo is caught when the query runs
HEADER_KEYS = ("section", "title", "chart", "note")
ChartKind = Literal["line", "bar", "heatmap", "table"]
Column = str

# Which options each kind needs and accepts. `series` splits lines/bars by a column's values;
# `facet` draws one panel per value of a column; heatmaps colour `value` over the x-y grid; `err` shades
# y +- that column around each line (fold intervals).
REQUIRED: dict[str, set[str]] = {"line": {"x", "y"}, "bar": {"x", "y"}, "heatmap": {"x", "y", "value"}, "table": set()}
ALLOWED: dict[str, set[str]] = {"line": {"x", "y", "series", "facet", "err"}, "bar": {"x", "y", "series", "facet"},
                                "heatmap": {"x", "y", "value", "facet"}, "table": set()}


class Chart(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ChartKind = "table"
    x: Column | None = Field(None, pattern=COLUMN)
    y: Column | None = Field(None, pattern=COLUMN)
    value: Column | None = Field(None, pattern=COLUMN)
    series: Column | None = Field(None, pattern=COLUMN)
    facet: Column | None = Field(None, pattern=COLUMN)
    err: Column | None = Field(None, pattern=COLUMN)

    @model_validator(mode="after")
    def _options_fit_kind(self) -> Chart:
        given = {name for name in ("x", "y", "value", "series", "facet", "err") if getattr(self, name)}
        missing = sorted(REQUIRED[self.kind] - given)
        if missing:
            raise ValueError(f"{self.kind} needs " + " ".join(f"{m}=<column>" for m in missing))
        extra = sorted(given - ALLOWED[self.kind])
        if extra:
            allowed = ", ".join(sorted(ALLOWED[self.kind])) or "no options"
            raise ValueError(f"{self.kind} takes {allowed}, not {', '.join(extra)}")
        return self

    @property
    def is_figure(self) -> bool:
        return self.kind != "table"

    def columns(self) -> list[str]:
        """The result columns this chart reads, in option order."""
        return [c for c in (self.x, self.y, self.value, self.series, self.facet, self.err) if c]


class QuerySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str  # the file's stem: names the CSV and the figure
    path: Path
    section: str = Field(min_length=1)
    title: str = Field(min_length=1)
    chart: Chart = Chart()
    note: str | None = None
    sql: str = Field(min_length=1)


def parse_chart(text: str) -> dict[str, str]:
    """'line x=layer y=mean_norm' -> {'kind': 'line', 'x': 'layer', 'y': 'mean_norm'}."""
    words = text.split()
    if not words:
        return {}
    options: dict[str, str] = {"kind": words[0]}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"expected key=column, got {word!r}")
        if key == "kind" or key in options:
            raise ValueError(f"{key} given twice")
        options[key] = value
    return options


def split_header(text: str) -> tuple[dict[str, str], list[tuple[int, str]], str]:
    """(header values, [(line number, key)], the SQL below the header)."""
    lines = text.splitlines()
    header: dict[str, str] = {}
    keys: list[tuple[int, str]] = []
    body_start = len(lines)
    for number, line in enumerate(lines, start=1):
        match = HEADER_LINE.match(line.strip())
        if not match:
            body_start = number - 1
            break
        keys.append((number, match.group(1)))
        header[match.group(1)] = match.group(2)
    return header, keys, "\n".join(lines[body_start:]).strip()


def parse_query_file(path: Path) -> QuerySpec:
    """Read and validate one query file; ConfigError with one line naming the file and key."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read ({err})") from None
    header, keys, sql = split_header(text)
    seen: set[str] = set()
    for number, key in keys:
        if key not in HEADER_KEYS:
            raise ConfigError(f"{path}:{number}: {key}: unknown header key (allowed: {', '.join(HEADER_KEYS)})")
        if key in seen:
            raise ConfigError(f"{path}:{number}: {key}: given twice in the header")
        seen.add(key)
    data: dict[str, object] = {"name": path.stem, "path": path, "sql": sql, **header}
    if "chart" in header:
        try:
            data["chart"] = parse_chart(header["chart"])
        except ValueError as err:
            raise ConfigError(f"{path}: chart: {err}") from None
    try:
        return QuerySpec.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_first_problem(path, err)) from None


def _first_problem(path: Path, err: ValidationError) -> str:
    problem = err.errors()[0]
    loc = [str(part) for part in problem["loc"]]
    key = loc[0] if loc else "header"
    kind = problem["type"]
    if key == "sql":
        return f"{path}: no SQL below the header"
    if kind == "missing":
        return f"{path}: {key}: missing (the file must start with `-- {key}: ...`)"
    if kind == "string_too_short":
        return f"{path}: {key}: empty"
    if kind == "extra_forbidden" and key == "chart" and len(loc) > 1:
        return f"{path}: chart: unknown option {loc[1]!r} (options: x, y, value, series, facet, err)"
    if key == "chart" and len(loc) > 1 and loc[1] == "kind":
        kinds = ", ".join(REQUIRED)
        return f"{path}: chart: unknown kind {problem['input']!r} (allowed: {kinds})"
    if key == "chart" and len(loc) > 1:
        return f"{path}: chart: {loc[1]}={problem['input']!r} is not a column name"
    message = problem["msg"].removeprefix("Value error, ")
    return f"{path}: {key}: {message}"


def load_queries(directory: Path) -> list[QuerySpec]:
    """Every *.sql file of `directory`, sorted by file name (the report's order)."""
    if not directory.is_dir():
        raise ConfigError(f"report.queries: directory not found: {directory}")
    # Relative to the working directory when below it: error lines then read `reports/queries/x.sql`.
    if directory.is_absolute() and directory.is_relative_to(Path.cwd()):
        directory = directory.relative_to(Path.cwd())
    return [parse_query_file(path) for path in sorted(directory.glob("*.sql"))]
