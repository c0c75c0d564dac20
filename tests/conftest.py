"""Suite-wide secret-leak check, and retry back-off that does not wait.

Every secret any test hands to dirconnector passes through pydantic's ``SecretStr``;
this records each value (8 characters or more) for the session. After every test, its
captured stdout, stderr and log records, and the failure report with its traceback,
are searched for every recorded value; any hit fails the session, naming the test.
Tests that deliberately show a value (a bad token they assert is *not* echoed) only
pass when it is indeed absent, so this adds no exceptions.

At the end of every session, whatever subset of tests ran, every file under the
folders registered with ``watch_artifacts`` (the reliability rigs' configs, state
databases, plans, daemon and CLI output) is searched too, for the recorded values and
the ones registered with it (secrets a child process used); a hit fails the session,
naming the file.

``dirconnector.http`` runs in testing mode (back-off waits return at once) except in
tests marked ``real_backoff``; the wait each retry asks for is still logged and handed
to a ``sleep`` a test injects.

Under CI (``DIRCONNECTOR_CI_NO_SKIP``, set by scripts/test when ``CI`` is set) a skipped
test fails the session: CI installs every server the tests need.
"""

from __future__ import annotations

import os
import subprocess
import traceback
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pydantic
import pytest
from click.testing import CliRunner, Result

from dirconnector import http

http.set_testing(True)  # session fixtures too; _instant_backoff decides per test

_SECRETS: set[str] = set()
_HITS: list[str] = []
_ARTIFACT_DIRS: list[Path] = []
"""Folders searched at the end of the session (``watch_artifacts``)."""
_ARTIFACT_SECRETS: set[str] = set()
"""Secret values searched for in them besides the recorded ones."""
_SCANNED: Counter[str] = Counter()
"""Files searched at the end of the session, by suffix."""
_original_init = pydantic.SecretStr.__init__


def _recording_init(self: pydantic.SecretStr, secret_value: str) -> None:
    _original_init(self, secret_value)
    if isinstance(secret_value, str) and len(secret_value) >= 8:
        _SECRETS.add(secret_value)


pydantic.SecretStr.__init__ = _recording_init  # type: ignore[method-assign]

_original_invoke = CliRunner.invoke


def _checked_invoke(self: CliRunner, *args: Any, **kwargs: Any) -> Result:
    """Every CLI run's output (stdout and stderr, tracebacks included) is checked too."""
    result = _original_invoke(self, *args, **kwargs)
    text = result.output
    if result.exc_info is not None:
        text += "".join(traceback.format_exception(*result.exc_info))
    for secret in _SECRETS:
        if secret in text:
            _HITS.append(f"CLI {' '.join(map(str, args[1] if len(args) > 1 else []))[:80]}: "
                         f"{secret[:4]}…")
    return result


CliRunner.invoke = _checked_invoke  # type: ignore[method-assign]


def watch_artifacts(folder: Path, secrets: Iterable[str] = ()) -> None:
    """Search every file under ``folder`` for every secret value when the session ends."""
    _ARTIFACT_DIRS.append(folder)
    _ARTIFACT_SECRETS.update(secrets)


def scan_artifacts() -> None:
    """Record a hit for each watched file holding a secret value; count the files read."""
    secrets = {s.encode() for s in _SECRETS | _ARTIFACT_SECRETS}
    for folder in _ARTIFACT_DIRS:
        for path in sorted(folder.rglob("*")):
            try:
                if not path.is_file():
                    continue
                data = path.read_bytes()
            except FileNotFoundError:  # a -wal/-shm file removed as its database closed
                continue
            _SCANNED[path.suffix or path.name] += 1
            _HITS.extend(f"artifact {path.relative_to(folder.parent)}: "
                         f"{s[:4].decode(errors='replace')}…" for s in secrets if s in data)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "real_backoff: retry back-off really waits (dirconnector.http testing "
                   "mode off), for tests that measure the timing of retries")


@pytest.fixture(autouse=True)
def _instant_backoff(request: pytest.FixtureRequest) -> Iterator[None]:
    """Back-off waits return at once unless the test is marked real_backoff."""
    http.set_testing(request.node.get_closest_marker("real_backoff") is None)
    yield
    http.set_testing(True)


_STOPPING: list[subprocess.Popen[bytes]] = []
"""Stop commands still running (``stop_in_background``)."""


def stop_in_background(command: Sequence[str]) -> None:
    """Run a server's stop command without waiting for it; the session waits for every
    one at its end, so servers stop side by side rather than one after another."""
    _STOPPING.append(subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 for the session (tests/pg.py)."""
    from tests.pg import start_cluster

    yield from start_cluster()


_CI_SKIPS: list[str] = []


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # scripts/test sets DIRCONNECTOR_CI_NO_SKIP under CI: there every real server
    # (slapd, Samba AD) is installed, so a test skipped for a missing one is a failure.
    if report.skipped and os.environ.get("DIRCONNECTOR_CI_NO_SKIP"):
        _CI_SKIPS.append(f"{report.nodeid}: {report.longrepr}")
    if not _SECRETS:
        return
    texts = [content for _, content in report.sections]
    if report.longrepr is not None:
        texts.append(str(report.longrepr))
    blob = "\n".join(texts)
    for secret in _SECRETS:
        if secret in blob:
            _HITS.append(f"{report.nodeid} ({report.when}): {secret[:4]}…")


@pytest.hookimpl(trylast=True)  # after the session's fixtures are torn down
def pytest_sessionfinish(session: pytest.Session, exitstatus: Any) -> None:
    for proc in _STOPPING:
        proc.wait(timeout=120)
    scan_artifacts()
    if _HITS or _CI_SKIPS:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _CI_SKIPS:
        terminalreporter.section("tests skipped under CI", sep="=", red=True)
        for line in _CI_SKIPS[:50]:
            terminalreporter.write_line(line)
    if _HITS:
        terminalreporter.section("secret leak check", sep="=", red=True)
        for hit in _HITS[:50]:
            terminalreporter.write_line(f"secret value in output: {hit}")
        terminalreporter.write_line(f"{len(_HITS)} hit(s); no test may show a secret value")
    elif _SECRETS:
        files = ", ".join(f"{n} {kind}" for kind, n in sorted(_SCANNED.items()))
        terminalreporter.write_line(
            f"secret leak check: {len(_SECRETS)} secret value(s) never appeared in any "
            f"captured output, log or traceback"
            + (f", nor {len(_SECRETS | _ARTIFACT_SECRETS)} in {sum(_SCANNED.values())} "
               f"artifact file(s) ({files})" if _SCANNED else ""))
