"""The template every stage is written on: one `run(ctx)` per stage, everything else here.

    # stages/probe.py
    def run(ctx: StageContext) -> dict:
        pooled = read_pooled(ctx.study.store_dir, ...)
        writer = ctx.results()
        ...
        writer.finish()
        return {"probes": n}                         # the stage's metrics

    STAGE = Stage("probe", run, require=("probe",), summary=lambda m: f"probe: {m['probes']} probes")
    if __name__ == "__main__":
        STAGE.main()

The template gives every stage the same: arguments (`--params`, `--no-progress`, and one
`--<key>` per matrix key of its dvc.yaml entry), `load_study(require=...)`, the MLflow run with
exactly the params keys dvc.yaml lists for the stage (their values, nested), lineage inputs (the
fingerprint of every extraction or result under its deps), the metrics file dvc.yaml declares,
the one-line summary, and the error boundary (one line per problem, exit 2, nothing half-written).
Timings go to MLflow only (`timings` in the returned metrics, and the stage's own wall time): the
metrics file is in git and compared by `dvc exp show` / `dvc metrics diff`, so it holds results only.
`dvc repro` calls `main`; the Prefect flow calls `execute` with the same study and item.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cortexlens.errors import ConfigError, CortexLensError
from cortexlens.pipeline.dvcfile import StageSpec, load_stage_specs, nested, params_values, read_dvc_yaml
from cortexlens.pipeline.fingerprint import manifests_under, stage_fingerprint, with_produced
from cortexlens.store.atomic import write_json

if TYPE_CHECKING:
    from cortexlens.config.study import Study
    from cortexlens.models.for_study import LoadedModel
    from cortexlens.store.results import ResultWriter
    from cortexlens.tracking.run import NullRun

Metrics = Mapping[str, Any]
# A stage's metrics may carry `timings` (name -> seconds): logged to MLflow as `seconds.<name>`, kept out
# of the metrics file, which DVC compares across experiments and git keeps (so it must be deterministic).
TIMINGS = "timings"


@dataclass
class StageContext:
    """What a stage's `run` receives."""

    study: Study
    spec: StageSpec
    params: dict[str, Any]  # the values of the params keys dvc.yaml lists, nested (as logged to MLflow)
    fingerprint: str  # deps content + params values: what `dvc repro` would re-run on
    tracked: NullRun  # the MLflow run (a no-op when tracking is off)
    progress: bool = True
    inputs: dict[str, str] = field(default_factory=dict)  # manifests under the deps: name -> fingerprint
    dvc_yaml: Path = Path("dvc.yaml")

    @property
    def item(self) -> dict[str, Any]:
        """The matrix values of this instance, e.g. {"model": "minilm"}; empty for plain stages."""
        return dict(self.spec.item_values)

    @property
    def results_dir(self) -> Path:
        """The stage's one out inside the store (dvc.yaml declares it; it is not written twice)."""
        store = self.study.store_dir.resolve()
        inside = [out for out in self.spec.outs if store in out.resolve().parents]
        if len(inside) != 1:
            raise ConfigError(f"dvc.yaml: stages.{self.spec.name}: expected one out under paths.store "
                              f"({store}) for the stage's results, found {len(inside)}")
        return inside[0]

    def results(self, produced: Mapping[str, Path] | None = None) -> ResultWriter:
        """A result writer at `results_dir`, keyed on this run's fingerprint (so a killed run resumes
        and changed code, params or inputs start over), checking the columns its views contract.

        `produced` names what this run made before its results and computed them from (train_toy's
        model): their content joins the key, so results of another run's model are never reused (the
        same params train other weights on another kind of CPU)."""
        from cortexlens.plugins import views_of_stage
        from cortexlens.store.results import ResultWriter

        fingerprint, digests = with_produced(self.fingerprint, produced or {})
        return ResultWriter(self.results_dir, stage=self.spec.name, item=self.spec.item,
                            fingerprint=fingerprint, params=self.params, inputs={**self.inputs, **digests},
                            contracts=views_of_stage(self.spec.name))

    def metrics_of(self, stage: str) -> Path | None:
        """The metrics file dvc.yaml declares for another stage instance (`train_toy`), if any."""
        specs = load_stage_specs(_params_data(self.study), self.study.root, self.dvc_yaml,
                                 only=stage.split("@", 1)[0])
        spec = specs.get(stage)
        return spec.metrics[0] if spec is not None and spec.metrics else None

    def load_model(self, name: str) -> LoadedModel:
        """The study's model `name`, hooked, with its identity recorded in the run's lineage."""
        from cortexlens.models.for_study import load_for_study

        loaded = load_for_study(self.study, name)
        self.tracked.log_inputs({f"models.{name}": loaded.identity.revision})
        return loaded


Refine = Callable[[StageSpec, "Study"], StageSpec]


class Stage:
    """One DVC stage: its name (as in dvc.yaml), its `run`, and what the template needs to know."""

    def __init__(self, name: str, run: Callable[[StageContext], Metrics], *, require: tuple[str, ...] = (),
                 summary: Callable[[Metrics], str] | None = None, refine: Refine | None = None,
                 dvc_yaml: Path | None = None) -> None:
        self.name = name
        self.run = run
        self.require = require
        self.summary = summary or (lambda metrics: f"{name}: done")
        self.refine = refine
        # dvc.yaml beside the `stages` package the stage module lives in (the repository root).
        self.dvc_yaml = dvc_yaml or Path(sys.modules[run.__module__].__file__).resolve().parents[1] / "dvc.yaml"

    # ------------------------------------------------------------------ specs
    def specs(self, study: Study) -> dict[str, StageSpec]:
        """This stage's instances from dvc.yaml, refined for the study (full name -> spec)."""
        mine = load_stage_specs(_params_data(study), study.root, self.dvc_yaml, only=self.name)
        if not mine:
            raise ConfigError(f"{self.dvc_yaml}: no stage named {self.name!r}")
        return {n: self.refine(s, study) if self.refine else s for n, s in mine.items()}

    def spec_for(self, study: Study, item: str | Mapping[str, Any] | None) -> StageSpec:
        specs = self.specs(study)
        for spec in specs.values():
            if _matches(spec, item):
                return spec
        wanted = item if isinstance(item, str) or item is None else "-".join(map(str, item.values()))
        raise ConfigError(f"{self.name}: no instance {wanted!r} in dvc.yaml "
                          f"(instances: {', '.join(specs)})")

    def matrix_keys(self) -> list[str]:
        return list((read_dvc_yaml(self.dvc_yaml).get(self.name) or {}).get("matrix") or {})

    # ------------------------------------------------------------------ running
    def execute(self, study: Study, item: str | Mapping[str, Any] | None = None, *,
                progress: bool = True) -> dict[str, Any]:
        """Run the stage on a validated study: MLflow run, `run(ctx)`, metrics file. Returns metrics."""
        from cortexlens.tracking import stage_run

        missing = [s for s in self.require if getattr(study.params, s, None) is None]
        if missing:
            raise ConfigError(*(f"{s}: section missing in {study.file.name}" for s in missing))
        spec = self.spec_for(study, item)
        data = _params_data(study)
        params = nested(params_values(spec, data))
        inputs = manifests_under(spec.deps)
        with stage_run(study, self.name, spec.item, params=params, inputs=inputs) as tracked:
            ctx = StageContext(study, spec, params, stage_fingerprint(spec, data, study.root), tracked, progress, inputs,
                               self.dvc_yaml)
            started = time.perf_counter()
            metrics = dict(self.run(ctx))
            timings = {**metrics.pop(TIMINGS, {}), "stage": round(time.perf_counter() - started, 3)}
            if spec.metrics:
                write_json(spec.metrics[0], metrics)
            tracked.log_metrics({**metrics, "seconds": timings})
        return {**metrics, TIMINGS: timings}

    def main(self, argv: list[str] | None = None) -> None:
        """`python -m stages.<name> [--params F] [--<matrix key> V ...]`: what dvc.yaml's cmd runs."""
        from cortexlens.config import load_study

        try:
            args = self._parser().parse_args(argv)
            study = load_study(args.params, require=self.require)
            item = {key: getattr(args, key) for key in self.matrix_keys()} or None
            ready = _process_seconds()  # interpreter start, imports and validation
            metrics = self.execute(study, item, progress=not args.no_progress)
        except CortexLensError as err:
            for line in err.lines:
                print(line, file=sys.stderr)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            print("interrupted; re-run to resume", file=sys.stderr)
            sys.exit(130)
        print(f"{self.summary(metrics)}  ({_process_seconds():.1f} s, of which {ready:.1f} s start-up)")

    def _parser(self) -> argparse.ArgumentParser:
        doc = (sys.modules[self.run.__module__].__doc__ or self.name).strip().splitlines()[0]
        parser = argparse.ArgumentParser(prog=f"python -m stages.{self.name}", description=doc)
        parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
        for key in self.matrix_keys():
            parser.add_argument(f"--{key}", required=True, help=f"the matrix value of `{key}` (see dvc.yaml)")
        return parser


def _process_seconds() -> float:
    """Seconds since this process started (so start-up includes the interpreter and every import)."""
    import psutil

    return time.time() - psutil.Process().create_time()


def _params_data(study: Study) -> dict[str, Any]:
    return study.params.model_dump(mode="json")


def _matches(spec: StageSpec, item: str | Mapping[str, Any] | None) -> bool:
    if item is None:
        return spec.item is None
    if isinstance(item, str):
        return spec.item == item or spec.full_name == item
    return {k: str(v) for k, v in spec.item_values.items()} == {k: str(v) for k, v in item.items()}


def without_deps(spec: StageSpec, drop: Callable[[Path], bool]) -> StageSpec:
    """`spec` without the deps `drop` selects (for a `refine` hook)."""
    return replace(spec, deps=tuple(dep for dep in spec.deps if not drop(dep)))


def only_own_model_dirs(spec: StageSpec, study: Study) -> StageSpec:
    """A `refine` for stages that fan out over `model`: a DVC matrix cannot give one item a dependency
    the others lack, so dvc.yaml makes every `<stage>@<m>` depend on the models the pipeline trains
    (`${paths.models}/toy`). For the flow's graph and cache keys, keep only this item's own model
    directory: `extract@minilm` need not wait for `train_toy` (`dvc repro`, which runs stages one at a
    time, keeps the coarser dependency)."""
    models_dir = study.models_dir.resolve()
    own = Path(study.model_source(spec.item_values["model"]).location).resolve()

    def foreign_model(dep: Path) -> bool:
        dep = dep.resolve()
        return models_dir in dep.parents and not (dep == own or dep in own.parents or own in dep.parents)

    return without_deps(spec, foreign_model)
