"""The CLI's own behaviour that needs no data set: the command tree, help, clear errors for bad
arguments, the model names in help, and the old spellings (hidden, for one release)."""

import re

import pytest
from typer.testing import CliRunner

from leanrec.cli import RENAMED, app
from leanrec.models.presets import MODEL_NAMES

runner = CliRunner()
WIDE = {"COLUMNS": "400"}  # help rows on one line each

#: every group and its verbs, as the documentation lists them
TREE = {"data": ("fetch", "info", "synth"), "model": ("train", "recommend", "compare", "ramp"),
        "encoder": ("export", "distill", "finetune"), "cost": ("profile", "bench", "plan"),
        "batch": ("encode", "recommend", "index", "plan"), "service": ("serve", "import", "load")}


def _listed(output: str) -> set[str]:
    """The command names a help page lists (first word of each row of its Commands box)."""
    box = output.split("Commands")[-1]
    return {m.group(1) for m in re.finditer(r"^│ (\S+)\s", box, re.MULTILINE)}


def test_help_lists_the_groups_and_only_the_new_names():
    result = runner.invoke(app, ["--help"], env=WIDE)
    assert result.exit_code == 0
    assert _listed(result.output) == {"demo", *TREE}
    for group, verbs in TREE.items():
        result = runner.invoke(app, [group, "--help"], env=WIDE)
        assert result.exit_code == 0, result.output
        assert _listed(result.output) == set(verbs), group  # the old names are hidden


def test_unknown_dataset_is_a_clear_error():
    result = runner.invoke(app, ["data", "info", "--dataset", "ml-20m"])
    assert result.exit_code != 0 and "unknown data set" in result.output


def test_unknown_model_in_demo_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--models", "bert9000"])
    assert result.exit_code == 2 and "unknown model" in result.output
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--protocols", "lukewarm"])
    assert result.exit_code == 2 and "unknown protocol" in result.output
    assert not (tmp_path / "cache").exists()  # rejected before any data was fetched


def test_recommend_rejects_bad_model_and_k_before_loading(tmp_path):
    result = runner.invoke(app, ["model", "recommend", "--user", "1", "--model", "nope"])
    assert result.exit_code == 2 and "unknown model" in result.output
    for k in (["-k", "0"], ["--k", "0"]):
        result = runner.invoke(app, ["model", "recommend", "--user", "1", *k])
        assert result.exit_code == 2 and "at least 1" in result.output
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("command", [["model", "recommend"], ["model", "train"]])
def test_model_option_help_lists_exactly_the_registry(command):
    result = runner.invoke(app, [*command, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if re.match(r"│\s+--model\s", line))
    names = re.search(r":\s([a-z0-9-]+(?:, [a-z0-9-]+)+)\.", row).group(1).split(", ")
    assert tuple(names) == MODEL_NAMES


def test_demo_help_lists_every_model_and_group():
    from leanrec.models.presets import CORE_MODELS, LEARNED_MODELS

    result = runner.invoke(app, ["demo", "--help"], env=WIDE)
    said = " ".join(result.output.split())
    assert f"({', '.join(MODEL_NAMES)})" in said
    assert f"core ({', '.join(CORE_MODELS)};" in said and f"learned ({', '.join(LEARNED_MODELS)};" in said


def test_the_same_option_is_spelled_the_same_way_everywhere():
    """--dataset (never a positional), -k/--k, --out, --seed, --threads, --encoder (a text
    encoder) and --model (a recommender or a model folder), across every visible command."""
    import typer.main

    root = typer.main.get_command(app)
    spellings = {"dataset": {("--dataset",)}, "k": {("-k", "--k")}, "out": {("--out",)}, "seed": {("--seed",)},
                 "threads": {("--threads",)}, "encoder": {("--encoder",)}, "model": {("--model",)}}
    seen = {name: set() for name in spellings}
    for group, verbs in TREE.items():
        for verb in verbs:
            cmd = root.commands[group].commands[verb]
            for param in cmd.params:
                if param.name in seen and not getattr(param, "hidden", False):
                    seen[param.name].add((param.param_type_name, tuple(sorted(param.opts))))
    for name, found in seen.items():
        assert found and {opts for _, opts in found} == {tuple(sorted(s)) for s in spellings[name]}, (name, found)
        assert {kind for kind, _ in found} == {"option"}, name


# -- old spellings -----------------------------------------------------------------------------

#: old spellings whose name stayed (an old positional or flag) and the new spelling each names;
#: the arguments stop each run at a cheap error after the line is said.
KEPT_NAMES = [
    (["data", "info", "ml-20m"], "data info NAME", "data info --dataset NAME", "unknown data set"),
    (["data", "fetch", "ml-20m"], "data fetch NAME", "data fetch --dataset NAME", "unknown data set"),
    (["encoder", "export", "folder", "--backend", "x"], "encoder export OUT", "encoder export --out OUT",
     "backend must be onnx or static"),
    (["encoder", "export", "--out", "f", "--model", "m", "--backend", "x"], "encoder export --model M",
     "encoder export --encoder M", "backend must be onnx or static"),
    (["cost", "--no-such-option"], "cost OPTIONS", "cost profile OPTIONS", "No such option"),
]


def _note(old: str, new: str) -> str:
    return f"`leanrec {old}` is now `leanrec {new}`; the old name goes in the next release"


def test_the_alias_table_covers_every_old_command():
    assert set(RENAMED) == {"recommend", "compare", "train", "train encoder", "encoder distill-layers", "bench",
                            "plan", "encode", "recommend-all", "index-shards", "plan-job", "serve", "store import",
                            "store load"}
    for old, r in RENAMED.items():  # each points at a visible command whose function it runs
        group, verb = r.new.split()
        assert verb in TREE[group] and r.func.__module__ == f"leanrec.cli.{group}", old


def _options(args) -> set[str]:
    """The option flags and argument names a help page lists."""
    out = runner.invoke(app, [*args, "--help"], env=WIDE).stdout
    rows = re.findall(r"^│\s+\*?\s*(--[\w-]+|\w+(?=\s+<))", out, re.MULTILINE)
    return set(rows) - {"--help"}


@pytest.mark.parametrize("old", list(RENAMED))
def test_old_command_says_the_new_one_and_takes_its_options(old):
    """Its first stderr line names the new spelling; it lists the new command's options (the
    ones the old command took as positionals, or with another flag, so spelled)."""
    r = RENAMED[old]
    # `leanrec train --help` is the old group's help; with an option first it is the old command's
    args = [*old.split(), "--results", "r.json"] if old == "train" else old.split()
    result = runner.invoke(app, [*args, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == _note(old, r.new)
    assert f"Old name of `leanrec {r.new}`" in " ".join(result.stdout.split())
    want = _options(r.new.split())
    moved = {f"--{p}": p for p in r.positional} | {f"--{p}": flag for p, flag in r.options.items()}
    assert set(moved) <= want
    assert _options(args) == {moved.get(o, o) for o in want}


@pytest.mark.parametrize("args,old,new,error", KEPT_NAMES, ids=[k[1] for k in KEPT_NAMES])
def test_old_arguments_of_a_kept_command_say_the_new_spelling(args, old, new, error):
    result = runner.invoke(app, args, env=WIDE)
    assert result.exit_code == 2 and error in result.output, result.output
    assert result.stderr.splitlines()[0] == _note(old, new)


def test_a_bare_cost_group_lists_its_verbs_and_a_typo_is_no_old_spelling():
    result = runner.invoke(app, ["cost"], env=WIDE)
    assert "profile" in _listed(result.output) and "is now" not in result.output
    result = runner.invoke(app, ["cost", "profil"])
    assert result.exit_code == 2 and "No such command" in result.output and "is now" not in result.output


def test_usage_lines_leave_out_the_hidden_old_arguments():
    for args in (["data", "synth"], ["data", "info"], ["encoder", "export"]):
        usage = runner.invoke(app, [*args, "--help"], env=WIDE).output.split("Usage:")[1].splitlines()[0]
        assert usage.split()[1:] == [*args, "[OPTIONS]"], usage  # [0]: the program name


def test_old_train_spellings_still_parse():
    result = runner.invoke(app, ["train"])  # neither --out nor a subcommand, as before: a usage error
    assert result.exit_code == 2 and "--out" in result.output
    assert result.stderr.startswith("`leanrec train` is now `leanrec model train`")
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0 and "leanrec model train" in result.output and "encoder finetune" in result.output
    result = runner.invoke(app, ["train", "encoder", "--out", "x", "--synthetic", "--precision", "fp16"])
    assert result.exit_code == 2 and "fp32, bf16" in result.output  # the finetune checks, reached
    assert result.stderr.startswith("`leanrec train encoder` is now `leanrec encoder finetune`")


def test_an_old_spelling_runs_end_to_end(tmp_path):
    """``leanrec data synth OUT`` (the old positional): the same catalogue as ``--out``."""
    import pandas as pd

    old = runner.invoke(app, ["data", "synth", str(tmp_path / "old.parquet"), "--items", "300", "--seed", "5"])
    assert old.exit_code == 0, old.output
    assert old.stderr.splitlines()[0] == ("`leanrec data synth OUT` is now `leanrec data synth --out OUT`; "
                                          "the old name goes in the next release")
    new = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "new.parquet"), "--items", "300", "--seed", "5"])
    assert new.exit_code == 0 and "is now" not in new.output
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "old.parquet"), pd.read_parquet(tmp_path / "new.parquet"))
    both = runner.invoke(app, ["data", "synth", str(tmp_path / "a"), "--out", str(tmp_path / "b")])
    assert both.exit_code == 2 and "given twice" in both.output
    none = runner.invoke(app, ["data", "synth", "--items", "10"])
    assert none.exit_code == 2 and "--out" in none.output


def test_ramp_rejects_bad_models_and_fraction_before_loading(tmp_path):
    result = runner.invoke(app, ["model", "ramp", "--out", str(tmp_path), "--models", "learned-hybrid"])
    assert result.exit_code == 2 and "cannot run" in result.output
    result = runner.invoke(app, ["model", "ramp", "--out", str(tmp_path), "--models", "bert9000"])
    assert result.exit_code == 2 and "unknown model" in result.output
    result = runner.invoke(app, ["model", "ramp", "--out", str(tmp_path), "--fraction", "1.5"])
    assert result.exit_code == 2 and "--fraction" in result.output
    assert not (tmp_path / "cache").exists()
