"""The brain stage end to end on a tiny model and its random-init control: a planted layer found through
the store, the same scores from a simulated subject, its Parquet long table and its NIfTI volumes,
SAE latents as features, the views, resume, and bad input named by key and file."""

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import transformers as T
import yaml

from cortexlens.brain.simulate import implied_r
from cortexlens.config.study import load_study
from cortexlens.errors import ConfigError
from cortexlens.models.loading import minilm_dir
from cortexlens.store.sql import connect

N_PASSAGES, PER_PASSAGE, NEUROIDS = 30, 8, 12
ROIS = {"semantic": {"drivers": {"semantic": 1.0}, "noise": 1.0, "n_neuroids": NEUROIDS},
        "orthographic": {"drivers": {"orthographic": 1.0}, "noise": 1.5, "n_neuroids": NEUROIDS}}
SIMULATED = {"kind": "simulated", "name": "sim01", "dataset": "stim", "repetitions": 4, "rois": ROIS}
PLANTED = {"kind": "planted", "name": "planted", "dataset": "stim", "model": "tiny", "layer": 1, "noise": 1.0,
           "n_neuroids": 20}


def distinct_layers_gpt2(directory: Path) -> Path:
    """A tiny GPT-2 whose layers differ (initializer_range 0.2: a planted layer is not also the next one)."""
    tokenizer = T.AutoTokenizer.from_pretrained(minilm_dir())
    config = T.GPT2Config(n_layer=3, n_head=4, n_embd=32, n_positions=128, vocab_size=len(tokenizer),
                          bos_token_id=101, eos_token_id=102, initializer_range=0.2)
    torch.manual_seed(0)
    T.GPT2LMHeadModel(config).eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def write_params(root: Path, model_dir: Path, subjects: list[dict], **brain) -> Path:
    params = {"study": "brain-test", "device": "cpu", "tracking": {"enabled": False},
              "paths": {"store": "store", "models": "models", "reports": "reports"},
              "models": {"tiny": {"source": str(model_dir)}, "tiny_random": {"source": str(model_dir), "init": "random",
                                                                     "init_seed": 1}},  # the tiny model is seed 0's
              "datasets": {"stim": {"kind": "passages", "n_passages": N_PASSAGES, "sentences_per_passage": PER_PASSAGE}},
              "extract": {"models": ["tiny", "tiny_random"], "datasets": ["stim"], "hooks": ["resid_post"],
                          "pooling": ["mean", "last"]},
              "brain": {"models": ["tiny"], "subjects": subjects, "n_permutations": 19, "n_jobs": 1, **brain}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root / "params.yaml"


def write_sae(folder: Path, d_in: int = 32, d_sae: int = 64) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    save_file({"W_enc": torch.randn(d_in, d_sae, generator=g), "b_enc": torch.zeros(d_sae),
               "W_dec": torch.randn(d_sae, d_in, generator=g), "b_dec": torch.zeros(d_in)},
              str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"architecture": "topk", "k": 8, "d_in": d_in, "d_sae": d_sae,
                                                 "dtype": "float32", "metadata": {"hook_name": "blocks.1.hook_resid_post",
                                                                                  "model_name": "tiny"}}))


def recorded_inputs(root: Path, study) -> None:
    """The simulated subject written as a Parquet long table and as NIfTI volumes with an atlas."""
    import nibabel as nib

    from cortexlens.brain.subjects import prepare_subjects

    [sim] = prepare_subjects(study, "tiny")
    rec = sim.recording
    table = rec.to_long_table()
    pq.write_table(table.set_column(1, "subject", [np.full(table.num_rows, "sim01_parquet")]), root / "rec.parquet")
    n_stim, reps, n = rec.values.shape  # voxels: a (2, 3, 4) volume, C order = neuroid order
    volumes = rec.values.reshape(n_stim * reps, n)
    affine = np.eye(4)
    nib.save(nib.Nifti1Image(volumes.T.reshape(2, 3, 4, -1).astype(np.float32), affine), root / "bold.nii.gz")
    labels = np.array([1 if roi == "semantic" else 2 for roi in rec.rois]).reshape(2, 3, 4)
    nib.save(nib.Nifti1Image(labels.astype(np.int16), affine), root / "atlas.nii.gz")
    (root / "atlas.tsv").write_text("index\tname\n1\tsemantic\n2\torthographic\n")
    events = ["volume\tstimulus_id\trepetition"] + [f"{s * reps + k}\t{rec.stimulus_ids[s]}\t{k}"
                                                  for s in range(n_stim) for k in range(reps)]
    (root / "events.tsv").write_text("\n".join(events) + "\n")


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """Extract the tiny model and its control, then score every kind of subject and an SAE (once)."""
    from stages.brain import STAGE as BRAIN
    from stages.extract import STAGE as EXTRACT

    root = tmp_path_factory.mktemp("brain")
    model_dir = distinct_layers_gpt2(root / "tiny")
    params = write_params(root, model_dir, [SIMULATED])
    for model in ("tiny", "tiny_random"):
        EXTRACT.execute(load_study(params), {"model": model}, progress=False)
    recorded_inputs(root, load_study(params))
    write_sae(root / "models" / "sae" / "tiny-topk")
    subjects = [SIMULATED, PLANTED, {"kind": "parquet", "path": "rec.parquet", "dataset": "stim"},
                {"kind": "nifti", "name": "sim01_nifti", "dataset": "stim", "images": "bold.nii.gz",
                 "events": "events.tsv", "atlas": "atlas.nii.gz", "atlas_labels": "atlas.tsv"}]
    params = write_params(root, model_dir, subjects, saes=["tiny-topk"])
    metrics = BRAIN.execute(load_study(params), {"model": "tiny"}, progress=False)
    return root, metrics


def test_the_planted_layer_is_the_best_and_its_r_is_what_the_noise_implies(study_dir):
    con = connect(study_dir[0] / "store")
    rows = con.execute("select layer, r from brain_layers where subject = 'planted' and init = 'trained' "
                       "and features = 'activations' order by layer").fetchall()
    r = dict(rows)
    print("planted layer 1, held-out r by layer:", r, "implied:", implied_r(1.0, 4))
    assert max(r, key=r.get) == 1 and r[1] - max(r[0], r[2]) > 0.02, r
    assert r[1] == pytest.approx(implied_r(1.0, 4), abs=0.05), r
    assert study_dir[1]["best"]["planted"]["trained"]["planted"]["best_layer"] == 1


def test_a_parquet_table_and_nifti_volumes_of_the_subject_score_as_the_subject_does(study_dir):
    con = connect(study_dir[0] / "store")
    query = ("select init, layer, roi, r, ceiling from brain_scores where subject = ? and features = 'activations' "
             "order by init, layer, roi, r")
    simulated = con.execute(query, ["sim01"]).fetchall()
    assert len(simulated) == 2 * 3 * 2 * NEUROIDS
    for other in ("sim01_parquet", "sim01_nifti"):
        theirs = con.execute(query, [other]).fetchall()
        assert [row[:3] for row in theirs] == [row[:3] for row in simulated]
        np.testing.assert_allclose([row[3:] for row in theirs], [row[3:] for row in simulated], atol=1e-6)


def test_brain_scores_hold_trained_and_random_rows_of_the_model_with_ceilings(study_dir):
    con = connect(study_dir[0] / "store")
    inits = con.execute("select init, features_model, count(distinct layer) from brain_scores "
                        "where subject = 'sim01' and features = 'activations' group by all order by 1").fetchall()
    assert inits == [("random", "tiny_random", 3), ("trained", "tiny", 3)]
    assert con.execute("select distinct model from brain_scores").fetchall() == [("tiny",)]
    bad = con.execute("select count(*) from brain_scores where r_normalized > 1 or r_normalized < 0 "
                      "or (clipped = '' and abs(r_normalized - r / ceiling) > 1e-9)").fetchone()[0]
    assert bad == 0
    layers = con.execute("select roi, n_neuroids, p_value, n_permutations from brain_layers where subject = 'sim01' "
                         "and init = 'trained' and layer = 0 order by roi").fetchall()
    assert [(roi, n) for roi, n, _, _ in layers] == [("all", 2 * NEUROIDS), ("orthographic", NEUROIDS),
                                                     ("semantic", NEUROIDS)]
    assert all(0 < p <= 1 and k == 19 for _, _, p, k in layers)
    # the README's query: the layer with the highest normalised score per ROI
    best = con.execute("select roi, arg_max(layer, r_normalized) from brain_layers where init = 'trained' "
                       "and subject = 'sim01' and features = 'activations' group by roi").fetchall()
    assert len(best) == 3


def test_the_reports_brain_queries_return_the_views_numbers(study_dir):
    from cortexlens.report.runner import run_queries
    from cortexlens.report.spec import load_queries

    store = study_dir[0] / "store"
    specs = [q for q in load_queries(Path(__file__).resolve().parents[2] / "reports" / "queries") if q.name.startswith("7")]
    results = {r.spec.name: r.rows for r in run_queries(store, specs)}
    layers = connect(store).execute("select subject, roi, init, layer, r_normalized, null_normalized_q95, p_value "
                                    "from brain_layers where features = 'activations'").fetchall()
    curve = {"trained": "trained", "random": "random init"}
    expected = {(f"tiny / {s} / {roi}", curve[init], layer): rn for s, roi, init, layer, rn, _, _ in layers}
    expected |= {(f"tiny / {s} / {roi}", "permutation null, 95th pct (trained)", layer): q
                 for s, roi, init, layer, _, q, _ in layers if init == "trained"}
    assert {row[:3]: row[3] for row in results["70_brain_normalized_by_layer"]} == pytest.approx(expected)
    p = {}
    for s, roi, init, layer, _, _, pv in sorted(layers, key=lambda row: row[3]):
        p.setdefault((s, roi, init), []).append(f"{layer}: {round(pv, 4)}")
    listed = {(row[1], row[2], row[3]): row[7] for row in results["72_brain_p_values"] if row[4] == "activations"}
    assert listed == {k: ", ".join(v) for k, v in p.items()}
    best = {}
    for s, roi, init, layer, rn, _, _ in layers:
        if s == "sim01" and (rn, -layer) > best.get((roi, init), (-1, 0)):
            best[(roi, init)] = (rn, -layer)
    table = {(row[2], row[3]): row for row in results["73_brain_best_layers"]
             if row[1] == "sim01" and row[4] == "activations"}
    for (roi, init), (rn, minus_layer) in best.items():
        assert table[(roi, init)][5] == -minus_layer and table[(roi, init)][6] == round(rn, 3)
    gap = table[("semantic", "trained")][-1]
    assert gap == pytest.approx(best[("semantic", "trained")][0] - best[("semantic", "random")][0], abs=2e-3)


def test_sae_latents_are_a_feature_space_and_weights_are_saved(study_dir):
    root, _ = study_dir
    con = connect(root / "store")
    rows = con.execute("select distinct layer, hook, init from brain_layers where features = 'sae:tiny-topk'").fetchall()
    assert rows == [(1, "resid_post", "trained")]
    weights = sorted(p.name for p in (root / "store" / "brain" / "tiny" / "weights").iterdir())
    assert "init=trained-features=sae=tiny-topk-hook=resid_post-layer=1.safetensors" in weights
    from cortexlens.brain.weights import load_encoding_weights
    from cortexlens.store.reader import read_pooled

    weights = load_encoding_weights(root / "store" / "brain" / "tiny" / "weights" /
                                    "init=trained-features=activations-hook=resid_post-layer=1.safetensors")
    planted = weights["planted"]
    assert planted.coef.shape == (32, 20) and weights["sim01"].intercept.shape == (2 * NEUROIDS,)
    assert planted.meta["hook_name"] == "blocks.1.hook_resid_post" and planted.rois == ["planted"] * 20
    # reused on the stored features, the weights predict the planted responses (in-sample: above the held-out r)
    from cortexlens.brain.simulate import planted_subject

    X = read_pooled(root / "store", "tiny", "stim", "resid_post", 1).X
    truth = planted_subject("planted", [str(i) for i in range(len(X))], X, 20, 1.0, 4, seed=0).mean
    predicted = planted.predict(X)
    r = [np.corrcoef(predicted[:, j], truth[:, j])[0, 1] for j in range(20)]
    assert np.median(r) > implied_r(1.0, 4) - 0.02


def test_an_interrupted_run_resumes_without_refitting_finished_feature_sets(study_dir, tmp_path, monkeypatch):
    import shutil

    import stages.brain as stage

    root, _ = study_dir
    for name in ("store", "tiny"):
        shutil.copytree(root / name, tmp_path / name)
    shutil.rmtree(tmp_path / "store" / "brain")
    params = write_params(tmp_path, tmp_path / "tiny", [SIMULATED])
    real = stage.run_jobs

    def two_then_fail(*args, **kwargs):
        for i, item in enumerate(real(*args, **kwargs)):
            if i == 2:
                raise RuntimeError("killed")
            yield item

    monkeypatch.setattr(stage, "run_jobs", two_then_fail)
    with pytest.raises(RuntimeError, match="killed"):
        stage.STAGE.execute(load_study(params), {"model": "tiny"}, progress=False)
    assert connect(tmp_path / "store").execute("select count(*) from brain_scores").fetchone()[0] == 0
    done = sorted((tmp_path / "store" / "brain" / "tiny" / "brain_scores").glob("*.parquet"))
    stamps = {p: p.stat().st_mtime_ns for p in done}
    assert len(done) == 2
    monkeypatch.setattr(stage, "run_jobs", real)
    stage.STAGE.execute(load_study(params), {"model": "tiny"}, progress=False)
    assert {p: p.stat().st_mtime_ns for p in done} == stamps
    resumed = connect(tmp_path / "store").execute(
        "select init, layer, neuroid, r from brain_scores order by all").fetchall()
    original = connect(root / "store").execute(
        "select init, layer, neuroid, r from brain_scores where subject = 'sim01' and features = 'activations' "
        "order by all").fetchall()
    assert resumed == original


@pytest.fixture()
def bad_study(tmp_path, tiny_model):
    """A study whose params pass until the brain section: the tiny model and its control, stimuli."""
    def make(subjects: list[dict], **brain) -> Path:
        return write_params(tmp_path, tiny_model("gpt2"), subjects, **brain)
    return make


def _parquet(path: Path, ids: list[str], reps: int = 2) -> None:
    import pyarrow as pa

    rows = [(s, "S1", "n0", k, 1.0) for s in ids for k in range(reps)]
    pq.write_table(pa.table(dict(zip(["stimulus_id", "subject", "neuroid", "repetition", "value"], zip(*rows)))), path)


def test_a_recording_with_stimulus_ids_missing_from_the_stimuli_is_one_line_exit_2_nothing_written(
        bad_study, tmp_path, capsys):
    from stages.brain import STAGE

    _parquet(tmp_path / "rec.parquet", ["0", "1", "9999", "abc"])
    params = bad_study([{"kind": "parquet", "path": "rec.parquet", "dataset": "stim"}])
    line = ("brain.subjects[0].path: rec.parquet: subject S1: stimulus id(s) 9999, abc are not in the stimuli of "
            "dataset 'stim' (2 of 4 missing)")
    with pytest.raises(ConfigError) as err:
        load_study(params)
    assert err.value.lines == [line]
    capsys.readouterr()  # what building the tiny model printed
    with pytest.raises(SystemExit) as exit_:
        STAGE.main(["--params", str(params), "--model", "tiny"])
    assert exit_.value.code == 2 and capsys.readouterr().err.strip() == line
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(("subject", "line"), [
    ({"kind": "parquet", "path": "rec.parquet", "dataset": "stim"},
     ("brain.subjects[0].path: rec.parquet: subject S1 has a single repetition per stimulus; a noise ceiling "
     "(brain.ceiling: split_half) needs at least 2 (or set brain.ceiling: none)")),
    ({**SIMULATED, "repetitions": 1},
     ("brain.subjects[0].repetitions: a noise ceiling (brain.ceiling: split_half) needs at least 2 repetitions, "
     "got 1 (or set brain.ceiling: none)")),
])
def test_a_single_repetition_where_a_ceiling_is_asked_for_is_one_line(bad_study, tmp_path, subject, line):
    _parquet(tmp_path / "rec.parquet", ["0", "1"], reps=1)
    with pytest.raises(ConfigError) as err:
        load_study(bad_study([subject]))
    assert err.value.lines == [line]
    load_study(bad_study([subject], ceiling="none"))  # no ceiling asked: fine


def test_a_nifti_whose_mask_shape_differs_is_one_line(bad_study, tmp_path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3, 6), np.float32), np.eye(4)), tmp_path / "bold.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), np.eye(4)), tmp_path / "mask.nii.gz")
    (tmp_path / "events.tsv").write_text("stimulus_id\n" + "\n".join(["0", "1", "2"] * 2) + "\n")
    nifti = {"kind": "nifti", "name": "S1", "dataset": "stim", "images": "bold.nii.gz", "mask": "mask.nii.gz",
             "events": "events.tsv"}
    with pytest.raises(ConfigError) as err:
        load_study(bad_study([nifti]))
    assert err.value.lines == [("brain.subjects[0].mask: mask.nii.gz has shape (4, 4, 4), but the volumes of "
                               "bold.nii.gz have shape (4, 4, 3)")]
    nib.save(nib.Nifti1Image(np.ones((4, 4, 3), np.uint8), np.eye(4)), tmp_path / "mask.nii.gz")
    load_study(bad_study([nifti]))  # the matching mask passes (events repeat every stimulus twice)


def test_a_parquet_stimuli_table_with_integer_ids_matches_a_recording_with_integer_ids(tmp_path, tiny_model):
    import pyarrow as pa
    import pyarrow.compute

    pq.write_table(pa.table({"stimulus_id": [10, 11, 12, 13], "text": ["a cat", "a dog", "the sun", "a tree"],
                             "group": ["p1", "p1", "p2", "p2"]}), tmp_path / "stimuli.parquet")
    pq.write_table(pa.table({"stimulus_id": [10, 11, 12, 14] * 2, "subject": ["S1"] * 8, "neuroid": ["v1"] * 8,
                             "repetition": [0] * 4 + [1] * 4, "value": [1.0] * 8}), tmp_path / "rec.parquet")
    params = write_params(tmp_path, tiny_model("gpt2"), [{"kind": "parquet", "path": "rec.parquet", "dataset": "stim"}])
    data = yaml.safe_load(params.read_text())
    data["datasets"]["stim"] = {"kind": "parquet", "path": "stimuli.parquet"}
    params.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_study(params)
    assert err.value.lines == [("brain.subjects[0].path: rec.parquet: subject S1: stimulus id(s) 14 are not in the "
                               "stimuli of dataset 'stim' (1 of 4 missing)")]
    from cortexlens.brain.checks import stimuli_of

    table = pq.read_table(tmp_path / "rec.parquet")
    pq.write_table(table.filter(pa.compute.not_equal(table["stimulus_id"], 14)), tmp_path / "rec.parquet")
    study = load_study(params, require=("brain",))
    assert stimuli_of(study, "stim") == (["10", "11", "12", "13"], ["p1", "p1", "p2", "p2"])


def test_stimuli_in_one_group_are_one_line(bad_study):
    params = bad_study([SIMULATED])
    data = yaml.safe_load(params.read_text())
    data["datasets"]["stim"]["n_passages"] = 1
    params.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_study(params)
    assert err.value.lines == [("brain.subjects[0].dataset: the stimuli of 'stim' form 1 group (label 'group'); "
                               "cross-validation over groups needs at least 2 (see brain.group_field)")]


def test_the_flow_waits_only_for_the_extractions_a_brain_item_reads(bad_study):
    from stages.brain import STAGE

    study = load_study(bad_study([SIMULATED]))
    [spec] = STAGE.specs(study).values()
    extract_deps = sorted(p.name for p in spec.deps if p.parent.name == "extract")
    assert extract_deps == ["model=tiny", "model=tiny_random"]
    assert study.store_dir / "extract" not in spec.deps


@pytest.mark.parametrize(("brain", "extract", "line"), [
    ({"models": ["tiny_random"]}, None, None),  # a random model may be scored on its own
    ({"layers": [7]}, None, "brain.layers[0]: layer 7 of resid_post is not extracted for tiny (extracted: 0, 1, 2)"),
    ({"hooks": ["mlp_post"]}, None, "brain.hooks[0]: 'mlp_post' is not extracted for tiny (add it to extract.hooks)"),
    ({"models": ["nope"]}, None, "brain.models[0]: 'nope' is not in extract.models (tiny, tiny_random)"),
    ({}, {"models": ["tiny"]}, ("brain.models: tiny has no random-init control: add `tiny_random: {source: "
                                "<dir>, init: random}` to models and to extract.models (or set brain.random_control: false)")),
    ({"controls": {"tiny": "tiny"}}, None, "brain.controls.tiny: 'tiny' is not a random-init model (give it init: random)"),
    ({"pooling": "first"}, None, "brain.pooling: 'first' is not stored (extract.pooling: mean, last)"),
    ({"subjects": [{**SIMULATED, "dataset": "other"}]}, None,
     "brain.subjects[0].dataset: unknown dataset 'other' (defined in datasets: stim)"),
    ({"alphas": [1, -1]}, None, "brain.alphas: ridge alphas must be > 0, got -1.0"),
    ({"saes": ["missing"]}, None, ("brain.saes[0]: no SAE at <models>/sae/missing (expected cfg.json and "
                                  "sae_weights.safetensors)")),
])
def test_bad_params_are_one_line_naming_the_key(bad_study, tmp_path, tiny_model, brain, extract, line):
    params = bad_study(brain.pop("subjects", [SIMULATED]), **brain)
    if extract is not None:
        data = yaml.safe_load(params.read_text())
        data["extract"].update(extract)
        params.write_text(yaml.safe_dump(data))
    if line is None:
        load_study(params)
        return
    with pytest.raises(ConfigError) as err:
        load_study(params)
    shown = [x.replace(str(tiny_model("gpt2")), "<dir>").replace(str(tmp_path / "models"), "<models>")
             for x in err.value.lines]
    assert shown == [line]


@pytest.mark.skipif(not os.environ.get("CORTEXLENS_STUDY"), reason="set CORTEXLENS_STUDY=<study dir> after make demo")
def test_demo_minilm_trained_and_random_have_scores_per_layer_and_roi_and_trained_aligns_better():
    con = connect(Path(os.environ["CORTEXLENS_STUDY"]) / "data" / "store")
    rows = con.execute("""
        select roi, init, count(distinct layer), max(r_normalized), arg_max(layer, r_normalized),
               min(p_value), max(p_value)
        from brain_layers where model = 'minilm' and features = 'activations' group by roi, init order by roi, init
    """).fetchall()
    for row in rows:
        print(row)
    table = {(roi, init): rest for roi, init, *rest in rows}
    assert {roi for roi, _ in table} == {"semantic", "syntactic", "orthographic", "all"}
    for roi in ("semantic", "syntactic", "orthographic", "all"):
        trained, random = table[(roi, "trained")], table[(roi, "random")]
        assert trained[0] == random[0] == 6 and 0 < trained[3] <= trained[4] <= 1
        assert trained[1] > random[1], (roi, trained, random)  # the measured result of the default study
