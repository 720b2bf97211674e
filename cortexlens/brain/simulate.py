"""Simulated subjects: responses whose causes are known, to build and check brain alignment offline.

`simulated_subject` (the default study's subject) drives each region of interest by properties of the
stimuli that come from the stimulus generator, never from a model under test, so how well a model
aligns is an empirical result:

* semantic [16]: the mean over a sentence's words of latent word meanings. Each topic of the built-in
  grammar (`cortexlens.data.corpus.TOPICS`) has a random centroid; a word's meaning is the mean of the
  centroids of the topics whose word lists hold it plus a word-specific part (0.7x the centroids'
  scale; 0.3x alone for function words and words outside the grammar). Seeded by word, so a word
  means the same in every sentence.
* syntactic [12]: the grammar's own labels: tense (3), negation, question, wh-question, plural subject,
  first person, relative clause, conjunction, time and place phrases. Text-only datasets without these
  labels get the ones readable from the text (question mark, "not", commas, relative "that").
* orthographic [3]: characters, words, mean word length.

Per ROI, each neuroid's signal is a random linear combination (weights N(0, 1)) of the ROI's drivers,
each block z-scored over stimuli and weighted by its driver weight, scaled to unit variance; a
passage component shared by the sentences of a passage (weight `passage_effect`, the same for every
repetition) is mixed in as sqrt(1 - e^2) * signal + e * passage; each presentation adds Gaussian noise
of standard deviation `noise * exp(0.2 z)` (z ~ N(0, 1) per neuroid), so ROIs differ in reliability
and neuroids spread within one. A perfect model of the noiseless response would reach
r = 1 / sqrt(1 + sd^2 / R) with R repetitions (`implied_r`).

`planted_subject` (for tests): responses = a random linear map of given features (one layer of a
chosen model) plus noise of known size, so the best layer and the r to expect are known.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from cortexlens.brain.plugin import DEFAULT_ROIS as DEFAULT_ROI_PARAMS
from cortexlens.brain.recordings import Recording
from cortexlens.data.corpus import TOPICS

SEMANTIC_DIM = 16
PROPERTY_KINDS = ("semantic", "syntactic", "orthographic")


@dataclass(frozen=True)
class RoiSpec:
    drivers: Mapping[str, float]  # property kind -> weight
    noise: float  # sd of one presentation's noise, relative to the signal's sd
    n_neuroids: int


DEFAULT_ROIS: dict[str, RoiSpec] = {name: RoiSpec(**spec) for name, spec in DEFAULT_ROI_PARAMS.items()}


def implied_r(noise_sd: np.ndarray | float, repetitions: int) -> np.ndarray | float:
    """r between the noiseless signal and the mean of R noisy presentations (unit-variance signal)."""
    return 1.0 / np.sqrt(1.0 + np.asarray(noise_sd) ** 2 / repetitions)


@cache
def _word_topics() -> dict[str, frozenset[str]]:
    found: dict[str, set[str]] = {}
    for name, topic in TOPICS.items():
        tables = [topic.agents, topic.adjectives, topic.intransitive, topic.places, *topic.transitive,
                  *topic.transitive.values()]
        for table in tables:
            for word in re.split(r"[\s/|]+", table.lower()):
                if word and word not in ("the", "in", "on", "at", "near", "over", "under", "along", "across",
                                         "behind", "a"):
                    found.setdefault(word, set()).add(name)
    return {w: frozenset(t) for w, t in found.items()}


def _word_vector(word: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng([zlib.crc32(word.encode()), seed])
    return rng.normal(size=SEMANTIC_DIM)


def _semantic(texts: Sequence[str], seed: int) -> np.ndarray:
    centroids = {t: np.random.default_rng([i, seed, 7]).normal(size=SEMANTIC_DIM) for i, t in enumerate(TOPICS)}
    topics = _word_topics()
    out = np.zeros((len(texts), SEMANTIC_DIM))
    for i, text in enumerate(texts):
        words = re.findall(r"[a-z]+", text.lower())
        vectors = []
        for w in words:
            own = _word_vector(w, seed)
            if w in topics:
                vectors.append(np.mean([centroids[t] for t in sorted(topics[w])], axis=0) + 0.7 * own)
            else:
                vectors.append(0.3 * own)
        out[i] = np.mean(vectors, axis=0) if vectors else 0.0
    return out


def _syntactic(texts: Sequence[str], labels: Sequence[Mapping[str, str]]) -> np.ndarray:
    rows = []
    for text, lab in zip(texts, labels):
        words = re.findall(r"[a-z']+", text.lower())
        question = lab.get("type", "question" if text.strip().endswith("?") else "statement") == "question"
        rows.append([
            lab.get("tense") == "past", lab.get("tense") == "present", lab.get("tense") == "future",
            lab.get("negation", "yes" if "not" in words else "no") == "yes", question,
            lab.get("wh", "none") != "none", lab.get("number") == "plural", lab.get("person") == "first",
            lab.get("relative", "yes" if "that" in words else "no") == "yes",
            lab.get("conjunction", "and" if "," in text else "none") != "none",
            lab.get("time") == "yes", lab.get("place") == "yes"])
    return np.asarray(rows, dtype=np.float64)


def _orthographic(texts: Sequence[str]) -> np.ndarray:
    rows = []
    for text in texts:
        words = re.findall(r"[A-Za-z']+", text)
        rows.append([len(text), len(words), np.mean([len(w) for w in words]) if words else 0.0])
    return np.asarray(rows, dtype=np.float64)


def stimulus_properties(texts: Sequence[str], labels: Sequence[Mapping[str, str]], seed: int) -> dict[str, np.ndarray]:
    """kind -> [n, d] properties of each stimulus (see the module docstring)."""
    return {"semantic": _semantic(texts, seed), "syntactic": _syntactic(texts, labels),
            "orthographic": _orthographic(texts)}


def _zscore(block: np.ndarray) -> np.ndarray:
    sd = block.std(0)
    return (block - block.mean(0)) / np.where(sd > 0, sd, 1.0)


def _unit(signal: np.ndarray) -> np.ndarray:
    signal = signal - signal.mean(0)
    sd = signal.std(0)
    return signal / np.where(sd > 0, sd, 1.0)


def simulated_subject(subject: str, stimulus_ids: Sequence[str], properties: Mapping[str, np.ndarray],
                      groups: np.ndarray, rois: Mapping[str, RoiSpec], repetitions: int, passage_effect: float,
                      seed: int) -> tuple[Recording, np.ndarray]:
    """(the recording, each neuroid's noise sd [N]) of a subject whose ROIs read `properties`."""
    rng = np.random.default_rng([seed, 11])
    _, group_index = np.unique(groups, return_inverse=True)
    n = len(stimulus_ids)
    blocks, names, regions, sds = [], [], [], []
    for roi, spec in rois.items():
        Z = np.concatenate([weight * _zscore(properties[kind]) / np.sqrt(properties[kind].shape[1])
                            for kind, weight in spec.drivers.items()], axis=1)  # [n, d_roi]
        signal = _unit(Z @ rng.normal(size=(Z.shape[1], spec.n_neuroids)))  # [n, n_neuroids]
        passage = _unit(rng.normal(size=(group_index.max() + 1, spec.n_neuroids))[group_index])
        blocks.append(np.sqrt(1 - passage_effect ** 2) * signal + passage_effect * passage)
        sds.append(spec.noise * np.exp(0.2 * rng.normal(size=spec.n_neuroids)))
        names += [f"{roi}-{j:03d}" for j in range(spec.n_neuroids)]
        regions += [roi] * spec.n_neuroids
    signal, sd = np.concatenate(blocks, axis=1), np.concatenate(sds)
    noise = rng.normal(size=(n, repetitions, signal.shape[1])) * sd
    values = (signal[:, None, :] + noise).astype(np.float32)
    return Recording(subject, np.asarray(stimulus_ids, dtype=str), values, np.asarray(names, dtype=object),
                     np.asarray(regions, dtype=object)), sd


def planted_subject(subject: str, stimulus_ids: Sequence[str], features: np.ndarray, n_neuroids: int,
                    noise: float, repetitions: int, seed: int, roi: str = "planted") -> Recording:
    """Responses = standardised `features` [n, p] @ W (W ~ N(0, 1), each neuroid scaled to unit variance)
    plus N(0, noise^2) per presentation: a perfect model reaches implied_r(noise, repetitions)."""
    rng = np.random.default_rng([seed, 13])
    signal = _unit(_zscore(np.asarray(features, dtype=np.float64)) @ rng.normal(size=(features.shape[1], n_neuroids)))
    values = signal[:, None, :] + noise * rng.normal(size=(len(stimulus_ids), repetitions, n_neuroids))
    return Recording(subject, np.asarray(stimulus_ids, dtype=str), values.astype(np.float32),
                     np.asarray([f"{roi}-{j:03d}" for j in range(n_neuroids)], dtype=object),
                     np.full(n_neuroids, roi, dtype=object))
