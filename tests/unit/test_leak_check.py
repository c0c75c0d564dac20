"""The suite-wide secret-leak check (tests/conftest.py) really catches a leak."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from click.testing import CliRunner
from pydantic import SecretStr

from dirconnector import cli
from tests import conftest as leak


def test_a_secret_in_captured_output_is_reported():
    """A SecretStr value found in a test's captured output becomes a hit naming the test."""
    SecretStr("leak-check-canary-1234")
    report = SimpleNamespace(nodeid="t::x", when="call", longrepr=None, skipped=False,
                             sections=[("Captured stdout call", "token=leak-check-canary-1234")])
    before = len(leak._HITS)
    leak.pytest_runtest_logreport(report)
    try:
        assert leak._HITS[before:] == ["t::x (call): leak…"]
    finally:
        del leak._HITS[before:]


def test_a_secret_in_cli_output_is_reported(tmp_path):
    """A CLI run whose output holds a registered secret is reported too."""
    SecretStr("leak-check-canary-5678")
    before = len(leak._HITS)
    config = tmp_path / "c.toml"
    config.write_text("[source]\ntype = 'leak-check-canary-5678'\n")
    CliRunner().invoke(cli.main, ["--config", str(config), "config", "validate"])
    try:
        assert len(leak._HITS) == before + 1 and "leak" in leak._HITS[-1]
    finally:
        del leak._HITS[before:]


ROOT = Path(__file__).resolve().parents[2]
TINY = '''
from pydantic import SecretStr

from tests.conftest import watch_artifacts


def test_writes_artifacts(tmp_path):
    folder = tmp_path / "artifacts"
    folder.mkdir()
    watch_artifacts(folder, ["child-process-secret-42"])
    token = SecretStr("recorded-secret-1234")
    (folder / "config.toml").write_text('token_env = "TOKEN"')
    (folder / "run.out").write_text(WRITTEN)
'''


def session(tmp_path: Path, written: str) -> subprocess.CompletedProcess[str]:
    """A pytest session of one tiny test file with tests/conftest.py as its plugin."""
    (tmp_path / "test_tiny.py").write_text(TINY.replace("WRITTEN", repr(written)))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "--basetemp", str(tmp_path / "tmp"),
         str(tmp_path / "test_tiny.py")],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
        text=True, timeout=120)


def test_a_secret_in_an_artifact_fails_the_session(tmp_path):
    """A passing session fails when a watched file holds a recorded or a registered secret."""
    run = session(tmp_path, "Bearer recorded-secret-1234 / child-process-secret-42")
    assert run.returncode == 1, run.stdout
    assert "1 passed" in run.stdout
    hits = [line for line in run.stdout.splitlines() if "artifacts/run.out" in line]
    assert sorted(hits) == ["secret value in output: artifact artifacts/run.out: chil…",
                            "secret value in output: artifact artifacts/run.out: reco…"]


def test_clean_artifacts_pass_and_are_counted(tmp_path):
    """Without a secret in them the session passes, and the summary counts the files read."""
    run = session(tmp_path, "Bearer [redacted]")
    assert run.returncode == 0, run.stdout
    assert "nor 2 in 2 artifact file(s) (1 .out, 1 .toml)" in run.stdout
