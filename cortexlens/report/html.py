"""The report page: one self-contained HTML file.

Figures are embedded as base64 PNG data URIs and the style sheet is inline; there is no script and
no external URL, so the page looks the same offline, from a file:// URL or as an MLflow artifact.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from decimal import Decimal
from html import escape
from typing import Any

from cortexlens.report.provenance import Provenance
from cortexlens.report.runner import QueryResult
from cortexlens.report.toy import ToyModel

MAX_CELL = 120  # characters per table cell (documents can be long)
MAX_LIST_ITEMS = 4  # activation vectors show their first values and length

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #222; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2rem; margin-top: 2.5rem; }
nav a { margin-right: 1rem; } .note { color: #555; font-style: italic; } .muted { color: #777; }
table { border-collapse: collapse; font-size: .85rem; margin: .5rem 0; }
th, td { border: 1px solid #ddd; padding: .2rem .5rem; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } th { background: #f4f4f4; }
pre { background: #f6f6f6; padding: .8rem; overflow-x: auto; font-size: .8rem; }
code { word-break: break-all; } img { max-width: 100%; height: auto; }
article { margin-bottom: 2rem; } details { margin-top: .3rem; }
"""


@dataclass(frozen=True)
class Block:
    """One query in the page: its figure (if drawn) and its result table."""

    result: QueryResult
    png: bytes | None


@dataclass
class Page:
    study: str
    params_yaml: str
    provenance: Provenance
    max_table_rows: int
    toy: ToyModel | None = None
    sections: dict[str, list[Block]] = field(default_factory=dict)  # insertion order = page order


def render(page: Page) -> str:
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(page.study)} · CortexLens report</title>", f"<style>{STYLE}</style>", "</head>",
        "<body>", "<header>", f"<h1>{escape(page.study)}</h1>",
        '<p class="muted">CortexLens report: SQL queries over the activation store, drawn at build time.</p>',
        _nav(page), "</header>",
        _provenance(page.provenance),
        _section("params", "Params", f"<pre>{escape(page.params_yaml)}</pre>"),
    ]
    if page.toy is not None:
        parts.append(_toy(page.toy))
    for title, blocks in page.sections.items():
        body = "\n".join(_block(block, page.max_table_rows) for block in blocks)
        parts.append(_section(section_id(title), title, body, css="capability"))
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def section_id(title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return f"s-{slug or 'section'}"


def img_tag(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}">'


def _nav(page: Page) -> str:
    titles = ["Provenance", "Params"] + (["Toy model"] if page.toy is not None else []) + list(page.sections)
    ids = ["provenance", "params"] + (["toy-model"] if page.toy is not None else [])
    ids += [section_id(t) for t in page.sections]
    links = " ".join(f'<a href="#{i}">{escape(t)}</a>' for i, t in zip(ids, titles))
    return f"<nav>{links}</nav>"


def _section(ident: str, title: str, body: str, css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    return f'<section id="{ident}"{cls}>\n<h2>{escape(title)}</h2>\n{body}\n</section>'


def _provenance(prov: Provenance) -> str:
    lines = [(f"<p>Inputs fingerprint <code>{escape(prov.fingerprint)}</code> (the code, params and store "
              f"this page was built from, as <code>dvc repro</code> sees them; the report's MLflow run is "
              f"tagged with the git commit), cortexlens {escape(prov.version)}.</p>")]
    if prov.extractions:
        columns = ["model", "source", "revision", "dataset", "fingerprint", "n_docs", "tokens", "activation rows"]
        rows = [(e.model, e.source, e.revision, e.dataset, e.fingerprint, e.n_docs, e.tokens, e.activation_rows)
                for e in prov.extractions]
        lines.append(table(columns, rows, codes={2, 4}))
    else:
        lines.append('<p class="muted">No data: the store has no complete extraction.</p>')
    if prov.results:
        columns = ["stage", "item", "fingerprint", "tables (rows)", "inputs"]
        rows = [(r.stage, r.item or "", r.fingerprint, ", ".join(f"{t} ({n})" for t, n in r.tables.items()),
                 ", ".join(r.inputs)) for r in prov.results]
        lines.append(table(columns, rows, codes={2}))
    return _section("provenance", "Provenance", "\n".join(lines))


def _toy(toy: ToyModel) -> str:
    note = ("Next-token accuracy on held-out sequences: the first copy of the repeated segment is random "
            "(chance), the second can be copied by an induction head.")
    body = [f'<p class="note">{note}</p>']
    if toy.png is not None:
        body.append(img_tag(toy.png, "Toy model: second-copy vs first-copy accuracy"))
    scalars = [(k, v) for k, v in toy.metrics.items() if isinstance(v, (int, float, str))]
    body.append(table(["metric", "value"], scalars))
    return _section("toy-model", "Toy model", "\n".join(body))


def _block(block: Block, max_rows: int) -> str:
    spec, result = block.result.spec, block.result
    parts = [f'<article id="q-{escape(spec.name)}">', f"<h3>{escape(spec.title)}</h3>"]
    if spec.note:
        parts.append(f'<p class="note">{escape(spec.note)}</p>')
    if not result.rows:
        parts.append('<p class="muted">No data: the query returned no rows.</p>')
    else:
        shown = table(result.columns, result.rows[:max_rows])
        count = (f"{len(result.rows)} rows" if len(result.rows) <= max_rows
                 else f"first {max_rows} of {len(result.rows)} rows")
        if block.png is not None:
            parts.append(img_tag(block.png, spec.title))
            parts.append(f"<details><summary>Data ({count})</summary>\n{shown}\n</details>")
        else:
            parts += [shown, f'<p class="muted">{count}</p>']
    parts.append(f'<p class="muted">Query <code>{escape(spec.path.name)}</code>.</p>')
    parts.append("</article>")
    return "\n".join(parts)


def table(columns: list[str], rows: list[tuple[Any, ...]], codes: Collection[int] = ()) -> str:
    """An HTML table; columns at the indices in `codes` are shown as code (hashes, revisions)."""
    head = "".join(f"<th>{escape(str(c))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            text = escape(cell(value))
            numeric = isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)
            cells.append(f'<td class="num">{text}</td>' if numeric else
                         f"<td><code>{text}</code></td>" if i in codes else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


def cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        head = ", ".join(cell(v) for v in value[:MAX_LIST_ITEMS])
        return f"[{head}{', …' if len(value) > MAX_LIST_ITEMS else ''}] ({len(value)})"
    if isinstance(value, dict):
        text = "{" + ", ".join(f"{k}: {cell(v)}" for k, v in value.items()) + "}"
    else:
        text = str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"
