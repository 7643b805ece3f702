"""The CLI's own behaviour that needs no data set: help, and clear errors for bad arguments."""

from typer.testing import CliRunner

from leanrec.cli import app

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "recommend", "data"):
        assert command in result.output


def test_unknown_dataset_is_a_clear_error():
    result = runner.invoke(app, ["data", "info", "ml-20m"])
    assert result.exit_code != 0 and "unknown data set" in result.output


def test_unknown_model_in_demo_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--models", "bert9000"])
    assert result.exit_code == 2 and "unknown model" in result.output
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--protocols", "lukewarm"])
    assert result.exit_code == 2 and "unknown protocol" in result.output
    assert not (tmp_path / "cache").exists()  # rejected before any data was fetched


def test_recommend_rejects_bad_model_and_k_before_loading(tmp_path):
    result = runner.invoke(app, ["recommend", "--user", "1", "--model", "nope"])
    assert result.exit_code == 2 and "unknown model" in result.output
    result = runner.invoke(app, ["recommend", "--user", "1", "-k", "0"])
    assert result.exit_code == 2 and "at least 1" in result.output
    assert not (tmp_path / "cache").exists()
