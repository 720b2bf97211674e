"""Bad params files: one exact line naming the key, exit status 2, nothing written."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from cortexlens.cli import main as cli_main
from tests.tiny_models import save_tiny_model

ROOT = Path(__file__).resolve().parents[2]
ALLOWED_TOP = ("study, seed, device, paths, models, datasets, train_toy, train_facts, extract, tracking, report, flow, "
               "brain, patch, probe, train_sae, sparsity")
ALLOWED_EXTRACT = ("models, datasets, model_datasets, hooks, layers, batch_size, max_length, padding_side, store_dtype, "
                   "sort_window, shard_rows, row_group_rows, pooling, compression")
HOOKS = "resid_pre, attn_z, attn_out, resid_mid, mlp_in, mlp_pre, mlp_post, mlp_out, resid_post"

VALID = {
    "study": "t",
    "models": {"minilm": {"source": "minilm"}, "toy": {"source": "toy"}},
    "datasets": {"corpus": {"kind": "builtin", "n_docs": 50}},
    "extract": {"models": ["minilm", "toy"], "datasets": ["corpus"], "hooks": ["resid_post", "mlp_post"],
                "layers": "all"},
}


def _with(path: str, value):
    """VALID with the value at a dotted path replaced (value DELETE removes the key)."""
    data = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    if value is DELETE:
        node.pop(last)
    else:
        node[last] = value
    return data


DELETE = object()

CASES = [
    ("unknown top-level key", _with("extrct", {}),
     f"extrct: unknown key (allowed: {ALLOWED_TOP}); did you mean 'extract'?"),
    ("unknown nested key", _with("extract.batchsize", 8),
     f"extract.batchsize: unknown key (allowed: {ALLOWED_EXTRACT}); did you mean 'batch_size'?"),
    ("wrong type", _with("extract.batch_size", "big"), "extract.batch_size: expected an integer, got 'big'"),
    ("number out of range", _with("extract.batch_size", 0), "extract.batch_size: must be >= 1, got 0"),
    ("value not allowed", _with("extract.padding_side", "middle"),
     "extract.padding_side: expected 'right' or 'left', got 'middle'"),
    ("required key missing", _with("extract.datasets", DELETE), "extract.datasets: required key missing"),
    ("layers neither all nor a list", _with("extract.layers", "some"),
     "extract.layers: expected 'all' or a list, got 'some'"),
    ("layer not an integer", _with("extract.layers", [0, "x"]), "extract.layers[1]: expected an integer, got 'x'"),
    ("unknown model", _with("extract.models", ["minilm", "gpt3"]),
     "extract.models[1]: unknown model 'gpt3' (defined in models: minilm, toy)"),
    ("model listed twice", _with("extract.models", ["minilm", "minilm"]),
     "extract.models[1]: model 'minilm' is listed twice"),
    ("unknown dataset", _with("extract.datasets", ["wiki"]),
     "extract.datasets[0]: unknown dataset 'wiki' (defined in datasets: corpus)"),
    ("unknown hook", _with("extract.hooks", ["resid_post", "resid_postt"]),
     (f"extract.hooks[1]: unknown hook 'resid_postt' (allowed: {HOOKS}, blocks.<L>.<hook>, module:<path>); "
     f"did you mean 'resid_post'?")),
    ("layer out of range", _with("extract", {"models": ["minilm"], "datasets": ["corpus"], "layers": [0, 1, 2, 9]}),
     "extract.layers[3]: layer 9 out of range for minilm (layers 0-5)"),
    ("canonical name with a layer out of range", _with("extract.hooks", ["blocks.2.hook_resid_post"]),
     "extract.hooks[0]: layer 2 out of range for toy (layers 0-1)"),
    ("per-hook layers out of range", _with("extract.hooks", [{"hook": "mlp_post", "layers": [0, -3]}]),
     "extract.hooks[0].layers[1]: layer -3 out of range for toy (layers 0-1)"),
    ("module path the model lacks", _with("extract", {"models": ["toy"], "datasets": ["corpus"],
                                                      "hooks": ["module:transformer.h.7.mlp"]}),
     "extract.hooks[0]: toy has no module 'transformer.h.7.mlp'"),
    ("unknown dataset kind", _with("datasets.corpus", {"kind": "csv"}),
     ("datasets.corpus.kind: unknown kind 'csv' (allowed: 'builtin', 'repeats', 'concepts', 'passages', 'text', 'jsonl', "
     "'parquet', 'huggingface')")),
    ("dataset file missing", _with("datasets.corpus", {"kind": "text", "path": "data/missing.txt"}),
     "datasets.corpus.path: file not found: data/missing.txt"),
    ("bad device", _with("device", "gpu"), "device: expected auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
    ("bad name", _with("models.my model", {"source": "minilm"}),
     ("models.my model: 'my model' is not a valid name (letters, digits, '_', '.', '-'; starting with a letter "
     "or digit)")),
    ("inconsistent toy params", _with("train_toy", {"n_ctx": 24}),
     "train_toy: n_ctx (24) must hold BOS and two copies of max_repeat (15): at least 31"),
    ("local model directory missing", _with("models.toy", {"source": "./nowhere"}),
     "models.toy.source: directory not found: {root}/nowhere"),
    # numpy and scikit-learn refuse negative seeds and seeds >= 2**32: checked once, here.
    ("negative seed", _with("seed", -5), "seed: must be >= 0, got -5"),
    ("seed too large", _with("train_toy.seed", 2**32), "train_toy.seed: must be <= 4294967295, got 4294967296"),
    ("negative dataset seed", _with("datasets.corpus.seed", -1), "datasets.corpus.seed: must be >= 0, got -1"),
    ("negative analysis seed", _with("probe", {"models": [], "seed": -2}), "probe.seed: must be >= 0, got -2"),
    ("per-model datasets of a model not extracted", _with("extract.model_datasets", {"gpt2": ["corpus"]}),
     "extract.model_datasets.gpt2: 'gpt2' is not in extract.models (minilm, toy)"),
    ("per-model datasets that are not defined", _with("extract.model_datasets", {"toy": ["wiki"]}),
     "extract.model_datasets.toy[0]: unknown dataset 'wiki' (defined in datasets: corpus)"),
    ("unknown model init", _with("models.minilm", {"source": "minilm", "init": "untrained"}),
     "models.minilm.init: expected 'trained' or 'random', got 'untrained'"),
]


def _check(path: Path, capsys) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["check", str(path)])
    return exit_info.value.code, capsys.readouterr().err.splitlines()


@pytest.mark.parametrize("name,data,expected", CASES, ids=[c[0] for c in CASES])
def test_invalid_params_give_one_exact_line_and_exit_2(name, data, expected, tmp_path, capsys):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    code, lines = _check(path, capsys)
    assert (code, lines) == (2, [expected.format(root=tmp_path)])


def test_yaml_syntax_error_names_line_and_column(tmp_path, capsys):
    path = tmp_path / "params.yaml"
    path.write_text("study: t\nextract:\n  models: [minilm\n  layers: all\n")
    code, lines = _check(path, capsys)
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(f"{path}:4:") and "invalid YAML" in lines[0]


def test_duplicate_yaml_key_is_refused(tmp_path, capsys):
    path = tmp_path / "params.yaml"
    path.write_text("study: t\nseed: 1\nseed: 2\n")
    assert _check(path, capsys) == (2, [f"{path}:3:1: invalid YAML: duplicate key 'seed' (first at line 2)"])


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b"])
def test_a_control_character_is_one_line_naming_the_file(char, tmp_path, capsys):
    path = tmp_path / "params.yaml"
    path.write_text(f"study: t\nseed: 1{char}\n")
    code, lines = _check(path, capsys)
    assert code == 2 and len(lines) == 1
    assert lines[0] == f"{path}:2:8: invalid YAML: control character U+{ord(char):04X} is not allowed in YAML text"


def test_a_stage_run_by_an_interpreter_without_the_project_says_so(tmp_path):
    # `python -S`: no site-packages, as the system python that `.venv/bin/dvc repro` finds on a bare PATH.
    proc = subprocess.run([sys.executable, "-S", "-m", "stages.extract", "--model", "toy"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        (f"cortexlens: {sys.executable} lacks torch, transformers, prefect: this interpreter is not the "
         f"project's environment; run `source .venv/bin/activate` (after `make install`) and try again")]


def test_top_level_must_be_a_mapping(tmp_path, capsys):
    path = tmp_path / "params.yaml"
    path.write_text("- a\n- b\n")
    assert _check(path, capsys) == (2, [f"{path}: expected a mapping of sections at the top level, got list"])


def test_missing_file(tmp_path, capsys):
    assert _check(tmp_path / "nope.yaml", capsys) == (2, [f"{tmp_path / 'nope.yaml'}: file not found"])


def test_hook_a_model_does_not_have(tmp_path, capsys):
    """Pythia's blocks run attention and MLP in parallel: there is no resid_mid."""
    save_tiny_model("gpt_neox", tmp_path / "pythia")
    capsys.readouterr()  # drop transformers' save progress bar
    data = _with("models.pythia", {"source": "./pythia"})
    data["extract"] = {"models": ["pythia"], "datasets": ["corpus"], "hooks": ["resid_mid"]}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    code, lines = _check(path, capsys)
    assert (code, lines) == (2, [("extract.hooks[0]: pythia has no hook 'resid_mid' (parallel attention and MLP) "
                                 "(it has: resid_pre, attn_z, attn_out, mlp_in, mlp_pre, mlp_post, mlp_out, "
                                 "resid_post)")])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_requested_without_cuda(tmp_path, capsys):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(_with("device", "cuda")))
    assert _check(path, capsys) == (2, [("device: 'cuda' requested but CUDA is not available on this machine "
                                        "(use auto or cpu)")])


def test_every_problem_gets_its_own_line(tmp_path, capsys):
    data = _with("extract.batch_size", 0)
    data["extract"]["padding_side"] = "middle"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    code, lines = _check(path, capsys)
    assert code == 2 and sorted(lines) == ["extract.batch_size: must be >= 1, got 0",
                                           "extract.padding_side: expected 'right' or 'left', got 'middle'"]


def test_valid_params_pass(tmp_path, capsys):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(VALID))
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["check", str(path)])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "model minilm: bert, 6 layers, 12 hook points" in out and "model toy: llama, 2 layers, 4 hook points" in out


@pytest.mark.parametrize("stage,args", [("extract", ["--model", "minilm"]), ("train_toy", [])])
def test_stages_refuse_bad_params_before_writing_anything(stage, args, tmp_path):
    data = _with("extract.layers", [9])
    data["paths"] = {"store": "out/store", "models": "out/models", "reports": "out/reports"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    proc = subprocess.run([sys.executable, "-m", f"stages.{stage}", "--params", str(tmp_path / "params.yaml"), *args],
                          check=False, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["extract.layers[0]: layer 9 out of range for minilm (layers 0-5)",
                                        "extract.layers[0]: layer 9 out of range for toy (layers 0-1)"]
    assert not (tmp_path / "out").exists()
