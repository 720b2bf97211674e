"""The extract stage: per-model datasets (extract.model_datasets) and a random-init model stored as its own
model, with the identity of its seeded weights in the manifest."""

import json

import numpy as np
import yaml

from cortexlens.config.study import load_study
from cortexlens.store import catalog, layout
from cortexlens.store.reader import read_pooled


def test_model_datasets_restrict_a_model_and_a_random_init_model_is_its_own_model(tmp_path, tiny_model):
    from stages.extract import STAGE

    source = str(tiny_model("gpt2"))
    params = {"study": "x", "device": "cpu", "tracking": {"enabled": False}, "paths": {"store": "store"},
              "models": {"tiny": {"source": source}, "tiny_random": {"source": source, "init": "random"}},
              "datasets": {"corpus": {"kind": "builtin", "n_docs": 12},
                           "stim": {"kind": "passages", "n_passages": 2, "sentences_per_passage": 3}},
              "extract": {"models": ["tiny", "tiny_random"], "datasets": ["corpus", "stim"], "hooks": ["resid_post"],
                          "layers": [0], "model_datasets": {"tiny_random": ["stim"]}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for model in ("tiny", "tiny_random"):
        metrics = STAGE.execute(load_study(tmp_path / "params.yaml"), {"model": model}, progress=False)
        assert list(metrics["datasets"]) == (["corpus", "stim"] if model == "tiny" else ["stim"])
    store = tmp_path / "store"
    assert sorted((e.model, e.dataset) for e in catalog.extractions(store)) == [
        ("tiny", "corpus"), ("tiny", "stim"), ("tiny_random", "stim")]
    trained = json.loads((layout.extraction_dir(store, "tiny", "stim") / layout.MANIFEST).read_text())["model"]
    random = json.loads((layout.extraction_dir(store, "tiny_random", "stim") / layout.MANIFEST).read_text())["model"]
    assert random["revision"] == "random-init:seed=0:" + trained["revision"]
    # The tiny model was itself made by transformers from its config under torch.manual_seed(0)
    # (tests/tiny_models.py): the random init with seed 0 is exactly that model, the init transformers' own.
    a = read_pooled(store, "tiny", "stim", "resid_post", 0).X
    b = read_pooled(store, "tiny_random", "stim", "resid_post", 0).X
    np.testing.assert_array_equal(a, b)
    params["models"]["tiny_random"]["init_seed"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    STAGE.execute(load_study(tmp_path / "params.yaml"), {"model": "tiny_random"}, progress=False)
    b = read_pooled(store, "tiny_random", "stim", "resid_post", 0).X
    assert a.shape == b.shape and not np.allclose(a, b)
    # listing fewer datasets for a model removes its stale extractions
    params["extract"]["model_datasets"] = {"tiny": ["stim"]}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    STAGE.execute(load_study(tmp_path / "params.yaml"), {"model": "tiny"}, progress=False)
    assert not layout.extraction_dir(store, "tiny", "corpus").exists()
