"""Feature spaces: SAELens-format SAEs encoded as SAELens does (ReLU, TopK, JumpReLU, input
normalisation), token latents pooled per document, and unusable folders named by key and file."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from cortexlens.errors import ConfigError
from cortexlens.features.sae import load_sae
from cortexlens.features.spaces import pooled_space, sae_space
from cortexlens.store.reader import iter_activations, read_pooled
from tests.helpers import load_local, run_extraction


def _folder(root: Path, architecture: str, d_in=4, d_sae=6, **cfg) -> Path:
    g = torch.Generator().manual_seed(1)
    tensors = {"W_enc": torch.randn(d_in, d_sae, generator=g), "b_enc": torch.randn(d_sae, generator=g) * 0.1,
               "W_dec": torch.randn(d_sae, d_in, generator=g), "b_dec": torch.randn(d_in, generator=g) * 0.1}
    if architecture == "jumprelu":
        tensors["threshold"] = torch.full((d_sae,), 0.5)
    folder = root / architecture
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"architecture": architecture, "d_in": d_in, "d_sae": d_sae,
                                                 "dtype": "float32", "metadata": {"hook_name": "blocks.1.hook_resid_post",
                                                                                  "model_name": "m"}, **cfg}))
    return folder


def _reference(folder: Path, x: torch.Tensor) -> torch.Tensor:
    """The SAELens recipe written out: (x - b_dec) @ W_enc + b_enc, then the architecture's activation."""
    from safetensors.torch import load_file

    w, cfg = load_file(str(folder / "sae_weights.safetensors")), json.loads((folder / "cfg.json").read_text())
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    if cfg["architecture"] == "jumprelu":
        return torch.where(pre > w["threshold"], pre.relu(), 0.0)
    if cfg["architecture"] == "topk":
        out = torch.zeros_like(pre)
        for i, row in enumerate(pre):
            keep = row.argsort(descending=True)[:cfg["k"]]
            out[i, keep] = row[keep].relu()
        return out
    return pre.relu()


@pytest.mark.parametrize(("architecture", "cfg"), [("standard", {}), ("topk", {"k": 2}), ("jumprelu", {})])
def test_encoding_follows_the_saelens_recipe(tmp_path, architecture, cfg):
    folder = _folder(tmp_path, architecture, **cfg)
    sae = load_sae(folder, "s", "brain.saes[0]")
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(2))
    latents = sae.encode(x)
    torch.testing.assert_close(latents, _reference(folder, x))
    assert sae.point.name == "blocks.1.hook_resid_post" and sae.model_name == "m"
    if architecture == "topk":
        assert int((latents > 0).sum(1).max()) <= 2
    if architecture == "jumprelu":
        assert bool(((latents == 0) | (latents > 0.5)).all())


def test_known_answers_of_a_hand_built_topk_sae(tmp_path):
    folder = tmp_path / "hand"
    folder.mkdir()
    eye = torch.eye(3)
    save_file({"W_enc": eye, "b_enc": torch.zeros(3), "W_dec": eye.clone(), "b_dec": torch.zeros(3)},
              str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"architecture": "topk", "k": 1, "hook_name": "blocks.0.hook_resid_post"}))
    sae = load_sae(folder, "hand", "k")
    assert sae.encode(torch.tensor([[0.2, -3.0, 0.7]])).tolist() == [[0.0, 0.0, pytest.approx(0.7)]]
    assert sae.encode(torch.tensor([[-0.2, -3.0, -0.7]])).tolist() == [[0.0, 0.0, 0.0]]  # the top one, ReLU'd


def test_input_normalisations(tmp_path):
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(3)) * 5
    for mode, expect in (("constant_norm_rescale", x * 2 / x.norm(dim=-1, keepdim=True)),
                         ("layer_norm", (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + 1e-5))):
        folder = _folder(tmp_path / mode, "standard", normalize_activations=mode)
        torch.testing.assert_close(load_sae(folder, "s", "k").encode(x), _reference(folder, expect))


# Parity with SAELens itself (which cannot share .venv): tests/unit/test_sae_format.py, in .venv-saelens.


@pytest.mark.parametrize(("change", "line"), [
    ({"architecture": "gated"}, "k: <dir>/cfg.json: architecture 'gated' is not supported (standard, topk, jumprelu)"),
    ({"architecture": "topk"}, "k: <dir>/cfg.json: a topk SAE needs k in 1..6, got None"),
    ({"metadata": {}}, "k: <dir>/cfg.json has no hook_name (metadata.hook_name)"),
    ({"metadata": {"hook_name": "blocks.1.hook_resid_postt"}},
     ("k: <dir>/cfg.json: hook_name 'blocks.1.hook_resid_postt': unknown hook 'hook_resid_postt' in "
     "'blocks.1.hook_resid_postt'")),
    ({"normalize_activations": "expected_average_only_in"},
     ("k: <dir>/cfg.json: normalize_activations 'expected_average_only_in' is not supported (none, "
     "constant_norm_rescale, layer_norm; fold a scaling factor into the weights first)")),
])
def test_unusable_sae_folders_are_one_line(tmp_path, change, line):
    folder = _folder(tmp_path, "standard")
    cfg = {**json.loads((folder / "cfg.json").read_text()), **change}
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError) as err:
        load_sae(folder, "s", "k")
    assert [x.replace(str(folder), "<dir>") for x in err.value.lines] == [line]


def test_token_latents_are_pooled_per_document(tmp_path, tiny_model):
    from cortexlens.data.corpus import generate_corpus

    model = load_local(tiny_model("gpt2"), name="m")
    run_extraction(model, tmp_path / "store", generate_corpus(12, 0), hooks=["resid_post"], layers=[1],
                   pooling=["mean", "last", "first"], row_group_rows=16)  # several row groups
    sae = load_sae(_folder(tmp_path, "standard", d_in=32, d_sae=10), "s", "k")
    tokens = list(iter_activations(tmp_path / "store", "m", "corpus", ("resid_post", 1)))
    doc = np.concatenate([b.doc_id for b in tokens])
    pos = np.concatenate([b.pos for b in tokens])
    latents = sae.encode(torch.from_numpy(np.concatenate([b[("resid_post", 1)] for b in tokens]))).numpy()
    for pooling in ("mean", "last", "first"):
        space = sae_space(tmp_path / "store", "m", "corpus", sae, pooling)
        assert space.name == "sae:s" and space.doc_ids.tolist() == list(range(12))
        for d in range(12):
            rows = np.flatnonzero(doc == d)
            expect = {"mean": latents[rows].mean(0), "last": latents[rows[pos[rows].argmax()]],
                      "first": latents[rows[pos[rows].argmin()]]}[pooling]
            np.testing.assert_allclose(space.X[d], expect, rtol=1e-5, atol=1e-6)
    pooled = sae_space(tmp_path / "store", "m", "corpus", sae, "mean", mode="pooled")
    stored = read_pooled(tmp_path / "store", "m", "corpus", "resid_post", 1, "mean")
    np.testing.assert_allclose(pooled.X, sae.encode(torch.from_numpy(stored.X)).numpy())
    assert np.array_equal(pooled_space(tmp_path / "store", "m", "corpus", ("resid_post", 1), "mean").X, stored.X)
