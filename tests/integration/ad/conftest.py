"""Fixtures for the Active Directory tests: a real Samba AD DC on 127.0.0.1.

``scripts/servers/samba start --fresh`` provisions the DC (about 15 s the first time,
then restored from its cached tarball in a few seconds) with pristine test data,
once per test session; the session stops it at the end. Tests that change the
directory (disable, move, delete) each use their own user, so their order does
not matter.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import stop_in_background
from tests.integration.ad.maxvalrange import MaxValRangeProxy
from tests.integration.scim.conftest import scim_process, scim_server

__all__ = ["admin", "scim_process", "scim_server", "streamer"]

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "servers" / "samba"


@dataclass(frozen=True)
class AdServer:
    """Connection facts of the test DC (scripts/servers/samba env)."""

    url: str
    ldaps_url: str
    bind_dn: str
    password: str
    base_dn: str
    ca_file: str
    admin_dn: str
    admin_password: str
    smb_conf: str

    @property
    def ou(self) -> str:
        return f"OU=dirconnector,{self.base_dn}"

    def samba_tool(self, *args: str) -> str:
        """Run samba-tool on the DC's own database, as an AD admin would on the DC."""
        res = subprocess.run(["samba-tool", *args, "-s", self.smb_conf],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, f"samba-tool {' '.join(args)}: {res.stderr[-500:]}"
        return res.stdout

    def guid(self, name: str, kind: str = "user") -> str:
        """objectGUID of a user or group as Samba itself prints it (canonical GUID string)."""
        out = self.samba_tool(kind, "show", name, "--attributes=objectGUID")
        return next(x.split(": ", 1)[1] for x in out.splitlines() if x.startswith("objectGUID:"))


def _need_samba() -> None:
    if shutil.which("samba-tool") is None or shutil.which("samba") is None:
        pytest.skip("samba-tool not found: install Debian's samba samba-ad-provision winbind "
                    "krb5-user (scripts/test does) to run the Active Directory tests")


@pytest.fixture(scope="session")
def ad_server() -> Iterator[AdServer]:
    """A started Samba AD DC with pristine data.

    Stopped at the end of the session unless it was already running before (someone
    started it by hand): then it is left running, with the data the tests left.
    """
    _need_samba()
    was_running = subprocess.run([sys.executable, str(SCRIPT), "status"],
                                 capture_output=True).returncode == 0
    start = subprocess.run([sys.executable, str(SCRIPT), "start", "--fresh"],
                           capture_output=True, text=True, timeout=600)
    assert start.returncode == 0, f"scripts/servers/samba start failed: {start.stderr[-2000:]}"
    env = json.loads(subprocess.run([sys.executable, str(SCRIPT), "env", "--json"],
                                    capture_output=True, text=True, check=True).stdout)
    try:
        yield AdServer(
            url=env["DIRCONNECTOR_AD_URL"], ldaps_url=env["DIRCONNECTOR_AD_LDAPS_URL"],
            bind_dn=env["DIRCONNECTOR_AD_BIND_DN"], password=env["DIRCONNECTOR_AD_PASSWORD"],
            base_dn=env["DIRCONNECTOR_AD_BASE_DN"], ca_file=env["DIRCONNECTOR_AD_CA_FILE"],
            admin_dn=env["DIRCONNECTOR_AD_ADMIN_DN"],
            admin_password=env["DIRCONNECTOR_AD_ADMIN_PASSWORD"],
            smb_conf=env["DIRCONNECTOR_AD_SMB_CONF"])
    finally:
        if not was_running:   # the session waits for the stop before it ends
            stop_in_background([sys.executable, str(SCRIPT), "stop"])


@pytest.fixture(scope="session")
def ad_proxy(ad_server: AdServer) -> Iterator[MaxValRangeProxy]:
    """The DC behind a proxy that caps multi-valued attributes at 1,500 like Windows AD."""
    port = int(ad_server.url.rsplit(":", 1)[1])
    proxy = MaxValRangeProxy(("127.0.0.1", port), limit=1500)
    yield proxy
    proxy.close()


@pytest.fixture(scope="session")
def ad_settings(ad_server: AdServer, ad_proxy: MaxValRangeProxy) -> Callable[..., Any]:
    """LdapSettings for the read-only account, through the MaxValRange proxy by default."""
    from dirconnector.connectors.ldap.connector import LdapSettings

    def make(**overrides: Any) -> Any:
        values: dict[str, Any] = {
            "url": ad_proxy.url,
            "bind_dn": ad_server.bind_dn,
            "password": ad_server.password,
            "base_dn": ad_server.ou,
        }
        values.update(overrides)
        return LdapSettings(**values)

    return make


# The change-stream fixtures (streams.py), imported last: streams.py imports AdServer.
from tests.integration.ad.streams import admin, streamer  # noqa: E402
