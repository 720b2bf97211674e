"""The train_sae stage end to end on a tiny GPT-2: an SAE, a transcoder pair and an attn_z SAE trained
from the store, their SAELens folders, the views; bad params one line naming the key, exit 2, nothing
written; and, with CORTEXLENS_STUDY, the default study's acceptance figures."""

import json
import os
from pathlib import Path

import pytest
import yaml

from cortexlens.config.study import load_study
from cortexlens.errors import ConfigError
from cortexlens.store.sql import connect
from tests.unit.test_brain_stage import distinct_layers_gpt2

SAES = [
    {"name": "sae", "model": "tiny", "dataset": "corpus", "hook": "resid_post", "layer": 1, "arch": "topk", "k": 4,
     "expansion": 2, "steps": 40, "batch_rows": 128},
    {"name": "tc0", "model": "tiny", "dataset": "corpus", "hook": "mlp_in", "target": "mlp_out", "layer": 0,
     "arch": "topk", "k": 4, "expansion": 2, "steps": 40, "batch_rows": 128},
    {"name": "tc1", "model": "tiny", "dataset": "corpus", "hook": "mlp_in", "target": "mlp_out", "layer": 1,
     "arch": "relu", "expansion": 2, "steps": 40, "batch_rows": 128, "skip": True},
    {"name": "z1", "model": "tiny", "dataset": "corpus", "hook": "attn_z", "layer": 1, "arch": "jumprelu",
     "expansion": 2, "steps": 40, "batch_rows": 128},
]


def write_params(root: Path, model_dir: Path, saes: list[dict]) -> Path:
    params = {"study": "sae-test", "device": "cpu", "tracking": {"enabled": False},
              "paths": {"store": "store", "models": "models", "reports": "reports"},
              "models": {"tiny": {"source": str(model_dir)}},
              "datasets": {"corpus": {"kind": "builtin", "n_docs": 120, "seed": 0}},
              "extract": {"models": ["tiny"], "datasets": ["corpus"],
                          "hooks": ["resid_post", {"hook": "mlp_in", "layers": [0, 1]},
                                    {"hook": "mlp_out", "layers": [0, 1]}, {"hook": "attn_z", "layers": [1]}],
                          "max_length": 32},
              "train_sae": {"saes": saes, "splice_docs": 8, "checkpoint_every": 10}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root / "params.yaml"


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    from stages.extract import STAGE as EXTRACT
    from stages.train_sae import STAGE

    root = tmp_path_factory.mktemp("sae")
    model_dir = distinct_layers_gpt2(root / "tiny")
    params = write_params(root, model_dir, SAES)
    EXTRACT.execute(load_study(params), {"model": "tiny"}, progress=False)
    metrics = STAGE.execute(load_study(params), progress=False)
    return root, metrics


def test_every_sae_is_a_row_of_sae_runs_with_its_folder(study_dir):
    root, metrics = study_dir
    con = connect(root / "store")
    rows = {r[0]: r[1:] for r in con.execute(
        "select sae_id, arch, hook, layer, d_in, d_sae, l0, fvu, dead_frac, loss_recovered, target_hook from sae_runs"
    ).fetchall()}
    assert set(rows) == {"sae", "tc0", "tc1", "z1"} == set(metrics["saes"])
    assert rows["sae"][:5] == ("topk", "resid_post", 1, 32, 64) and rows["sae"][5] <= 4
    assert rows["tc1"][-1] == "mlp_out" and rows["z1"][1] == "attn_z"
    for sae_id, r in rows.items():
        assert 0 <= r[6] < 1.5 and 0 <= r[7] <= 1 and r[8] is not None, sae_id  # FVU, dead, loss recovered
        cfg = json.loads((root / "models" / "sae" / sae_id / "cfg.json").read_text())
        assert cfg["metadata"]["hook_name"].startswith(f"blocks.{r[2]}.")
    assert not list((root / "store" / "train_sae" / "_checkpoints").glob("*.safetensors"))


def test_sae_features_are_the_nonzero_latents_of_held_out_tokens(study_dir):
    root, _ = study_dir
    con = connect(root / "store")
    n, zeros, l0 = con.execute("""
        select count(*), count(*) filter (where value = 0),
               count(*) / count(distinct (doc_id, pos)) from sae_features where sae_id = 'sae'""").fetchone()
    assert n > 0 and zeros == 0 and l0 <= 4
    # a latent's top contexts, as the README query does
    top = con.execute("""
        select t.token, f.value from sae_features f join tokens t using (dataset, doc_id, pos)
        where f.sae_id = 'sae' and t.model = 'tiny' and f.feature = (select feature from sae_features
              where sae_id = 'sae' group by feature order by count(*) desc limit 1)
        order by f.value desc limit 5""").fetchall()
    assert len(top) == 5 and top[0][1] >= top[-1][1]


def test_head_attribution_and_circuit_edges_are_queryable(study_dir):
    root, _ = study_dir
    con = connect(root / "store")
    sums = con.execute("select sum(norm_frac) from sae_heads where sae_id = 'z1' group by feature").fetchall()
    assert len(sums) == 64 and all(s == pytest.approx(1.0, abs=1e-5) for (s,) in sums)
    kinds = dict(con.execute("select kind, count(*) from sae_edges where source_sae = 'tc0' and target_sae = 'tc1' "
                             "group by kind").fetchall())
    assert kinds["connection"] == 64 * 5 and kinds.get("attribution", 0) > 0


@pytest.mark.parametrize(("change", "line"), [
    ({"hook": "mlp_post", "layer": 0}, ("train_sae.saes[0].hook: blocks.0.mlp.hook_post is not extracted for tiny "
                                        "(add it to extract.hooks)")),
    ({"k": 100}, "train_sae.saes[0].k: k=100 is larger than the dictionary (d_sae = 2 x 32 = 64)"),
    ({"arch": "gated"}, "train_sae.saes[0].arch: unknown architecture 'gated' (one of relu, topk, batchtopk, jumprelu)"),
])
def test_bad_params_are_one_line_naming_the_key_exit_2_nothing_written(tmp_path, study_dir, capsys, change, line):
    from stages.train_sae import STAGE

    root, _ = study_dir
    params = write_params(tmp_path, root / "tiny", [{**SAES[0], **change}])
    with pytest.raises(ConfigError) as err:
        load_study(params)
    assert err.value.lines == [line]
    with pytest.raises(SystemExit) as exit_:
        STAGE.main(["--params", str(params)])
    assert exit_.value.code == 2 and capsys.readouterr().err.strip() == line
    assert not (tmp_path / "store").exists() and not (tmp_path / "models").exists()


DEMO = os.environ.get("CORTEXLENS_STUDY")


@pytest.mark.skipif(not DEMO, reason="set CORTEXLENS_STUDY=<study dir> after make demo")
def test_demo_sae_acceptance_figures():
    con = connect(Path(DEMO) / "data" / "store")
    runs = {r[0]: r[1:] for r in con.execute(
        "select sae_id, fvu, l0, dead_frac, loss_recovered from sae_runs").fetchall()}
    for sae_id, r in runs.items():
        print(sae_id, r)
    fvu, l0, dead, _ = runs["minilm-l3-topk"]
    assert fvu < 0.1 and l0 <= 32 and dead < 0.05
    fvu, _, _, recovered = runs["toy-mlp1-tc"]
    assert fvu < 0.1 and recovered >= 0.9


@pytest.mark.skipif(not DEMO, reason="set CORTEXLENS_STUDY=<study dir> after make demo")
def test_demo_attention_sae_latents_of_later_copies_come_from_the_induction_heads():
    """Issue 8's attention-SAE point, by the report's own query: the ten latents of toy-attn1-z most active on
    the second copy (against the first, held-out documents) put most of their decoder norm on the layer-1
    heads with the highest prefix-matching scores (the induction heads, >= 0.5) and little on the
    first-token head."""
    query = (Path(DEMO) / "reports" / "queries" / "55_sae_induction_heads.sql").read_text()
    rows = connect(Path(DEMO) / "data" / "store").execute(query).fetchall()  # (head, share, prefix, first)
    for row in rows:
        print("head %d: share %.3f, prefix matching %.3f, first token %.3f" % row)
    induction = [r for r in rows if r[2] >= 0.5]
    assert len(induction) >= 2 and sum(r[1] for r in induction) >= 0.75, rows
    first_token_head = max(rows, key=lambda r: r[3])
    assert first_token_head[2] < 0.5 and first_token_head[1] == min(r[1] for r in rows), rows


def test_probe_reports_k_sparse_probes_on_the_sae_latents_beside_the_dense_probe(study_dir):
    from stages.probe import STAGE as PROBE

    root, _ = study_dir
    data = yaml.safe_load((root / "params.yaml").read_text())
    data["probe"] = {"models": ["tiny"], "concepts": [{"name": "tense", "dataset": "corpus", "label": "tense"}],
                     "hooks": ["resid_post"], "poolings": ["mean"], "folds": 2, "inner_folds": 2, "n_jobs": 1,
                     "max_examples": 120, "saes": ["sae"], "sae_k": 4, "register_probes": False}
    (root / "probe-params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    PROBE.execute(load_study(root / "probe-params.yaml"), {"model": "tiny"}, progress=False)
    rows = connect(root / "store").execute(
        "select probe, features, layer, accuracy from probes where concept = 'tense' order by probe, layer").fetchall()
    sparse = [r for r in rows if r[0] == "ksparse-4"]
    assert len(sparse) == 1 and sparse[0][1:3] == ("sae:sae", 1) and 0 <= sparse[0][3] <= 1
    assert {r[1] for r in rows if r[0] == "logistic"} == {"activations"} and len(rows) == 1 + 3
    depth = connect(root / "store").execute("select count(*) from concept_depth where concept = 'tense'").fetchone()
    assert depth == (1,)  # the depth is the dense probes'


@pytest.mark.skipif(not DEMO, reason="set CORTEXLENS_STUDY=<study dir> after make demo")
def test_demo_registered_sae_loads_through_mlflow_pyfunc_and_encodes_as_ours():
    import mlflow
    import numpy as np
    import torch

    from cortexlens.features.sae import load_sae
    from cortexlens.store.reader import iter_activations

    root = Path(DEMO)
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model("models:/cortexlens-default-sae-minilm-l3-topk@current")
    sae = load_sae(root / "data" / "models" / "sae" / "minilm-l3-topk", "minilm-l3-topk", "test")
    batch = next(iter_activations(root / "data" / "store", "minilm", "corpus", sae.point, batch_rows=64))
    X = batch[sae.point]
    np.testing.assert_allclose(model.predict(X).values, sae.encode(torch.from_numpy(X)).numpy(), atol=1e-4)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("cortexlens-default").experiment_id
    [run] = client.search_runs([experiment], "tags.`cortexlens.sae` = 'minilm-l3-topk'", max_results=1)
    assert run.info.status == "FINISHED" and run.data.metrics["fvu"] < 0.1
