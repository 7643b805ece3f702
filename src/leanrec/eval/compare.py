"""Offline A/B test of two configurations on the same split (``leanrec compare A.toml B.toml``).

Why a config file per side: an A/B test is only worth something if the reader can see every
choice that differs between the two sides (and every choice that does not), so each side is
one small TOML file that is copied, whole, into ``compare.json``. Example::

    name = "ease-300"          # label in the report (default: the file name)
    model = "ease"             # any model leanrec.experiment knows: popular, ease, tfidf, minilm,
                               # hybrid, minilm-ft, projection, attention, sasrec, learned-hybrid
    dataset = "ml-100k"        # "ml-100k" | "synthetic" | a folder holding items.<ext> and
                               # events.<ext> (csv, tsv, jsonl or parquet; canonical columns,
                               # see leanrec.data.io), relative to this file
    protocol = "warm"          # warm | cold (DESIGN.md §4; the split itself is fixed, seed 42)
    seed = 42                  # model seed, for the models that have randomness

    [params]                   # constructor arguments of the model (estimator defaults if absent)
    lam = 300.0

    [synthetic]                # only with dataset = "synthetic": leanrec.data.synth.make_dataset
    n_users = 200
    n_items = 120
    seed = 0

Both files must name the same data (and ``[synthetic]`` table) and protocol, so both sides
are scored on the same test users. Each side is fitted the way the demo's test stage fits a
model (:func:`leanrec.eval.tuning.tune_and_test` with a one-point grid: fitted on train and
checked on validation, refitted on train+validation — or, for the sequence models, fed the
train+validation histories — and evaluated once on test), then the per-user test metrics go
to :func:`leanrec.eval.abtest.paired_comparison`. Errors name the file and the field.
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.schema import Dataset
from ..data.split import Split, make_split
from .abtest import PRIMARY, Comparison, paired_comparison
from .evaluate import KS
from .metrics import per_user_metrics
from .tuning import TunedRun, tune_and_test

__all__ = ["CompareConfig", "CompareResult", "ConfigError", "compare_configs", "fit_and_evaluate", "load_config",
           "load_data"]

KNOWN_FIELDS = ("name", "model", "dataset", "protocol", "seed", "params", "synthetic")
SYNTHETIC_FIELDS = ("n_users", "n_items", "seed", "events_per_user", "p_off_topic")
SEQUENTIAL = ("projection", "attention", "sasrec")
#: models whose seed changes the fitted model: a one-seed-per-side verdict compares two trained
#: *instances* (benchmarks/results/aa_calibration.md: same config, two seeds, ~24% "different")
RANDOMISED = ("minilm-ft", "projection", "attention", "sasrec", "learned-hybrid")
#: the per-user metrics evaluate() reports, i.e. what can be compared (and be primary)
METRICS = tuple(per_user_metrics(np.ones(1, np.int64), np.ones(1), KS))


class ConfigError(ValueError):
    """A config file problem, worded ``FILE: field 'X': what is wrong``."""


@dataclass(frozen=True)
class CompareConfig:
    """One side of the comparison, as read from its TOML file."""

    name: str
    model: str
    dataset: str = "ml-100k"
    protocol: str = "warm"
    seed: int = 42
    params: dict = field(default_factory=dict)
    synthetic: dict = field(default_factory=dict)
    path: str = ""

    def data_key(self) -> tuple:
        """What must match between A and B for them to share a split."""
        return (self.dataset, tuple(sorted(self.synthetic.items())), self.protocol)

    def as_dict(self) -> dict:
        return {"name": self.name, "model": self.model, "dataset": self.dataset, "protocol": self.protocol,
                "seed": self.seed, "params": dict(self.params), "synthetic": dict(self.synthetic),
                "path": self.path}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _estimator(model: str, seed: int):
    from ..experiment import ExperimentConfig, model_grid

    estimator, _ = model_grid(model, ExperimentConfig(seed=seed), {})
    return estimator


def load_config(path: str | Path) -> CompareConfig:
    """Read and check one side's TOML file; every error names the file and the field."""
    from ..experiment import MODEL_NAMES, PROTOCOLS

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None

    def fail(name: str, what: str):
        raise ConfigError(f"{path}: field {name!r}: {what}")

    unknown = sorted(set(data) - set(KNOWN_FIELDS))
    if unknown:
        fail(unknown[0], f"unknown field; known fields: {', '.join(KNOWN_FIELDS)}")
    if "model" not in data:
        fail("model", f"missing; choose from {', '.join(MODEL_NAMES)}")
    model = data["model"]
    if model not in MODEL_NAMES:
        fail("model", f"{model!r} is not one of {', '.join(MODEL_NAMES)}")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        fail("name", "must be a non-empty string")
    protocol = data.get("protocol", "warm")
    if protocol not in PROTOCOLS:
        fail("protocol", f"{protocol!r} is not one of {', '.join(PROTOCOLS)}")
    seed = data.get("seed", 42)
    if not _is_int(seed) or seed < 0:
        fail("seed", f"must be a non-negative integer, got {seed!r}")
    dataset = data.get("dataset", "ml-100k")
    if not isinstance(dataset, str) or not dataset.strip():
        fail("dataset", "must be 'ml-100k', 'synthetic' or a folder path")
    if dataset not in ("ml-100k", "synthetic"):
        folder = (path.parent / dataset).resolve()
        if not folder.is_dir():
            fail("dataset", f"{dataset!r} is neither 'ml-100k', 'synthetic' nor a folder ({folder} does not exist)")
        dataset = str(folder)
    synthetic = data.get("synthetic", {})
    if not isinstance(synthetic, dict):
        fail("synthetic", "must be a table: [synthetic]")
    if synthetic and dataset != "synthetic":
        fail("synthetic", "only allowed with dataset = \"synthetic\"")
    for key, value in synthetic.items():
        if key not in SYNTHETIC_FIELDS:
            fail(f"synthetic.{key}", f"unknown; known: {', '.join(SYNTHETIC_FIELDS)}")
        if key == "events_per_user":
            if not (isinstance(value, list) and len(value) == 2 and all(_is_int(v) and v > 0 for v in value)
                    and value[0] <= value[1]):
                fail("synthetic.events_per_user", f"must be [min, max] positive integers, got {value!r}")
        elif key == "p_off_topic":
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
                fail("synthetic.p_off_topic", f"must be a number in [0, 1], got {value!r}")
        elif not _is_int(value) or value < (0 if key == "seed" else 1):
            fail(f"synthetic.{key}", f"must be a {'non-negative' if key == 'seed' else 'positive'} "
                                     f"integer, got {value!r}")
    params = data.get("params", {})
    if not isinstance(params, dict):
        fail("params", "must be a table: [params]")
    if "seed" in params:
        fail("params.seed", "set the model seed with the top-level 'seed' field")
    known = _estimator(model, seed).get_params(deep=True)
    for key in params:
        if key not in known:
            choices = ", ".join(sorted(k for k, v in known.items()
                                       if k not in ("seed", "on_epoch", "cache") and not hasattr(v, "get_params")))
            fail(f"params.{key}", f"not a parameter of {model!r}; known: {choices or '(none)'}")
    return CompareConfig(name=name, model=model, dataset=dataset, protocol=protocol, seed=seed,
                         params=dict(params), synthetic=dict(synthetic), path=str(path))


def load_data(cfg: CompareConfig) -> Dataset:
    """The data set a config names: ML-100K (fetched and cached), generated, or files."""
    if cfg.dataset == "ml-100k":
        from ..data.sources.movielens import load_ml100k

        return load_ml100k()
    if cfg.dataset == "synthetic":
        from ..data.synth import make_dataset

        kwargs = dict(cfg.synthetic)
        if "events_per_user" in kwargs:
            kwargs["events_per_user"] = tuple(kwargs["events_per_user"])
        return make_dataset(**kwargs)
    from ..data.io import load_dataset

    folder = Path(cfg.dataset)

    def one(stem: str) -> Path:
        found = sorted(p for p in folder.iterdir() if p.stem == stem and p.is_file())
        if len(found) != 1:
            raise ConfigError(f"{cfg.path}: field 'dataset': {folder} must hold exactly one {stem}.<csv|tsv|jsonl|"
                              f"parquet> file, found {[p.name for p in found]}")
        return found[0]

    ds, _ = load_dataset(one("items"), one("events"), name=folder.name)
    return ds


@dataclass
class SideRun:
    """One side's fitted-and-tested run."""

    config: CompareConfig
    run: TunedRun
    wall_seconds: float

    def summary(self) -> dict:
        out = {"params": self.run.params, "valid": self.run.valid.metrics, "test": self.run.test.metrics,
               "fit_seconds": round(self.run.fit_seconds, 3), "score_seconds": round(self.run.score_seconds, 3),
               "wall_seconds": round(self.wall_seconds, 3)}
        training = getattr(self.run.model, "training_", None)
        if training is not None:
            out["training"] = {k: v for k, v in training.items() if k != "history"}
        return out


def fit_and_evaluate(cfg: CompareConfig, split: Split, *,
                     on_status: Callable[[str], None] | None = None) -> SideRun:
    """Fit one side like the demo's test stage and evaluate it on the split's test targets."""
    from ..experiment import ExperimentConfig, _finetuned_encoder, model_grid

    t0 = time.perf_counter()
    exp = ExperimentConfig(seed=cfg.seed)
    finetuned = _finetuned_encoder(split, exp, on_status)[0] if cfg.model == "minilm-ft" else None
    estimator, _ = model_grid(cfg.model, exp, {}, finetuned)
    if on_status and hasattr(estimator, "on_epoch"):
        estimator.set_params(on_epoch=lambda r: on_status(
            f"{cfg.name}: epoch {r['epoch']} valid ndcg@10 {r['valid_ndcg@10']:.4f}"))
    refit = exp.sequential_refit if cfg.model in SEQUENTIAL else "retrain"
    step = (lambda what: on_status(f"{cfg.name}: {'tested' if what == 'test' else 'fitted on train'}")) \
        if on_status else None
    run = tune_and_test(estimator, [dict(cfg.params)], split, refit=refit, on_step=step)
    return SideRun(cfg, run, time.perf_counter() - t0)


def _fit_side(cfg: CompareConfig, split: Split, on_status) -> SideRun:
    """:func:`fit_and_evaluate`, with a bad parameter value blamed on the file that set it."""
    try:
        return fit_and_evaluate(cfg, split, on_status=on_status)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{cfg.path}: field 'params': fitting {cfg.model!r} with {cfg.params} failed: {exc}") from exc


@dataclass
class CompareResult:
    """Everything ``leanrec compare`` reports: both runs, the split, the statistics."""

    a: SideRun
    b: SideRun
    split: Split
    dataset: Dataset
    comparison: Comparison
    wall_seconds: float

    def notes(self) -> list[str]:
        """Caveats the reader of the verdict needs (shown by the CLI, kept in the JSON)."""
        randomised = sorted({s.config.model for s in (self.a, self.b)} & set(RANDOMISED))
        if not randomised:
            return []
        note = (f"{', '.join(randomised)} depends on its seed: with one seed per side the test compares two "
                "trained instances, and seed variance alone is often declared a difference (A/A calibration: "
                "benchmarks/results/aa_calibration.md); repeat with other seeds before trusting the verdict.")
        return [note]

    def to_dict(self) -> dict:
        from ..experiment import versions

        return {
            "a": {"config": self.a.config.as_dict(), "run": self.a.summary()},
            "b": {"config": self.b.config.as_dict(), "run": self.b.summary()},
            "dataset": self.dataset.summary(),
            "split": self.split.summary(),
            "comparison": self.comparison.to_dict(),
            "verdict": self.comparison.verdict,
            "notes": self.notes(),
            "seed": self.comparison.seed,
            "versions": versions(),
            "wall_seconds": round(self.wall_seconds, 2),
        }


def check_same_split(a: CompareConfig, b: CompareConfig) -> None:
    if a.data_key() != b.data_key():
        diffs = [f for f, x, y in zip(("dataset", "synthetic", "protocol"), a.data_key(), b.data_key()) if x != y]
        raise ConfigError(f"{a.path} and {b.path} must use the same split, but field(s) {diffs} differ: "
                          f"{[getattr(a, f) for f in diffs]} vs {[getattr(b, f) for f in diffs]}")


def compare_configs(a: CompareConfig | str | Path, b: CompareConfig | str | Path, *, alpha: float = 0.05,
                    test: str = "wilcoxon", n_boot: int = 10_000, seed: int = 0, primary: str = PRIMARY,
                    on_status: Callable[[str], None] | None = None) -> CompareResult:
    """Load both configs, check they share a split, fit and test each, compare per user."""
    t0 = time.perf_counter()
    a = a if isinstance(a, CompareConfig) else load_config(a)
    b = b if isinstance(b, CompareConfig) else load_config(b)
    check_same_split(a, b)
    if primary not in METRICS:
        raise ValueError(f"primary metric {primary!r} is not one of {', '.join(METRICS)}")
    if on_status:
        on_status(f"loading {a.dataset}")
    ds = load_data(a)
    split = make_split(ds, a.protocol)  # the protocol's fixed split (seed 42), never the model seed
    run_a, run_b = (_fit_side(side, split, on_status) for side in (a, b))
    comparison = paired_comparison(run_a.run.test.per_user, run_b.run.test.per_user, alpha=alpha, n_boot=n_boot,
                                   seed=seed, test=test, primary=primary, users_a=run_a.run.test.user_ids,
                                   users_b=run_b.run.test.user_ids)
    return CompareResult(run_a, run_b, split, ds, comparison, time.perf_counter() - t0)
