"""The bad-input corpus (tests/bad_inputs.py): every case ends in one clean error
line and a non-zero exit, never a traceback, never a hang. Each case runs the CLI
in this process (no interpreter start per case), against a copy of the project
when it damages a file."""

from __future__ import annotations

import shutil
import traceback
from pathlib import Path

import pytest

from benchmark.cli import main

from bad_inputs import all_cases

ROOT = Path(__file__).resolve().parents[1]
CASES = all_cases()


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("home")


def run_case(case, tmp_path: Path, home: Path, monkeypatch, capsys) -> tuple[str, str]:
    """(outcome, stderr): outcome is clean | accepted | traceback."""
    project = ROOT
    if case.files:
        project = tmp_path / "project"
        for folder in ("recipes", "tables"):
            shutil.copytree(ROOT / folder, project / folder)
        for rel, content in case.files.items():
            path = project / rel
            if callable(content):
                content = content(path.read_text(encoding="utf-8"))
            path.parent.mkdir(parents=True, exist_ok=True)
            (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    monkeypatch.setenv("BENCHMARK_PROJECT", str(project))
    monkeypatch.setenv("BENCHMARK_HOME", str(home))
    monkeypatch.setenv("BENCHMARK_OFFLINE", "1")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for k, v in case.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(project if case.files else tmp_path)
    try:
        rc = main(list(case.argv))
    except SystemExit as exc:  # argparse: usage line + one error line, exit 2
        rc = exc.code
    except BaseException:
        return "traceback", traceback.format_exc()
    err = capsys.readouterr().err.strip()
    errors = [ln for ln in err.splitlines() if ln.startswith("error:") or ": error:" in ln]
    if rc in (0, None) or not errors:
        return "accepted", err
    if len(errors) != 1 or "Traceback" in err:
        return "traceback", err
    return "clean", errors[0]


@pytest.mark.slow  # a few hundred CLI calls in-process: about two minutes
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_one_clean_line(case, tmp_path, home, monkeypatch, capsys):
    outcome, text = run_case(case, tmp_path, home, monkeypatch, capsys)
    assert outcome == "clean", f"{case.id}: {outcome}: {text[-2000:]}"
