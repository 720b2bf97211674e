"""Probes: a planted concept found at its layer, parity with scikit-learn, grouped folds against
leakage, controls, k-sparse probes, weights, and bad input named by key."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.model_selection import KFold, StratifiedGroupKFold, cross_val_score

from cortexlens.config.study import load_study
from cortexlens.errors import ConfigError
from cortexlens.probes.control import control_labels
from cortexlens.probes.cv import grouped_cv
from cortexlens.probes.depth import concept_depth
from cortexlens.probes.estimator import GroupedLogisticProbe
from cortexlens.probes.run import ProbeJob, ProbeSettings, fit_jobs, select_examples
from cortexlens.probes.sparse import KSparseProbe, top_k_features
from cortexlens.probes.weights import encode, predict
from tests.helpers import load_local, run_extraction

SETTINGS = ProbeSettings(Cs=(0.01, 0.1, 1.0), folds=5, inner_folds=3, control=True, seed=0)


def _planted(n: int = 1200, d: int = 24, layers: int = 4, at: int = 2, groups: int = 120, seed: int = 0):
    """Pooled features of `layers` layers; the label is linearly decodable at layer `at` only."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    g = rng.integers(0, groups, n).astype(str)  # lexical items, each with both classes
    direction = rng.normal(size=d)
    X = {layer: rng.normal(size=(n, d)).astype(np.float32) for layer in range(layers)}
    X[at] += (np.where(y == 1, 1.0, -1.0)[:, None] * direction * 0.6).astype(np.float32)
    return X, np.where(y == 1, "yes", "no"), g


def test_a_planted_concept_is_found_at_its_layer_with_chance_control():
    X, y, g = _planted()
    outcomes = fit_jobs([ProbeJob("resid_post", layer, "mean", X[layer], y, g) for layer in X], SETTINGS, n_jobs=2)
    accuracy = {o.layer: o.scores.accuracy for o in outcomes}
    found = concept_depth(accuracy, n_layers=4)
    assert found.best_layer == 2 and found.depth_layer == 2 and found.best_accuracy > 0.9
    assert all(accuracy[layer] < 0.6 for layer in (0, 1, 3))
    control = {o.layer: o.control.accuracy for o in outcomes}
    assert all(abs(c - 0.5) < 0.08 for c in control.values()), control  # near chance everywhere
    assert outcomes[2].scores.accuracy - outcomes[2].control.accuracy > 0.35


def test_a_label_encoded_nowhere_has_no_selectivity():
    X, _, g = _planted(n=2000, groups=200)
    y = np.where(np.random.default_rng(5).integers(0, 2, 2000) == 1, "yes", "no")  # unrelated to X
    for o in fit_jobs([ProbeJob("resid_post", layer, "mean", X[layer], y, g) for layer in X], SETTINGS, n_jobs=2):
        assert abs(o.scores.accuracy - o.control.accuracy) < 0.05, (o.layer, o.scores.accuracy, o.control.accuracy)


def test_cross_validated_accuracy_equals_scikit_learn_exactly():
    X, y, g = _planted(n=600)
    ours = grouped_cv(SETTINGS.make_probe, X[2], y, g, folds=5)
    theirs = cross_val_score(GroupedLogisticProbe((0.01, 0.1, 1.0), 3), X[2], y, groups=g, cv=StratifiedGroupKFold(5),
                             params={"groups": g})
    assert ours.accuracies == theirs.tolist()


def test_float_noise_the_probe_is_fit_to_convergence_not_stopped_early():
    """The probe's weights are the optimum's, so they do not depend on the path L-BFGS took: another
    CPU's float kernels (or a last-bit change of the stored activations) cannot move them. Fit in
    float32 to scikit-learn's 1e-4 they were 1% from the optimum, and on the toy's stored features two
    BLAS kernels of one machine gave topic accuracies 0.284 and 0.249."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    n, d, classes = 480, 64, 4
    y = rng.integers(0, classes, n)
    mix = rng.normal(size=(d, d)) / np.sqrt(d) * np.linspace(0.05, 3, d)  # correlated, anisotropic
    X = ((rng.normal(size=(n, d)) + 0.35 * rng.normal(size=(classes, d))[y]) @ mix + 5).astype(np.float32)
    ours = GroupedLogisticProbe((1.0,), 3).fit(X, y).pipeline_  # C = 1: where stopping early moved most
    z = ours[0].transform(X.astype(np.float64))
    optimum = LogisticRegression(C=1.0, tol=1e-12, max_iter=20000).fit(z, y)  # float64, to the last digit
    error = np.abs(ours[-1].coef_ - optimum.coef_).max() / np.abs(optimum.coef_).max()
    assert error < 1e-4, error
    nudged = (X * (1 + 2e-7 * rng.standard_normal(X.shape))).astype(np.float32)  # a few ulps
    assert not np.array_equal(X, nudged)
    g = rng.integers(0, 60, n).astype(str)
    assert grouped_cv(SETTINGS.make_probe, X, y, g, 5).accuracies == grouped_cv(SETTINGS.make_probe, nudged, y, g, 5).accuracies


def test_grouped_folds_give_the_honest_lower_accuracy_when_items_leak():
    """Each lexical item has its own vector and its own (random) class: a probe can memorise items.
    Ungrouped folds put every item in training and test, so memorising pays; grouped folds do not."""
    rng = np.random.default_rng(3)
    n_items, per_item, d = 60, 10, 32
    item_vec = rng.normal(size=(n_items, d))
    item_label = rng.integers(0, 2, n_items)
    items = np.repeat(np.arange(n_items), per_item)
    X = (item_vec[items] + 0.3 * rng.normal(size=(len(items), d))).astype(np.float32)
    y, g = item_label[items], items.astype(str)
    grouped = grouped_cv(SETTINGS.make_probe, X, y, g, folds=5).accuracy
    leaky = cross_val_score(GroupedLogisticProbe((0.01, 0.1, 1.0), 3), X, y, cv=KFold(5, shuffle=True, random_state=0),
                            params={"groups": g}).mean()
    assert leaky > 0.7 and grouped < 0.6 and grouped < leaky - 0.2, (leaky, grouped)


def test_control_labels_are_per_item_with_the_label_balance():
    y = np.array(["a"] * 300 + ["b"] * 100)
    g = np.arange(400).astype(str)
    c = control_labels(y, g, seed=1)
    assert set(c) <= {"a", "b"} and 0.65 < np.mean(c == "a") < 0.85
    items = np.repeat(np.arange(20), 5).astype(str)
    c = control_labels(y[:100], items, seed=2)
    assert all(len(set(c[items == item])) == 1 for item in set(items))  # one label per lexical item


def test_k_sparse_probe_finds_the_planted_features():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(600, 100)).astype(np.float32)
    y = (X[:, 7] + X[:, 42] - X[:, 63] > 0).astype(int)
    assert top_k_features(X, y, 3).tolist() == [7, 42, 63]
    g = rng.integers(0, 60, 600).astype(str)
    assert grouped_cv(lambda: KSparseProbe(k=3), X, y, g).accuracy > 0.95
    assert grouped_cv(lambda: KSparseProbe(k=3), X[:, 70:], y, g).accuracy < 0.6  # without them: chance


def test_depth_takes_the_earliest_best_and_the_first_layer_reaching_the_fraction():
    found = concept_depth({0: 0.5, 1: 0.82, 2: 0.9, 3: 0.9, 4: 0.7}, n_layers=5)
    assert (found.best_layer, found.depth_layer, found.best_depth, found.depth) == (2, 1, 0.6, 0.4)


def test_weights_reproduce_the_probe_and_its_direction():
    X, y, g = _planted(n=400)
    y3 = np.array(["a", "b", "c"])[np.random.default_rng(0).integers(0, 3, 400)]
    for labels in (y, y3):
        [outcome] = fit_jobs([ProbeJob("resid_post", 2, "mean", X[2], labels, g)], SETTINGS)
        blob, config = encode("m", "c", [outcome])
        from safetensors.numpy import load

        tensors, cfg = load(blob), json.loads(config)
        key = "blocks.2.hook_resid_post/mean"
        predicted, probs = predict(tensors, key, cfg["classes"], X[2])
        np.testing.assert_allclose(probs, outcome.final.predict_proba(X[2]), atol=1e-5)
        assert predicted == outcome.final.predict(X[2]).tolist()
        direction = tensors[f"{key}/direction"]
        np.testing.assert_allclose(np.linalg.norm(direction, axis=1), 1, atol=1e-6)
        assert cfg["probes"][0]["hook_name"] == "blocks.2.hook_resid_post" and cfg["classes"] == sorted(set(labels))


def test_select_examples_balances_classes_and_names_bad_data():
    labels = [{"concept": "c", "label": "x" if i % 4 else "y", "group": str(i // 3)} for i in range(200)] + \
             [{"concept": "other", "label": "z", "group": "g"}]
    rows, y, _g = select_examples(labels, "label", "group", {"concept": "c"}, 80, seed=0)
    assert (y == "x").sum() == (y == "y").sum() == 40 and all(labels[r]["concept"] == "c" for r in rows)
    with pytest.raises(ValueError, match=r"^label 'label' has one class only \('z'\)"):
        select_examples(labels, "label", "group", {"concept": "other"}, 80, seed=0)
    with pytest.raises(ValueError, match=r"^label 'mood' is missing from 200 of 200 documents \(labels: concept"):
        select_examples(labels, "mood", None, {"concept": "c"}, 80, seed=0)


def _study(tmp_path: Path, tiny_model, probe: dict, rows: list[dict]) -> Path:
    """A study over a tiny GPT-2 and a JSONL dataset, extracted; returns params.yaml."""
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    params = {"study": "probe-test", "device": "cpu", "paths": {"store": "store", "models": "models", "reports": "reports"},
              "tracking": {"enabled": False}, "models": {"tiny": {"source": str(tiny_model("gpt2"))}},
              "datasets": {"mine": {"kind": "jsonl", "path": "data.jsonl"}},
              "extract": {"models": ["tiny"], "datasets": ["mine"], "hooks": ["resid_post"], "layers": [0, 2]},
              "probe": {"models": ["tiny"], "folds": 2, "inner_folds": 2, "n_jobs": 1, **probe}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    study = load_study(tmp_path / "params.yaml")
    from cortexlens.data.sources import open_dataset

    source = open_dataset("mine", study.params.datasets["mine"], tmp_path)
    model = load_local(tiny_model("gpt2"), name="tiny")
    run_extraction(model, tmp_path / "store", list(source), dataset="mine", hooks=["resid_post"], layers=[0, 2])
    return tmp_path / "params.yaml"


ROWS = [{"text": f"the {w} is {m}", "mood": m, "word": w} for w in ("cat", "dog", "sun", "car", "tree", "cup")
        for m in ("good", "bad")] * 3


def test_the_stage_probes_a_user_concept(tmp_path, tiny_model):
    from stages.probe import STAGE

    params = _study(tmp_path, tiny_model, {"concepts": [{"name": "mood", "dataset": "mine", "label": "mood",
                                                         "group": "word"}], "positions": [1]}, ROWS)
    metrics = STAGE.execute(load_study(params), {"model": "tiny"}, progress=False)
    assert metrics["probes"] == 2 * 3  # layers 0 and 2 x (mean, last, pos=1)
    from cortexlens.store.sql import connect

    rows = connect(tmp_path / "store").execute(
        "select layer, pooling, n_train + n_test from probes order by layer, pooling").fetchall()
    assert rows == [(0, "last", 36), (0, "mean", 36), (0, "pos=1", 36), (2, "last", 36), (2, "mean", 36),
                    (2, "pos=1", 36)]
    assert (tmp_path / "store" / "probe" / "tiny" / "weights" / "mood.safetensors").is_file()


@pytest.mark.parametrize(("probe", "rows", "line"), [
    ({"concepts": [{"name": "mood", "dataset": "mine", "label": "mood"}]},
     [{"text": f"text {i}", "mood": "good"} for i in range(12)],
     "probe.concepts[0]: mood (dataset 'mine'): label 'mood' has one class only ('good'); a probe needs two"),
    ({"concepts": [{"name": "mood", "dataset": "mine", "label": "feeling"}]}, ROWS,
     ("probe.concepts[0]: mood (dataset 'mine'): label 'feeling' is missing from 36 of 36 documents "
     "(labels: mood, word)")),
])
def test_bad_data_is_one_line_naming_the_concept_and_nothing_is_written(tmp_path, tiny_model, probe, rows, line):
    from stages.probe import STAGE

    params = _study(tmp_path, tiny_model, probe, rows)
    with pytest.raises(ConfigError) as err:
        STAGE.execute(load_study(params), {"model": "tiny"}, progress=False)
    assert err.value.lines == [line]
    assert not (tmp_path / "store" / "probe").exists()


@pytest.mark.parametrize(("probe", "line"), [
    ({"concepts": ["moood"]}, ("probe.concepts[0]: unknown concept 'moood' (built in: tense, number, negation, "
                              "topic, city_or_animal, capital, sentiment, entailment, negation_scope, larger_number; "
                              "or give {name, dataset, label, group})")),
    ({"concepts": ["sentiment"]}, ("probe.concepts[0]: 'sentiment' needs a dataset of kind concepts that generates "
                                  "it in extract.datasets")),
    ({"layers": [1]}, "probe.layers[0]: layer 1 of resid_post is not extracted for tiny (extracted: 0, 2)"),
    ({"hooks": ["mlp_post"]}, "probe.hooks[0]: 'mlp_post' is not extracted for tiny (add it to extract.hooks)"),
    ({"Cs": [0.1, 0]}, "probe.Cs: regularisation strengths must be > 0, got 0.0"),
])
def test_bad_params_are_one_line_naming_the_key(tmp_path, tiny_model, probe, line):
    params = {"study": "x", "device": "cpu", "models": {"tiny": {"source": str(tiny_model("gpt2"))}},
              "datasets": {"mine": {"kind": "jsonl", "path": "data.jsonl"}},
              "extract": {"models": ["tiny"], "datasets": ["mine"], "hooks": ["resid_post"], "layers": [0, 2]},
              "probe": {"models": ["tiny"], "concepts": [{"name": "mood", "dataset": "mine", "label": "mood"}], **probe}}
    (tmp_path / "data.jsonl").write_text('{"text": "a"}\n')
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError) as err:
        load_study(tmp_path / "params.yaml")
    assert err.value.lines == [line]


@pytest.mark.skipif(not os.environ.get("CORTEXLENS_STUDY"), reason="set CORTEXLENS_STUDY=<study dir> after make demo")
def test_demo_every_builtin_concept_has_a_depth_and_the_registered_probes_predict():
    import mlflow

    from cortexlens.probes.concepts import BUILTIN_CONCEPTS
    from cortexlens.store.reader import read_pooled
    from cortexlens.store.sql import connect

    study = Path(os.environ["CORTEXLENS_STUDY"])
    con = connect(study / "data" / "store")
    depth = con.execute("select model, concept, best_layer, depth_layer, best_accuracy from concept_depth "
                        "where pooling = 'mean' order by model, concept").fetchall()
    assert {(m, c) for m, c, *_ in depth} == {(m, c) for m in ("minilm", "toy") for c in BUILTIN_CONCEPTS}
    for _, _, best, depth_layer, accuracy in depth:
        assert 0 <= depth_layer <= best and 0 <= accuracy <= 1
    for row in depth:
        print(row)
    mlflow.set_tracking_uri(f"sqlite:///{study / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model("models:/cortexlens-default-probes-minilm@current")
    best = con.execute("select best_layer, pooling from concept_depth where model = 'minilm' and concept = 'tense' "
                       "and pooling = 'mean'").fetchone()
    pooled = read_pooled(study / "data" / "store", "minilm", "corpus", "resid_post", best[0], "mean")
    out = model.predict(pooled.X[:200], params={"concept": "tense"})
    truth = [labels["tense"] for labels in pooled.labels[:200]]
    assert np.mean(out["label"].to_numpy() == np.array(truth)) > 0.9
