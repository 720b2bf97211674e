"""The fact-recall model: the seeded fact table, its training stream, memorisation, and the train_facts stage.

The fast test trains a small table (12 facts) for seconds; `test_default_config_recalls_its_facts` (slow,
run by `.ci/run`) trains the demo config and checks its recall against the control.
"""

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from cortexlens.config import load_study
from cortexlens.config.schema import TrainFacts
from cortexlens.errors import ConfigError
from cortexlens.toy.facts import RELATIONS, FactTable, fact_table
from cortexlens.toy.recall import FactStream, recall, table_for, train_facts
from cortexlens.toy.tokenizer import BOS_ID, UNK_ID, build_toy_tokenizer

CPU = torch.device("cpu")
SMALL = TrainFacts(n_layers=2, d_model=64, d_mlp=128, n_ctx=16, steps=150, n_subjects=6, n_unseen=4,
                   relations=["visits", "plays"], fact_fraction=0.9, corpus_docs=50)


def test_fact_table_is_seeded_and_keeps_unseen_subjects_apart():
    a = fact_table(30, 10, 2, list(RELATIONS), 0)
    assert a == fact_table(30, 10, 2, list(RELATIONS), 0) and a != fact_table(30, 10, 2, list(RELATIONS), 1)
    assert len(a.trained) == 30 * len(RELATIONS) and len(a.unseen) == 10 * len(RELATIONS)
    trained = {f.subject for f in a.trained}
    assert len(trained) == 30 and not trained & {f.subject for f in a.unseen}
    assert all(len(set(f.subject)) == 2 and f.object in RELATIONS[f.relation][1] for f in a.trained)
    assert FactTable.from_json(json.loads(json.dumps(a.to_json()))) == a


def test_every_statement_is_in_the_toy_vocabulary_and_prompts_align():
    tok = build_toy_tokenizer()
    table = fact_table(50, 0, 3, list(RELATIONS), 0)
    lengths = set()
    for fact in table.trained:
        ids = tok(fact.statement)["input_ids"]
        assert UNK_ID not in ids and ids[0] == BOS_ID, fact
        prompt = tok(fact.prompt)["input_ids"]
        assert ids[:len(prompt)] == prompt and tok.convert_ids_to_tokens(ids[len(prompt)]) == fact.object
        lengths.add(len(prompt))
    assert lengths == {1 + 3 + 2}  # <|bos|>, the subject's 3 names, the two-word relation


def test_training_stream_is_seeded_and_mixes_facts_with_the_corpus():
    tok = build_toy_tokenizer()
    table = table_for(SMALL)
    a, b = FactStream(table, SMALL, tok), FactStream(table, SMALL, tok)
    x = a.batch(0)
    assert x.shape == (SMALL.batch_size, SMALL.n_ctx) and (x[:, 0] == BOS_ID).all()
    assert torch.equal(x, b.batch(0)) and not torch.equal(x, a.batch(1))
    texts = " ".join(tok.decode(row) for row in x.tolist())
    assert any(f.statement.rstrip(" .") in texts for f in table.trained)
    assert not any(" ".join(f.subject) in texts for f in table.unseen)  # the control never appears


def test_small_table_is_memorised_and_unseen_subjects_are_not():
    model, tok, table, metrics = train_facts(SMALL, CPU, progress=False)
    assert metrics["n_facts"] == 12 and metrics["recall_accuracy"] == recall(model, tok, table.trained, CPU)
    assert metrics["recall_accuracy"] >= 0.9, metrics
    assert metrics["unseen_accuracy"] <= 0.75, metrics  # plays has 3 objects: a guess is right 1/3 of the time
    assert metrics["chance_accuracy"] == pytest.approx((1 / 25 + 1 / 3) / 2)


def test_bad_fact_params_name_the_key(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"train_facts": {"relations": ["visits", "flies"], "n_subjects": 500}}))
    with pytest.raises(ConfigError) as err:
        load_study(path)
    assert "train_facts.relations[1]: unknown relation 'flies' (built in: visits, is, plays, eats, drives)" in err.value.lines
    path.write_text(yaml.safe_dump({"train_facts": {"n_subjects": 400}}))
    with pytest.raises(ConfigError, match=r"train_facts: .*n_subjects \+ n_unseen \(420\) is more than the 380 subjects"):
        load_study(path)


def test_the_stage_writes_the_model_with_its_fact_table(tmp_path):
    from stages import train_facts as stage

    params = {"study": "facts-test", "device": "cpu", "tracking": {"enabled": False},
              "paths": {"models": "models", "reports": "reports", "store": "store"},
              "models": {"facts": "facts"}, "train_facts": SMALL.model_copy(update={"steps": 5}).model_dump()}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    study = load_study(tmp_path / "params.yaml")
    assert study.model_info("facts").n_layers == 2  # known from params before the model exists
    metrics = stage.STAGE.execute(study, progress=False)
    directory = tmp_path / "models" / "facts"
    assert FactTable.load(directory) == table_for(SMALL)
    metrics.pop("timings")  # returned for MLflow, never written to the metrics file DVC compares
    assert json.loads((tmp_path / "reports" / "metrics" / "train_facts.json").read_text()) == metrics
    from cortexlens.models.for_study import load_for_study

    hooked = load_for_study(study, "facts").model
    assert hooked.family.name == "llama" and hooked.dims.n_layers == 2


@pytest.mark.slow
def test_default_config_recalls_its_facts():
    _, _, _, metrics = train_facts(TrainFacts(), CPU, progress=False)
    print(json.dumps(metrics, indent=2))
    assert metrics["recall_accuracy"] >= 0.9, metrics
    assert metrics["unseen_accuracy"] <= metrics["chance_accuracy"] + 0.15, metrics


DEMO_STUDY = "CORTEXLENS_STUDY"


@pytest.mark.skipif(not os.environ.get(DEMO_STUDY), reason=f"set {DEMO_STUDY}=<directory of params.yaml> after make demo")
def test_demo_fact_model_recalls_its_facts():
    metrics = json.loads((Path(os.environ[DEMO_STUDY]) / "reports" / "metrics" / "train_facts.json").read_text())
    print(metrics)
    assert metrics["recall_accuracy"] >= 0.9 and metrics["unseen_accuracy"] <= metrics["chance_accuracy"] + 0.15
