"""The SQL contract: views and columns, read-only enforcement, output formats, README queries."""

import csv
import io
import json

import numpy as np
import pytest

from cortexlens.cli import main as cli_main
from cortexlens.data.corpus import generate_corpus
from cortexlens.store import layout
from cortexlens.store.sql import connect
from cortexlens.store.views import all_views
from tests.helpers import load_local, run_extraction

CONTRACT = {
    "tokens": ["model", "dataset", "doc_id", "pos", "token_id", "token"],
    "activations": ["model", "dataset", "hook", "layer", "doc_id", "pos", "act"],
    "pooled": ["model", "dataset", "hook", "layer", "doc_id", "pooling", "act"],
}


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("store")
    model = load_local(tiny_model("gpt2"), name="tiny")
    run_extraction(model, root, generate_corpus(30, 0), hooks=["resid_post", "mlp_post"], layers="all")
    return root


def _sql(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["sql", *args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def _columns(con, view):
    return [row[0] for row in con.execute(f"describe {view}").fetchall()]


def test_empty_store_has_every_view_with_contract_columns(tmp_path):
    con = connect(tmp_path / "nothing-here")
    for view, columns in CONTRACT.items():
        assert _columns(con, view)[: len(columns)] == columns
        assert con.execute(f"select count(*) from {view}").fetchone()[0] == 0
    assert {v.name for v in all_views()} >= set(CONTRACT) | {"documents"}


def test_views_expose_contract_columns_and_hook_names(store):
    con = connect(store)
    for view, columns in CONTRACT.items():
        assert set(columns) <= set(_columns(con, view))
    names = con.execute("select distinct hook_name from activations order by 1").fetchall()
    assert names == [("blocks.0.hook_resid_post",), ("blocks.0.mlp.hook_post",), ("blocks.1.hook_resid_post",),
                     ("blocks.1.mlp.hook_post",), ("blocks.2.hook_resid_post",), ("blocks.2.mlp.hook_post",)]
    assert con.execute("select typeof(layer), typeof(act) from activations limit 1").fetchone() == ("INTEGER", "FLOAT[]")


@pytest.mark.parametrize("statement", [
    "copy (select 1) to 'out.csv'", "attach 'other.db'", "install httpfs", "load httpfs",
    "create table t as select 1", "set threads = 1", "pragma version", "insert into tokens values (1)",
    "export database 'dump'",
])
def test_writing_statements_are_refused(statement, store, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _sql(["--store", str(store), statement], capsys)
    assert code == 2 and out == ""
    assert err.startswith("query: refused ") and "the store is read-only" in err
    assert list(tmp_path.iterdir()) == []


def test_read_queries_are_allowed(store, capsys):
    for statement in ["select 1", "with t as (select 2 as x) select x from t", "describe activations",
                      "show tables", "summarize select pos from tokens", "explain select * from tokens"]:
        code, _, err = _sql(["--store", str(store), statement], capsys)
        assert (code, err) == (0, ""), statement


@pytest.fixture
def outside(tmp_path):
    """A secret beside the store, a Parquet file elsewhere: what a query must not reach."""
    (tmp_path / "secret.txt").write_text("password\n")
    (tmp_path / "secret.csv").write_text("a,b\n1,2\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1]}), tmp_path / "other.parquet")
    return tmp_path


@pytest.mark.parametrize("call", [
    "read_text('{d}/secret.txt')", "read_blob('{d}/secret.txt')", "read_csv('{d}/secret.csv')",
    "read_csv_auto('{d}/secret.csv')", "glob('{d}/*')", "read_parquet('{d}/other.parquet')",
    "read_json('{d}/secret.txt')", "read_text('/etc/passwd')", "glob('/root/*')",
    "read_text('{store}/../secret.txt')",  # no way out of the store through '..'
    "read_text('{store}x/secret.txt')",  # nor through a directory whose name starts like the store's
])
def test_files_outside_the_store_are_refused(call, store, outside, capsys):
    query = f"select * from {call.format(d=outside, store=store)}"
    code, out, err = _sql(["--store", str(store), query], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("query: refused: SQL reads the store's views and files only (Cannot access file ")
    assert err.count("\n") == 1


def test_confinement_cannot_be_switched_off(store, capsys):
    for statement in ["set enable_external_access = true", "reset allowed_directories"]:
        code, _, err = _sql(["--store", str(store), statement], capsys)
        assert code == 2 and err.startswith("query: refused "), statement
    con = connect(store)
    with pytest.raises(Exception, match="locked"):
        con.execute("set enable_external_access = true")


def test_every_view_answers_while_confined(store, capsys):
    con = connect(store)
    for view in all_views():
        con.execute(f"select * from {view.name} limit 1").fetchall()
    assert con.execute("select count(*) from activations").fetchone()[0] > 0
    # and reading the store's own files is still allowed
    files = con.execute(f"select count(*) from glob('{store}/**/*.parquet')").fetchone()[0]
    assert files > 0


def test_bad_query_is_one_line_and_exit_2(store, capsys):
    code, out, err = _sql(["--store", str(store), "select * from nope"], capsys)
    assert code == 2 and out == "" and err.startswith("query: Catalog Error") and err.count("\n") == 1


def test_unfinished_extraction_is_invisible(store, tiny_model, tmp_path):
    model = load_local(tiny_model("gpt2"), name="tiny")
    run_extraction(model, tmp_path, generate_corpus(10, 1), hooks=["resid_post"], layers=[0])
    (layout.extraction_dir(tmp_path, "tiny", "corpus") / layout.MANIFEST).unlink()
    assert connect(tmp_path).execute("select count(*) from activations").fetchone()[0] == 0


def test_csv_and_json_formats(store, capsys):
    query = "select doc_id, pos, token from tokens where doc_id = 0 order by pos"
    _, out_csv, _ = _sql(["--store", str(store), "--format", "csv", query], capsys)
    _, out_json, _ = _sql(["--store", str(store), "--format", "json", query], capsys)
    rows = list(csv.DictReader(io.StringIO(out_csv)))
    assert [r["token"] for r in rows] == [r["token"] for r in json.loads(out_json)]
    assert [int(r["pos"]) for r in rows] == list(range(len(rows)))
    _, out_vec, _ = _sql(["--store", str(store), "--format", "json", "select act from activations where hook = 'resid_post' limit 1"], capsys)
    assert len(json.loads(out_vec)[0]["act"]) == 32


def test_readme_query_top_contexts_of_one_neuron(store, capsys):
    """The README's query: the tokens (with context) that most activate MLP neuron 7 of layer 1."""
    query = """
        select t.doc_id, t.pos, t.token, a.act[8] as activation
        from activations a join tokens t using (model, dataset, doc_id, pos)
        where a.model = 'tiny' and a.hook = 'mlp_post' and a.layer = 1
        order by activation desc limit 5"""
    code, out, _ = _sql(["--store", str(store), "--format", "json", query], capsys)
    assert code == 0
    top = json.loads(out)
    con = connect(store)
    rows = con.execute("select doc_id, pos, act from activations where hook = 'mlp_post' and layer = 1").fetchall()
    values = np.array([a[7] for _, _, a in rows])  # SQL lists are 1-based: act[8] is neuron 7
    assert [r["activation"] for r in top] == pytest.approx(sorted(values, reverse=True)[:5])


def test_readme_query_mean_norm_per_layer(store, capsys):
    query = """select layer, avg(sqrt(list_dot_product(act, act))) as mean_norm
               from activations where hook = 'resid_post' group by layer order by layer"""
    code, out, _ = _sql(["--store", str(store), "--format", "json", query], capsys)
    assert code == 0
    got = {r["layer"]: r["mean_norm"] for r in json.loads(out)}
    con = connect(store)
    for layer in range(3):
        acts = np.array([a for (a,) in con.execute(
            f"select act from activations where hook = 'resid_post' and layer = {layer}").fetchall()])
        assert got[layer] == pytest.approx(np.linalg.norm(acts, axis=1).mean(), rel=1e-5)
