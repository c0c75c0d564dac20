"""A real slapd for the session (scripts/servers/slapd), and helpers to build the connector."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from dirconnector.connectors.ldap.connector import LdapConnector, LdapSettings
from dirconnector.model import Snapshot
from dirconnector.state_space import ConnectorState
from tests.conftest import stop_in_background

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "servers" / "slapd"
USERS, GROUPS = 3000, 50


def _load_ldapdata() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ldapdata",
                                                  ROOT / "scripts" / "servers" / "ldapdata.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ldapdata = _load_ldapdata()


def _python_ldap() -> bool:
    try:
        import ldap  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def running_slapd(run_dir: Path, users: int, groups: int) -> Iterator[dict[str, str]]:
    """A fresh slapd in ``run_dir`` with the generated directory, stopped at the end (in
    the background); skips the test when slapd or ldap-utils are missing."""
    if not Path(os.environ.get("SLAPD", "/usr/sbin/slapd")).exists():
        pytest.skip("slapd is not installed (apt-get install slapd ldap-utils)")
    if shutil.which("ldapmodify") is None:
        pytest.skip("ldap-utils is not installed (apt-get install ldap-utils)")
    subprocess.run([sys.executable, str(SCRIPT), "start", "--fresh", "--run-dir", str(run_dir),
                    "--users", str(users), "--groups", str(groups)],
                   check=True, capture_output=True)
    try:
        yield json.loads((run_dir / "env.json").read_text())
    finally:
        stop_in_background([sys.executable, str(SCRIPT), "stop", "--run-dir", str(run_dir)])


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Start slapd once per session with the generated directory; stop it at the end."""
    with running_slapd(tmp_path_factory.mktemp("slapd"), USERS, GROUPS) as env:
        yield env


@pytest.fixture(params=["python-ldap", "ldap3"], scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    """Every integration test runs on both wire implementations."""
    if request.param == "python-ldap" and not _python_ldap():
        pytest.skip("python-ldap is not installed (pip install 'dirconnector[ldap-fast]')")
    return str(request.param)


MakeSettings = Callable[..., LdapSettings]


@pytest.fixture
def make_settings(slapd: dict[str, str], backend: str) -> MakeSettings:
    """Settings for the reader account on plain ldap://, with overrides."""
    def make(**overrides: Any) -> LdapSettings:
        data: dict[str, Any] = {
            "type": "ldap", "url": slapd["SLAPD_URL"], "bind_dn": slapd["SLAPD_READER_DN"],
            "password": slapd["SLAPD_READER_PASSWORD"], "backend": backend,
            "disabled_filter": "(pwdAccountLockedTime=*)", "timeout": 10,
        }
        data.update(overrides)
        return LdapSettings.model_validate({k: v for k, v in data.items() if v is not None})
    return make


@pytest.fixture(scope="session")
def snapshot(slapd: dict[str, str], backend: str) -> Snapshot:
    """One default read per backend, shared by the read-only tests."""
    settings = LdapSettings(type="ldap", url=slapd["SLAPD_URL"], bind_dn=slapd["SLAPD_READER_DN"],
                            password=slapd["SLAPD_READER_PASSWORD"], backend=backend,
                            disabled_filter="(pwdAccountLockedTime=*)")
    return LdapConnector(settings).fetch(ConnectorState())


def ldapmodify(slapd: dict[str, str], ldif: str) -> None:
    """Change the directory as the admin, like an operator would."""
    subprocess.run(["ldapmodify", "-x", "-H", slapd["SLAPD_URL"], "-D", slapd["SLAPD_ADMIN_DN"],
                    "-w", slapd["SLAPD_ADMIN_PASSWORD"]], input=ldif.encode(), check=True,
                   capture_output=True)


def ldapsearch_value(slapd: dict[str, str], base: str, attr: str) -> str:
    out = subprocess.run(["ldapsearch", "-x", "-LLL", "-H", slapd["SLAPD_URL"], "-D",
                          slapd["SLAPD_ADMIN_DN"], "-w", slapd["SLAPD_ADMIN_PASSWORD"], "-b", base,
                          "-s", "base", "(objectClass=*)", attr],
                         check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.lower().startswith(attr.lower() + ": "):
            return line.split(": ", 1)[1]
    raise AssertionError(f"{attr} not found on {base}")
