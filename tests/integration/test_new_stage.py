"""Adding an analysis touches nothing else: a package, a stage module, a params section, a dvc.yaml
entry and a SQL file, added to a copy of the project, are picked up by `dvc repro`, the Prefect flow,
`cortexlens sql` and the report, while every existing file except dvc.yaml and params.yaml is untouched.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.integration.prefect_support import BIN, ROOT, small_params, states

pytestmark = pytest.mark.timeout(900)

PLUGIN = '''
"""norms: L2 norms of pooled features, a minimal analysis used by the platform's tests."""

from cortexlens.config.schema import Section
from cortexlens.plugins import Plugin
from cortexlens.store.views import ResultView


class NormsParams(Section):
    hook: str = "resid_post"
    pooling: str = "mean"


def check(study) -> list[str]:
    section, extract = study.params.norms, study.params.extract
    if section is None or extract is None or section.hook in extract.hooks:
        return []
    return [f"norms.hook: {section.hook!r} is not extracted (extract.hooks: {', '.join(map(str, extract.hooks))})"]


PLUGIN = Plugin(
    sections={"norms": NormsParams},
    views=[ResultView("doc_norms", table="doc_norms", stage="norms",
                      columns={"model": "VARCHAR", "dataset": "VARCHAR", "layer": "INTEGER", "doc_id": "BIGINT",
                               "norm": "DOUBLE"})],
    checks=[check],
)
'''

COMPUTE = '''
import numpy as np


def row_norms(x: np.ndarray) -> np.ndarray:
    """[n, d] -> [n] float64 L2 norms."""
    return np.sqrt(np.einsum("nd,nd->n", x.astype(np.float64), x.astype(np.float64)))
'''

STAGE = '''
"""norms: the L2 norm of every document's pooled features, per layer."""

from cortexlens.norms.compute import row_norms
from cortexlens.pipeline.stage import Stage
from cortexlens.store import catalog
from cortexlens.store.reader import read_pooled


def run(ctx):
    section, model, store = ctx.study.params.norms, ctx.item["model"], ctx.study.store_dir
    writer = ctx.results()
    for ext in catalog.extractions(store):
        if ext.model != model:
            continue
        for layer in sorted({h.layer for h in ext.hooks() if h.hook == section.hook}):
            unit = f"{ext.dataset}-{layer}"
            if writer.done(unit):
                continue
            pooled = read_pooled(store, model, ext.dataset, section.hook, layer, section.pooling)
            norms = row_norms(pooled.X)
            writer.write_unit(unit, {"doc_norms": {
                "model": [model] * len(norms), "dataset": [ext.dataset] * len(norms),
                "layer": [layer] * len(norms), "doc_id": pooled.doc_ids, "norm": norms}})
    manifest = writer.finish()
    return {"rows": manifest["tables"]["doc_norms"]["rows"]}


STAGE = Stage("norms", run, require=("norms", "extract"), summary=lambda m: f"norms: {m['rows']} rows")

if __name__ == "__main__":
    STAGE.main()
'''

DVC_ENTRY = '''
  norms:
    matrix:
      model: ${extract.models}
    cmd: python -m stages.norms --model ${item.model}
    deps:
      - stages/norms.py
      - cortexlens/norms
      - cortexlens/pipeline
      - cortexlens/store
      - ${paths.store}/extract/model=${item.model}
    params:
      - norms
    outs:
      - ${paths.store}/norms/${item.model}:
          cache: false
          persist: true
    metrics:
      - ${paths.reports}/metrics/norms-${item.model}.json:
          cache: false
'''

QUERY = '''-- section: Document norms
-- title: Mean pooled-feature norm per layer
-- chart: line x=layer y=mean_norm series=model
select model, layer, avg(norm) as mean_norm from doc_norms group by model, layer order by model, layer
'''

NEW_FILES = {
    "cortexlens/norms/__init__.py": '"""A minimal analysis: norms of pooled features."""\n',
    "cortexlens/norms/compute.py": COMPUTE,
    "cortexlens/norms/plugin.py": PLUGIN,
    "stages/norms.py": STAGE,
    "reports/queries/90_norms.sql": QUERY,
}


def _git(directory: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=directory, check=True, capture_output=True, text=True).stdout


def _env(project: Path) -> dict[str, str]:
    # The copy's packages first: `cortexlens` is installed in editable mode from the original checkout.
    return {**os.environ, "PYTHONPATH": str(project), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1"}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project, committed, then the new analysis added: (directory, git status)."""
    directory = tmp_path_factory.mktemp("project")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("cortexlens", "stages", "flows", "reports/queries"):
        shutil.copytree(ROOT / name, directory / name, ignore=ignore)
    shutil.copy(ROOT / "dvc.yaml", directory / "dvc.yaml")
    base = small_params()
    # The corpus only, without the brain stage's stimuli and random-init control: norms counts documents per layer.
    params = small_params(study="newstage", tracking={"uri": "sqlite:///mlflow.db"}, brain={"models": []},
                          extract={**base["extract"], "models": ["minilm", "toy"], "datasets": ["corpus"],
                                   "model_datasets": {}})
    (directory / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (directory / ".gitignore").write_text("data/\nreports/metrics/\nreports/plots/\nreports/index.html\n"
                                          "mlflow.db\nmlruns/\n.prefect/\n.dvc/tmp/\n")
    _git(directory, "init", "-q")
    _git(directory, "add", "-A")
    _git(directory, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "project")

    for rel, text in NEW_FILES.items():
        (directory / rel).parent.mkdir(parents=True, exist_ok=True)
        (directory / rel).write_text(textwrap.dedent(text).lstrip())
    dvc_yaml = (directory / "dvc.yaml").read_text()
    head, sep, tail = dvc_yaml.partition("\n# `dvc plots show")  # the stages end where the plots comment starts
    (directory / "dvc.yaml").write_text(head.rstrip("\n") + "\n" + DVC_ENTRY + sep + tail)
    (directory / "params.yaml").write_text(yaml.safe_dump({**params, "norms": {"hook": "resid_post"}}, sort_keys=False))
    status = _git(directory, "status", "--porcelain", "--untracked-files=all")
    return directory, status


def test_only_the_new_files_and_the_two_declarations_change(project):
    _, status = project
    changed = sorted(line[3:] for line in status.splitlines())
    assert changed == sorted(["dvc.yaml", "params.yaml", *NEW_FILES])
    assert {line[:2] for line in status.splitlines()} == {" M", "??"}


def test_dvc_repro_sql_and_the_report_pick_up_the_new_stage(project):
    directory, _ = project
    env = _env(directory)
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=directory, env=env, check=True)
    listed = subprocess.run([str(BIN / "dvc"), "stage", "list", "--name-only"], cwd=directory, env=env,
                            check=True, capture_output=True, text=True).stdout.split()
    assert {"norms@minilm", "norms@toy"} <= set(listed)
    proc = subprocess.run([str(BIN / "dvc"), "repro"], cwd=directory, env=env, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.index("Running stage 'norms@minilm'") < proc.stdout.index("Running stage 'report'")

    # cortexlens sql: the declared view, with the contracted columns first.
    sql = subprocess.run([str(BIN / "cortexlens"), "sql", "--format", "json",
                          ("select model, layer, count(*) as n, min(norm) > 0 as positive from doc_norms "
                           "group by all order by all")],
                         cwd=directory, env=env, check=True, capture_output=True, text=True)
    rows = json.loads(sql.stdout)
    assert {(r["model"], r["layer"]) for r in rows} == {("minilm", 0), ("minilm", 5), ("toy", 0), ("toy", 1)}
    assert all(r["n"] == 24 and r["positive"] for r in rows)

    # The numbers are the norms of the stored pooled features.
    from cortexlens.store.reader import read_pooled

    store = directory / "data" / "store"
    pooled = read_pooled(store, "minilm", "corpus", "resid_post", 5, "mean")
    check = subprocess.run([str(BIN / "cortexlens"), "sql", "--format", "json",
                            "select doc_id, norm from doc_norms where model = 'minilm' and layer = 5 order by doc_id"],
                           cwd=directory, env=env, check=True, capture_output=True, text=True)
    norms = [r["norm"] for r in json.loads(check.stdout)]
    np.testing.assert_allclose(norms, np.linalg.norm(pooled.X.astype(np.float64), axis=1), rtol=1e-12)

    # The report: its section and figure, and the results in its provenance.
    page = (directory / "reports" / "index.html").read_text()
    assert "Document norms" in page and "Mean pooled-feature norm per layer" in page
    assert "<td>norms</td>" in page
    metrics = json.loads((directory / "reports" / "metrics" / "norms-minilm.json").read_text())
    assert metrics == {"rows": 48}

    # MLflow: a finished run per instance, with exactly the params dvc.yaml lists for the stage.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{directory / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("newstage")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert runs["norms@toy"].info.status == "FINISHED"
    assert runs["norms@toy"].data.params == {"norms.hook": "resid_post", "norms.pooling": "mean"}
    assert runs["norms@toy"].data.tags["input.extract.toy.corpus"]
    assert runs["report"].data.tags["input.norms.minilm"]


def test_the_flow_picks_up_the_new_stage(project, prefect_server, tmp_path):
    directory, _ = project
    study = tmp_path / "study"
    shutil.copytree(directory / "reports" / "queries", study / "reports" / "queries")
    params = yaml.safe_load((directory / "params.yaml").read_text())
    (study / "params.yaml").write_text(yaml.safe_dump({**params, "tracking": {"enabled": False}}))
    code = f"from flows.pipeline import main\nmain(['--params', {str(study / 'params.yaml')!r}])"
    proc = subprocess.run([sys.executable, "-c", code], cwd=directory, env={**prefect_server.env, **_env(directory)},
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = states(proc.stdout)
    assert found["norms@minilm"] == found["norms@toy"] == found["report"] == "Completed", proc.stdout
    assert "Document norms" in (study / "reports" / "index.html").read_text()


def test_check_validates_the_new_section_where_it_lives(project, tmp_path):
    directory, _ = project
    env = _env(directory)
    ok = subprocess.run([str(BIN / "cortexlens"), "check", "params.yaml"], cwd=directory, env=env,
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and "analysis norms (cortexlens/norms): OK" in ok.stdout, ok.stdout + ok.stderr
    params = yaml.safe_load((directory / "params.yaml").read_text())
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump({**params, "norms": {"hok": "mlp_post"}}))
    proc = subprocess.run([str(BIN / "cortexlens"), "check", str(bad)], cwd=directory, env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "norms.hok: unknown key (allowed: hook, pooling); did you mean 'hook'?"
    bad.write_text(yaml.safe_dump({**params, "norms": {"hook": "attn_out"}}))
    proc = subprocess.run([sys.executable, "-m", "stages.norms", "--params", str(bad), "--model", "toy"],
                          cwd=directory, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "norms.hook: 'attn_out' is not extracted (extract.hooks: resid_post, mlp_post)"
    assert not (tmp_path / "data").exists()  # nothing written
