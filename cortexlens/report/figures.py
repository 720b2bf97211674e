"""Draw query results as PNG figures with matplotlib.

Figures are built with the object API (`Figure` + the Agg canvas), never pyplot: no GUI backend is
touched, and no global figure registry is shared when the Prefect flow runs stages in threads.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cortexlens.errors import ConfigError
from cortexlens.report.runner import QueryResult
from cortexlens.report.spec import Chart

PANEL_SIZE = (6.4, 4.0)  # inches per facet panel
DPI = 100
MAX_COLUMNS = 3  # facet panels per row; more wrap onto further rows
MAX_LEGEND = 12  # more series than this: the legend would cover the data


def render_chart(result: QueryResult) -> bytes | None:
    """The PNG of a figure query's result; None when the query returned no rows."""
    chart = result.spec.chart
    if not chart.is_figure or not result.rows:
        return None
    panels = _group(result, chart.facet)
    ncols = min(len(panels), MAX_COLUMNS)
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(PANEL_SIZE[0] * ncols, PANEL_SIZE[1] * nrows), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).flatten()
    for unused in axes[len(panels):]:
        unused.set_axis_off()
    draw = {"line": _line, "bar": _bar, "heatmap": _heatmap}[chart.kind]
    for ax, (facet_value, rows) in zip(axes, panels.items()):
        try:
            draw(fig, ax, chart, rows)
        except (TypeError, ValueError) as err:  # e.g. text in the y column
            raise ConfigError(f"{result.spec.path}: chart: cannot draw the result as {chart.kind} ({err})") from None
        if chart.facet:
            ax.set_title(f"{chart.facet} = {facet_value}")
    return to_png(fig)


def bar_png(labels: Sequence[str], values: Sequence[float], ylabel: str,
            reference: tuple[str, float] | None = None) -> bytes:
    """A single-series bar chart; `reference` draws a labelled horizontal line (e.g. chance)."""
    fig = Figure(figsize=(5.0, 3.2), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    bars = ax.bar(list(labels), list(values), color="#4c72b0")
    ax.bar_label(bars, fmt="%.3g")
    if reference is not None:
        ax.axhline(reference[1], color="#c44e52", linestyle="--", linewidth=1, label=reference[0])
        ax.legend(loc="upper left")
    ax.set_ylabel(ylabel)
    ax.margins(y=0.15)
    return to_png(fig)


def to_png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    # No "Software" text chunk (matplotlib's version and URL): with one matplotlib, the same data
    # gives the same bytes.
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _group(result: QueryResult, column: str | None) -> dict[Any, list[dict[str, Any]]]:
    """Rows as dicts, grouped by `column`'s value in order of first appearance (one group if None)."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for row in result.rows:
        record = dict(zip(result.columns, row))
        groups.setdefault(record[column] if column else None, []).append(record)
    return groups


def _number(value: Any) -> float:
    # Decimals (DuckDB's exact division), bools and numeric strings convert; anything else is a
    # query that does not fit its chart, and the ValueError says which value.
    return math.nan if value is None else float(value)


def _is_numeric(values: list[Any]) -> bool:
    return all(isinstance(v, (int, float, Decimal)) and not isinstance(v, bool) for v in values if v is not None)


def _by_series(chart: Chart, rows: list[dict[str, Any]]) -> dict[Any, list[dict[str, Any]]]:
    out: dict[Any, list[dict[str, Any]]] = {}
    for record in rows:
        out.setdefault(record[chart.series] if chart.series else chart.y, []).append(record)
    return out


def _line(fig: Figure, ax: Any, chart: Chart, rows: list[dict[str, Any]]) -> None:
    series = _by_series(chart, rows)
    numeric_x = _is_numeric([r[chart.x] for r in rows])
    for name, records in series.items():
        if numeric_x:  # draw in x order whatever order the query returned
            records = sorted(records, key=lambda r: _number(r[chart.x]))
        xs = [_number(r[chart.x]) if numeric_x else str(r[chart.x]) for r in records]
        ys = [_number(r[chart.y]) for r in records]
        (line,) = ax.plot(xs, ys, marker="o", markersize=3, label=str(name))
        if chart.err:  # y +- err: a band in the line's colour
            errs = [_number(r[chart.err]) for r in records]
            ax.fill_between(xs, [y - e for y, e in zip(ys, errs, strict=True)],
                            [y + e for y, e in zip(ys, errs, strict=True)], color=line.get_color(), alpha=0.2)
    if numeric_x and all(float(v).is_integer() for v in (_number(r[chart.x]) for r in rows) if not math.isnan(v)):
        ax.xaxis.get_major_locator().set_params(integer=True)  # layers and positions are whole numbers
    _labels(ax, chart.x, chart.y)
    if chart.series and len(series) <= MAX_LEGEND:
        ax.legend(title=chart.series)


def _bar(fig: Figure, ax: Any, chart: Chart, rows: list[dict[str, Any]]) -> None:
    series = _by_series(chart, rows)
    # Numeric categories (lengths, layers) in numeric order, whichever series first shows them.
    categories = [str(v) for v in _axis_values([r[chart.x] for r in rows])]
    slot = {c: i for i, c in enumerate(categories)}
    width = 0.8 / len(series)
    for k, (name, records) in enumerate(series.items()):
        offset = (k - (len(series) - 1) / 2) * width
        ax.bar([slot[str(r[chart.x])] + offset for r in records], [_number(r[chart.y]) for r in records],
               width=width, label=str(name))
    ax.set_xticks(range(len(categories)), categories, rotation=45 if len(categories) > 12 else 0)
    _labels(ax, chart.x, chart.y)
    if chart.series and len(series) <= MAX_LEGEND:
        ax.legend(title=chart.series)


def _heatmap(fig: Figure, ax: Any, chart: Chart, rows: list[dict[str, Any]]) -> None:
    xs = _axis_values([r[chart.x] for r in rows])
    ys = _axis_values([r[chart.y] for r in rows])
    grid = [[math.nan] * len(xs) for _ in ys]
    col, line = {v: i for i, v in enumerate(xs)}, {v: i for i, v in enumerate(ys)}
    for r in rows:
        grid[line[r[chart.y]]][col[r[chart.x]]] = _number(r[chart.value])
    image = ax.imshow(grid, aspect="auto", origin="lower", interpolation="nearest", cmap="viridis")
    fig.colorbar(image, ax=ax, label=chart.value)
    for axis, values in ((ax.xaxis, xs), (ax.yaxis, ys)):
        step = max(1, math.ceil(len(values) / 16))  # at most ~16 tick labels per axis
        ticks = list(range(0, len(values), step))
        axis.set_ticks(ticks, [str(values[i]) for i in ticks])
    _labels(ax, chart.x, chart.y)


def _axis_values(values: list[Any]) -> list[Any]:
    unique = list(dict.fromkeys(values))
    return sorted(unique, key=_number) if _is_numeric(unique) and None not in unique else unique


def _labels(ax: Any, x: str | None, y: str | None) -> None:
    ax.set_xlabel(x or "")
    ax.set_ylabel(y or "")
    ax.grid(True, alpha=0.3)
