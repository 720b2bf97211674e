"""Result tables: atomic units, resume after a kill, views with contracted columns, plugin sections."""

import json
import subprocess
import sys
import textwrap

import pyarrow as pa
import pytest
from pydantic import Field

import cortexlens.plugins as plugins_module
from cortexlens.config import study as study_module
from cortexlens.errors import ConfigError, StoreError
from cortexlens.plugins import Plugin, discover
from cortexlens.store import layout
from cortexlens.store.results import ResultWriter
from cortexlens.store.sql import connect
from cortexlens.store.views import ResultView

SCORES = ResultView("scores", table="scores", stage="score",
                    columns={"model": "VARCHAR", "layer": "INTEGER", "score": "DOUBLE"})


@pytest.fixture
def with_plugin(monkeypatch):
    """Make `plugins()` return one plugin (as if cortexlens/score/plugin.py existed)."""
    from cortexlens.config.schema import Section

    class ScoreParams(Section):
        alpha: float = 1.0
        layers: list[int] = Field(default_factory=lambda: [0])

    def check(study) -> list[str]:
        section = study.params.score
        if section is None:
            return []
        return [f"score.layers[{i}]: layer {v} is negative" for i, v in enumerate(section.layers) if v < 0]

    plugin = Plugin(sections={"score": ScoreParams}, views=[SCORES], checks=[check])
    monkeypatch.setattr(plugins_module, "plugins", lambda: {"score": plugin})
    study_module.params_model.cache_clear()
    yield plugin
    study_module.params_model.cache_clear()


def _writer(directory, fingerprint="fp-1"):
    return ResultWriter(directory, stage="score", item=None, fingerprint=fingerprint,
                        params={"score": {"alpha": 1.0}}, inputs={"extract.m.d": "x"}, contracts=[SCORES])


def _unit(layer: int) -> dict:
    return {"scores": pa.table({"model": ["m", "m"], "layer": [layer, layer], "score": [0.5, 0.25 + layer],
                                "extra": ["a", "b"]})}


def test_units_become_visible_only_with_the_manifest(tmp_path, with_plugin):
    store = tmp_path / "store"
    writer = _writer(store / "score")
    writer.write_unit("layer=0", _unit(0))
    con = connect(store)
    assert con.execute("select count(*) from scores").fetchone() == (0,)  # no manifest yet
    writer.write_unit("layer=1", _unit(1))
    manifest = writer.finish({"best": 1})
    con = connect(store)
    rows = con.execute("select model, layer, score, extra from scores order by layer, score").fetchall()
    assert rows == [("m", 0, 0.25, "b"), ("m", 0, 0.5, "a"), ("m", 1, 0.5, "a"), ("m", 1, 1.25, "b")]
    assert [d[1] for d in con.execute("select * from scores").description][:3] == ["VARCHAR", "INTEGER", "DOUBLE"]
    assert manifest["tables"]["scores"]["rows"] == 4 and manifest["units"] == ["layer=0", "layer=1"]
    assert manifest["inputs"] == {"extract.m.d": "x"} and manifest["summary"] == {"best": 1}
    assert writer.read("scores").column("layer").to_pylist() == [0, 0, 1, 1]  # what the units wrote
    assert writer.read("other") is None
    assert not (store / "score" / layout.PROGRESS).exists()


def test_an_empty_result_view_has_its_columns(tmp_path, with_plugin):
    con = connect(tmp_path / "store")
    assert con.execute("select * from scores").fetchall() == []
    assert [d[0] for d in con.execute("select * from scores").description] == ["model", "layer", "score"]


def test_a_killed_run_resumes_without_redoing_or_duplicating_units(tmp_path, with_plugin):
    directory = tmp_path / "store" / "score"
    first = _writer(directory)
    first.write_unit("layer=0", _unit(0))
    stamp = (directory / "scores" / "layer=0.parquet").stat().st_mtime_ns
    (directory / "scores" / ".layer=1.parquet.999.tmp").write_text("half-written by the killed run")
    resumed = _writer(directory)
    assert resumed.done("layer=0") and not resumed.done("layer=1")
    assert resumed.read("scores").num_rows == 2  # a resumed run reads what the killed one wrote
    resumed.write_unit("layer=1", _unit(1))
    manifest = resumed.finish()
    assert manifest["tables"]["scores"]["rows"] == 4
    assert (directory / "scores" / "layer=0.parquet").stat().st_mtime_ns == stamp
    assert not list(directory.rglob("*.tmp"))
    again = _writer(directory)  # complete with the same fingerprint: nothing to do
    assert again.complete and again.done("layer=7") and again.finish() == manifest


def test_another_fingerprint_starts_over(tmp_path, with_plugin):
    directory = tmp_path / "store" / "score"
    old = _writer(directory)
    old.write_unit("layer=0", _unit(0))
    old.finish()
    new = _writer(directory, fingerprint="fp-2")
    assert not new.complete and not new.done("layer=0")
    assert not (directory / layout.MANIFEST).exists()  # stale results are gone before new ones are written
    assert connect(tmp_path / "store").execute("select count(*) from scores").fetchone() == (0,)


def test_results_of_a_run_s_own_product_are_redone_when_the_product_differs(tmp_path, with_plugin):
    """train_toy scores the model it has just trained: the same params train other weights on another
    kind of CPU, so the head scores of the old weights must not be reused (they once were)."""
    from cortexlens.pipeline.fingerprint import with_produced

    model = tmp_path / "models" / "toy"
    model.mkdir(parents=True)
    (model / "model.safetensors").write_bytes(b"weights of run 1")
    directory = tmp_path / "store" / "score"
    fp1, digests = with_produced("fp-1", {"model": model})
    assert set(digests) == {"produced.model"} and fp1 != "fp-1"
    assert with_produced("fp-1", {"model": model}) == (fp1, digests)  # same content, same key
    assert with_produced("fp-1", {}) == ("fp-1", {})
    first = _writer(directory, fp1)
    first.write_unit("layer=0", _unit(0))
    first.finish()
    assert _writer(directory, fp1).complete  # the same weights: nothing to redo
    (model / "model.safetensors").write_bytes(b"weights of run 2")
    fp2, _ = with_produced("fp-1", {"model": model})
    assert fp2 != fp1
    again = _writer(directory, fp2)
    assert not again.complete and not again.done("layer=0")


def test_a_table_missing_a_contracted_column_is_refused_and_nothing_is_written(tmp_path, with_plugin):
    writer = _writer(tmp_path / "store" / "score")
    bad = {"scores": pa.table({"model": ["m"], "score": [1.0]})}
    with pytest.raises(StoreError, match=r"^score: table 'scores' lacks the contracted column\(s\) layer of "
                                         r"view 'scores'$"):
        writer.write_unit("layer=0", bad)
    assert not writer.done("layer=0") and not (tmp_path / "store" / "score" / "scores").exists()


def test_a_failing_unit_leaves_none_of_its_files(tmp_path, with_plugin):
    writer = _writer(tmp_path / "store" / "score")

    class Boom(dict):
        def items(self):
            yield "scores", _unit(0)["scores"]
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        writer.write_unit("layer=0", Boom())
    assert not writer.done("layer=0")
    assert not list((tmp_path / "store" / "score").rglob("*.parquet"))


def test_plugin_sections_are_validated_with_key_paths(tmp_path, with_plugin):
    params = study_module.parse_params({"score": {"alpha": 2, "layers": [1]}})
    assert params.score.alpha == 2.0
    with pytest.raises(ConfigError) as err:
        study_module.parse_params({"score": {"alpha": "x", "layerz": [1]}, "scorez": {}})
    assert err.value.lines == [
        "score.alpha: expected a number, got 'x'",
        "score.layerz: unknown key (allowed: alpha, layers); did you mean 'layers'?",
        ("scorez: unknown key (allowed: study, seed, device, paths, models, datasets, train_toy, train_facts, extract, "
         "tracking, report, flow, score); did you mean 'score'?"),
    ]
    (tmp_path / "params.yaml").write_text("score:\n  layers: [2, -1]\n")
    with pytest.raises(ConfigError, match=r"^score.layers\[1\]: layer -1 is negative$"):
        study_module.load_study(tmp_path / "params.yaml")


def test_discover_imports_each_plugin_module(tmp_path, monkeypatch):
    package = tmp_path / "fakelens"
    (package / "alpha").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "alpha" / "__init__.py").write_text("")
    (package / "alpha" / "plugin.py").write_text(textwrap.dedent("""
        from cortexlens.plugins import Plugin
        from cortexlens.store.views import ResultView
        PLUGIN = Plugin(views=[ResultView("alpha_rows", table="rows", columns={"x": "INTEGER"})])
    """))
    (package / "beta").mkdir()
    (package / "beta" / "__init__.py").write_text("")  # no plugin.py: not an analysis plugin
    monkeypatch.syspath_prepend(str(tmp_path))
    found = discover(package, "fakelens")
    assert list(found) == ["alpha"] and found["alpha"].views[0].name == "alpha_rows"


def test_every_shipped_plugin_is_light():
    """`cortexlens sql` and `check` import every plugin: none may pull torch or transformers."""
    code = ("import sys\nfrom cortexlens.plugins import plugins\nfound = plugins()\n"
            "print(sorted(found), sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip().endswith("[]"), proc.stdout


def test_result_views_filter_by_stage(tmp_path):
    store = tmp_path / "store"
    for stage in ("score", "other"):
        writer = ResultWriter(store / stage, stage=stage, item=None, fingerprint="f")
        writer.write_unit("all", _unit(0))
        writer.finish()
    assert [p.parent.name for p in layout.result_manifests(store)] == ["other", "score"]
    assert len(SCORES.files(store)) == 1
    assert len(ResultView("any_scores", table="scores", columns={"model": "VARCHAR"}).files(store)) == 2
    manifest = json.loads((store / "score" / layout.MANIFEST).read_text())
    assert manifest["stage"] == "score" and manifest["item"] is None
