"""Experiment tracking the field's tools read: TensorBoard event files and a local MLflow store.

Why: a training curve in a JSON file is readable by nobody's dashboard. With tracking on,
every learned model's epochs (train loss, validation NDCG@10, wall and CPU seconds) and
every model's final metrics go where data scientists already look:

* ``tensorboard:FOLDER`` — one run folder per model under ``FOLDER`` (``tensorboard
  --logdir FOLDER``), written with ``torch.utils.tensorboard.SummaryWriter`` (needs the
  ``tensorboard`` package: ``pip install 'leanrec[tracking]'``);
* ``mlflow:FOLDER`` — a local MLflow store, ``FOLDER/mlflow.db`` (SQLite: MLflow 3 refuses
  new file stores; ``mlflow ui --backend-store-uri sqlite:///FOLDER/mlflow.db``), one run
  per model with its parameters, per-epoch metrics and final metrics (needs ``mlflow`` or
  ``mlflow-skinny``).

Off by default (:func:`make_tracker` of ``None`` is a :class:`NullTracker`); a requested
backend that is not installed fails at once with the install command, never half-way
through a run. Nothing here is imported by a model: the caller hands a model's
``on_epoch`` the callback :meth:`Tracker.epoch_logger` returns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = ["Tracker", "NullTracker", "TensorBoardTracker", "MLflowTracker", "make_tracker", "TRACKERS"]

TRACKERS = ("tensorboard", "mlflow")
#: per-epoch record fields that are not metrics
_STEP_KEYS = ("epoch",)


def _safe(name: str) -> str:
    """A run name usable as a folder and an MLflow key (letters, digits, ``-_.``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "run"


def _numbers(values: Mapping) -> dict[str, float]:
    """The finite numeric entries of a record (bools and NaN dropped: no dashboard plots them)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[str(key)] = float(value)
    return out


class Tracker:
    """Where training curves and final metrics go. Subclasses implement the four hooks."""

    kind = "none"

    def start_run(self, name: str, params: Mapping | None = None) -> None:
        """Open the run ``name`` (one per model and protocol) with its parameters."""

    def log_epoch(self, name: str, record: Mapping) -> None:
        """One epoch's record (``epoch`` is the step; every other finite number a scalar)."""

    def log_final(self, name: str, metrics: Mapping, prefix: str = "") -> None:
        """A model's final metrics (e.g. ``test/ndcg@10``), once."""

    def close(self) -> None:
        """Flush and close every open run."""

    def epoch_logger(self, name: str) -> Callable[[Mapping], None]:
        """The ``on_epoch`` callback that sends a model's epochs to run ``name``."""
        return lambda record: self.log_epoch(name, record)

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class NullTracker(Tracker):
    """Tracking off: every hook does nothing."""


class TensorBoardTracker(Tracker):
    """One ``SummaryWriter`` per run, in ``folder/<run>``; scalars keyed ``train/<field>``
    per epoch and ``<prefix><metric>`` at step 0 for final metrics."""

    kind = "tensorboard"

    def __init__(self, folder: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # torch present, tensorboard not
            raise ImportError("tensorboard tracking needs the tensorboard package: "
                              "pip install 'leanrec[tracking]' (or pip install tensorboard)") from exc
        self._writer_cls = SummaryWriter
        self.folder = Path(folder)
        self._writers: dict[str, object] = {}

    def _writer(self, name: str):
        writer = self._writers.get(name)
        if writer is None:
            writer = self._writers[name] = self._writer_cls(log_dir=str(self.folder / _safe(name)))
        return writer

    def start_run(self, name: str, params: Mapping | None = None) -> None:
        writer = self._writer(name)
        if params:
            writer.add_text("params", "\n".join(f"{k} = {v!r}" for k, v in sorted(params.items())), 0)

    def log_epoch(self, name: str, record: Mapping) -> None:
        step = int(record.get("epoch", 0))
        writer = self._writer(name)
        for key, value in _numbers({k: v for k, v in record.items() if k not in _STEP_KEYS}).items():
            writer.add_scalar(f"train/{key}", value, step)

    def log_final(self, name: str, metrics: Mapping, prefix: str = "") -> None:
        writer = self._writer(name)
        for key, value in _numbers(metrics).items():
            writer.add_scalar(f"{prefix}{key}", value, 0)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


class MLflowTracker(Tracker):
    """A local MLflow store (``folder/mlflow.db``), experiment ``experiment``; one run per name,
    params logged once, epochs as metric steps. MLflow metric keys may not hold ``@``, so
    ``ndcg@10`` is logged as ``ndcg_at_10``."""

    kind = "mlflow"

    def __init__(self, folder: str | Path, experiment: str = "leanrec") -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            raise ImportError("mlflow tracking needs MLflow: pip install mlflow-skinny (or mlflow)") from exc
        self.folder = Path(folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.uri = f"sqlite:///{self.folder / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=self.uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = found.experiment_id if found is not None else self.client.create_experiment(experiment)
        self._runs: dict[str, str] = {}

    @staticmethod
    def _key(key: str) -> str:
        return re.sub(r"[^A-Za-z0-9_./ -]", "_", key.replace("@", "_at_"))

    def _run(self, name: str) -> str:
        run_id = self._runs.get(name)
        if run_id is None:
            run = self.client.create_run(self.experiment_id, run_name=_safe(name))
            run_id = self._runs[name] = run.info.run_id
        return run_id

    def start_run(self, name: str, params: Mapping | None = None) -> None:
        run_id = self._run(name)
        for key, value in (params or {}).items():
            self.client.log_param(run_id, self._key(str(key)), str(value)[:500])

    def log_epoch(self, name: str, record: Mapping) -> None:
        run_id, step = self._run(name), int(record.get("epoch", 0))
        for key, value in _numbers({k: v for k, v in record.items() if k not in _STEP_KEYS}).items():
            self.client.log_metric(run_id, self._key(f"train/{key}"), value, step=step)

    def log_final(self, name: str, metrics: Mapping, prefix: str = "") -> None:
        run_id = self._run(name)
        for key, value in _numbers(metrics).items():
            self.client.log_metric(run_id, self._key(f"{prefix}{key}"), value)

    def close(self) -> None:
        for run_id in self._runs.values():
            self.client.set_terminated(run_id)
        self._runs.clear()


def make_tracker(spec: str | None) -> Tracker:
    """``None``/``""``: no tracking; ``"tensorboard:FOLDER"`` or ``"mlflow:FOLDER"``."""
    if not spec:
        return NullTracker()
    kind, sep, folder = spec.partition(":")
    if kind not in TRACKERS or not sep or not folder:
        raise ValueError(f"tracking must be 'tensorboard:FOLDER' or 'mlflow:FOLDER', got {spec!r}")
    return TensorBoardTracker(folder) if kind == "tensorboard" else MLflowTracker(folder)
