"""load_for_study: the model and identity a stage gets, as the extract stage has always loaded them."""

import pytest
import torch

from cortexlens.config.study import Study, parse_params
from cortexlens.errors import ConfigError
from cortexlens.extraction.runner import ModelIdentity as RunnerModelIdentity
from cortexlens.models.for_study import load_for_study
from cortexlens.models.identity import ModelIdentity
from cortexlens.models.loading import ResolvedSource, fingerprint


def _study(tmp_path, directory) -> Study:
    params = parse_params({"seed": 7, "device": "cpu",
                           "models": {"tiny": {"source": str(directory), "attn_implementation": "eager"},
                                      "other": {"source": str(directory)}}})
    return Study(params, tmp_path / "params.yaml")


def test_identity_records_what_was_loaded(tmp_path, tiny_model):
    directory = tiny_model("gpt2")
    torch.manual_seed(123)
    loaded = load_for_study(_study(tmp_path, directory), "tiny")
    revision = fingerprint(ResolvedSource("local", str(directory)), loaded.model.config)
    assert revision.startswith("sha256:")
    assert loaded.identity == ModelIdentity("tiny", str(directory), revision, "float32", "eager")
    # Loaded under seed 7 (cortexlens.seeding), and the caller's generator left as it was: stages in
    # other threads of the flow draw from it.
    assert torch.initial_seed() == 123
    model = loaded.model
    assert model.name == "tiny" and model.device == torch.device("cpu") and model.family.name == "gpt2"
    assert model.config._attn_implementation == "eager"
    assert next(model.model.parameters()).dtype == torch.float32
    # The default attention implementation is recorded as None, not guessed.
    assert load_for_study(_study(tmp_path, directory), "other").identity.attn_implementation is None


def test_unknown_model_is_a_one_line_config_error(tmp_path, tiny_model):
    with pytest.raises(ConfigError) as err:
        load_for_study(_study(tmp_path, tiny_model("gpt2")), "gpt9")
    assert err.value.lines == ["models: 'gpt9' is not defined (models: tiny, other)"]


def test_model_identity_is_still_importable_from_the_runner():
    assert RunnerModelIdentity is ModelIdentity
