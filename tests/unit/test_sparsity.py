"""Activation sparsity: planted fractions, CETT against a naive loop, the eps search, truncation and
top-k in the forward pass, on ReLU, GELU and SwiGLU MLPs; bad params named by key."""

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as T
import yaml

from cortexlens.config.study import load_study
from cortexlens.data.corpus import generate_corpus
from cortexlens.errors import ConfigError
from cortexlens.extraction.live import encoded_batches, iter_model_activations
from cortexlens.models.hooks import HookPoint
from cortexlens.report.runner import run_queries
from cortexlens.report.spec import load_queries
from cortexlens.sparsity.activity import active_fractions, frequency_buckets, rule_for
from cortexlens.sparsity.cett import cett, neuron_norms, search_eps
from cortexlens.sparsity.intervene import KeptCounter, cett_hooks, topk_hooks
from cortexlens.sparsity.measure import TokenSample, measure_interventions, measure_layer
from cortexlens.sparsity.plugin import SparsityParams
from cortexlens.store.results import ResultWriter
from tests.helpers import load_local

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = SparsityParams(models=["m"], sample_tokens=512, eval_docs=8, sweep=[0.0, 0.1, 0.3], topk=[0.25, 0.5])
DOCS = generate_corpus(16, 3)


def _naive_cett(acts: np.ndarray, w_out: np.ndarray, eps: float) -> np.ndarray:
    out = []
    for a in acts:  # one token at a time, one neuron at a time
        small, total = np.zeros(w_out.shape[1]), np.zeros(w_out.shape[1])
        for i in range(len(a)):
            contribution = a[i] * w_out[i]
            total += contribution
            if abs(a[i]) * np.linalg.norm(w_out[i]) < eps:
                small += contribution
        out.append(np.linalg.norm(small) / np.linalg.norm(total))
    return np.array(out)


def test_cett_vectorised_equals_a_naive_loop():
    rng = np.random.default_rng(0)
    acts = np.maximum(rng.normal(size=(40, 64)), 0) * rng.random((40, 64))  # ReLU-like, many zeros
    w_out = rng.normal(size=(64, 24)) * rng.random((64, 1))  # neurons of different output norms
    a, w = torch.from_numpy(acts), torch.from_numpy(w_out)
    for eps in (0.0, 0.05, 0.2, 0.6, 5.0):
        np.testing.assert_allclose(cett(a, w, eps).numpy(), _naive_cett(acts, w_out, eps), atol=1e-6, rtol=0)


@pytest.mark.parametrize("target", [0.05, 0.2, 0.5])
def test_eps_search_reaches_the_target(target):
    rng = np.random.default_rng(1)
    acts = torch.from_numpy(rng.standard_t(3, size=(600, 128)).astype(np.float32))  # heavy-tailed, GELU-like
    w_out = torch.from_numpy(rng.normal(size=(128, 32)).astype(np.float32))
    found = search_eps(acts, w_out, target)
    assert abs(found.cett - target) <= 0.005
    assert float(cett(acts, w_out, found.eps).mean()) == pytest.approx(found.cett, abs=1e-9)
    assert 0 < found.activation_ratio < 1
    assert search_eps(acts, w_out, 0.0).activation_ratio == 1.0


def test_token_sample_is_uniform_exact_and_seeded():
    rows = np.arange(10_000, dtype=np.float32)[:, None]
    one, two = TokenSample(500, 7), TokenSample(500, 7)
    for start in range(0, 10_000, 1_300):  # uneven batches
        one.add(rows[start:start + 1_300])
    two.add(rows)
    taken = one.tensor().numpy()[:, 0]
    assert len(taken) == 500 and len(set(taken)) == 500
    np.testing.assert_array_equal(taken, two.tensor().numpy()[:, 0])  # batching does not matter
    assert 4_000 < taken.mean() < 6_000  # spread over the stream, not its start


def test_frequency_buckets_split_tokens_by_frequency():
    ids = np.array([5] * 50 + [6] * 30 + [7] * 15 + [8] * 4 + [9])
    buckets = frequency_buckets(ids, 3)
    assert buckets[ids == 5].tolist() == [2] * 50 and buckets[ids == 9][0] == 0
    assert all(len(set(buckets[ids == t])) == 1 for t in set(ids))  # a token never straddles buckets


def _mlp_model(tmp_path: Path, activation: str, d_mlp: int = 40):
    """A tiny GPT-2 with a given MLP nonlinearity and MiniLM's tokenizer (real text in)."""
    from cortexlens.models.sources import minilm_dir

    tokenizer = T.AutoTokenizer.from_pretrained(minilm_dir())
    config = T.GPT2Config(n_layer=2, n_head=2, n_embd=16, n_inner=d_mlp, n_positions=64, vocab_size=len(tokenizer),
                          activation_function=activation, bos_token_id=101, eos_token_id=102)
    torch.manual_seed(0)
    T.GPT2LMHeadModel(config).eval().save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    return load_local(tmp_path)


def test_planted_relu_fraction_is_measured_exactly(tmp_path):
    """c_fc weights 0 and a bias of +1 on k of d neurons: exactly k/d neurons fire on every token."""
    model = _mlp_model(tmp_path, "relu")
    k, d = 13, 40
    with torch.no_grad():
        for block in model.model.transformer.h:
            block.mlp.c_fc.weight.zero_()
            block.mlp.c_fc.bias.copy_(torch.tensor([1.0] * k + [-1.0] * (d - k)))
    rule = rule_for(model.mlp_activation, threshold=0.5)
    assert rule.exact_zero and rule.label == "nonzero"
    for layer in range(2):
        measured = measure_layer(layer, iter_model_activations(model, DOCS, [HookPoint("mlp_post", layer)], 64),
                                 lambda batch: batch.token_id, model.mlp_output_weights(layer)[0].detach().float(),
                                 rule, SETTINGS)
        values = {(m, p): v for _, m, p, v in measured.rows}
        assert values[("active_fraction", "mean")] == k / d
        assert values[("active_fraction", "q10")] == values[("active_fraction", "q90")] == k / d
        assert {v for (m, _), v in values.items() if m == "active_fraction_by_position"} == {k / d}


def test_gelu_uses_the_magnitude_threshold():
    acts = np.array([[0.0, -0.05, 0.2, -0.3]])
    rule = rule_for("gelu_new", threshold=0.1)
    assert not rule.exact_zero and rule.label == "abs>0.1"
    assert active_fractions(acts, rule).tolist() == [0.5]
    assert active_fractions(acts, rule_for("relu", 0.1)).tolist() == [0.75]


@pytest.mark.parametrize("family", ["gpt2", "llama", "bert"])
def test_truncation_at_target_zero_changes_nothing(family, tiny_model):
    model = load_local(tiny_model(family))
    inputs = encoded_batches(model, DOCS[:8], 64)
    layers = range(model.dims.n_layers)
    norms = {layer: neuron_norms(model.mlp_output_weights(layer)[0].detach().float()) for layer in layers}
    with torch.no_grad():
        clean = [model.forward(x)[0] for x in inputs]
        with model.hooks(cett_hooks({layer: 0.0 for layer in layers}, norms, KeptCounter())):
            truncated = [model.forward(x)[0] for x in inputs]
    for a, b in zip(clean, truncated, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("family", ["gpt2", "llama", "bert", "relu"])
def test_every_mlp_family_is_measured(family, tiny_model, tmp_path):
    """GELU GPT-2, SwiGLU Llama (mlp_post = silu(gate) * up), GELU BERT and a ReLU GPT-2."""
    model = _mlp_model(tmp_path, "relu") if family == "relu" else load_local(tiny_model(family))
    thresholds = {}
    for layer in range(model.dims.n_layers):
        w_out = model.mlp_output_weights(layer)[0].detach().float()
        assert w_out.shape == (model.dims.d_mlp, model.dims.d_model)
        batches = iter_model_activations(model, DOCS, [HookPoint("mlp_post", layer)], 64)
        measured = measure_layer(layer, batches, lambda b: b.token_id, w_out,
                                 rule_for(model.mlp_activation, 0.1), SETTINGS)
        for target, found in measured.thresholds.items():
            assert abs(found.cett - target) <= 0.005, (layer, target, found)
        thresholds[layer] = measured.thresholds
    rows = measure_interventions(model, encoded_batches(model, DOCS[:8], 64), thresholds, SETTINGS)
    values = {(m, p): v for _, m, p, v in rows}
    sparsities = [values[("sparsity", f"target={t:g}")] for t in SETTINGS.sweep]
    assert sparsities[0] == 0 and sparsities == sorted(sparsities) and sparsities[-1] > 0.2
    cost = "loss_increase" if family != "bert" else "representation_change"
    assert values[(cost, "target=0")] == 0
    k = round(0.25 * model.dims.d_mlp)
    assert values[("topk_sparsity", f"k={k}")] == pytest.approx(1 - k / model.dims.d_mlp)
    assert (f"topk_{cost}", f"k={k}") in values


def test_topk_keeps_exactly_k_per_token():
    acts = torch.tensor([[[3.0, -5.0, 1.0, 0.5], [0.1, 0.2, -0.3, 0.0]]])  # [batch, pos, d_mlp]
    [(point, hook)] = topk_hooks([0], 2, KeptCounter())
    out = hook(acts, point)
    assert torch.equal(out, torch.tensor([[[3.0, -5.0, 0.0, 0.0], [0.0, 0.2, -0.3, 0.0]]]))


def _params(tmp_path: Path, **sparsity) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["sparsity"] = {**params["sparsity"], **sparsity}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.parametrize(("change", "lines"), [
    ({"hook": "resid_post"}, [("sparsity.hook: 'resid_post' is not an MLP neuron hook; sparsity reads mlp_post "
                              "(the activations the MLP's down projection weighs)")]),
    ({"cett_target": 1.0}, ["sparsity.cett_target: must be < 1.0, got 1.0"]),
    ({"sweep": [0.1, 1.2]}, ["sparsity.sweep[1]: must be < 1.0, got 1.2"]),
    ({"ppl_percent": 0}, ["sparsity.ppl_percent: must be > 0.0, got 0"]),
    ({"models": ["toy", "nope"]}, ["sparsity.models[1]: 'nope' is not in extract.models (minilm, toy, minilm_random)"]),
    ({"models": ["minilm"]}, ["sparsity.datasets.toy: 'toy' is not in sparsity.models"]),
    ({"datasets": {"toy": "nope"}}, [("sparsity.datasets.toy: unknown dataset 'nope' (defined in datasets: concepts, "
                                     "corpus, repeats, stimuli)")]),
])
def test_bad_params_are_one_line_naming_the_key(tmp_path, change, lines):
    with pytest.raises(ConfigError) as err:
        load_study(_params(tmp_path, **change))
    assert err.value.lines == lines


def test_a_model_without_mlp_neurons_is_refused(tmp_path):
    (tmp_path / "opt").mkdir()
    (tmp_path / "opt" / "config.json").write_text(json.dumps({"model_type": "opt", "num_hidden_layers": 2}))
    params = yaml.safe_load(_params(tmp_path, models=["opt"]).read_text())
    params["models"]["opt"] = {"source": str(tmp_path / "opt")}
    params["extract"] = {**params["extract"], "models": ["opt"], "hooks": ["module:model.decoder.layers.0"],
                         "model_datasets": {}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError) as err:
        load_study(tmp_path / "params.yaml")
    assert "sparsity.models[0]: opt is a 'opt' model without canonical MLP neurons (mlp_post)" in err.value.lines


def test_the_stage_refuses_bad_params_with_exit_2_and_writes_nothing(tmp_path):
    import subprocess
    import sys

    params = _params(tmp_path, cett_target=-0.1)
    proc = subprocess.run([sys.executable, "-m", "stages.sparsity", "--params", str(params), "--model", "toy"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "sparsity.cett_target: must be >= 0.0, got -0.1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_report_queries_on_planted_results(tmp_path):
    store = tmp_path / "store"
    writer = ResultWriter(store / "sparsity" / "m", stage="sparsity", item="m", fingerprint="f")
    rows = [(0, "active_fraction", "mean", 0.5), (1, "active_fraction", "mean", 0.25),
            (0, "activation_ratio_at_target", "target=0.2", 0.4), (1, "activation_ratio_at_target", "target=0.2", 0.3),
            (None, "sparsity", "target=0", 0.0), (None, "loss_increase", "target=0", 0.0),
            (None, "sparsity", "target=0.2", 0.6), (None, "loss_increase", "target=0.2", 0.01),
            (None, "topk_sparsity", "k=8", 0.75), (None, "topk_loss_increase", "k=8", 0.3)]
    writer.write_unit("all", {"sparsity": {
        "model": ["m"] * len(rows), "dataset": ["d"] * len(rows), "hook": ["mlp_post"] * len(rows),
        "layer": [r[0] for r in rows], "metric": [r[1] for r in rows], "param": [r[2] for r in rows],
        "value": [r[3] for r in rows]}})
    writer.finish()
    specs = [s for s in load_queries(ROOT / "reports" / "queries") if s.name.startswith("3")]
    active, cost = run_queries(store, specs)
    assert active.rows == [("m", 0, "activation ratio at CETT 0.2", 0.4), ("m", 1, "activation ratio at CETT 0.2", 0.3),
                           ("m", 0, "active fraction", 0.5), ("m", 1, "active fraction", 0.25)]
    assert cost.rows == [("m (loss increase)", "CETT truncation", 0.0, 0.0),
                         ("m (loss increase)", "CETT truncation", 0.6, 0.01),
                         ("m (loss increase)", "top-k", 0.75, 0.3)]


@pytest.mark.skipif(not os.environ.get("CORTEXLENS_STUDY"), reason="set CORTEXLENS_STUDY=<study dir> after make demo")
def test_demo_toy_loss_rises_with_sparsity_and_both_models_have_ratios():
    from cortexlens.store.sql import connect

    con = connect(Path(os.environ["CORTEXLENS_STUDY"]) / "data" / "store")
    curve = con.execute("""select s.value, c.value from sparsity s join sparsity c using (model, param)
                           where s.model = 'toy' and s.layer is null and c.layer is null and s.metric = 'sparsity'
                             and c.metric = 'loss_increase' order by s.value""").fetchall()
    assert len(curve) >= 5
    losses = [loss for _, loss in curve]
    assert all(b >= a - 0.002 for a, b in itertools.pairwise(losses)), curve  # monotone within noise
    # The toy's induction runs through attention: its 16 gated MLP neurons barely matter, so the curve is
    # flat within noise (a few 1e-4 nats) up to its highest sparsity, where it ends above where it started.
    assert losses[-1] > losses[0] and curve[-1][0] > 0.9
    ratios = con.execute("select model, count(*) from sparsity where metric = 'activation_ratio_at_target' "
                         "group by model order by model").fetchall()
    assert ratios == [("minilm", 6), ("toy", 2)]
    print(curve)
