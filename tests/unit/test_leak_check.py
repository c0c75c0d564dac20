"""The suite-wide secret-leak check (tests/conftest.py) really catches a leak."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
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


WRITTEN = {"leaked": "Bearer recorded-secret-1234 / child-process-secret-42",
           "clean": "Bearer [redacted]"}
"""What the tiny test writes into its watched run.out, by session."""


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str]]:
    """Two pytest sessions of one tiny test file each, with tests/conftest.py as their
    plugin, run side by side: (exit code, output) by name."""
    procs = {}
    for name, written in WRITTEN.items():
        folder = tmp_path_factory.mktemp(name)
        (folder / "test_tiny.py").write_text(TINY.replace("WRITTEN", repr(written)))
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest",
             "-p", "no:cacheprovider", "--rootdir", str(folder),
             "--basetemp", str(folder / "tmp"), str(folder / "test_tiny.py")],
            cwd=folder, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    results = {}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=120)
        results[name] = (proc.returncode, out)
    return results


def test_a_secret_in_an_artifact_fails_the_session(sessions):
    """A passing session fails when a watched file holds a recorded or a registered secret."""
    code, out = sessions["leaked"]
    assert code == 1, out
    assert "1 passed" in out
    hits = [line for line in out.splitlines() if "artifacts/run.out" in line]
    assert sorted(hits) == ["secret value in output: artifact artifacts/run.out: chil…",
                            "secret value in output: artifact artifacts/run.out: reco…"]


def test_clean_artifacts_pass_and_are_counted(sessions):
    """Without a secret in them the session passes, and the summary counts the files read."""
    code, out = sessions["clean"]
    assert code == 0, out
    assert "nor 2 in 2 artifact file(s) (1 .out, 1 .toml)" in out
