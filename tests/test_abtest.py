"""Offline A/B testing: the paired statistics, the config files and ``leanrec model compare``."""

import json

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from leanrec.cli import app
from leanrec.eval.abtest import bootstrap_ci, holm, paired_comparison, seed_comparison, welch_seed_test
from leanrec.eval.compare import CompareConfig, ConfigError, compare_configs, load_config, plan_seeds

runner = CliRunner()

SYNTH = "[synthetic]\nn_users = 150\nn_items = 90\nseed = 3\n"


def _pair(shift: float, n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.3, 0.2, n)
    b = a + shift + rng.normal(0, 0.1, n)
    return {"ndcg@10": a}, {"ndcg@10": b}


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_bootstrap_ci_covers_the_true_difference():
    # 200 data sets of N(0.05, 1) paired differences: a 95% interval should cover 0.05 about 95% of the time
    rng = np.random.default_rng(1)
    covered = sum(lo <= 0.05 <= hi for lo, hi in (bootstrap_ci(rng.normal(0.05, 1.0, 300), n_boot=2000, seed=s)
                                                  for s in range(200)))
    assert 180 <= covered <= 199  # binomial(200, 0.95): 190 ± ~3 sd


def test_bootstrap_is_seeded_and_constant_differences_collapse():
    d = np.random.default_rng(0).normal(size=50)
    assert bootstrap_ci(d, n_boot=500, seed=7) == bootstrap_ci(d, n_boot=500, seed=7)
    assert bootstrap_ci(np.full(20, 0.25)) == (0.25, 0.25)


@pytest.mark.parametrize("test", ["wilcoxon", "t"])
def test_p_values_small_for_a_shift_and_not_for_a_null(test):
    shifted = paired_comparison(*_pair(0.05), test=test, n_boot=1000)
    m = shifted.metrics["ndcg@10"]
    assert m.p_value < 1e-6 and shifted.verdict == "B better" and m.ci_low > 0
    assert m.diff == pytest.approx(m.mean_b - m.mean_a)
    worse = paired_comparison(*reversed(_pair(0.05)), test=test, n_boot=1000)
    assert worse.verdict == "A better" and worse.metrics["ndcg@10"].diff < 0
    null = paired_comparison(*_pair(0.0), test=test, n_boot=1000)
    assert null.metrics["ndcg@10"].p_value > 0.05 and null.verdict == "no significant difference"


def test_holm_matches_the_textbook_step_down():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 → ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 → monotone 0.02, 0.03, 0.06, 0.06
    assert np.allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(holm([0.01, np.nan])[1]) and holm([0.01, np.nan])[0] == pytest.approx(0.01)
    assert np.all(holm([0.5, 0.9, 0.7]) <= 1.0)


def test_secondary_metrics_are_holm_adjusted_and_the_primary_decides():
    a, b = _pair(0.05)
    rng = np.random.default_rng(5)
    for k in range(7):  # seven null secondary metrics
        a[f"m{k}"] = rng.normal(size=400)
        b[f"m{k}"] = a[f"m{k}"] + rng.normal(size=400)
    comp = paired_comparison(a, b, n_boot=200)
    secondary = [m for n, m in comp.metrics.items() if n != "ndcg@10"]
    raw = [m.p_value for m in secondary]
    assert np.allclose([m.p_holm for m in secondary], holm(raw))
    assert comp.metrics["ndcg@10"].p_holm == comp.metrics["ndcg@10"].p_value
    assert next(iter(comp.metrics)) == "ndcg@10" and comp.verdict == "B better"
    for m in secondary:
        expected = "no significant difference" if m.p_holm >= 0.05 else ("B better" if m.diff > 0 else "A better")
        assert m.verdict == expected


@pytest.mark.parametrize("test", ["wilcoxon", "t"])
def test_all_zero_differences_are_identical_not_a_crash(test):
    values = {"ndcg@10": np.linspace(0, 1, 30), "auc": np.full(30, np.nan)}
    comp = paired_comparison(values, {k: v.copy() for k, v in values.items()}, test=test)
    m = comp.metrics["ndcg@10"]
    assert comp.verdict == "identical" and m.p_value == 1.0 and (m.ci_low, m.ci_high) == (0.0, 0.0)
    assert comp.metrics["auc"].n_users == 0 and comp.metrics["auc"].n_dropped == 30
    json.dumps(comp.to_dict(), allow_nan=False)  # NaN is written as null


def test_nan_values_are_dropped_pairwise_and_counted():
    a, b = _pair(0.05, n=100)
    a["auc"], b["auc"] = np.random.default_rng(0).random(100), np.random.default_rng(1).random(100)
    a["auc"][:3], b["auc"][5] = np.nan, np.nan
    m = paired_comparison(a, b, n_boot=100).metrics["auc"]
    assert (m.n_users, m.n_dropped) == (96, 4)


def test_misaligned_users_are_a_clear_error():
    a, b = _pair(0.0, n=10)
    with pytest.raises(ValueError, match="users do not align.*position 3"):
        paired_comparison(a, b, users_a=np.arange(10), users_b=np.r_[0, 1, 2, 9, 4, 5, 6, 7, 8, 3])
    with pytest.raises(ValueError, match="do not align"):
        paired_comparison(a, {"ndcg@10": b["ndcg@10"][:9]})
    with pytest.raises(ValueError, match="different metrics"):
        paired_comparison(a, {**b, "auc": b["ndcg@10"]})
    with pytest.raises(ValueError, match="test must be"):
        paired_comparison(a, b, test="anova")


@pytest.mark.parametrize("text, field", [
    ('dataset = "synthetic"\n', "model"),
    ('model = "bert9000"\n', "model"),
    ('model = "ease"\nprotocol = "lukewarm"\n', "protocol"),
    ('model = "ease"\nseed = -1\n', "seed"),
    ('model = "ease"\ncolour = "red"\n', "colour"),
    ('model = "ease"\ndataset = "no/such/folder"\n', "dataset"),
    ('model = "ease"\n[params]\nlambda = 3.0\n', "params.lambda"),
    ('model = "ease"\ndataset = "synthetic"\n[synthetic]\nn_users = 0\n', "synthetic.n_users"),
    ('model = "ease"\n[synthetic]\nn_users = 10\n', "synthetic"),
])
def test_config_errors_name_the_file_and_the_field(tmp_path, text, field):
    path = _write(tmp_path, "bad.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and f"field {field!r}" in str(info.value)


def test_invalid_toml_and_different_splits_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(_write(tmp_path, "bad.toml", "model = \n"))
    a = _write(tmp_path, "a.toml", f'model = "popular"\ndataset = "synthetic"\n{SYNTH}')
    b = _write(tmp_path, "b.toml", f'model = "ease"\ndataset = "synthetic"\nprotocol = "cold"\n{SYNTH}')
    with pytest.raises(ConfigError, match="same split.*protocol"):
        compare_configs(a, b)
    result = runner.invoke(app, ["model", "compare", str(a), str(b), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "same split" in result.output
    assert not (tmp_path / "out").exists()


def test_a_bad_parameter_value_is_blamed_on_its_file(tmp_path):
    a = _write(tmp_path, "a.toml", f'model = "popular"\ndataset = "synthetic"\n{SYNTH}')
    b = _write(tmp_path, "b.toml", f'model = "projection"\ndataset = "synthetic"\n[params]\npooling = "max"\n'
                                   f'encoder = "tfidf"\n{SYNTH}')
    with pytest.raises(ConfigError, match="b.toml: field 'params'.*pooling"):
        compare_configs(a, b, n_boot=10)


def test_compare_cli_end_to_end_writes_json_and_html(tmp_path):
    a = _write(tmp_path, "a.toml", f'name = "pop"\nmodel = "popular"\ndataset = "synthetic"\n{SYNTH}')
    b = _write(tmp_path, "b.toml", f'name = "ease"\nmodel = "ease"\ndataset = "synthetic"\n[params]\nlam = 30.0\n'
                                   f'{SYNTH}')
    out = tmp_path / "out"
    result = runner.invoke(app, ["model", "compare", str(a), str(b), "--out", str(out), "--boot", "2000", "--test", "t"])
    assert result.exit_code == 0, result.output
    assert "B better" in result.output and "Holm p" in result.output
    report = json.loads((out / "compare.json").read_text())
    assert report["verdict"] == "B better" and report["comparison"]["test"] == "t"
    assert report["a"]["config"]["model"] == "popular" and report["b"]["config"]["params"] == {"lam": 30.0}
    assert {"python", "numpy", "scipy", "leanrec"} <= set(report["versions"]) and report["wall_seconds"] > 0
    ndcg = report["comparison"]["metrics"]["ndcg@10"]
    assert ndcg["n_users"] == report["split"]["test_users"] and ndcg["ci_low"] > 0
    html = (out / "compare.html").read_text()
    assert "<table>" in html and "data:image/png;base64," in html and "B better" in html


def test_aa_with_a_deterministic_config_is_identical(tmp_path):
    a = _write(tmp_path, "a.toml", f'model = "ease"\ndataset = "synthetic"\nseed = 1\n{SYNTH}')
    b = _write(tmp_path, "b.toml", f'model = "ease"\ndataset = "synthetic"\nseed = 2\n{SYNTH}')
    result = compare_configs(a, b, n_boot=100)
    assert result.comparison.verdict == "identical" and result.notes() == []
    assert all(m.verdict == "identical" and m.p_value == 1.0 for m in result.comparison.metrics.values())


def test_the_seed_reaches_a_randomised_model_and_one_seed_compares_instances(tmp_path):
    # projection's seed changes its weights: two seeds give two different models (never "identical");
    # with one seed per side the verdict is about instances, never "B better" / "A better"
    params = "[params]\nencoder = \"tfidf\"\npooling = \"mean\"\nmax_epochs = 2\n"
    a = _write(tmp_path, "a.toml", f'model = "projection"\ndataset = "synthetic"\nseed = 1\n{params}{SYNTH}')
    b = _write(tmp_path, "b.toml", f'model = "projection"\ndataset = "synthetic"\nseed = 2\n{params}{SYNTH}')
    result = compare_configs(a, b, n_boot=100, n_seeds=1)
    comp = result.comparison
    assert comp.verdict != "identical" and comp.level == "instances"
    assert comp.verdict in ("no significant difference", "instances differ (B higher)", "instances differ (A higher)")
    assert result.a.run.model.seed == 1 and result.b.run.model.seed == 2
    assert result.notes() and "instances" in result.notes()[-1]


def test_a_data_folder_next_to_the_config_is_loaded(tmp_path, synthetic):
    folder = tmp_path / "data"
    folder.mkdir()
    synthetic.items.frame[["item_id", "text"]].to_csv(folder / "items.csv", index=False)
    synthetic.events.frame[["user_id", "item_id", "timestamp"]].to_csv(folder / "events.csv", index=False)
    a = _write(tmp_path, "a.toml", 'model = "popular"\ndataset = "data"\n')
    b = _write(tmp_path, "b.toml", 'model = "ease"\ndataset = "./data"\n')
    result = compare_configs(a, b, n_boot=100)
    assert result.dataset.n_items == synthetic.n_items and result.comparison.verdict == "B better"


def test_aa_false_positive_rate_is_within_chance():
    # 40 simulated A/A pairs of per-user metrics (the same skewed, mostly-zero distribution on both
    # sides): the rejections must stay within what Binomial(40, 0.05) reaches with 99% probability.
    rng = np.random.default_rng(2024)
    critical = int(stats.binom.ppf(0.99, 40, 0.05))
    for test in ("wilcoxon", "t"):
        rejections = 0
        for _ in range(40):
            hit_a, hit_b = rng.random(300) < 0.3, rng.random(300) < 0.3
            a = {"ndcg@10": np.where(hit_a, 1 / np.log2(rng.integers(1, 11, 300) + 1), 0.0)}
            b = {"ndcg@10": np.where(hit_b, 1 / np.log2(rng.integers(1, 11, 300) + 1), 0.0)}
            rejections += paired_comparison(a, b, n_boot=200, test=test).metrics["ndcg@10"].p_value < 0.05
        assert rejections <= critical, (test, rejections, critical)


def test_bad_cli_options_fail_before_any_work(tmp_path):
    a = _write(tmp_path, "a.toml", f'model = "popular"\ndataset = "synthetic"\n{SYNTH}')
    for args, message in ((["--test", "anova"], "--test"), (["--primary", "ndcg@5"], "--primary"),
                          (["--alpha", "1.5"], "--alpha"), (["--boot", "0"], "--boot")):
        result = runner.invoke(app, ["model", "compare", str(a), str(a), "--out", str(tmp_path / "out"), *args])
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    result = runner.invoke(app, ["model", "compare", str(a), str(tmp_path / "missing.toml")])
    assert result.exit_code == 2 and "missing.toml: no such file" in result.output
    assert not (tmp_path / "out").exists()


def test_cold_protocol_compares_on_the_cold_candidates(tmp_path):
    # popular has no signal on items without training events; the TF-IDF content model has
    a = _write(tmp_path, "a.toml", f'model = "popular"\ndataset = "synthetic"\nprotocol = "cold"\n{SYNTH}')
    b = _write(tmp_path, "b.toml", f'model = "tfidf"\ndataset = "synthetic"\nprotocol = "cold"\n{SYNTH}')
    result = compare_configs(a, b, n_boot=500)
    assert result.split.protocol == "cold" and result.split.candidates is not None
    assert result.comparison.metrics["ndcg@10"].n_users == len(result.split.test)
    assert result.comparison.verdict == "B better"


# --- seed-aware comparison -------------------------------------------------------------------------------------------


def _seeded_runs(rng, n_seeds: int, shift: float = 0.0, n_users: int = 200, seed_sd: float = 0.01,
                 base=None):
    """Per-user metrics of ``n_seeds`` trained instances of one configuration: a shared per-user
    difficulty, plus, per seed, a global seed effect and a per-user instance effect (so two
    instances really differ per user — what inflates the user-paired test in an A/A)."""
    base = rng.beta(0.6, 1.4, n_users) if base is None else base
    runs = []
    for _ in range(n_seeds):
        values = base + shift + rng.normal(0, seed_sd) + rng.normal(0, 0.05, n_users)
        runs.append({"ndcg@10": np.clip(values, 0, 1), "auc": rng.random(n_users)})
    return runs


def test_welch_seed_test_matches_scipy_and_handles_degenerate_cases():
    a, b = [0.30, 0.32, 0.31], [0.35, 0.36, 0.33, 0.34]
    diff, low, high, p, df = welch_seed_test(a, b)
    ref = stats.ttest_ind(b, a, equal_var=False)
    assert diff == pytest.approx(np.mean(b) - np.mean(a)) and p == pytest.approx(ref.pvalue)
    assert df == pytest.approx(ref.df) and low < diff < high
    ci = ref.confidence_interval(0.95)
    assert (low, high) == pytest.approx((ci.low, ci.high))
    # a deterministic side is one exact value: Welch becomes the one-sample t test against it
    diff, _, _, p, df = welch_seed_test([0.30], b, exact_a=True)
    assert p == pytest.approx(stats.ttest_1samp(b, 0.30).pvalue) and df == pytest.approx(len(b) - 1)
    assert welch_seed_test([0.3, 0.3], [0.3, 0.3])[3] == 1.0
    assert welch_seed_test([0.3, 0.3], [0.4, 0.4])[3] == 0.0
    with pytest.raises(ValueError, match="side A.*at least 2"):
        welch_seed_test([0.3], b)


def test_seed_level_aa_is_calibrated_where_the_user_paired_test_is_not():
    # 200 simulated A/A comparisons, 3 seeds per side of the same configuration: the seed-level test
    # must reject within what Binomial(200, 0.05) reaches with 99% probability; the user-paired
    # analysis of the same runs (instances) rejects far more often — the reason for the seed level
    rng = np.random.default_rng(7)
    reps, critical = 200, int(stats.binom.ppf(0.99, 200, 0.05))
    seed_level = instance_level = 0
    for _ in range(reps):
        base = rng.beta(0.6, 1.4, 200)
        comp = seed_comparison(_seeded_runs(rng, 3, base=base), _seeded_runs(rng, 3, base=base), n_boot=20,
                               test="t")
        assert comp.level == "seeds" and comp.n_seeds_a == comp.n_seeds_b == 3
        seed_level += comp.metrics["ndcg@10"].p_value < 0.05
        instance_level += comp.metrics["ndcg@10"].user_paired.p_value < 0.05
        assert comp.verdict in ("no significant difference", "A better", "B better")
    assert seed_level <= critical, (seed_level, critical)
    assert instance_level > critical, instance_level


def test_seed_level_detects_a_clear_shift_and_reports_everything():
    rng = np.random.default_rng(3)
    base = rng.beta(0.6, 1.4, 200)
    runs_a, runs_b = _seeded_runs(rng, 3, base=base), _seeded_runs(rng, 3, shift=0.05, base=base)
    comp = seed_comparison(runs_a, runs_b, n_boot=200)
    m = comp.metrics["ndcg@10"]
    assert comp.verdict == "B better" and m.ci_low > 0 and m.p_value < 0.05 and comp.decided_by.startswith("Welch")
    assert m.seed_means_a == pytest.approx([r["ndcg@10"].mean() for r in runs_a]) and len(m.seed_means_b) == 3
    assert m.user_paired.verdict == "instances differ (B higher)" and m.user_paired.n_users == 200
    assert comp.metrics["auc"].p_holm >= comp.metrics["auc"].p_value
    d = comp.to_dict()
    assert d["level"] == "seeds" and d["metrics"]["ndcg@10"]["user_paired"]["verdict"].startswith("instances")
    json.dumps(d, allow_nan=False)
    # reversed sides: A better; a deterministic A (one exact run) against a seeded B works too
    assert seed_comparison(runs_b, runs_a, n_boot=50).verdict == "A better"
    mixed = seed_comparison(runs_a[:1], runs_b, seeded_a=False, n_boot=50)
    assert mixed.level == "seeds" and mixed.metrics["ndcg@10"].df == pytest.approx(2)


def test_seed_comparison_levels_and_errors():
    rng = np.random.default_rng(0)
    base = rng.beta(0.6, 1.4, 200)
    one_a, one_b = _seeded_runs(rng, 1, base=base), _seeded_runs(rng, 1, shift=0.05, base=base)
    assert seed_comparison(one_a, one_b, n_boot=50).verdict == "instances differ (B higher)"
    det = seed_comparison(one_a, one_b, seeded_a=False, seeded_b=False, n_boot=50)
    assert det.level == "users" and det.verdict == "B better"
    same = seed_comparison(one_a + one_b, [dict(r) for r in one_a + one_b], n_boot=50)
    assert same.verdict == "identical" and same.metrics["ndcg@10"].p_value == 1.0
    with pytest.raises(ValueError, match="no seed-level test"):
        seed_comparison(one_a, _seeded_runs(rng, 3), n_boot=10)
    with pytest.raises(ValueError, match="deterministic side"):
        seed_comparison(_seeded_runs(rng, 2), one_b, seeded_a=False, n_boot=10)
    with pytest.raises(ValueError, match="users do not align"):
        seed_comparison(_seeded_runs(rng, 2), _seeded_runs(rng, 2), users_a=[np.arange(200)] * 2,
                        users_b=[np.arange(200), np.arange(200)[::-1]], n_boot=10)


@pytest.mark.parametrize("text, message", [
    ('model = "projection"\nseed = 1\nseeds = [1, 2]\n', "not both"),
    ('model = "projection"\nseeds = []\n', "non-empty list"),
    ('model = "projection"\nseeds = [1, -2]\n', "non-negative"),
    ('model = "projection"\nseeds = 3\n', "list"),
    ('model = "projection"\nseeds = [1, 1]\n', "distinct"),
])
def test_seeds_field_errors_name_the_file_and_the_field(tmp_path, text, message):
    path = _write(tmp_path, "bad.toml", text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value) and "field 'seeds'" in str(info.value)


def test_seeds_are_planned_per_side_and_never_shared_by_default(tmp_path):
    cfg = load_config(_write(tmp_path, "p.toml", 'model = "projection"\nseeds = [7, 3, 5]\n'))
    assert cfg.seeds == (7, 3, 5) and cfg.seed == 7 and cfg.as_dict()["seeds"] == [7, 3, 5]
    proj = CompareConfig(name="p", model="projection", seed=42)
    assert plan_seeds(proj, proj)[:2] == ([42, 43, 44], [45, 46, 47])  # default 3, B moved past A
    assert plan_seeds(proj, proj, 2)[:2] == ([42, 43], [44, 45])
    assert plan_seeds(proj, proj, 1)[:2] == ([42], [43])
    far = CompareConfig(name="q", model="projection", seed=100)
    assert plan_seeds(proj, far, 2)[:2] == ([42, 43], [100, 101])
    explicit = CompareConfig(name="e", model="projection", seed=1, seeds=(1, 2, 3))
    assert plan_seeds(proj, explicit, 2)[:2] == ([42, 43], [1, 2, 3])  # the explicit list wins (with a note)
    assert plan_seeds(explicit, proj)[:2] == ([1, 2, 3], [42, 43, 44])
    a, b, notes = plan_seeds(explicit, explicit)
    assert a == b == [1, 2, 3] and "kept as written" in notes[0]
    ease = CompareConfig(name="ease", model="ease", seed=5)
    a, b, notes = plan_seeds(ease, ease, 3)
    assert a == b == [5] and "fitted once" in notes[0]
    with pytest.raises(ValueError, match="--seeds"):
        plan_seeds(proj, proj, 0)


def test_compare_cli_with_seeds_decides_at_the_seed_level(tmp_path):
    params = '[params]\nencoder = "tfidf"\npooling = "mean"\nmax_epochs = 1\npatience = 1\n'
    a = _write(tmp_path, "a.toml", f'name = "p1"\nmodel = "projection"\ndataset = "synthetic"\n{params}{SYNTH}')
    b = _write(tmp_path, "b.toml", f'name = "p2"\nmodel = "projection"\ndataset = "synthetic"\n{params}{SYNTH}')
    out = tmp_path / "out"
    result = runner.invoke(app, ["model", "compare", str(a), str(b), "--out", str(out), "--boot", "200", "--seeds", "3"])
    assert result.exit_code == 0, result.output
    assert "Welch" in result.output and "instance-level" in result.output
    report = json.loads((out / "compare.json").read_text())
    comp = report["comparison"]
    assert comp["level"] == "seeds" and comp["decided_by"].startswith("Welch")
    assert report["a"]["seeds"] == [42, 43, 44] and report["b"]["seeds"] == [45, 46, 47]
    assert report["a"]["n_seeds"] == 3 and len(report["b"]["runs"]) == 3
    ndcg = comp["metrics"]["ndcg@10"]
    assert len(ndcg["seed_means_a"]) == 3 and ndcg["df"] > 0 and ndcg["p_value"] is not None
    assert ndcg["seed_means_a"][0] == pytest.approx(report["a"]["runs"][0]["test"]["ndcg@10"])
    assert comp["verdict"] in ("no significant difference", "A better", "B better")
    assert ndcg["user_paired"]["n_users"] == report["split"]["test_users"]
    html = (out / "compare.html").read_text()
    assert "Welch" in html and "Instance-level / user-paired" in html and "45, 46, 47" in html


def test_a_deterministic_model_runs_once_even_with_seeds(tmp_path):
    a = _write(tmp_path, "a.toml", f'model = "ease"\ndataset = "synthetic"\n{SYNTH}')
    out = tmp_path / "out"
    result = runner.invoke(app, ["model", "compare", str(a), str(a), "--out", str(out), "--boot", "100", "--seeds", "3"])
    assert result.exit_code == 0, result.output
    assert "fitted once" in result.output and "identical" in result.output
    report = json.loads((out / "compare.json").read_text())
    assert report["a"]["n_seeds"] == report["b"]["n_seeds"] == 1 and len(report["a"]["runs"]) == 1
    assert report["comparison"]["level"] == "users" and report["verdict"] == "identical"
