"""config.json read without transformers gives the same sizes and hooks as transformers' own config."""

import json
import subprocess
import sys

import pytest
import transformers as T

from cortexlens.config.schema import TrainToy
from cortexlens.models.describe import ModelInfo, read_config
from cortexlens.models.families import mlp_activation
from cortexlens.models.model_config import DEFAULTS, ModelConfig
from cortexlens.models.sources import ResolvedSource, minilm_dir
from cortexlens.toy.config import toy_config_dict, toy_vocab_size
from cortexlens.toy.model import toy_config
from tests.tiny_models import FAMILIES


def _same(ours: ModelInfo, theirs: ModelInfo) -> None:
    assert ours.family == theirs.family
    assert ours.dims == theirs.dims
    assert ours.hooks == theirs.hooks
    assert ours.n_layers == theirs.n_layers


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_model_configs_match_transformers(family, tiny_model):
    directory = tiny_model(family)
    ours = ModelInfo("m", read_config(ResolvedSource("local", str(directory)), "models.m.source"))
    _same(ours, ModelInfo("m", T.AutoConfig.from_pretrained(directory)))


def test_minilm_config_matches_transformers():
    ours = ModelInfo("minilm", read_config(ResolvedSource("builtin", str(minilm_dir()), alias="minilm"), "k"))
    _same(ours, ModelInfo("minilm", T.AutoConfig.from_pretrained(minilm_dir())))


@pytest.mark.parametrize("model_type", ["gpt2", "gpt_neox", "llama", "qwen2", "qwen3", "mistral", "gemma",
                                        "gemma2", "gemma3_text", "bert", "roberta"])
def test_defaults_of_omitted_keys_match_transformers(model_type):
    """A hand-written config.json may omit head_dim or use_parallel_residual: the class default applies."""
    sizes = {"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2, "intermediate_size": 96,
             "vocab_size": 100}
    if model_type == "gpt2":
        sizes = {"n_embd": 64, "n_head": 4, "n_layer": 2, "vocab_size": 100}
    theirs = T.AutoConfig.for_model(model_type, **sizes)
    ours = ModelConfig({"model_type": model_type, **sizes})
    _same(ModelInfo("m", ours), ModelInfo("m", theirs))
    for key in DEFAULTS.get(model_type, {}):
        assert getattr(ours, key) == getattr(theirs, key), key
    assert mlp_activation(ours) == mlp_activation(theirs)


def test_toy_config_dict_is_the_trained_models_config(tmp_path):
    params = TrainToy()
    toy_config(params, toy_vocab_size()).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    built = toy_config_dict(params)
    assert {k: saved[k] for k in built if k != "architectures"} == {k: v for k, v in built.items()
                                                                     if k != "architectures"}
    _same(ModelInfo("toy", ModelConfig(built)), ModelInfo("toy", T.AutoConfig.from_pretrained(tmp_path)))


def test_a_config_without_model_type_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(Exception, match=r"^models\.m\.source: .*config\.json has no model_type$"):
        read_config(ResolvedSource("local", str(tmp_path)), "models.m.source")


@pytest.mark.parametrize("command", [["check", "params.yaml"], ["sql", "select 1"]])
def test_check_and_sql_import_neither_torch_nor_transformers(command):
    code = ("import sys\nfrom cortexlens.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "heavy = sorted(m for m in ('torch', 'transformers', 'mlflow', 'prefect') if m in sys.modules)\n"
            "print('HEAVY', heavy)")
    proc = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout
