"""The toy induction model: its tokenizer, the planted task, the circuit scores, deterministic training,
saving and loading.

The fast tests train the demo architecture for 300 steps (seconds) and check that it forms the circuit; `test_default_config_learns_induction` (slow, run by `.ci/run`) trains the demo config and
checks the acceptance numbers.
"""

import json
import os
from pathlib import Path

import pytest
import torch

from cortexlens.config.schema import TrainToy
from cortexlens.data.corpus import Document, generate_corpus
from cortexlens.models.loading import ResolvedSource, load_hooked_model
from cortexlens.toy import (
    build_toy_tokenizer,
    induction_accuracy,
    induction_batch,
    load_toy,
    save_toy,
    train_toy,
    training_batch,
)
from cortexlens.toy.circuit import repeated_segments, scores_from_patterns
from cortexlens.toy.io import METRICS_FILE
from cortexlens.toy.model import toy_vocab_size
from cortexlens.toy.tokenizer import BOS_ID, N_SPECIAL, PAD_ID, UNK_ID
from cortexlens.toy.train import eval_seed, init_model
from tests.helpers import run_extraction

CPU = torch.device("cpu")
# The demo config for 300 steps instead of 800: the circuit forms by ~250 (three seeds; the first-token head
# splits off later, which the slow test checks). Smaller contexts
# or batches are cheaper but fragile: a 24- or 32-token context, or batches of 32, can settle in a
# layer-1 previous-token solution that never does induction (measured).
FAST = TrainToy(steps=300, eval_sequences=256, score_sequences=100)
CIRCUIT = 0.5  # the acceptance threshold for both scores


@pytest.fixture(scope="module")
def trained():
    """(model, tokenizer, metrics) of FAST, trained once for the module."""
    return train_toy(FAST, CPU, progress=False)


def test_tokenizer_covers_the_corpus_and_prepends_bos():
    tok = build_toy_tokenizer()
    assert len(tok) == toy_vocab_size()
    assert (tok.bos_token_id, tok.pad_token_id, tok.unk_token_id) == (BOS_ID, PAD_ID, UNK_ID)
    docs = generate_corpus(2000, 0)
    for doc in docs:
        ids = tok(doc.text)["input_ids"]
        assert ids[0] == BOS_ID and UNK_ID not in ids[1:], doc.text
    ids = tok("The dog sleeps.")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["<|bos|>", "the", "dog", "sleeps", "."]
    assert tok("zyzzyva")["input_ids"] == [BOS_ID, UNK_ID]


def test_induction_batch_plants_the_repeat_and_its_masks():
    gen = torch.Generator().manual_seed(3)
    vocab = toy_vocab_size()
    batch = induction_batch(gen, 200, FAST, vocab)
    tokens, n_ctx = batch.tokens, FAST.n_ctx
    assert tokens.shape == (200, n_ctx)
    assert (tokens[:, 0] == BOS_ID).all() and (tokens[:, 1:] >= N_SPECIAL).all() and (tokens < vocab).all()
    assert batch.repeat_len.min() >= FAST.min_repeat and batch.repeat_len.max() <= FAST.max_repeat
    for row in range(200):
        L = int(batch.repeat_len[row])
        t = tokens[row].tolist()
        assert t[1 + L:] == (t[1:1 + L] * n_ctx)[:n_ctx - 1 - L]  # the segment repeats to the end
        second = batch.second_copy[row].nonzero().flatten().tolist()
        first = batch.first_copy[row].nonzero().flatten().tolist()
        assert second == list(range(L + 1, 2 * L))  # targets A[1..L-1] of the second copy
        assert first == list(range(1, L))
        for p in second:  # the answer is one period back: what an induction head copies
            assert t[p + 1] == t[p + 1 - L]


def test_training_batch_replaces_later_tokens_by_the_first_word_at_its_rate():
    """After the first copy each token is, with probability first_token_rate, the first word; the first
    copy and <|bos|> never change; rate 0 gives induction_batch's tokens."""
    vocab = toy_vocab_size()
    params = FAST.model_copy(update={"first_token_rate": 0.2})
    clean = induction_batch(torch.Generator().manual_seed(4), 400, params, vocab)
    tokens = training_batch(torch.Generator().manual_seed(4), 400, params, vocab)  # [batch, pos]
    pos = torch.arange(params.n_ctx)[None]
    later = pos > clean.repeat_len[:, None]  # [batch, pos]
    changed = tokens != clean.tokens
    assert not changed[~later].any()
    assert (tokens[changed] == tokens[:, 1:2].expand_as(tokens)[changed]).all()
    # A replacement where the clean token already was the first word cannot be seen; the rest is the rate.
    could_change = later & (clean.tokens != clean.tokens[:, 1:2])
    assert changed[could_change].float().mean().item() == pytest.approx(0.2, abs=0.01)
    none = training_batch(torch.Generator().manual_seed(4), 400, FAST.model_copy(update={"first_token_rate": 0.0}), vocab)
    assert torch.equal(none, clean.tokens)


def test_batches_depend_only_on_the_generator():
    vocab = toy_vocab_size()
    a = induction_batch(torch.Generator().manual_seed(5), 8, FAST, vocab)
    torch.manual_seed(123)  # the global RNG must not matter
    b = induction_batch(torch.Generator().manual_seed(5), 8, FAST, vocab)
    c = induction_batch(torch.Generator().manual_seed(6), 8, FAST, vocab)
    assert torch.equal(a.tokens, b.tokens) and not torch.equal(a.tokens, c.tokens)


def test_initialisation_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b = init_model(FAST), init_model(FAST)
    assert torch.equal(torch.random.get_rng_state(), state)
    c = init_model(FAST.model_copy(update={"seed": 1}))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)


def test_training_is_deterministic_on_cpu():
    short = FAST.model_copy(update={"steps": 20, "eval_sequences": 32})
    m1, _, r1 = train_toy(short, CPU, progress=False)
    m2, _, r2 = train_toy(short, CPU, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert r1["second_copy_accuracy"] == r2["second_copy_accuracy"]


def test_reduced_config_learns_induction_not_memorisation(trained):
    _, _, metrics = trained
    chance = metrics["chance_accuracy"]
    assert chance == pytest.approx(1 / (toy_vocab_size() - N_SPECIAL))
    # 300 steps: far above chance on second copies, chance on first copies (nothing to predict there).
    assert metrics["second_copy_accuracy"] > 0.9, metrics
    assert metrics["first_copy_accuracy"] < 5 * chance, metrics


def test_reduced_config_forms_the_induction_circuit(trained):
    """A layer-0 previous-token head and a layer-1 induction head, from attention patterns on held-out
    `<|bos|> A A` sequences; every head's two scores are in the metrics."""
    _, _, metrics = trained
    assert set(metrics["heads"]) == {f"L{layer}H{head}" for layer in range(2) for head in range(4)}
    prev = {k: v["previous_token"] for k, v in metrics["heads"].items()}
    match = {k: v["prefix_matching"] for k, v in metrics["heads"].items()}
    assert metrics["previous_token_score"] == max(v for k, v in prev.items() if k.startswith("L0"))
    assert metrics["prefix_matching_score"] == max(v for k, v in match.items() if k.startswith("L1"))
    assert metrics["previous_token_score"] >= CIRCUIT and metrics["prefix_matching_score"] >= CIRCUIT, metrics
    # The roles do not swap: induction heads are not previous-token heads and vice versa.
    assert prev[metrics["induction_head"]] < 0.2 and match[metrics["previous_token_head"]] < 0.2, metrics


def test_scores_of_planted_attention_patterns():
    """Known answer: head 0 attends to p-1, head 1 to the token after the earlier occurrence (and to
    p-1 in the first copy, where there is none), head 2 uniformly over what it may see, head 3 to the
    first word (and to <|bos|> before it exists)."""
    L, n = 5, 3
    T = 1 + 2 * L
    pattern = torch.zeros(n, 4, T, T)
    for p in range(T):
        pattern[:, 0, p, max(p - 1, 0)] = 1
        pattern[:, 1, p, p - L + 1 if p > L else max(p - 1, 0)] = 1
        pattern[:, 2, p, :p + 1] = 1 / (p + 1)
        pattern[:, 3, p, min(p, 1)] = 1
    prev, match, first = scores_from_patterns([pattern], L)
    uniform_prev = sum(1 / (p + 1) for p in range(1, T)) / (T - 1)
    uniform_match = sum(1 / (p + 1) for p in range(L + 1, T)) / L
    uniform_first = sum(1 / (p + 1) for p in range(L + 2, T)) / (L - 1)
    assert prev[0].tolist() == pytest.approx([1.0, L / (2 * L), uniform_prev, 1 / (2 * L)])  # head 3: only p = 2
    assert match[0].tolist() == pytest.approx([0.0, 1.0, uniform_match, 0.0])
    assert first[0].tolist() == pytest.approx([0.0, 0.0, uniform_first, 1.0])
    tokens = repeated_segments(torch.Generator().manual_seed(0), 4, L, toy_vocab_size())
    assert tokens.shape == (4, T) and (tokens[:, 0] == BOS_ID).all()
    assert torch.equal(tokens[:, 1:L + 1], tokens[:, L + 1:]) and (tokens[:, 1:] >= N_SPECIAL).all()


def test_saved_model_loads_like_a_hub_model(trained, tmp_path):
    model, tokenizer, metrics = trained
    save_toy(model, tokenizer, tmp_path / "toy", metrics)
    assert (tmp_path / "toy" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "toy" / METRICS_FILE).read_text()) == metrics
    loaded, loaded_tok = load_toy(tmp_path / "toy")
    ids = induction_batch(torch.Generator().manual_seed(9), 4, FAST, toy_vocab_size()).tokens
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, model.eval()(input_ids=ids).logits)
    assert loaded_tok("the dog")["input_ids"] == tokenizer("the dog")["input_ids"]
    # The reloaded model scores exactly what the trained one scored.
    again = induction_accuracy(loaded, FAST, FAST.eval_sequences, eval_seed(FAST), CPU)
    assert again["second_copy_accuracy"] == metrics["second_copy_accuracy"]
    # And the pipeline's loader sees canonical (Llama-family) hooks on it.
    hooked = load_hooked_model("toy", ResolvedSource("builtin", str(tmp_path / "toy"), alias="toy"), CPU)
    assert hooked.family is not None and hooked.family.name == "llama"
    assert {"resid_post", "attn_z", "mlp_post"} <= set(hooked.available_hooks())


def test_failed_save_keeps_the_previous_model(trained, tmp_path, monkeypatch):
    model, tokenizer, metrics = trained
    save_toy(model, tokenizer, tmp_path / "toy", metrics)
    before = sorted(p.name for p in (tmp_path / "toy").iterdir())

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(tokenizer), "save_pretrained", broken)
    with pytest.raises(OSError, match="disk full"):
        save_toy(model, tokenizer, tmp_path / "toy", {"other": 1.0})
    assert sorted(p.name for p in (tmp_path / "toy").iterdir()) == before
    assert json.loads((tmp_path / "toy" / METRICS_FILE).read_text()) == metrics
    assert [p.name for p in tmp_path.iterdir()] == ["toy"]  # no temporary directory left behind


def test_extraction_caps_documents_at_the_toy_context(trained, tmp_path):
    model, tokenizer, metrics = trained
    save_toy(model, tokenizer, tmp_path / "toy", metrics)
    hooked = load_hooked_model("toy", ResolvedSource("builtin", str(tmp_path / "toy"), alias="toy"), CPU)
    docs = generate_corpus(30, 0)
    long_doc = Document(10_000, " ".join(["the dog sleeps ."] * 20), {})  # 80 words > n_ctx 48
    manifest = run_extraction(hooked, tmp_path / "store", [long_doc, *docs], hooks=["resid_post"],
                              max_length=64, batch_size=8)
    assert manifest["effective_max_length"] == FAST.n_ctx
    assert manifest["n_truncated"] == 1
    assert manifest["rows"]["tokens"] == FAST.n_ctx + sum(len(tokenizer(d.text)["input_ids"]) for d in docs)


@pytest.mark.slow
def test_default_config_learns_induction():
    """The acceptance numbers: the demo config, >= 0.9 on held-out second copies, chance on first copies,
    a layer-0 head with previous-token score >= 0.5, a layer-1 head with prefix-matching score >= 0.5,
    and a layer-1 first-token head beside at least two induction heads."""
    params = TrainToy()
    _, _, metrics = train_toy(params, CPU, progress=False)
    print(json.dumps(metrics, indent=2))
    assert metrics["second_copy_accuracy"] >= 0.9, metrics
    assert metrics["first_copy_accuracy"] < 5 * metrics["chance_accuracy"], metrics
    assert metrics["previous_token_score"] >= CIRCUIT and metrics["prefix_matching_score"] >= CIRCUIT, metrics
    _assert_layer_1_has_a_first_token_head(metrics["heads"])


def _assert_layer_1_has_a_first_token_head(heads: dict) -> None:
    """train_toy's second job has its own layer-1 head, which is not an induction head, while at least two
    other layer-1 heads are."""
    layer1 = {k: v for k, v in heads.items() if k.startswith("L1")}
    first_head = max(layer1, key=lambda k: layer1[k]["first_token"])
    assert layer1[first_head]["first_token"] >= CIRCUIT and layer1[first_head]["prefix_matching"] < 0.2, layer1
    assert sum(v["prefix_matching"] >= CIRCUIT for k, v in layer1.items() if k != first_head) >= 2, layer1


DEMO_STUDY = "CORTEXLENS_STUDY"


@pytest.mark.skipif(not os.environ.get(DEMO_STUDY), reason=f"set {DEMO_STUDY}=<directory of params.yaml> after make demo")
def test_demo_toy_model_has_the_circuit():
    """The toy model `make demo` trained (.ci/run sets CORTEXLENS_STUDY): its head scores in the store
    (the `toy_heads` view) are its metrics', and show a previous-token head, induction heads and the
    first-token head."""
    from cortexlens.store.sql import connect

    root = Path(os.environ[DEMO_STUDY])
    metrics = json.loads((root / "reports" / "metrics" / "train_toy.json").read_text())
    rows = connect(root / "data" / "store").execute(
        "select layer, head, previous_token, prefix_matching, first_token from toy_heads where model = 'toy' "
        "order by layer, head").fetchall()
    stored = {f"L{layer}H{head}": {"previous_token": prev, "prefix_matching": match, "first_token": first}
              for layer, head, prev, match, first in rows}
    assert stored == {k: pytest.approx(v) for k, v in metrics["heads"].items()}
    for key, scores in stored.items():
        print(key, {k: round(v, 3) for k, v in scores.items()})
    assert max(prev for layer, _, prev, _, _ in rows if layer == 0) >= CIRCUIT
    assert max(match for layer, _, _, match, _ in rows if layer == 1) >= CIRCUIT
    assert metrics["second_copy_accuracy"] >= 0.9
    _assert_layer_1_has_a_first_token_head(stored)
