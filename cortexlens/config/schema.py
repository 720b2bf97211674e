"""The schema of params.yaml. Every key is declared here with its type, default and meaning.

Structural checks (types, ranges, unknown keys) live in these models; checks that need to know a
model's architecture (hooks, layer ranges) live in `cortexlens.config.semantic`. Both run before any
stage writes anything.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cortexlens.data.concepts import CONCEPTS, max_n_per_concept  # pure Python: word lists, no torch
from cortexlens.toy.facts import RELATIONS, max_subjects  # pure Python too

DType = Literal["float32", "float16", "bfloat16"]
StoreDType = Literal["float32", "float16"]
PositiveInt = Annotated[int, Field(ge=1)]
# numpy's and scikit-learn's generators refuse negative seeds and seeds of 2**32 or more; checked here, once.
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"  # model and dataset names become directory names
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# The base of every params section, core or declared by an analysis plugin: unknown keys are errors.
Section = Strict


class Paths(Strict):
    store: str = "data/store"
    """Root of the Parquet store that DuckDB's views read."""
    models: str = "data/models"
    """Where models the pipeline trains are written (train_toy writes `<models>/toy`)."""
    reports: str = "reports"
    """Report, metrics and plot data."""


class ModelSpec(Strict):
    source: str
    """`minilm` or `toy` (built-in), a local directory saved with `save_pretrained`, or a hub id (`gpt2`)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) for hub ids."""
    dtype: DType = "float32"
    """Compute dtype the weights are loaded in."""
    attn_implementation: Literal["eager", "sdpa"] | None = None
    """None keeps the transformers default (sdpa)."""
    init: Literal["trained", "random"] = "trained"
    """`random`: the source's architecture (its config.json) and tokenizer with freshly initialised
    weights (transformers' own initialisation, seeded by `init_seed`): the untrained control of a model."""
    init_seed: int | None = None
    """Seed of the random initialisation; default: the study's `seed`."""

    @field_validator("source")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v


class BuiltinCorpus(Strict):
    kind: Literal["builtin"]
    n_docs: PositiveInt = 2000
    """Number of sentences the seeded grammar generates."""
    seed: Seed = 0


def _check_repeat_range(min_repeat: int, max_repeat: int) -> None:
    if min_repeat > max_repeat:
        raise ValueError(f"min_repeat ({min_repeat}) must be <= max_repeat ({max_repeat})")


class RepeatsDataset(Strict):
    kind: Literal["repeats"]
    n_docs: PositiveInt = 500
    seed: Seed = 0
    min_repeat: PositiveInt = 4
    max_repeat: PositiveInt = 15
    """Length in words of the repeated segment, drawn uniformly from [min_repeat, max_repeat]."""
    length: PositiveInt = 31
    """Words per document (with the toy model's <|bos|>, 32 of its 48 positions)."""
    first_token_rate: float = Field(0.0, ge=0, lt=0.5)
    """After the first copy, the probability that a word is the document's first word instead: the toy's
    training mixture (`train_toy.first_token_rate`); 0 writes pure repeats."""

    @model_validator(mode="after")
    def _two_copies(self) -> RepeatsDataset:
        _check_repeat_range(self.min_repeat, self.max_repeat)
        if 2 * self.max_repeat > self.length:
            raise ValueError(f"length ({self.length}) must hold two copies of max_repeat ({self.max_repeat})")
        return self


def _known_concept(name: str) -> str:
    if name not in CONCEPTS:
        raise ValueError(f"unknown concept {name!r} (built in: {', '.join(CONCEPTS)})")
    return name


class ConceptsDataset(Strict):
    """Built-in binary concepts for layer-wise probing (`cortexlens.data.concepts`): short sentences
    labelled `concept`, `label` (the class), `group` (the lexical item folds are grouped by) and `tier`."""

    kind: Literal["concepts"]
    concepts: list[Annotated[str, AfterValidator(_known_concept)]] = Field(
        default_factory=lambda: list(CONCEPTS), min_length=1)
    """Concept names; default: every built-in concept."""
    n_per_concept: PositiveInt = 400
    """Sentences per concept, half of each class: even, and >= 40 so 5 grouped folds hold both classes."""
    seed: Seed = 0

    @field_validator("concepts")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        twice = [name for i, name in enumerate(v) if name in v[:i]]
        if twice:
            raise ValueError(f"concept {twice[0]!r} is listed twice")
        return v

    @field_validator("n_per_concept")
    @classmethod
    def _even(cls, v: int, info: ValidationInfo) -> int:
        if v < 40 or v % 2:
            raise ValueError(f"must be even and >= 40 (half per class), got {v}")
        for name in info.data.get("concepts", []):
            if v > max_n_per_concept(name):
                raise ValueError(f"{v} is more than concept {name!r} has distinct sentences for "
                                 f"(at most {max_n_per_concept(name)})")
        return v


class FileDataset(Strict):
    kind: Literal["text", "jsonl", "parquet"]
    path: str
    """A plain-text file (one document per non-empty line), JSONL or Parquet with a text column."""
    text_field: str = "text"
    n_docs: PositiveInt | None = None
    """Keep the first n documents (all when unset)."""


class HuggingFaceDataset(Strict):
    kind: Literal["huggingface"]
    name: str
    """Dataset id on the Hugging Face hub, e.g. `wikitext`."""
    config: str | None = None
    split: str = "train"
    text_field: str = "text"
    revision: str | None = None
    n_docs: PositiveInt | None = 5000


class PassagesDataset(Strict):
    """Sentence stimuli grouped in passages (`cortexlens.data.passages`), as brain-alignment studies present
    them: each passage is sentences of one topic from the built-in grammar, labelled `stimulus_id` and
    `group` (the passage) besides the grammar's own labels."""

    kind: Literal["passages"]
    n_passages: PositiveInt = 48
    """Passages, spread evenly over the grammar's eight topics."""
    sentences_per_passage: PositiveInt = 8
    seed: int = 0


DatasetSpec = Annotated[BuiltinCorpus | RepeatsDataset | ConceptsDataset | PassagesDataset | FileDataset
                        | HuggingFaceDataset, Field(discriminator="kind")]


class ToyArchitecture(Strict):
    """A small causal LM the pipeline trains: Llama blocks (RMSNorm, rotary positions, SwiGLU MLP) with
    biases on the query, key and value projections, AdamW at a constant learning rate."""

    n_layers: PositiveInt = 2
    n_heads: PositiveInt = 4
    d_model: PositiveInt = 64
    d_mlp: PositiveInt = 16
    """Width of the SwiGLU MLP (gate and up projections)."""
    n_ctx: PositiveInt = 48
    """Context length: training sequences are exactly this long (rotary positions up to it)."""
    steps: PositiveInt = 400
    batch_size: PositiveInt = 64
    lr: float = Field(3e-3, gt=0)
    """Constant after warm-up: a cosine decay stalled the toy before its phase change (measured)."""
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(0, ge=0)
    seed: Seed = 0

    @model_validator(mode="after")
    def _heads_fit(self) -> ToyArchitecture:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if (self.d_model // self.n_heads) % 2:
            raise ValueError(f"d_model / n_heads ({self.d_model // self.n_heads}) must be even "
                             f"(rotary positions rotate pairs of dimensions)")
        return self


class TrainToy(ToyArchitecture):
    """The toy induction model, trained on a random segment repeated to fill the context."""

    steps: PositiveInt = 800
    """The circuit forms by ~250 steps; the first-token head (`first_token_rate`) splits off by ~800."""
    min_repeat: PositiveInt = 4
    max_repeat: PositiveInt = 15
    """Length of the random segment that repeats, drawn uniformly from [min_repeat, max_repeat]."""
    first_token_rate: float = Field(0.15, ge=0, lt=0.5)
    """In training, the probability that a token after the first copy is replaced by the sequence's first
    word: a second job for layer 1's attention (a head that attends to position 1), so that its heads are
    not all interchangeable induction heads. 0 trains on pure repeats."""
    eval_sequences: PositiveInt = 512
    """Held-out sequences (a different seed stream) for the induction accuracy in the metrics."""
    score_sequences: PositiveInt = 200
    """Held-out sequences `<|bos|> A A` on which every head's previous-token and prefix-matching
    scores are measured from its attention pattern."""
    score_length: PositiveInt = 10
    """Length of A in those sequences."""
    corpus_seed: Seed = 0
    """The vocabulary is the word list of the built-in corpus grammar; it does not depend on n_docs."""

    @model_validator(mode="after")
    def _repeat_fits(self) -> TrainToy:
        _check_repeat_range(self.min_repeat, self.max_repeat)
        if 1 + 2 * self.max_repeat > self.n_ctx:
            raise ValueError(f"n_ctx ({self.n_ctx}) must hold BOS and two copies of max_repeat "
                             f"({self.max_repeat}): at least {1 + 2 * self.max_repeat}")
        if 1 + 2 * self.score_length > self.n_ctx:
            raise ValueError(f"n_ctx ({self.n_ctx}) must hold BOS and two copies of score_length "
                             f"({self.score_length}): at least {1 + 2 * self.score_length}")
        return self


def _known_relation(name: str) -> str:
    if name not in RELATIONS:
        raise ValueError(f"unknown relation {name!r} (built in: {', '.join(RELATIONS)})")
    return name


class TrainFacts(ToyArchitecture):
    """The fact-recall model: statements of a seeded fact table mixed with corpus sentences
    (`cortexlens/toy/facts.py`), so causal tracing has multi-token subjects to corrupt offline."""

    n_layers: PositiveInt = 4
    d_model: PositiveInt = 64
    d_mlp: PositiveInt = 256
    """The MLPs store the facts (Meng et al.): wider than the induction toy's."""
    n_ctx: PositiveInt = 32
    steps: PositiveInt = 800
    n_subjects: PositiveInt = 80
    """Subjects whose facts are trained, one fact per relation each."""
    n_unseen: int = Field(20, ge=0)
    """Subjects whose facts never appear in training: the recall control (base rate)."""
    subject_tokens: int = Field(2, ge=1, le=4)
    """Names per subject (`anna kenji`): a multi-token subject, as in causal tracing."""
    relations: list[Annotated[str, AfterValidator(_known_relation)]] = Field(
        default_factory=lambda: list(RELATIONS), min_length=1)
    fact_fraction: float = Field(0.5, gt=0, le=1)
    """Share of the documents in the training stream that are fact statements (the rest: corpus sentences)."""
    corpus_docs: PositiveInt = 2000
    """Sentences of the built-in corpus mixed in (seed `seed`)."""
    facts_seed: int = 0
    """Seed of the fact table."""

    @model_validator(mode="after")
    def _table_fits(self) -> TrainFacts:
        if len(set(self.relations)) != len(self.relations):
            raise ValueError("relations: a relation is listed twice")
        most = max_subjects(self.subject_tokens)
        if self.n_subjects + self.n_unseen > most:
            raise ValueError(f"n_subjects + n_unseen ({self.n_subjects + self.n_unseen}) is more than the "
                             f"{most} subjects of {self.subject_tokens} different names")
        if self.n_ctx < self.subject_tokens + 5:
            raise ValueError(f"n_ctx ({self.n_ctx}) must hold BOS and a statement ({self.subject_tokens + 4} tokens)")
        return self


class HookEntry(Strict):
    hook: str
    layers: Literal["all"] | list[int] | None = None
    """Overrides extract.layers for this hook."""


class Extract(Strict):
    models: list[Name] = Field(min_length=1)
    """Names from the `models` section."""
    datasets: list[Name] = Field(min_length=1)
    """Names from the `datasets` section."""
    model_datasets: dict[Name, list[Name]] = Field(default_factory=dict)
    """Per-model override of `datasets` (model: [datasets]), e.g. a random-init control extracted on the
    brain stimuli only; models not listed extract every dataset of `datasets`."""
    hooks: list[str | HookEntry] = Field(default_factory=lambda: ["resid_post"], min_length=1)
    """Aliases (`resid_post`, `attn_z`, `mlp_post`, ...), canonical names (`blocks.3.hook_resid_post`),
    raw module paths (`module:transformer.h.3.mlp`), or {hook, layers} mappings."""
    layers: Literal["all"] | list[int] = "all"
    """Layers for aliases: `all` or a list; negative numbers count from the last layer (-1 = last)."""
    batch_size: PositiveInt = 32
    max_length: PositiveInt = 128
    """Longer documents are truncated to this many tokens (the count is in the manifest)."""
    padding_side: Literal["right", "left"] = "right"
    store_dtype: StoreDType = "float32"
    sort_window: PositiveInt = 8
    """Documents are batched by length within windows of this many batches (less padding, so a faster
    forward pass) and stored back in corpus order; a window's activations are held until it is written.
    1 batches them in corpus order."""
    shard_rows: PositiveInt = 16384
    """A shard closes at the first window boundary past this many token rows."""
    row_group_rows: PositiveInt = 4096
    """Rows buffered per hook before a Parquet row group is written; bounds memory."""
    pooling: list[Literal["mean", "first", "last"]] = Field(default_factory=lambda: ["mean", "last"])
    compression: Literal["zstd", "snappy", "lz4", "none"] = "zstd"

    def datasets_of(self, model: str) -> list[str]:
        """The datasets extracted for `model`: its `model_datasets` entry, else `datasets`."""
        return list(self.model_datasets.get(model, self.datasets))


class Tracking(Strict):
    """MLflow: every stage run is a run in the experiment named after the study."""

    enabled: bool = True
    uri: str | None = None
    """Tracking URI. Default: the MLFLOW_TRACKING_URI environment variable if set, else
    sqlite:///<absolute directory of params.yaml>/mlflow.db (one database whichever directory a
    stage or worker runs in)."""
    registry_uri: str | None = None
    """Model registry URI; default: the tracking URI."""
    alias: str = "current"
    """Alias moved to each version the pipeline registers (models:/<name>@current). MLflow reserves
    `latest` (models:/<name>@latest always resolves to the newest version) and `v<N>`."""

    @field_validator("alias")
    @classmethod
    def _mlflow_alias(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", v):
            raise ValueError(f"{v!r} is not a valid alias (letters, digits, '_', '-')")
        if v.lower() == "latest" or re.fullmatch(r"[vV]\d+", v):
            raise ValueError(f"{v!r} is reserved by MLflow; use another alias, e.g. current")
        return v


class Report(Strict):
    """The report: SQL files run over the store, rendered to <paths.reports>/index.html."""

    queries: str = "reports/queries"
    """Directory of *.sql files (relative to params.yaml); each becomes a figure and/or table."""
    max_table_rows: PositiveInt = 20
    """Rows shown per table in the HTML (the full result is in the plot data)."""


class Flow(Strict):
    """How the Prefect flow runs the stages (dvc repro ignores this section)."""

    task_runner: Literal["threads", "dask"] = "threads"
    max_workers: PositiveInt = 2
    """Threads of the thread runner, or workers of a local Dask cluster when dask_address is unset."""
    dask_address: str | None = None
    """Scheduler address (tcp://host:8786) of an existing Dask cluster; unset = a LocalCluster."""
    retries: int = Field(2, ge=0)
    """Retries of a task after a transient (I/O) failure; configuration errors never retry."""
    retry_delay_seconds: float = Field(5.0, ge=0)


class Params(Strict):
    study: Name = "cortexlens"
    """Name of the study: the MLflow experiment and the report title."""
    seed: Seed = 0
    device: str = "auto"
    """auto (CUDA when present, else CPU), cpu, cuda, cuda:N or mps."""
    paths: Paths = Paths()
    models: dict[Name, ModelSpec] = Field(default_factory=dict)
    datasets: dict[Name, DatasetSpec] = Field(default_factory=dict)
    train_toy: TrainToy = TrainToy()
    train_facts: TrainFacts = TrainFacts()
    extract: Extract | None = None
    tracking: Tracking = Tracking()
    report: Report = Report()
    flow: Flow = Flow()

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v):
            raise ValueError(f"expected auto, cpu, cuda, cuda:N or mps, got {v!r}")
        return v

    @field_validator("models", mode="before")
    @classmethod
    def _shorthand(cls, models: object) -> object:
        # `minilm: minilm` is short for `minilm: {source: minilm}`.
        if isinstance(models, dict):
            return {k: {"source": v} if isinstance(v, str) else v for k, v in models.items()}
        return models


def project_path(root: Path, relative: str) -> Path:
    """Paths in params.yaml are relative to the directory holding it."""
    path = Path(relative).expanduser()
    return path if path.is_absolute() else root / path
