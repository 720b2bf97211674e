"""Register a trained causal LM directory (the toy model) as an MLflow pyfunc model and move an alias to it.

    mlflow.pyfunc.load_model("models:/<study>-toy@latest").predict(["the dog sleeps . the dog"])

The pyfunc is models-from-code (`causal_lm_pyfunc.py`): no pickled Python object, only safetensors weights,
the config as `cfg.json` and the tokenizer files, loaded with transformers and no hub access.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cortexlens.tracking.run import NullRun, TrackedRun, fluent_uris

if TYPE_CHECKING:
    from cortexlens.config import Study

CODE = Path(__file__).with_name("causal_lm_pyfunc.py")
WEIGHTS, CONFIG = "model.safetensors", "config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "added_tokens.json", "chat_template.jinja")
EXAMPLE = ["the dog sleeps . the dog"]


def toy_model_name(study_name: str, model: str = "toy") -> str:
    return f"{study_name}-{model}"


def register_toy(study: Study, model_dir: Path, run: NullRun, model: str = "toy",
                 example: list[str] | None = None) -> str | None:
    """Log `model_dir` in `run`, register it as `<study>-<model>` (a model the pipeline trains: `toy`,
    `facts`) and point `tracking.alias` at the new version. Returns `models:/<name>/<version>`, or None
    when tracking is disabled."""
    if not isinstance(run, TrackedRun):
        return None
    name = toy_model_name(study.params.study, model)
    return register_causal_lm(Path(model_dir), run, name, study.params.tracking.alias, example or EXAMPLE)


def register_causal_lm(model_dir: Path, run: TrackedRun, name: str, alias: str,
                       example: list[str] | None = None) -> str:
    with tempfile.TemporaryDirectory(prefix="cortexlens-model-") as tmp:
        artifacts = _artifacts(model_dir, Path(tmp))
        return register_pyfunc(run, name, alias, "toy", CODE, artifacts, example or EXAMPLE, _requirements())


def register_pyfunc(run: TrackedRun, name: str, alias: str, artifact_name: str, code: Path,
                    artifacts: dict[str, str], input_example: Any, requirements: list[str]) -> str:
    """Log a models-from-code pyfunc in `run`, register it as `name` and point `alias` at the new
    version; returns `models:/<name>/<version>`."""
    import mlflow

    # log_model reads the process-wide URIs and the thread's active run: set both for this block.
    with fluent_uris(run.target), mlflow.start_run(run_id=run.run_id):
        info = mlflow.pyfunc.log_model(
            name=artifact_name, python_model=str(code), artifacts=artifacts, input_example=input_example,
            pip_requirements=requirements, registered_model_name=name)
    version = str(info.registered_model_version)
    run.client.set_registered_model_alias(name, alias, version)
    run.set_tags({"cortexlens.registered_model": f"{name}/{version}"})
    return f"models:/{name}/{version}"


def _artifacts(model_dir: Path, tmp: Path) -> dict[str, str]:
    """The pyfunc's artifacts: weights and cfg.json as files, the tokenizer files in one directory."""
    for required in (WEIGHTS, CONFIG, "tokenizer_config.json"):
        if not (model_dir / required).is_file():
            raise FileNotFoundError(f"{model_dir / required}: missing; is {model_dir} a saved causal LM?")
    shutil.copyfile(model_dir / CONFIG, tmp / "cfg.json")
    tokenizer = tmp / "tokenizer"
    tokenizer.mkdir()
    for file in TOKENIZER_FILES:
        if (model_dir / file).is_file():
            shutil.copyfile(model_dir / file, tokenizer / file)
    return {"weights": str(model_dir / WEIGHTS), "cfg": str(tmp / "cfg.json"), "tokenizer": str(tokenizer)}


def _requirements() -> list[str]:
    """Pinned to what trained the model; skips MLflow's slow requirement inference."""
    import safetensors
    import torch
    import transformers

    torch_version = torch.__version__.split("+", 1)[0]  # drop the local label (+cpu): not on PyPI
    return [f"torch=={torch_version}", f"transformers=={transformers.__version__}",
            f"safetensors=={safetensors.__version__}", "pandas"]
