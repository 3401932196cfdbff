"""User mistakes end as one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import pytest

from benchmark.cli import main


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BENCHMARK_OFFLINE", "1")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _error(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    lines = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_unknown_recipe(capsys):
    msg = _error(capsys, ["plan", "dm2/table99"])
    assert "dm2/table99" in msg and "table99.yaml" in msg


def test_unknown_override_key_names_the_key(capsys):
    msg = _error(capsys, ["plan", "dm2/table1", "--profile", "smoke", "--set", "cohort.lambda_mutal=3"])
    assert "lambda_mutal" in msg


def test_bad_override_value_names_the_key(capsys):
    msg = _error(capsys, ["plan", "dm2/table1", "--profile", "smoke", "--set", "optim.lr=fast"])
    assert "optim.lr" in msg


def test_unknown_profile(capsys):
    msg = _error(capsys, ["plan", "dm2/table1", "--profile", "huge"])
    assert "huge" in msg


def test_bad_overrides_file_names_the_file(capsys, tmp_path):
    f = tmp_path / "best.yaml"
    f.write_text("cohort.lambda_mutual: [unclosed\n")
    msg = _error(capsys, ["plan", "dm2/table1", "--profile", "smoke", "--overrides", str(f)])
    assert str(f) in msg


def test_paper_profile_without_data_root_stops_at_once(capsys):
    msg = _error(capsys, ["run", "dm2/table1", "--no-progress"])
    assert "--data-root" in msg


def test_missing_dataset_files_are_named_with_the_layout(capsys, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    msg = _error(capsys, ["run", "dm2/table1", "--data-root", str(root), "--no-progress"])
    assert "images.txt" in msg and str(root) in msg


def test_bad_thread_count_is_one_line(capsys):
    assert "--threads -1" in _error(capsys, ["run", "dm2/table1", "--profile", "smoke", "--threads", "-1", "--dry-run"])


@pytest.mark.parametrize("command", ["run", "plan", "report", "claims", "paper", "stats", "perf", "data", "list",
                                     "tune"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0 and "usage:" in capsys.readouterr().out
