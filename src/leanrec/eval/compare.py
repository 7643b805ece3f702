"""Offline A/B test of two configurations on the same split (``leanrec model compare A.toml B.toml``).

Why a config file per side: an A/B test is only worth something if the reader can see every
choice that differs between the two sides (and every choice that does not), so each side is
one small TOML file that is copied, whole, into ``compare.json``. Example::

    name = "ease-300"          # label in the report (default: the file name)
    model = "ease"             # any model leanrec.models.presets names: popular, ease, tfidf, minilm,
                               # hybrid, minilm-ft, projection, attention, sasrec, learned-hybrid
    dataset = "ml-100k"        # "ml-100k" | "ml-1m" | "synthetic" | a folder holding items.<ext> and
                               # events.<ext> (csv, tsv, jsonl or parquet; canonical columns,
                               # see leanrec.data.io), relative to this file
    protocol = "warm"          # warm | cold (DESIGN.md §4; the split itself is fixed, seed 42)
    seed = 42                  # model seed, for the models that have randomness
    # seeds = [1, 2, 3]        # or: an explicit list of model seeds (not both)

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
train+validation histories — and evaluated once on test: :mod:`leanrec.eval.compare_run`),
then the per-user test metrics go to :func:`leanrec.eval.abtest.seed_comparison`. Errors
name the file and the field.

Seeds (:func:`plan_seeds`). For a model whose seed changes the trained model (``RANDOMISED``)
one run per side compares two *instances*, not two configurations (an A/A with one seed per
side is declared different far more often than α: benchmarks/results/aa_calibration.md). So a seeded side is fitted once per
seed and the verdict comes from Welch's t over the per-seed means (see
:mod:`leanrec.eval.abtest`): the seeds are the explicit ``seeds`` list when the file has
one, else ``seed, seed + 1, …, seed + N − 1`` with N from ``--seeds`` (default 3). The two
sides of a comparison must not reuse each other's seeds — an A/A on the same seeds would
be "identical" by construction and say nothing — so when generated lists overlap, the
generated side (B first) moves to the seeds just past the other side's. Only two explicit,
overlapping lists are kept as written (the user asked for them; a note says so). A
deterministic model is fitted once whatever the seeds: more fits would be identical.
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..data import BUILTIN
from ..data.schema import Dataset
from ..data.split import Split, make_split
from ..models.presets import RANDOMISED_MODELS
from .abtest import PRIMARY, seed_comparison
from .compare_run import CompareResult, SideRun, fit_and_evaluate
from .evaluate import KS
from ..core.metrics import per_user_metrics

__all__ = ["CompareConfig", "ConfigError", "compare_configs", "load_config", "load_data", "plan_seeds"]

KNOWN_FIELDS = ("name", "model", "dataset", "protocol", "seed", "seeds", "params", "synthetic")
#: seeds per seeded side when neither the file (``seeds``) nor ``--seeds`` says: enough for a
#: seed-level test (at least 2), few enough to keep a comparison cheap
DEFAULT_SEEDS = 3
#: how a config may name its data, for the error messages
_NAMED = ", ".join(f"'{n}'" for n in (*BUILTIN, "synthetic"))
SYNTHETIC_FIELDS = ("n_users", "n_items", "seed", "events_per_user", "p_off_topic")
#: models whose seed changes the fitted model: a one-seed-per-side verdict compares two trained
#: *instances* (benchmarks/results/aa_calibration.md: same config, two seeds, often "different")
RANDOMISED = RANDOMISED_MODELS
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
    #: explicit model seeds (TOML ``seeds``); empty: generated from ``seed`` (:func:`plan_seeds`)
    seeds: tuple[int, ...] = ()

    @property
    def seeded(self) -> bool:
        """Whether this model's seed changes what is trained (and so needs several seeds)."""
        return self.model in RANDOMISED

    def data_key(self) -> tuple:
        """What must match between A and B for them to share a split."""
        return (self.dataset, tuple(sorted(self.synthetic.items())), self.protocol)

    def as_dict(self) -> dict:
        return {"name": self.name, "model": self.model, "dataset": self.dataset, "protocol": self.protocol,
                "seed": self.seed, "seeds": list(self.seeds) or None, "params": dict(self.params),
                "synthetic": dict(self.synthetic), "path": self.path}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _estimator(model: str, seed: int):
    from ..models.presets import ExperimentConfig, model_grid

    estimator, _ = model_grid(model, ExperimentConfig(seed=seed), {})
    return estimator


def load_config(path: str | Path) -> CompareConfig:
    """Read and check one side's TOML file; every error names the file and the field."""
    from ..data.split import PROTOCOLS
    from ..models.presets import MODEL_NAMES

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
    seeds = data.get("seeds")
    if seeds is not None:
        if "seed" in data:
            fail("seeds", "give either 'seed' (the first of generated seeds) or 'seeds' (an explicit list), not both")
        if not isinstance(seeds, list) or not seeds or not all(_is_int(s) and s >= 0 for s in seeds):
            fail("seeds", f"must be a non-empty list of non-negative integers, got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            fail("seeds", f"seeds must be distinct (a repeated seed is the same instance twice), got {seeds!r}")
        seed = seeds[0]
    dataset = data.get("dataset", "ml-100k")
    if not isinstance(dataset, str) or not dataset.strip():
        fail("dataset", f"must be {_NAMED} or a folder path")
    if dataset not in (*BUILTIN, "synthetic"):
        folder = (path.parent / dataset).resolve()
        if not folder.is_dir():
            fail("dataset", f"{dataset!r} is neither {_NAMED} nor a folder ({folder} does not exist)")
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
                         params=dict(params), synthetic=dict(synthetic), path=str(path), seeds=tuple(seeds or ()))


def plan_seeds(a: CompareConfig, b: CompareConfig, n_seeds: int | None = None) -> tuple[list[int], list[int],
                                                                                          list[str]]:
    """The model seeds each side is fitted with, and notes explaining the choice.

    Rules (module docstring): deterministic model → one run (its first seed); seeded model →
    the file's ``seeds`` list, else ``seed + i`` for ``i < n_seeds`` (default
    :data:`DEFAULT_SEEDS`); when both sides are seeded and their lists overlap, a generated
    list (B's first) moves to just past the other side's seeds."""
    if n_seeds is not None and (not _is_int(n_seeds) or n_seeds < 1):
        raise ValueError(f"--seeds must be a positive integer, got {n_seeds!r}")
    notes: list[str] = []

    def base(cfg: CompareConfig) -> tuple[list[int], bool]:
        if not cfg.seeded:
            requested = len(cfg.seeds) if cfg.seeds else (n_seeds or 1)
            if requested > 1:
                notes.append(f"{cfg.name}: {cfg.model} is deterministic (its seed changes nothing), so it is fitted "
                             f"once (seed {cfg.seed}); {requested} seeds would give {requested} identical runs.")
            return [cfg.seed], False
        if cfg.seeds:
            if n_seeds is not None and n_seeds != len(cfg.seeds):
                notes.append(f"{cfg.name}: the file's explicit seeds {list(cfg.seeds)} are used; --seeds {n_seeds} "
                             "applies to sides without a 'seeds' list.")
            return list(cfg.seeds), False
        return [cfg.seed + i for i in range(n_seeds or DEFAULT_SEEDS)], True

    (seeds_a, gen_a), (seeds_b, gen_b) = base(a), base(b)
    if a.seeded and b.seeded and set(seeds_a) & set(seeds_b):
        if gen_b:
            seeds_b = [max(seeds_a) + 1 + i for i in range(len(seeds_b))]
            notes.append(f"{b.name}: seeds moved to {seeds_b} so that B does not reuse A's seeds {seeds_a}.")
        elif gen_a:
            seeds_a = [max(seeds_b) + 1 + i for i in range(len(seeds_a))]
            notes.append(f"{a.name}: seeds moved to {seeds_a} so that A does not reuse B's seeds {seeds_b}.")
        else:
            notes.append(f"the explicit seed lists share {sorted(set(seeds_a) & set(seeds_b))}: kept as written, but "
                         "runs on shared seeds are not independent between sides (an A/A on the same seeds is "
                         "identical by construction).")
    return seeds_a, seeds_b, notes


def load_data(cfg: CompareConfig) -> Dataset:
    """The data set a config names: a built-in one (fetched and cached), generated, or files."""
    if cfg.dataset in BUILTIN:
        from ..data import load

        return load(cfg.dataset)
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


def _fit_side(cfg: CompareConfig, split: Split, on_status) -> SideRun:
    """:func:`fit_and_evaluate`, with a bad parameter value blamed on the file that set it."""
    try:
        return fit_and_evaluate(cfg, split, on_status=on_status)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{cfg.path}: field 'params': fitting {cfg.model!r} with {cfg.params} failed: {exc}") from exc


def check_same_split(a: CompareConfig, b: CompareConfig) -> None:
    if a.data_key() != b.data_key():
        diffs = [f for f, x, y in zip(("dataset", "synthetic", "protocol"), a.data_key(), b.data_key()) if x != y]
        raise ConfigError(f"{a.path} and {b.path} must use the same split, but field(s) {diffs} differ: "
                          f"{[getattr(a, f) for f in diffs]} vs {[getattr(b, f) for f in diffs]}")


def compare_configs(a: CompareConfig | str | Path, b: CompareConfig | str | Path, *, alpha: float = 0.05,
                    test: str = "wilcoxon", n_boot: int = 10_000, seed: int = 0, primary: str = PRIMARY,
                    n_seeds: int | None = None,
                    on_status: Callable[[str], None] | None = None) -> CompareResult:
    """Load both configs, check they share a split, fit each side once per model seed
    (:func:`plan_seeds`; ``n_seeds`` is the CLI's ``--seeds``), compare (``seed`` is the
    bootstrap's)."""
    t0 = time.perf_counter()
    a = a if isinstance(a, CompareConfig) else load_config(a)
    b = b if isinstance(b, CompareConfig) else load_config(b)
    check_same_split(a, b)
    if primary not in METRICS:
        raise ValueError(f"primary metric {primary!r} is not one of {', '.join(METRICS)}")
    seeds_a, seeds_b, seed_notes = plan_seeds(a, b, n_seeds)
    if on_status:
        on_status(f"loading {a.dataset}")
    ds = load_data(a)
    split = make_split(ds, a.protocol)  # the protocol's fixed split (seed 42), never the model seed
    runs_a = [_fit_side(replace(a, seed=s), split, on_status) for s in seeds_a]
    runs_b = [_fit_side(replace(b, seed=s), split, on_status) for s in seeds_b]
    comparison = seed_comparison([r.run.test.per_user for r in runs_a], [r.run.test.per_user for r in runs_b],
                                 seeded_a=a.seeded, seeded_b=b.seeded, alpha=alpha, n_boot=n_boot, seed=seed,
                                 test=test, primary=primary, users_a=[r.run.test.user_ids for r in runs_a],
                                 users_b=[r.run.test.user_ids for r in runs_b])
    return CompareResult(runs_a, runs_b, split, ds, comparison, time.perf_counter() - t0, seed_notes)
