"""Brain alignment, the algorithms: ridge parity with scikit-learn and himalaya, encoding-model invariants,
a planted layer found with the r its noise implies, grouped folds against leakage, noise ceilings,
normalisation and p-values, and the simulated subject."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import GroupKFold

from cortexlens.brain.ceiling import half_splits, split_half_ceiling
from cortexlens.brain.encoding import EncodingSettings, encode, grouped_splits, within_group_permutations
from cortexlens.brain.ridge import AlphaSelector, RidgeGeometry
from cortexlens.brain.simulate import (
    DEFAULT_ROIS,
    implied_r,
    planted_subject,
    simulated_subject,
    stimulus_properties,
)
from cortexlens.brain.summary import normalize, summarize
from cortexlens.data.passages import generate_passages

ALPHAS = tuple(float(a) for a in np.logspace(-2, 4, 13))
FAST = EncodingSettings(n_permutations=0, weights=False)


def _regression(n=240, p=40, targets=30, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    Y = X @ rng.normal(size=(p, targets)) * 0.2 + rng.normal(size=(n, targets)) * np.linspace(0.2, 4, targets) + 3
    return X, Y, np.repeat(np.arange(n // 8), 8)


# More rows than features, and fewer; float32 (the stage's default) only where the leave-one-out error
# is not flat in alpha: with fewer rows than features small alphas interpolate, and float32 rounding
# then decides between nearly equal errors.
@pytest.mark.parametrize(("dtype", "tol", "shape"), [(torch.float64, 1e-10, (240, 40)), (torch.float64, 1e-10, (96, 150)),
                                                     (torch.float32, 1e-4, (240, 40))])
def test_predictions_equal_scikit_learn_ridgecv_per_target_with_the_same_folds_and_alphas(dtype, tol, shape):
    X, Y, groups = _regression(*shape)
    for train, test in GroupKFold(4).split(X, groups=groups):
        reference = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(X[train], Y[train])
        X_tr, Y_tr = torch.as_tensor(X[train], dtype=dtype), torch.as_tensor(Y[train], dtype=dtype)
        index = AlphaSelector(X_tr, ALPHAS, "loo").select(Y_tr)
        assert np.array_equal(np.asarray(ALPHAS)[index.numpy()], reference.alpha_)
        ours = RidgeGeometry(X_tr, ALPHAS).predict(torch.as_tensor(X[test], dtype=dtype), Y_tr, index)
        np.testing.assert_allclose(ours.double().numpy(), reference.predict(X[test]), atol=tol * 10, rtol=tol)
        coef, intercept = RidgeGeometry(X_tr, ALPHAS).weights(Y_tr, index)
        np.testing.assert_allclose(coef.double().numpy().T, reference.coef_, atol=tol * 10)
        np.testing.assert_allclose(intercept.double().numpy(), reference.intercept_, atol=tol * 100)


def test_grouped_kfold_selection_equals_himalaya_ridgecv_with_the_same_splits():
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV as HimalayaRidgeCV

    X, Y, groups = _regression()
    splits = list(GroupKFold(3).split(X, groups=groups))
    backend = set_backend("numpy")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = HimalayaRidgeCV(alphas=np.asarray(ALPHAS), cv=splits, fit_intercept=True).fit(X, Y)
        X_t, Y_t = torch.as_tensor(X), torch.as_tensor(Y)
        index = AlphaSelector(X_t, ALPHAS, "kfold", splits).select(Y_t)
        np.testing.assert_allclose(np.asarray(ALPHAS)[index.numpy()], backend.to_numpy(theirs.best_alphas_), rtol=1e-9)
        X_new = np.random.default_rng(1).normal(size=(20, X.shape[1]))
        ours = RidgeGeometry(X_t, ALPHAS).predict(torch.as_tensor(X_new), Y_t, index).numpy()
        np.testing.assert_allclose(ours, backend.to_numpy(theirs.predict(X_new)), atol=1e-9)
    finally:
        set_backend("numpy")  # himalaya's backend is process-wide


def test_an_identical_neuroid_scores_one_an_offset_changes_nothing_and_shuffled_responses_score_zero():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(320, 24))
    groups = np.repeat(np.arange(40), 8)
    Y = np.column_stack([X[:, 5], X @ rng.normal(size=24) + rng.normal(size=320)])
    result = encode(X, Y, groups, FAST)
    assert result.r[0] == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose(encode(X, Y + 7.5, groups, FAST).r, result.r, atol=1e-5)
    np.testing.assert_allclose(encode(X + 100.0, Y, groups, FAST).r, result.r, atol=1e-5)
    shuffled = encode(X, rng.permuted(rng.normal(size=(320, 60)), axis=0), groups, FAST)
    assert abs(np.median(shuffled.r)) < 0.03 and np.abs(shuffled.r).max() < 0.25


def test_a_planted_layer_is_the_best_and_its_r_is_what_the_noise_implies():
    """Three layers of independent features; responses are a random linear map of layer 1 plus noise."""
    rng = np.random.default_rng(3)
    n, groups = 480, np.repeat(np.arange(60), 8)
    layers = {layer: rng.normal(size=(n, 24)) for layer in range(3)}
    layers[2] = 0.6 * layers[1] + 0.8 * layers[2]  # a later layer that partly carries layer 1
    for noise in (0.5, 1.5):
        subject = planted_subject("s", [str(i) for i in range(n)], layers[1], 40, noise, 4, seed=1)
        r = {layer: float(np.mean(encode(X, subject.mean, groups, FAST).r)) for layer, X in layers.items()}
        assert max(r, key=r.get) == 1, r
        assert r[1] == pytest.approx(implied_r(noise, 4), abs=0.05), (noise, r)
        assert r[0] < 0.1


def test_grouped_folds_give_the_honest_lower_score_when_stimuli_of_a_group_share_a_response():
    """Each passage has its own feature vector and its own response component, unrelated to each other
    across passages: only memorising passages pays, which ungrouped folds allow and grouped ones do not."""
    rng = np.random.default_rng(4)
    n_groups, per_group = 40, 8
    groups = np.repeat(np.arange(n_groups), per_group)
    X = rng.normal(size=(n_groups, 30))[groups] + 0.3 * rng.normal(size=(n_groups * per_group, 30))
    Y = rng.normal(size=(n_groups, 20))[groups] + 0.5 * rng.normal(size=(n_groups * per_group, 20))
    grouped = encode(X, Y, groups, FAST).r.mean()
    leaky = encode(X, Y, np.arange(len(groups)), FAST).r.mean()  # each stimulus its own group: plain KFold
    assert leaky > 0.5 and grouped < 0.1 and grouped < leaky - 0.4, (leaky, grouped)


def test_outer_folds_never_split_a_group_and_permutations_stay_within_groups():
    groups = np.repeat(np.array(list("abcdefghij")), 5)
    for train, test in grouped_splits(groups, 5, seed=0):
        assert not set(groups[train]) & set(groups[test])
    perms = within_group_permutations(groups, 20, seed=0)
    assert all(np.array_equal(groups[p], groups) for p in perms)
    assert all(sorted(p) == list(range(50)) for p in perms) and not all(np.array_equal(p, perms[0]) for p in perms)


def test_the_split_half_ceiling_recovers_the_reliability_noise_implies():
    rng = np.random.default_rng(5)
    n, reps, sd = 2000, 4, np.array([0.5, 1.0, 2.0, 4.0])
    signal = rng.normal(size=(n, 1, 4))
    values = signal + rng.normal(size=(n, reps, 4)) * sd
    ceiling = split_half_ceiling(values, n_splits=10, seed=0)
    np.testing.assert_allclose(ceiling.ceiling, implied_r(sd, reps), atol=0.02)
    assert ceiling.n_splits == 3  # the distinct halvings of 4 repetitions
    np.testing.assert_allclose(ceiling.reliability, ceiling.ceiling ** 2, atol=1e-12)
    # missing presentations (NaN) are skipped, not zeros
    values[::3, 0, :] = np.nan
    np.testing.assert_allclose(split_half_ceiling(values).ceiling, implied_r(sd, reps), atol=0.04)
    with pytest.raises(ValueError, match="at least 2 repetitions"):
        half_splits(1, 10, 0)
    assert len(half_splits(3, 10, 0)) == 3 and len(half_splits(10, 7, 0)) == 7


def test_normalised_scores_are_clipped_and_flagged_and_rois_summarised_with_p_values():
    r = np.array([0.2, 0.9, -0.1, 0.5, 0.3])
    ceiling = np.array([0.4, 0.8, 0.5, 0.05, 0.6])
    norm = normalize(r, ceiling, min_ceiling=0.1)
    np.testing.assert_allclose(norm.unclipped, [0.5, 1.125, -0.2, np.nan, 0.5])
    np.testing.assert_allclose(norm.clipped, [0.5, 1.0, 0.0, np.nan, 0.5])
    assert norm.flag.tolist() == ["", "above", "below", "", ""]
    rois = np.array(["a", "a", "a", "b", "b"], dtype=object)
    null = np.random.default_rng(6).normal(0, 0.05, size=(99, 5))
    summaries = {s.roi: s for s in summarize(rois, r, null, ceiling, norm)}
    assert set(summaries) == {"a", "b", "all"}
    a = summaries["a"]
    assert (a.r, a.ceiling, a.r_normalized, a.n_clipped, a.n_reliable) == (0.2, 0.5, 0.5, 2, 3)
    assert a.p_value == pytest.approx(1 / 100)  # no null median reaches 0.2
    assert summaries["b"].n_reliable == 1 and summaries["b"].r_normalized == 0.5
    assert summaries["all"].n_neuroids == 5


def test_p_values_are_small_for_a_real_effect_and_not_for_none():
    rng = np.random.default_rng(7)
    groups = np.repeat(np.arange(30), 8)
    X = rng.normal(size=(240, 16))
    settings = EncodingSettings(n_permutations=39, weights=False)
    rois = np.array(["r"] * 10, dtype=object)
    for effect, expect_small in ((0.5, True), (0.0, False)):
        Y = effect * X @ rng.normal(size=(16, 10)) + rng.normal(size=(240, 10))
        result = encode(X, Y, groups, settings)
        ones = np.ones(10)
        [s] = summarize(rois, result.r, result.null_r, ones, normalize(result.r, ones, 0.1))
        assert (s.p_value == pytest.approx(1 / 40)) if expect_small else s.p_value > 0.05, (effect, s.p_value)


def test_the_null_reuses_each_neuroids_alpha_or_refits_it():
    X, Y, groups = _regression(n=160, p=12, targets=6)
    fixed = encode(X, Y, groups, EncodingSettings(n_permutations=5, null="fixed_alpha", weights=False))
    refit = encode(X, Y, groups, EncodingSettings(n_permutations=5, null="refit", weights=False))
    np.testing.assert_allclose(fixed.r, refit.r, atol=1e-6)  # the real responses are fit the same way (float32)
    assert fixed.null_r.shape == refit.null_r.shape == (5, 6) and not np.allclose(fixed.null_r, refit.null_r)


def test_weights_reproduce_the_final_fit_in_the_features_own_units():
    X, Y, groups = _regression(n=160, p=12, targets=6)
    X = X * 50 + 10  # unstandardised units: the saved weights undo the z-scoring
    result = encode(X, Y, groups, EncodingSettings(n_permutations=0))
    w = result.weights
    X_z = (X - X.mean(0)) / X.std(0)
    alphas = np.asarray(EncodingSettings().alphas)
    index = torch.as_tensor(np.searchsorted(alphas, result.alpha))
    expected = RidgeGeometry(torch.as_tensor(X_z), alphas).predict(torch.as_tensor(X_z), torch.as_tensor(Y), index)
    np.testing.assert_allclose(X @ w["coef"] + w["intercept"], expected.numpy(), rtol=1e-4, atol=1e-3)


def test_the_simulated_subject_depends_only_on_the_stimuli_and_its_rois_differ_in_reliability():
    docs = generate_passages(24, 8, seed=0)
    texts, labels = [d.text for d in docs], [d.labels for d in docs]
    groups = np.array([d.labels["group"] for d in docs], dtype=object)
    ids = [d.labels["stimulus_id"] for d in docs]
    props = stimulus_properties(texts, labels, seed=0)
    assert {k: v.shape[1] for k, v in props.items()} == {"semantic": 16, "syntactic": 12, "orthographic": 3}
    first, sd = simulated_subject("s", ids, props, groups, DEFAULT_ROIS, 4, 0.3, seed=0)
    again, _ = simulated_subject("s", ids, props, groups, DEFAULT_ROIS, 4, 0.3, seed=0)
    assert np.array_equal(first.values, again.values) and first.values.shape == (192, 4, 150)
    ceiling = split_half_ceiling(first.values)
    by_roi = {roi: np.median(ceiling.ceiling[first.rois == roi]) for roi in DEFAULT_ROIS}
    assert by_roi["semantic"] > by_roi["orthographic"] > by_roi["syntactic"]  # noise 1.0 < 1.5 < 2.0
    np.testing.assert_allclose(np.median(ceiling.ceiling), np.median(implied_r(sd, 4)), atol=0.05)
    # a word means the same wherever it occurs: the semantic vector of a repeated sentence is repeated
    twice = stimulus_properties([texts[0], texts[0]], [labels[0], labels[0]], seed=0)["semantic"]
    assert np.array_equal(twice[0], twice[1])


def test_the_passages_dataset_groups_sentences_of_one_topic():
    docs = generate_passages(16, 6, seed=1)
    assert len(docs) == 96 and [d.doc_id for d in docs] == list(range(96))
    for p in range(16):
        passage = docs[p * 6:(p + 1) * 6]
        assert {d.labels["group"] for d in passage} == {f"p{p:03d}"} and len({d.labels["topic"] for d in passage}) == 1
    assert len({d.text for d in docs}) == 96 and docs == generate_passages(16, 6, seed=1)
    assert docs[0].labels["stimulus_id"] == "0" and docs != generate_passages(16, 6, seed=2)


@pytest.mark.slow
@pytest.mark.parametrize("null", ["fixed_alpha", "refit"])
def test_the_permutation_null_is_calibrated_without_a_sentence_level_effect(null):
    """150 simulated studies where features and responses share only passage-level structure (the
    within-passage permutation's null): p <= 0.05 must come out in about 5% of them."""
    rng = np.random.default_rng(1)
    n, p, n_neuroids, n_groups = 96, 32, 20, 24
    groups = np.repeat(np.arange(n_groups), n // n_groups)
    rois = np.array(["r"] * n_neuroids, dtype=object)
    ones = np.ones(n_neuroids)
    p_values = []
    for study in range(150):
        X = rng.normal(size=(n, p)) + 0.7 * rng.normal(size=(n_groups, p))[groups]
        passage_means = np.stack([X[groups == g].mean(0) for g in range(n_groups)])
        Y = rng.normal(size=(n, n_neuroids)) + 0.8 * (passage_means @ rng.normal(size=(p, n_neuroids)) / np.sqrt(p))[groups]
        settings = EncodingSettings(folds=4, n_permutations=49, null=null, seed=study, weights=False, dtype="float64")
        result = encode(X, Y, groups, settings)
        [s] = summarize(rois, result.r, result.null_r, ones, normalize(result.r, ones, 0.1))
        p_values.append(s.p_value)
    p_values = np.array(p_values)
    print(null, "P(p <= 0.05) =", np.mean(p_values <= 0.05), "mean p =", p_values.mean())
    assert np.mean(p_values <= 0.05) <= 0.1 and 0.4 < p_values.mean() < 0.6


def test_stimuli_without_groups_are_permuted_across_all_stimuli():
    perms = within_group_permutations(np.arange(30), 5, seed=0)
    assert all(sorted(p) == list(range(30)) for p in perms) and not any(np.array_equal(p, np.arange(30)) for p in perms)
