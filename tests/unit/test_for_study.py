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


def _random_study(tmp_path, directory, **spec) -> Study:
    params = parse_params({"seed": 3, "device": "cpu", "models": {
        "trained": {"source": str(directory)},
        "random": {"source": str(directory), "init": "random", **spec}}})
    return Study(params, tmp_path / "params.yaml")


@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_random_init_is_the_same_architecture_with_seeded_fresh_weights(tmp_path, tiny_model, family):
    directory = tiny_model(family)
    study = _random_study(tmp_path, directory)
    trained, random = load_for_study(study, "trained"), load_for_study(study, "random")
    again = load_for_study(study, "random").model.model.state_dict()
    other = load_for_study(_random_study(tmp_path, directory, init_seed=4), "random").model.model.state_dict()
    t, r = trained.model.model.state_dict(), random.model.model.state_dict()
    assert type(random.model.model) is type(trained.model.model) and t.keys() == r.keys()
    assert random.model.tokenizer.get_vocab() == trained.model.tokenizer.get_vocab()
    assert all(torch.equal(r[k], again[k]) for k in r)  # the seed (default: the study's) fixes the weights
    embedding = next(k for k in r if "embed" in k or k.endswith("wte.weight"))
    assert not torch.equal(r[embedding], t[embedding]) and not torch.equal(r[embedding], other[embedding])
    # transformers' own initialisation: normal(0, initializer_range) for embeddings
    assert r[embedding].std().item() == pytest.approx(random.model.config.initializer_range, rel=0.1)
    assert random.identity.revision == f"random-init:seed=3:{trained.identity.revision}"
    assert load_for_study(_random_study(tmp_path, directory, init_seed=4), "random").identity.revision.startswith(
        "random-init:seed=4:sha256:")
