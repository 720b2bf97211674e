"""dvc.yaml as data: stage instances named as DVC names them, the graph, and the fingerprints."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cortexlens.config.study import Study, parse_params
from cortexlens.errors import ConfigError
from cortexlens.pipeline.dvcfile import load_stage_specs, nested, params_values
from cortexlens.pipeline.fingerprint import hash_paths, manifests_under, stage_fingerprint
from cortexlens.pipeline.graph import dependencies, downstream_of, execution_order
from cortexlens.store import layout

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

MATRIX_YAML = """
stages:
  prepare:
    cmd: echo prepare
    deps: [code/prepare.py]
    outs:
      - ${paths.store}/prepared
  sae:
    matrix:
      model: ${models}
      layer: [0, 3]
      flag: [true, false]
      cfg:
        - {a: 1}
        - {a: 2}
    cmd: python -m stages.sae --model ${item.model} --layer ${item.layer}
    deps:
      - code/sae.py
      - ${paths.store}/prepared/model=${item.model}
    params:
      - sae
      - models.${item.model}
    outs:
      - ${paths.store}/sae/${item.model}-${item.layer}
    metrics:
      - ${paths.reports}/metrics/sae-${item.model}-${item.layer}.json:
          cache: false
  report:
    cmd: echo report
    deps:
      - ${paths.store}
    outs:
      - ${paths.reports}/index.html
"""
MATRIX_PARAMS = {"models": ["minilm", "toy"], "paths": {"store": "data/store", "reports": "reports"},
                 "sae": {"k": 32}}


def _matrix_specs(tmp_path):
    dvc_yaml = tmp_path / "dvc.yaml"
    dvc_yaml.write_text(MATRIX_YAML)
    return load_stage_specs(MATRIX_PARAMS, tmp_path / "study", dvc_yaml)


def test_matrix_instances_are_named_as_dvc_names_them(tmp_path):
    specs = _matrix_specs(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(MATRIX_PARAMS))
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    listed = subprocess.run([str(BIN / "dvc"), "stage", "list", "--name-only"], cwd=tmp_path, check=True,
                            capture_output=True, text=True).stdout.split()
    assert sorted(specs) == sorted(listed)
    assert len(specs) == 1 + 2 * 2 * 2 * 2 + 1


def test_matrix_values_interpolate_into_paths_params_and_item(tmp_path):
    spec = _matrix_specs(tmp_path)["sae@toy-3-false-cfg1"]
    study = tmp_path / "study"
    assert spec.item_values == {"model": "toy", "layer": 3, "flag": False, "cfg": {"a": 2}}
    assert spec.deps == (tmp_path / "code/sae.py", study / "data/store/prepared/model=toy")  # code: beside dvc.yaml
    assert spec.params == ("sae", "models.toy")
    assert spec.outs == (study / "data/store/sae/toy-3",)
    assert spec.metrics == (study / "reports/metrics/sae-toy-3.json",)
    assert nested(params_values(spec, {"sae": {"k": 32}, "models": {"toy": {"source": "toy"}}})) == \
        {"sae": {"k": 32}, "models": {"toy": {"source": "toy"}}}


def test_unknown_variable_is_one_line_naming_the_stage(tmp_path):
    dvc_yaml = tmp_path / "dvc.yaml"
    dvc_yaml.write_text("stages:\n  a:\n    cmd: x\n    deps:\n      - ${paths.nope}/x\n")
    with pytest.raises(ConfigError, match=r"^dvc.yaml: stages.a: unknown variable \$\{paths.nope\}"):
        load_stage_specs({"paths": {}}, tmp_path, dvc_yaml)


def test_graph_links_deps_inside_outs_and_outs_inside_deps(tmp_path):
    specs = _matrix_specs(tmp_path)
    needs = dependencies(specs)
    assert needs["prepare"] == set()
    assert needs["sae@minilm-0-true-cfg0"] == {"prepare"}  # its dep is inside prepare's out
    assert needs["report"] == set(specs) - {"report"}  # its dep (the store) contains every out
    order = execution_order(needs)
    assert order[0] == "prepare" and order[-1] == "report"
    assert downstream_of(needs, "prepare") == set(specs) - {"prepare"}


def test_a_cycle_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="cycle: a, b"):
        execution_order({"a": {"b"}, "b": {"a"}})


def test_the_default_study_graph_lets_extract_minilm_run_beside_train_toy():
    from flows.pipeline import plan

    study = Study(parse_params(yaml.safe_load((ROOT / "params.yaml").read_text())), ROOT / "params.yaml")
    specs, needs = plan(study)
    assert set(specs) == {"train_toy", "train_facts", "extract@minilm", "extract@toy", "probe@minilm", "probe@toy",
                          "sparsity@minilm", "sparsity@toy", "extract@minilm_random", "brain@minilm", "patch@toy",
                          "patch@facts", "train_sae", "report"}
    assert needs["extract@minilm"] == set()  # refined: minilm does not read the toy model's directory
    assert needs["extract@toy"] == {"train_toy"}
    assert needs["sparsity@minilm"] == {"extract@minilm"}
    assert needs["probe@toy"] == {"extract@toy", "train_sae"}  # probes read the store (and probe.saes), not the model
    assert needs["sparsity@toy"] == {"extract@toy", "train_toy"}
    assert needs["extract@minilm_random"] == set()  # the random copy of MiniLM reads no trained weights
    # refined: not the toy's (brain.saes: the SAE folders)
    assert needs["brain@minilm"] == {"extract@minilm", "extract@minilm_random", "train_sae"}
    assert needs["train_facts"] == set()
    # SAEs read the store's extractions and splice into the toy model
    assert needs["train_sae"] == {"extract@minilm", "extract@toy", "extract@minilm_random", "train_toy"}
    # patching reads its own model and the probe directions (the probe stage's whole out)
    assert needs["patch@toy"] == {"train_toy", "probe@minilm", "probe@toy"}
    assert needs["patch@facts"] == {"train_facts", "probe@minilm", "probe@toy"}
    assert needs["report"] == set(specs) - {"report", "train_facts"}  # the fact model writes nothing the report reads


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_hash_paths_follows_content_and_names_not_caches(tmp_path):
    code = _tree(tmp_path / "code", {"a.py": "x = 1\n", "pkg/b.py": "y = 2\n"})
    first = hash_paths([code])
    _tree(code, {"__pycache__/a.cpython-311.pyc": "junk", "pkg/.b.py.123.tmp": "partial"})
    assert hash_paths([code]) == first
    _tree(code, {"pkg/b.py": "y = 3\n"})
    assert hash_paths([code]) != first
    assert hash_paths([tmp_path / "missing"]) != hash_paths([tmp_path / "also-missing"])


def test_hash_paths_streams_files_and_never_reads_them_whole(tmp_path, monkeypatch):
    big = tmp_path / "big.bin"
    big.write_bytes(b"\1" * (3 << 20))
    expected = hash_paths([big])

    def refuse(*args, **kwargs):
        raise AssertionError("read whole")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    assert hash_paths([big]) == expected


def test_a_store_is_summarised_by_its_manifests(tmp_path):
    store = tmp_path / "store"
    done = layout.extraction_dir(store, "m", "d")
    _tree(done, {"manifest.json": json.dumps({"fingerprint": "f1", "model": {"name": "m"},
                                              "dataset": {"name": "d"}}),
                 "activations/hook=resid_post/layer=0/part-00000.parquet": "rows"})
    first = hash_paths([store])
    (done / "activations/hook=resid_post/layer=0/part-00000.parquet").write_text("other rows")
    assert hash_paths([store]) == first  # the manifest's checksums stand for the Parquet files
    running = _tree(layout.extraction_dir(store, "m", "e"), {"_progress/shard-00000.json": "{}"})
    assert hash_paths([store]) != first  # an unfinished extraction shows through its progress
    assert manifests_under([store]) == {"extract.m.d": "f1"}
    assert running.is_dir()


def test_stage_fingerprint_depends_on_listed_params_only(tmp_path):
    spec = _matrix_specs(tmp_path)["sae@toy-0-true-cfg0"]
    base = {"sae": {"k": 32}, "models": {"toy": {"source": "toy"}, "minilm": {"source": "minilm"}}}
    fp = stage_fingerprint(spec, base, tmp_path)
    assert stage_fingerprint(spec, {**base, "models": {**base["models"], "minilm": {"source": "x"}}}, tmp_path) == fp
    assert stage_fingerprint(spec, {**base, "sae": {"k": 64}}, tmp_path) != fp


def test_stage_fingerprint_is_the_same_wherever_the_study_lives(tmp_path):
    """Result manifests record it and dvc.lock hashes them: a fresh clone elsewhere must agree."""
    base = {"sae": {"k": 32}, "models": {"toy": {"source": "toy"}, "minilm": {"source": "minilm"}}}
    for where in ("a", "b/c"):
        (tmp_path / where).mkdir(parents=True)
    here = _matrix_specs(tmp_path / "a")["sae@toy-0-true-cfg0"]
    there = _matrix_specs(tmp_path / "b" / "c")["sae@toy-0-true-cfg0"]
    a, c = tmp_path / "a" / "study", tmp_path / "b" / "c" / "study"
    assert stage_fingerprint(here, base, a) == stage_fingerprint(there, base, c)
    # ... but outputs moved to another place (relative to the study) are other files
    assert stage_fingerprint(here, base, a) != stage_fingerprint(here, base, tmp_path)
