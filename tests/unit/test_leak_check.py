"""The suite-wide secret-leak check (tests/conftest.py) really catches a leak."""

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
