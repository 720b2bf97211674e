"""The report: query headers, the shipped queries on a planted store, figures, the page, the stage."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from cortexlens.config import parse_params
from cortexlens.config.study import Study
from cortexlens.errors import ConfigError, StoreError
from cortexlens.report import build_report
from cortexlens.report.figures import render_chart
from cortexlens.report.runner import QueryResult, run_queries
from cortexlens.report.spec import load_queries, parse_query_file
from cortexlens.store import layout, tables

REPO = Path(__file__).resolve().parents[2]
QUERIES = REPO / "reports" / "queries"

# --- a planted store: every number the shipped queries return is known ------------------------------

DOCS = {0: ["a", "b", "c"], 1: ["d", "e"]}  # doc_id -> tokens
ROWS = [(d, p) for d, toks in DOCS.items() for p in range(len(toks))]  # 5 token rows
NEURON_100 = [0.5, 3.0, -1.0, 2.0, 1.0]  # act[101] (1-based) of minilm mlp_post layer 3, per token row


def _planted_acts() -> dict[tuple[str, int], np.ndarray]:
    mlp3 = np.full((len(ROWS), 101), -1.0, np.float32)
    mlp3[:, :25] = 1.0  # 25 of the first 100 neurons active everywhere...
    mlp3[:, 100] = NEURON_100  # ...plus neuron 100 where its value is positive (4 of 5 rows)
    return {
        ("mlp_post", 0): np.tile(np.array([[1, -1, 0, 2]], np.float32), (len(ROWS), 1)),  # exactly half > 0
        ("mlp_post", 3): mlp3,
        # norms 5, 5, 5, 10, 10: mean 7
        ("resid_post", 0): np.array([[3, 4], [3, 4], [4, 3], [6, 8], [8, 6]], np.float32),
    }


def plant_store(store: Path, model: str = "minilm", dataset: str = "corpus") -> None:
    base = layout.extraction_dir(store, model, dataset)
    files: dict[str, dict] = {}

    def write(rel: str, table: pa.Table) -> None:
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, base / rel)
        files[rel] = {"rows": table.num_rows, "xxh3_128": "planted"}

    doc_ids = np.array([d for d, _ in ROWS])
    pos = np.array([p for _, p in ROWS])
    write(layout.documents_file(0), pa.Table.from_pylist(
        [{"doc_id": d, "text": " ".join(t), "n_tokens": len(t), "truncated": False, "labels": [("k", "v")]}
         for d, t in DOCS.items()], schema=tables.DOCUMENTS_SCHEMA))
    write(layout.tokens_file(0), pa.Table.from_pylist(
        [{"doc_id": d, "pos": p, "token_id": i, "token": DOCS[d][p]} for i, (d, p) in enumerate(ROWS)],
        schema=tables.TOKENS_SCHEMA))
    for (hook, layer), act in _planted_acts().items():
        rel = f"activations/hook={hook}/layer={layer}/{layout.part_name(0)}"
        write(rel, pa.Table.from_batches([tables.activations_batch(doc_ids, pos, act, "float32")]))
    manifest = {"fingerprint": "planted-fp",
                "model": {"name": model, "source": "planted", "revision": "rev-1"},
                "dataset": {"name": dataset, "fingerprint": "ds-fp", "n_docs": len(DOCS)},
                "rows": {"documents": len(DOCS), "tokens": len(ROWS), "activations": 3 * len(ROWS)},
                "shards": [{"shard": 0, "files": files}]}
    (base / layout.MANIFEST).write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("planted")
    plant_store(root)
    return root


@pytest.fixture(scope="module")
def results(store):
    return {r.spec.name: r for r in run_queries(store, load_queries(QUERIES))}


def _build(store: Path, out: Path, queries: Path = QUERIES, toy: Path | None = None):
    return build_report(study="planted-study", params={"study": "planted-study", "seed": 0}, store=store,
                        queries=queries, out_dir=out, toy_metrics=toy, fingerprint="f" * 64, max_table_rows=3)


# --- headers ---------------------------------------------------------------------------------------

GOOD = "-- section: S\n-- title: T\n"


@pytest.mark.parametrize("text, key", [
    ("-- title: T\nselect 1", "section"),
    ("-- section: S\nselect 1", "title"),
    ("-- section: S\n-- tilte: T\nselect 1", "tilte"),
    ("-- section: S\n-- title: T\n-- title: U\nselect 1", "title"),
    ("-- section:\n-- title: T\nselect 1", "section"),
    (GOOD + "-- chart: pie x=a y=b\nselect 1", "chart"),
    (GOOD + "-- chart: line x=layer\nselect 1", "chart"),
    (GOOD + "-- chart: heatmap x=a y=b\nselect 1", "chart"),
    (GOOD + "-- chart: table x=a\nselect 1", "chart"),
    (GOOD + "-- chart: line x:a y=b\nselect 1", "chart"),
    (GOOD + "-- chart: line x=a y=b colour=c\nselect 1", "chart"),
    (GOOD + "-- chart: line x=a y=b-c\nselect 1", "chart"),
    (GOOD + "-- chart: line x=a y=b\n", "sql"),
])
def test_bad_header_is_one_line_naming_file_and_key(tmp_path, text, key):
    path = tmp_path / "bad_query.sql"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        parse_query_file(path)
    assert len(err.value.lines) == 1
    line = err.value.lines[0]
    assert str(path) in line and "\n" not in line
    assert (f": {key}:" in line) if key != "sql" else "no SQL" in line, line


def test_header_parses_into_spec(tmp_path):
    path = tmp_path / "q.sql"
    path.write_text(GOOD + "-- chart: line x=layer y=mean_norm series=model\n-- note: read it so\n"
                    "-- a plain comment ends the header: key: value here is SQL\nselect 1 as layer")
    spec = parse_query_file(path)
    assert (spec.name, spec.section, spec.title, spec.note) == ("q", "S", "T", "read it so")
    assert (spec.chart.kind, spec.chart.x, spec.chart.y, spec.chart.series) == ("line", "layer", "mean_norm", "model")
    assert spec.sql.startswith("-- a plain comment") and spec.sql.endswith("select 1 as layer")
    assert parse_query_file(_write(tmp_path / "t.sql", GOOD + "select 1")).chart.kind == "table"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_shipped_queries_have_valid_headers_and_the_required_charts():
    specs = load_queries(QUERIES)
    kinds = {s.chart.kind for s in specs}
    assert {"line", "bar", "table"} <= kinds
    assert all(s.note for s in specs), "every shipped query explains how to read it"


# --- the shipped queries on the planted store --------------------------------------------------------

def test_overview_counts_rows_documents_tokens(results):
    r = results["01_store_overview"]
    rows = {(row[2], row[3]): dict(zip(r.columns, row)) for row in r.rows}
    assert set(rows) == {("mlp_post", 0), ("mlp_post", 3), ("resid_post", 0)}
    assert all((v["activation_rows"], v["documents"], v["tokens"]) == (5, 2, 5) for v in rows.values())


def test_residual_norm_and_active_fraction_are_known(results):
    norm = results["10_residual_norm"]
    assert [(row[0], row[1], row[2]) for row in norm.rows] == [("resid_post", "minilm", 0)]
    assert norm.column("mean_norm")[0] == pytest.approx(7.0)
    frac = dict(zip(results["20_mlp_active_fraction"].column("layer"),
                    results["20_mlp_active_fraction"].column("frac_active")))
    # 0 is not active; layer 3: 25 neurons in every row plus neuron 100 in 4 of 5 rows
    assert frac == pytest.approx({0: 0.5, 3: (25 * 5 + 4) / (101 * 5)})


def test_top_contexts_are_ordered_by_the_neuron(results):
    r = results["21_top_contexts_minilm"]
    tokens = r.column("token")
    expected = [DOCS[d][p] for (d, p), _ in sorted(zip(ROWS, NEURON_100), key=lambda item: -item[1])]
    assert tokens == expected
    assert r.column("activation") == pytest.approx(sorted(NEURON_100, reverse=True))
    assert r.column("text")[0] == "a b c"


def test_every_figure_decodes_to_a_nonempty_png(results):
    drawn = 0
    for result in results.values():
        png = render_chart(result)
        assert (png is None) == (not result.spec.chart.is_figure or not result.rows)
        if png is not None:
            image = matplotlib.image.imread(io.BytesIO(png), format="png")
            assert image.shape[0] > 50 and image.shape[1] > 50 and image.std() > 0
            drawn += 1
    assert drawn >= 3


def test_heatmap_with_facets_draws_one_panel_per_value(tmp_path):
    spec = parse_query_file(_write(tmp_path / "h.sql", GOOD + "-- chart: heatmap x=pos y=layer value=v facet=m\nselect 1"))
    rows = [(m, layer, pos, float(layer * pos)) for m in "abcd" for layer in range(3) for pos in range(5)]

    def size(n_facets: int) -> tuple[int, int]:
        png = render_chart(QueryResult(spec, ["m", "layer", "pos", "v"], rows[: 15 * n_facets], 0.0))
        return matplotlib.image.imread(io.BytesIO(png), format="png").shape[:2]

    (h1, w1), (h2, w2), (h4, w4) = size(1), size(2), size(4)
    assert (h2, w2) == (h1, pytest.approx(2 * w1, rel=0.01))
    assert (h4, w4) == (pytest.approx(2 * h1, rel=0.01), pytest.approx(3 * w1, rel=0.01))  # 3 per row


def test_chart_naming_a_missing_column_fails_with_the_file(tmp_path, store):
    queries = tmp_path / "q"
    queries.mkdir()
    bad = _write(queries / "bad.sql", GOOD + "-- chart: line x=layer y=nope\nselect 1 as layer")
    with pytest.raises(ConfigError, match=re.escape(f"{bad}: chart: column 'nope'")):
        run_queries(store, load_queries(queries))


# --- the page ---------------------------------------------------------------------------------------

def test_page_embeds_figures_and_links_nothing_external(tmp_path, store):
    toy = _write(tmp_path / "train_toy.json", json.dumps(
        {"first_copy_accuracy": 0.001, "second_copy_accuracy": 0.99, "chance_accuracy": 0.0015}))
    built = _build(store, tmp_path / "out", toy=toy)
    html = built.index.read_text()
    figure_queries = sum(r.spec.chart.is_figure and bool(r.rows) for r in built.results)
    assert built.figures == figure_queries + 1
    assert html.count("<img ") == built.figures == html.count('src="data:image/png;base64,')
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.IGNORECASE)
    assert "<script" not in html.lower() and "<link" not in html.lower()
    for section in ["Provenance", "Params", "Toy model", "Store", "Residual stream", "MLP neurons"]:
        assert f"<h2>{section}</h2>" in html
    assert "planted-fp" in html and "rev-1" in html and "study: planted-study" in html
    assert "first 3 of 5 rows" in html  # max_table_rows
    csv_names = sorted(p.name for p in (tmp_path / "out" / "plots").glob("*.csv"))
    assert csv_names == sorted(f"{s.name}.csv" for s in load_queries(QUERIES))
    assert (tmp_path / "out" / "plots" / "10_residual_norm.csv").read_text().splitlines()[0] == \
        "hook,model,layer,mean_norm,tokens"


def test_empty_store_report_says_no_data(tmp_path):
    built = _build(tmp_path / "no-store", tmp_path / "out")
    html = built.index.read_text()
    assert built.figures == 0 and "<img" not in html
    assert html.count("No data: the query returned no rows.") == len(built.results) > 0
    assert "No data: the store has no complete extraction." in html
    header = (tmp_path / "out" / "plots" / "20_mlp_active_fraction.csv").read_text()
    assert header == "model,layer,frac_active,neurons\n"


def test_failing_query_leaves_the_previous_report(tmp_path, store):
    queries = tmp_path / "q"
    queries.mkdir()
    _write(queries / "a.sql", GOOD + "select count(*) as n from tokens")
    out = tmp_path / "out"
    _build(store, out, queries)
    before = (out / "index.html").read_bytes()
    bad = _write(queries / "b.sql", GOOD + "select no_such_column from tokens")
    with pytest.raises(StoreError, match=re.escape(str(bad))):
        _build(store, out, queries)
    _write(queries / "b.sql", GOOD + "copy (select 1) to 'x.csv'")
    with pytest.raises(StoreError, match="read-only"):
        _build(store, out, queries)
    assert (out / "index.html").read_bytes() == before
    assert sorted(p.name for p in out.rglob("*")) == ["a.csv", "index.html", "plots"]


# --- dvc.yaml and the stage ---------------------------------------------------------------------------

def test_dvc_plots_repeat_the_chart_headers():
    """dvc.yaml's plots cannot read the SQL headers; this keeps the two from drifting apart."""
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    declared = {Path(next(iter(entry))).stem: next(iter(entry.values())) for entry in dvc["plots"]}
    specs = {s.name: s for s in load_queries(QUERIES)}
    assert set(declared) <= set(specs)
    for name, props in declared.items():
        chart = specs[name].chart
        assert props["x"] == chart.x and props["y"] == (chart.value or chart.y), name
    assert {n for n, s in specs.items() if s.chart.kind in ("line", "bar")} <= set(declared)
    report = dvc["stages"]["report"]
    assert report["cmd"] == "python -m stages.report" and "report" in report["params"]


def test_stage_run_writes_report_and_metrics(tmp_path, store):
    import stages.report

    params = parse_params({"study": "stage-test", "paths": {"store": str(store), "reports": "out"},
                           "report": {"queries": str(QUERIES), "max_table_rows": 5}})
    study = Study(params, tmp_path / "params.yaml")  # never read: run() takes the validated study
    (tmp_path / "out" / "metrics").mkdir(parents=True)
    _write(tmp_path / "out" / "metrics" / "train_toy.json",
           json.dumps({"first_copy_accuracy": 0.0, "second_copy_accuracy": 1.0}))
    metrics = stages.report.STAGE.execute(study, progress=False)
    n = len(load_queries(QUERIES))
    assert metrics["queries"] == n and set(metrics["rows"]) == {s.name for s in load_queries(QUERIES)}
    assert metrics["rows"]["21_top_contexts_minilm"] == len(NEURON_100)
    # the position heatmap keeps positions with >= 20 tokens: none in a 5-token store
    # empty: the position heatmap, the toy circuit, the two sparsity, two probe, four brain, six patching
    # and six SAE queries (the planted store has no results); the three patching and three SAE tables count
    # as tables
    assert (metrics["figures"], metrics["tables"], metrics["empty_queries"]) == (3 + 1, 3 + 2 + 3 + 3,
                                                                                 1 + 1 + 2 + 2 + 4 + 6 + 6)
    # The metrics file holds results only (DVC compares it across experiments); timings go to MLflow.
    timings = metrics.pop("timings")
    assert set(timings) == {"build", "stage", *metrics["rows"]}
    assert json.loads((tmp_path / "out" / "metrics" / "report.json").read_text()) == metrics
    assert "<h1>stage-test</h1>" in (tmp_path / "out" / "index.html").read_text()
