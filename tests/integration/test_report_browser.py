"""The report as a reader sees it: opened from disk in headless Chromium with the network cut off.

Uses the system Chromium (Debian: `apt-get install -y chromium`), never a browser Playwright
downloads. A missing Chromium fails the test rather than skipping it: CI must install it (.ci/run).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import NamedTuple

import pytest

from cortexlens.data.corpus import generate_corpus
from cortexlens.report import build_report
from cortexlens.report.spec import load_queries
from tests.helpers import load_local, run_extraction

REPO = Path(__file__).resolve().parents[2]
QUERIES = REPO / "reports" / "queries"
DEMO_REPORT = "CORTEXLENS_REPORT"
INSTALL = "install it with `apt-get install -y chromium` (Debian/Ubuntu) or set CHROMIUM=/path/to/chromium"


def chromium_path() -> str:
    candidates = [os.environ.get("CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                  "/usr/lib/chromium/chromium"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(f"Chromium not found: {INSTALL}", pytrace=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory, tiny_model):
    """A report over a tiny GPT-2's activations on 20 documents, with toy-model metrics planted."""
    root = tmp_path_factory.mktemp("report")
    model = load_local(tiny_model("gpt2"), name="tiny")
    run_extraction(model, root / "store", generate_corpus(20, 0),
                   hooks=["resid_pre", "resid_post", "mlp_post"], layers="all")
    _measure_sparsity(model, root / "store")
    _probe_tense(model, root / "store")
    _toy_heads(model, root / "store")
    _brain_alignment(tiny_model("gpt2"), root / "store")
    _patching(model, root / "store")
    _saes(model, root / "store", root / "sae")
    toy = root / "train_toy.json"
    toy.write_text(json.dumps({"first_copy_accuracy": 0.002, "second_copy_accuracy": 0.95,
                               "chance_accuracy": 0.0015}))
    return build_report(study="browser-test", params={"study": "browser-test"}, store=root / "store",
                        queries=QUERIES, out_dir=root / "out", toy_metrics=toy, fingerprint="test",
                        max_table_rows=10)


def _measure_sparsity(model, store: Path) -> None:
    """The sparsity stage's results for the tiny model, measured by the library, written as the stage does."""
    from cortexlens.extraction.live import encoded_batches
    from cortexlens.extraction.source import ActivationSource
    from cortexlens.models.hooks import HookPoint
    from cortexlens.sparsity.activity import rule_for
    from cortexlens.sparsity.measure import measure_interventions, measure_layer, rows_table
    from cortexlens.sparsity.plugin import SparsityParams
    from cortexlens.store.results import ResultWriter

    settings = SparsityParams(models=["tiny"], sample_tokens=256, eval_docs=8, sweep=[0.0, 0.2, 0.4], topk=[0.5])
    source = ActivationSource(store, model, "corpus", lambda: iter(()), max_length=128)
    rule = rule_for(model.mlp_activation, settings.threshold)
    rows, thresholds = [], {}
    for layer in range(model.dims.n_layers):
        measured = measure_layer(layer, source.batches(HookPoint("mlp_post", layer)), source.token_ids,
                                 model.mlp_output_weights(layer)[0].detach().float(), rule, settings)
        rows += measured.rows
        thresholds[layer] = measured.thresholds
    rows += measure_interventions(model, encoded_batches(model, source.documents()[:8], 128), thresholds, settings)
    writer = ResultWriter(store / "sparsity" / "tiny", stage="sparsity", item="tiny", fingerprint="browser-test")
    writer.write_unit("all", {"sparsity": rows_table("tiny", "corpus", rule.label, rows)})
    writer.finish()


def _probe_tense(model, store: Path) -> None:
    """The probe stage's results for the corpus's tense, fit by the library, written as the stage does."""
    import numpy as np

    from cortexlens.probes.concepts import Concept
    from cortexlens.probes.run import ProbeJob, ProbeSettings, fit_jobs, select_examples
    from cortexlens.probes.tables import depth_rows, probe_rows
    from cortexlens.store.documents import read_documents
    from cortexlens.store.reader import read_pooled
    from cortexlens.store.results import ResultWriter

    concept = Concept("tense", "corpus", "tense", "verb_lemma", {}, "corpus")
    docs = read_documents(store, "tiny", "corpus")
    rows, y, groups = select_examples([d.labels for d in docs], "tense", "verb_lemma", {}, 400, seed=0)
    jobs = []
    for layer in range(model.dims.n_layers):
        pooled = read_pooled(store, "tiny", "corpus", "resid_post", layer, "mean")
        X = pooled.X[np.searchsorted(pooled.doc_ids, [docs[r].doc_id for r in rows])]
        jobs.append(ProbeJob("resid_post", layer, "mean", X, y, groups))
    outcomes = fit_jobs(jobs, ProbeSettings((0.1, 1.0), 2, 2, True, 0))
    writer = ResultWriter(store / "probe" / "tiny", stage="probe", item="tiny", fingerprint="browser-test")
    n = model.dims.n_layers
    writer.write_unit("concept=tense", {"probes": probe_rows("tiny", concept, outcomes, n),
                                        "concept_depth": depth_rows("tiny", concept, outcomes, n, 0.9)})
    writer.finish()


def _toy_heads(model, store: Path) -> None:
    """train_toy's head scores, measured by the library on the tiny model, written as the stage does."""
    import torch

    from cortexlens.store.results import ResultWriter
    from cortexlens.toy.circuit import head_scores
    from cortexlens.toy.plugin import HEADS_TABLE

    scores = head_scores(model.model, 20, 5, 0, torch.device("cpu"))
    rows = [{"model": "toy", **row, "n_sequences": 20, "segment_length": 5} for row in scores.rows()]
    writer = ResultWriter(store / "train_toy", stage="train_toy", item=None, fingerprint="browser-test")
    writer.write_unit("heads", {HEADS_TABLE: {key: [r[key] for r in rows] for key in rows[0]}})
    writer.finish()


def _saes(model, store: Path, folders: Path) -> None:
    """train_sae's results: two SAEs on the tiny model's layer-1 attn_z (computed live), trained by the
    library, their runs and head attribution written as the stage does."""
    import numpy as np

    from cortexlens.data.corpus import generate_corpus
    from cortexlens.extraction.live import iter_model_activations
    from cortexlens.features.sae import load_sae, save_sae
    from cortexlens.models.hooks import HookPoint
    from cortexlens.sae.analysis import head_rows
    from cortexlens.sae.model import CoderConfig
    from cortexlens.sae.train import TrainConfig, evaluate, train
    from cortexlens.store.results import ResultWriter

    point = HookPoint("attn_z", 1)
    X = np.concatenate([b.acts[point] for b in iter_model_activations(model, generate_corpus(20, 0), [point], 64)])
    writer = ResultWriter(store / "train_sae", stage="train_sae", item=None, fingerprint="browser-test")
    for arch, k in (("topk", 4), ("relu", None)):
        cfg = CoderConfig(arch, X.shape[1], 2 * X.shape[1], k=k)
        coder, _ = train(cfg, TrainConfig(steps=20, checkpoint_every=0), lambda e, s: iter([(X, X)][s:]), 1)
        m = evaluate(coder, iter([(X, X)]))
        sae = load_sae(save_sae(coder, folders / arch, point.name, "tiny"), arch, "test")
        run = {"sae_id": arch, "model": "tiny", "hook": "attn_z", "layer": 1, "arch": arch, "d_in": sae.d_in,
               "d_sae": sae.d_sae, "l0": m.l0, "fvu": m.fvu, "dead_frac": m.dead_frac, "loss_recovered": None,
               "target_hook": None, "dataset": "corpus", "explained_variance": m.explained_variance,
               "dense_frac": m.dense_frac, "kl": None, "final_cosine": None, "final_relative_change": None}
        heads = head_rows(sae, model.dims.n_heads)
        writer.write_unit(f"sae={arch}", {"sae_runs": {key: [run[key]] for key in run},
                                          "sae_heads": {key: [r[key] for r in heads] for key in heads[0]}})
    writer.finish()


def _brain_alignment(model_dir: Path, store: Path) -> None:
    """The brain stage's results for the tiny model and its random-init copy (extracted here) against a
    simulated subject of the corpus sentences (grouped by topic), fit by the library, written as the stage does."""
    import numpy as np
    import torch

    from cortexlens.brain.ceiling import split_half_ceiling
    from cortexlens.brain.encoding import EncodingSettings, encode
    from cortexlens.brain.plan import FeatureSet
    from cortexlens.brain.simulate import DEFAULT_ROIS, simulated_subject, stimulus_properties
    from cortexlens.brain.subjects import PreparedSubject
    from cortexlens.brain.tables import Context, Scored, layer_rows, score_rows
    from cortexlens.models.hooks import HookPoint
    from cortexlens.models.loading import ResolvedSource, load_hooked_model
    from cortexlens.store.documents import read_documents
    from cortexlens.store.reader import read_pooled
    from cortexlens.store.results import ResultWriter

    random = load_hooked_model("tiny_random", ResolvedSource("local", str(model_dir)), torch.device("cpu"),
                               init="random", init_seed=1)
    run_extraction(random, store, generate_corpus(20, 0), hooks=["resid_post"], layers="all")
    docs = read_documents(store, "tiny", "corpus")
    ids, groups = [str(d.doc_id) for d in docs], np.array([d.labels["topic"] for d in docs], dtype=object)
    recording, _ = simulated_subject("sim01", ids, stimulus_properties([d.text for d in docs], [d.labels for d in docs], 0),
                                     groups, DEFAULT_ROIS, 4, 0.3, 0)
    subject = PreparedSubject(recording, "corpus", "simulated", np.arange(20), groups,
                              split_half_ceiling(recording.values), None)
    context = Context("tiny", "mean", random.dims.n_layers, 0.1, True)
    writer = ResultWriter(store / "brain" / "tiny", stage="brain", item="tiny", fingerprint="browser-test")
    for init, store_model in (("trained", "tiny"), ("random", "tiny_random")):
        for layer in range(random.dims.n_layers):
            fs = FeatureSet(init, "activations", store_model, HookPoint("resid_post", layer))
            X = read_pooled(store, store_model, "corpus", "resid_post", layer, "mean").X
            result = encode(X, recording.mean, groups, EncodingSettings(folds=3, n_permutations=9, weights=False))
            scored = [Scored(subject, result)]
            writer.write_unit(fs.unit, {"brain_scores": score_rows(fs, context, scored),
                                        "brain_layers": layer_rows(fs, context, scored)})
    writer.finish()


def _patching(model, store: Path) -> None:
    """The patch stage's results for the tiny model (activation patching, heads, causal tracing),
    computed by the library and written as the stage does."""
    from cortexlens.patching import activation as act
    from cortexlens.patching.plugin import PatchParams
    from cortexlens.patching.prompts import PromptPair
    from cortexlens.patching.rows import TABLE, table
    from cortexlens.patching.run import activation_rows, tracing_rows
    from cortexlens.patching.tasks import encode_task
    from cortexlens.store.results import ResultWriter

    pairs = [PromptPair("the cat sat on the", "the dog sat on the", "mat", "rug", "cat"),
             PromptPair("the sun is very", "the sea is very", "hot", "cold", "sun")]
    task = encode_task(model, "toy_task", pairs, "patch.tasks[0]")
    section = PatchParams(models=["tiny"], modes=["denoising"], tracing={"samples": 2}, batch_size=64)
    base = act.baseline(model, task)
    writer = ResultWriter(store / "patch" / "tiny", stage="patch", item="tiny", fingerprint="browser-test")
    writer.write_unit("toy_task-activation", {TABLE: table(activation_rows(model, task, base, section, {}))})
    writer.write_unit("toy_task-tracing", {TABLE: table(tracing_rows(model, task, base, section))})
    writer.finish()


class Rendered(NamedTuple):
    images: list[dict]      # per <img>: {"ok": loaded with a width, "alt": its alt text}
    titles: list[str]       # section titles as shown
    attempted: list[str]    # every non-file URL the page tried to fetch
    screenshot: Path


def render_offline(index: Path, shot: Path) -> Rendered:
    """Open `index` in headless Chromium with every non-file request aborted; screenshot the whole page."""
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -c constraints.txt -e '.[dev]'", pytrace=False)
    attempted: list[str] = []

    def only_files(route) -> None:
        url = route.request.url
        if url.startswith(("file://", "data:")):
            route.continue_()
        else:
            attempted.append(url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.route("**/*", only_files)
            page.on("request", lambda request: None if request.url.startswith(("file://", "data:"))
                    else attempted.append(request.url))
            page.goto(index.resolve().as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => ({ok: e.complete && e.naturalWidth > 0, alt: e.alt}))")
            titles = page.eval_on_selector_all("section > h2", "els => els.map(e => e.textContent)")
            page.screenshot(path=str(shot), full_page=True)
            seen = list(attempted)
            # Control: the guard does see a network request when one is made.
            page.evaluate("() => new Promise(r => { const i = new Image(); i.onerror = i.onload = r; "
                          "i.src = 'https://example.invalid/probe.png'; })")
            assert any("example.invalid" in url for url in attempted), "the network guard saw nothing"
        finally:
            browser.close()
    return Rendered(images, titles, seen, shot)


def test_report_renders_offline_in_chromium(report, tmp_path):
    specs = load_queries(QUERIES)
    figure_queries = [s for s in specs if s.chart.is_figure]
    drawn = {r.spec.name for r in report.results if r.spec.chart.is_figure and r.rows}
    # The store has data for every figure query, so every figure query must have produced an image.
    assert drawn == {s.name for s in figure_queries}

    shown = render_offline(report.index, tmp_path / "report.png")
    assert shown.attempted == [], f"the report tried to reach the network: {shown.attempted}"
    assert [i for i in shown.images if not i["ok"]] == []
    assert len(shown.images) == len(figure_queries) + 1  # + the toy model's accuracy figure
    assert {s.section for s in specs} | {"Provenance", "Params", "Toy model"} <= set(shown.titles)
    assert shown.screenshot.stat().st_size > 10_000


@pytest.mark.skipif(not os.environ.get(DEMO_REPORT), reason=f"set {DEMO_REPORT}=reports/index.html after make demo")
def test_demo_report_renders_offline_in_chromium(tmp_path):
    """The report `make demo` wrote (.ci/run sets CORTEXLENS_REPORT after the demo): every figure loads."""
    index = Path(os.environ[DEMO_REPORT])
    metrics = json.loads((index.parent / "metrics" / "report.json").read_text())
    shot = Path(os.environ.get("CORTEXLENS_SCREENSHOT", tmp_path / "report.png"))
    shown = render_offline(index, shot)
    assert shown.attempted == [], f"the report tried to reach the network: {shown.attempted}"
    assert len(shown.images) == metrics["figures"] > 0
    assert [i for i in shown.images if not i["ok"]] == []
    assert {"Provenance", "Params", "Toy model"} <= set(shown.titles)
    assert shot.stat().st_size > 10_000
    print(f"{len(shown.images)} figures loaded; screenshot {shot}")
