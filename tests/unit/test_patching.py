"""Causal interventions: exactness, batched = naive, attribution's first order, causal tracing's
restoration, subspace patching and the illusion check on a constructed model, bad inputs.

Tiny random models (tests/tiny_models.py, MiniLM's tokenizer) carry the exactness and parity tests;
the trained toy model's known answer is checked on the demo store (`-k demo`) and by a slow test.
"""

import json
import os
from pathlib import Path

import pytest
import torch
import transformers as T
import yaml
from safetensors.numpy import save_file

from cortexlens.errors import ConfigError
from cortexlens.models.hooks import HookPoint
from cortexlens.patching import activation as act
from cortexlens.patching.attribution import at_position, attribution
from cortexlens.patching.prompts import PromptPair, induction_pairs, ioi_pairs
from cortexlens.patching.readers import reader_matrix, split
from cortexlens.patching.reference import naive_sweep
from cortexlens.patching.subspace import Where, illusion_check, patch_along
from cortexlens.patching.tasks import encode_task
from cortexlens.patching.tracing import EMBED, Noised
from tests.helpers import load_local

PAIRS = [PromptPair("the cat sat on the mat and the", "the dog sat on the mat and the", "cat", "dog", "cat"),
         PromptPair("a red bird flew over the old", "a blue bird flew over the old", "house", "tree", "red bird"),
         PromptPair("paris is the capital of", "rome is the capital of", "france", "italy", "paris")]
ATOL = 1e-5


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def setup(request, tiny_model):
    model = load_local(tiny_model(request.param))
    return model, encode_task(model, "t", PAIRS, "patch.tasks[0]")


def test_whole_residual_at_the_last_layer_and_position_gives_one_and_nothing_gives_zero(setup):
    model, task = setup
    base = act.baseline(model, task)
    last = model.dims.n_layers - 1
    sites = [act.Site((HookPoint("resid_post", last),), positions=-1), act.Site((HookPoint("resid_pre", 0),), positions=0)]
    lds = act.sweep(model, task, sites, "denoising", 4)
    assert torch.allclose(lds[0], base.clean, atol=ATOL)  # every prompt's clean logit difference
    assert base.effect(float(lds[0].mean())) == pytest.approx(1.0, abs=ATOL)
    # position 0 is [CLS] in clean and corrupted prompts alike: patching it changes nothing
    assert torch.allclose(lds[1], base.corrupted, atol=ATOL) and base.effect(float(lds[1].mean())) == pytest.approx(0, abs=ATOL)
    noised = act.sweep(model, task, sites[:1], "noising", 4)
    assert torch.allclose(noised[0], base.corrupted, atol=ATOL)  # noising the last state gives the corrupted answer


@pytest.mark.parametrize("mode", ["denoising", "noising"])
def test_batched_sweeps_equal_one_forward_pass_per_patch(setup, mode):
    model, task = setup
    task = task.subset([0, 2])  # 8 and 5 real tokens: the batch is padded
    positions = [act.Site((HookPoint("resid_pre", layer),), positions=p)
                 for layer in range(model.dims.n_layers) for p in range(-5, 0)]
    heads = [site for *_, site in act.head_sites(model)]
    sites = positions + heads
    ours = act.sweep(model, task, sites, mode, batch_size=7)
    reference = naive_sweep(model, task, sites, mode)
    torch.testing.assert_close(ours, reference, atol=ATOL, rtol=0)


def test_attribution_is_the_first_order_of_patching(tiny_model):
    """A patch scaled down by eps changes LD by eps x the attribution estimate, to first order (float64;
    GPT-2, whose LayerNorm computes in the input dtype: Llama's RMSNorm rounds through float32)."""
    model = load_local(tiny_model("gpt2"))
    model.model.double()
    task = encode_task(model, "t", PAIRS, "k")
    points = [HookPoint("resid_pre", 1), HookPoint("attn_z", 2)]
    estimate = attribution(model, task, points, "denoising")
    eps = 1e-4
    base_acts = model.run_with_cache(task.corrupted, points, stop_early=False)
    clean_acts = model.run_with_cache(task.clean, points, stop_early=False)
    scaled = {p: base_acts[p] + eps * (clean_acts[p] - base_acts[p]) for p in points}
    base = act.baseline(model, task)
    sites = [act.Site((points[0],), positions=-2), act.Site((points[1],), positions=-1, heads=3)]
    # a "denoising" sweep whose source values are the scaled ones (laid out in the corrupted batch)
    lds = act.sweep(model, task.__class__(**{**task.__dict__, "clean": task.corrupted}), sites, "denoising", 8,
                    source_cache=scaled)
    first_order = (lds - base.corrupted) / eps  # [2, n]
    expected = torch.stack([at_position(estimate[points[0]], task.n_tokens, -2),
                            at_position(estimate[points[1]], task.n_tokens, -1)[:, 3]])
    torch.testing.assert_close(first_order.double(), expected.double(), rtol=1e-3, atol=1e-6)


def test_restoring_every_state_recovers_the_clean_probability_exactly(setup):
    model, task = setup
    last = model.dims.n_layers - 1
    noised = Noised(model, task, samples=3, noise=3.0, seed=0, points=[HookPoint("resid_post", 1)], batch_size=5)
    assert noised.std > 0 and noised.baseline() != pytest.approx(noised.clean_prob, rel=1e-3)  # the noise matters
    restored = noised.restored([((EMBED,), None), ((HookPoint("resid_post", 1),), None)])
    assert restored.tolist() == pytest.approx([noised.clean_prob] * 2, rel=1e-5)
    # restoring the subject's embeddings alone undoes the noise too (it is only there)
    subject_only = noised.restored([((EMBED,), None)])
    assert float(subject_only[0]) == pytest.approx(noised.clean_prob, rel=1e-5) and last >= 1


def test_subspace_patching_along_the_difference_is_the_full_patch(setup):
    """With one prompt, the clean - corrupted difference at a site lies along its own direction, so
    patching that direction alone equals patching the whole activation there."""
    model, task = setup
    one = task.subset([1])
    point = HookPoint("resid_post", 1)
    last = int(one.n_tokens[0]) - 1  # the batch keeps the padded width of the three prompts
    clean = model.run_with_cache(one.clean, [point])[point][0, last]
    corrupted = model.run_with_cache(one.corrupted, [point])[point][0, last]
    v = (clean - corrupted) / (clean - corrupted).norm()
    where = Where(point, -1)
    along, orthogonal = patch_along(model, one, where, [v, torch.linalg.qr(torch.stack([v, torch.randn_like(v)]).T)[0][:, 1]], 4)
    full = act.sweep(model, one, [act.Site((point,), positions=-1)], "denoising", 4)
    assert float(along) == pytest.approx(float(full.mean()), abs=1e-4)
    assert float(orthogonal) == pytest.approx(float(act.baseline(model, one).corrupted_mean), abs=1e-4)


def _dormant_model(directory: Path, tokenizer) -> Path:
    """Makelov et al.'s distilled example as a 1-layer Llama: MLP neuron 0 varies with the input but the
    down projection never reads it (a disconnected direction); neuron 1 is always 0 (dormant) but the
    down projection writes it straight into the answer's logit; neuron 2 varies and is read."""
    d, vocab = 16, len(tokenizer)
    config = T.LlamaConfig(vocab_size=vocab, hidden_size=d, intermediate_size=3, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
                           tie_word_embeddings=False, bos_token_id=0, eos_token_id=0, pad_token_id=1)
    torch.manual_seed(0)
    model = T.LlamaForCausalLM(config).eval()
    mlp = model.model.layers[0].mlp
    with torch.no_grad():
        mlp.gate_proj.weight[1] = 0
        mlp.up_proj.weight[1] = 0  # neuron 1: silu(0) * 0 = 0 on every input
        mlp.gate_proj.weight[:] *= 20  # neurons 0 and 2 respond strongly to the token
        mlp.up_proj.weight[:] *= 20
        mlp.down_proj.weight[:] = 0
        answer = tokenizer.convert_tokens_to_ids("cat")
        mlp.down_proj.weight[:, 1] = 5 * model.lm_head.weight[answer]  # neuron 1 -> the answer's logit
        distractor = tokenizer.convert_tokens_to_ids("dog")
        mlp.down_proj.weight[:, 2] = 2 * model.lm_head.weight[answer] - model.lm_head.weight[distractor]
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_the_illusion_check_flags_a_dormant_pathway_and_passes_a_read_direction(tmp_path, tiny_model):
    tokenizer = T.AutoTokenizer.from_pretrained(tiny_model("llama"))
    model = load_local(_dormant_model(tmp_path / "dormant", tokenizer))
    pairs = [PromptPair("the cat", "the dog", "cat", "dog"), PromptPair("a cat", "a dog", "cat", "dog")]
    task = encode_task(model, "t", pairs, "k")
    base = act.baseline(model, task)
    where = Where(HookPoint("mlp_post", 0), -1)
    readers = reader_matrix(model, where.point)
    e = torch.eye(3)
    _, null = split((e[0] + e[1]) / 2 ** 0.5, readers)
    torch.testing.assert_close(null, e[0] / 2 ** 0.5, atol=1e-6, rtol=0)  # neuron 0 is never read
    illusory = illusion_check(model, task, where, e[0] + e[1], base, 4, fraction=0.5, min_effect=0.05)
    effects = {p.part: p.effect for p in illusory.parts}
    assert abs(effects["full"]) >= 0.05 and effects["row"] == pytest.approx(0, abs=1e-5)
    assert effects["null"] == pytest.approx(0, abs=1e-5) and illusory.illusion is True
    genuine = illusion_check(model, task, where, e[2], base, 4, fraction=0.5, min_effect=0.05)
    effects = {p.part: p.effect for p in genuine.parts}
    assert abs(effects["full"]) >= 0.05 and effects["row"] == pytest.approx(effects["full"], abs=1e-5)
    assert genuine.illusion is False and genuine.null_norm == pytest.approx(0, abs=1e-6)


def test_builtin_prompt_pairs_align_and_point_at_their_answers():
    words = ["river", "quiet", "teacher", "garden", "music", "bread", "stone", "light", "water", "cloud", "green", "table"]
    for pair in induction_pairs(5, 6, words, 0):
        clean, corrupted = pair.clean.split(), pair.corrupted.split()
        assert len(clean) == len(corrupted) == 11 and clean[:6][-1] == pair.answer
        assert [i for i, (a, b) in enumerate(zip(clean, corrupted)) if a != b] == [5] and corrupted[5] == pair.distractor
    for pair in ioi_pairs(8, 0):
        assert pair.answer in pair.clean and pair.clean.count(pair.distractor) == 2
        assert pair.answer not in pair.corrupted and pair.distractor not in pair.corrupted


def test_bad_prompt_pairs_are_one_line_each(setup):
    model, _ = setup
    bad = [PromptPair("the cat sat", "the big dog sat", "on", "in"), PromptPair("the cat", "the dog", "sat", "zyzzyvas")]
    with pytest.raises(ConfigError) as err:
        encode_task(model, "mine", bad, "patch.tasks[1]")
    lines = err.value.lines
    assert lines[0] == ("patch.tasks[1] (mine): pair 0: the clean prompt has 5 tokens, the corrupted one 6; "
                        "positions must align ('the cat sat' / 'the big dog sat')")
    assert lines[1].startswith("patch.tasks[1] (mine): pair 1: distractor 'zyzzyvas' is ") and lines[1].endswith(
        f"tokens for {model.name}; it must be one")


# --- the stage: params, checks, bad input (exit 2, nothing written) ---------------------------------

def _study(tmp_path: Path, tiny_model, **patch) -> Path:
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text("\n".join(json.dumps({"clean": p.clean, "corrupted": p.corrupted, "answer": p.answer,
                                           "distractor": p.distractor}) for p in PAIRS) + "\n")
    params = {"study": "patch-test", "device": "cpu", "tracking": {"enabled": False},
              "paths": {"store": "store", "models": "models", "reports": "reports"},
              "models": {"tiny": {"source": str(tiny_model("llama"))}},
              "patch": {"models": ["tiny"], "tasks": [{"name": "mine", "kind": "file", "model": "tiny",
                                                       "path": "pairs.jsonl"}], "batch_size": 16,
                        "modes": ["denoising"], **patch}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path / "params.yaml"


def _run_stage(params: Path, model: str = "tiny"):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "stages.patch", "--params", str(params), "--model", model,
                           "--no-progress"], capture_output=True, text=True, check=False,
                          cwd=Path(__file__).resolve().parents[2])


def test_the_stage_writes_every_method_and_a_file_direction(tmp_path, tiny_model):
    weights = tmp_path / "sae"
    weights.mkdir()
    (weights / "cfg.json").write_text(json.dumps({"d_in": 32, "d_sae": 4}))
    w_dec = torch.randn(4, 32).numpy()
    save_file({"W_dec": w_dec}, str(weights / "sae_weights.safetensors"))
    params = _study(tmp_path, tiny_model, directions=[
        {"name": "latent2", "task": "mine", "source": "file", "path": "sae", "row": 2, "hook": "resid_post", "layer": 1},
        {"name": "das", "task": "mine", "source": "das", "hook": "mlp_post", "layer": 1, "das_steps": 5}])
    proc = _run_stage(params)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from cortexlens.store.sql import connect

    con = connect(tmp_path / "store")
    methods = dict(con.execute("select method, count(*) from patching group by method").fetchall())
    # tiny llama: 3 layers, 4 heads; prompts of 10, 9 and 7 tokens ([CLS], [SEP]): the last 7 positions
    n_layers, n_pos, n_heads = 3, 7, 4
    assert methods["activation"] == 3 * n_layers * n_pos + 2 * n_layers * n_heads + n_layers * n_heads
    assert methods["attribution"] > 0 and methods["subspace"] == 3 + 2 * 3 and "causal_tracing" not in methods
    parts = con.execute("select direction, part, illusion from patching where method = 'subspace' and split is null "
                        "order by part").fetchall()
    assert [p[:2] for p in parts] == [("file:latent2", "full"), ("file:latent2", "null"), ("file:latent2", "row")]
    metrics = json.loads((tmp_path / "reports" / "metrics" / "patch-tiny.json").read_text())
    assert set(metrics["tasks"]["mine"]["attribution_vs_exact"]) == {"resid_pre", "attn_out", "mlp_out", "attn_z"}


@pytest.mark.parametrize("patch,line", [
    ({"directions": [{"name": "d", "task": "mine", "source": "file", "path": "w.safetensors", "key": "v",
                      "hook": "resid_post", "layer": 1}]},
     "patch.directions[0]: direction v of w.safetensors has width 7; resid_post of the task's model has width 32"),
    ({"directions": [{"name": "d", "task": "mine", "source": "das", "hook": "attn_z", "layer": 1, "head": 4}]},
     "patch.directions[0].head: head 4 out of range for tiny (heads 0-3)"),
    ({"directions": [{"name": "d", "task": "mine", "source": "das", "hook": "mlp_post", "layer": 3}]},
     ("patch.directions[0].layer: layer 3 out of range for tiny (layers 0-2)")),
    ({"tasks": [{"name": "mine", "kind": "file", "model": "tiny", "path": "bad.jsonl"}]},
     ("patch.tasks[0] (mine): pair 0: the clean prompt has 4 tokens, the corrupted one 5; positions must align "
      "('the cat' / 'the big dog')")),
    ({"tasks": [{"name": "mine", "kind": "file", "model": "tiny", "path": "bad2.jsonl"}]},
     "patch.tasks[0] (mine): pair 0: answer 'zyzzyvas' is 4 tokens for tiny; it must be one"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, tiny_model, patch, line):
    save_file({"v": torch.ones(7).numpy()}, str(tmp_path / "w.safetensors"))
    (tmp_path / "bad.jsonl").write_text(json.dumps({"clean": "the cat", "corrupted": "the big dog", "answer": "sat",
                                                    "distractor": "ran"}) + "\n")
    (tmp_path / "bad2.jsonl").write_text(json.dumps({"clean": "the cat", "corrupted": "the dog", "answer": "zyzzyvas",
                                                     "distractor": "ran"}) + "\n")
    params = _study(tmp_path, tiny_model, **patch)
    proc = _run_stage(params)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[0] == line, proc.stderr
    assert not (tmp_path / "store").exists() and not (tmp_path / "reports").exists()


DEMO_STUDY = "CORTEXLENS_STUDY"


@pytest.mark.skipif(not os.environ.get(DEMO_STUDY), reason=f"set {DEMO_STUDY}=<directory of params.yaml> after make demo")
def test_demo_patching_finds_the_planted_circuit_and_the_fact_trace():
    root = Path(os.environ[DEMO_STUDY])
    toy = json.loads((root / "reports" / "metrics" / "patch-toy.json").read_text())["tasks"]["induction"]
    facts = json.loads((root / "reports" / "metrics" / "patch-facts.json").read_text())["tasks"]["facts"]
    print(json.dumps({"induction": toy, "facts": facts}, indent=1))
    assert toy["top_heads_are_highest_prefix_matching"] and toy["top_head"].startswith("L1")
    assert toy["top_head_prefix_matching"] >= 0.5
    assert toy["previous_token_score"] >= 0.5 and toy["ablation_fraction_removed"] >= 0.5
    assert facts["tracing_clean_prob"] > facts["tracing_noised_prob"] and facts["tracing_peak"]["effect"] > 0
