"""Experiment tracking for training runs: TensorBoard, SwanLab, MLflow, written inside the run folder.

Nothing leaves the machine unless the user configured a server the tracker's own way (MLFLOW_TRACKING_URI;
SWANLAB_MODE=cloud with a SwanLab login): by default TensorBoard event files, SwanLab's offline log and an
MLflow file store all sit under `run/`. Each gets the run's recipe and data hashes, then the loss/eval curves.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.errors import AssistantError

TRACKERS = ("tensorboard", "swanlab", "mlflow")
# event field -> metric name: what the curves show
_STEP = {"loss": "train/loss", "lr": "train/lr", "tokens_per_s": "train/tokens_per_s"}
_EVAL = {"eval_loss": "eval/loss", "eval_token_acc": "eval/token_acc"}


def _missing(pkg: str) -> AssistantError:
    return AssistantError(f"--report-to {pkg} needs the {pkg} package: `.venv/bin/pip install {pkg}`")


def _scalars(event: dict[str, Any]) -> dict[str, float]:
    table = _STEP if event["event"] == "step" else _EVAL if event["event"] == "eval" else {}
    return {name: float(event[k]) for k, name in table.items() if isinstance(event.get(k), int | float)}


class _TensorBoard:
    def __init__(self, run: Path, name: str, config: dict[str, Any]) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise _missing("tensorboard") from exc
        self.dir = run / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.dir))
        self.writer.add_text("recipe", "```\n" + json.dumps(config["recipe"], indent=1) + "\n```", 0)
        self.writer.add_text("data", "\n\n".join(f"{d['path']}: sha256 {d['sha256']}"
                                                 for d in config["data"] + config["eval_data"]), 0)

    def log(self, scalars: dict[str, float], step: int) -> None:
        for k, v in scalars.items():
            self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        self.writer.close()


class _SwanLab:
    def __init__(self, run: Path, name: str, config: dict[str, Any]) -> None:
        try:
            import swanlab
        except ImportError as exc:
            raise _missing("swanlab") from exc
        self.dir = run / "swanlab"
        self.swanlab = swanlab
        swanlab.init(project=f"finetune-{name}", experiment_name=run.name, config=config, logdir=str(self.dir),
                     mode=os.environ.get("SWANLAB_MODE", "offline"))

    def log(self, scalars: dict[str, float], step: int) -> None:
        self.swanlab.log(scalars, step=step)

    def close(self) -> None:
        self.swanlab.finish()


class _MLflow:
    def __init__(self, run: Path, name: str, config: dict[str, Any]) -> None:
        try:
            import mlflow
        except ImportError as exc:
            raise _missing("mlflow") from exc
        self.mlflow = mlflow
        uri = os.environ.get("MLFLOW_TRACKING_URI") or (run / "mlruns").resolve().as_uri()
        self.dir = uri
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(f"finetune-{name}")
        mlflow.start_run(run_name=run.name)
        mlflow.log_params({f"recipe.{k}": v for k, v in config["recipe"].items()})
        mlflow.log_dict(config, "run_config.json")

    def log(self, scalars: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics({k.replace("/", "_"): v for k, v in scalars.items()}, step=step)

    def close(self) -> None:
        self.mlflow.end_run()


_KINDS = {"tensorboard": _TensorBoard, "swanlab": _SwanLab, "mlflow": _MLflow}


class Trackers:
    """The run's trackers as one: `log` takes the trainer's events."""

    def __init__(self, trackers: list[Any], names: list[str]) -> None:
        self.trackers = trackers
        self.dirs = {n: str(t.dir) for n, t in zip(names, trackers, strict=True)}

    def log(self, event: dict[str, Any]) -> None:
        scalars = _scalars(event)
        if scalars:
            for t in self.trackers:
                t.log(scalars, int(event["step"]))

    def close(self) -> None:
        for t in self.trackers:
            t.close()


_MODULES = {"tensorboard": "tensorboard", "swanlab": "swanlab", "mlflow": "mlflow"}


def check_trackers(kinds: Sequence[str]) -> None:
    """Refuse unknown or uninstalled trackers before anything is loaded."""
    import importlib.util

    unknown = [k for k in kinds if k not in _KINDS]
    if unknown:
        raise AssistantError(f"unknown tracker {', '.join(unknown)}; choose from {', '.join(TRACKERS)}")
    for k in kinds:
        if importlib.util.find_spec(_MODULES[k]) is None:
            raise _missing(k)


def open_trackers(kinds: Sequence[str], run: Path, name: str, config: dict[str, Any]) -> Trackers:
    check_trackers(kinds)
    names = list(dict.fromkeys(kinds))
    return Trackers([_KINDS[k](run, name, config) for k in names], names)
