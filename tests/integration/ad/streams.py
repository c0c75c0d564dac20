"""Helpers for the change-stream tests: an admin connection that writes to the DC, and
an account granted "Replicating Directory Changes" (fixtures re-exported by conftest.py)."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ldap3
import pytest

from tests.integration.ad.conftest import AdServer

SERVERS = Path(__file__).resolve().parents[3] / "scripts" / "servers"
STREAMER = "svc-st-dirsync"
STREAMER_PASSWORD = "Str3am!Sync-2026"
NORMAL, DISABLED = 0x200 | 0x20, 0x200 | 0x20 | 0x2  # NORMAL_ACCOUNT | PASSWD_NOTREQD (| DISABLE)
names = itertools.count()


class Admin:
    """Writes to the DC as Administrator, the way an operator's tool would."""

    def __init__(self, ad: AdServer) -> None:
        self.ad = ad
        server = ldap3.Server("127.0.0.1", port=int(ad.url.rsplit(":", 1)[1]), get_info=ldap3.NONE)
        self.conn = ldap3.Connection(
            server, ad.admin_dn, ad.admin_password, auto_bind=True, raise_exceptions=True
        )
        self.people = f"OU=People,{ad.ou}"
        self.groups = f"OU=Groups,{ad.ou}"

    def user(self, mail: str | None = "x", *, disabled: bool = False) -> str:
        """A new user under OU=People; returns its DN."""
        name = f"st-u{next(names)}-{id(self) % 1000}"
        attrs: dict[str, Any] = {
            "sAMAccountName": name,
            "givenName": "Stream",
            "sn": name,
            "userAccountControl": str(DISABLED if disabled else NORMAL),
        }
        if mail:
            attrs["mail"] = f"{name}@dirconn.test"
        dn = f"CN={name},{self.people}"
        self.conn.add(dn, ["top", "person", "organizationalPerson", "user"], attrs)
        return dn

    def group(self, *members: str) -> str:
        name = f"st-g{next(names)}-{id(self) % 1000}"
        dn = f"CN={name},{self.groups}"
        self.conn.add(dn, ["top", "group"], {"sAMAccountName": name, "groupType": str(-2147483646)})
        if members:
            self.add_members(dn, *members)
        return dn

    def modify(self, dn: str, **values: str) -> None:
        self.conn.modify(dn, {k: [(ldap3.MODIFY_REPLACE, [v])] for k, v in values.items()})

    def add_members(self, group: str, *dns: str) -> None:
        self.conn.modify(group, {"member": [(ldap3.MODIFY_ADD, list(dns))]})

    def remove_members(self, group: str, *dns: str) -> None:
        self.conn.modify(group, {"member": [(ldap3.MODIFY_DELETE, list(dns))]})

    def rename(self, dn: str, new_rdn: str, superior: str | None = None) -> str:
        self.conn.modify_dn(dn, new_rdn, new_superior=superior)
        return f"{new_rdn},{superior or dn.split(',', 1)[1]}"

    def delete(self, dn: str) -> None:
        self.conn.delete(dn)

    def guid(self, dn: str) -> str:
        import uuid

        self.conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["objectGUID"])
        return str(uuid.UUID(bytes_le=self.conn.response[0]["raw_attributes"]["objectGUID"][0]))


@pytest.fixture(scope="module")
def admin(ad_server: AdServer) -> Iterator[Admin]:
    a = Admin(ad_server)
    yield a
    a.conn.unbind()


@pytest.fixture(scope="module")
def streamer(ad_server: AdServer, admin: Admin) -> str:
    """An account granted "Replicating Directory Changes" on the domain (connectors/ldap.md)."""
    dn = f"CN={STREAMER},OU=Service Accounts,{ad_server.ou}"
    try:
        admin.conn.add(
            dn, ["top", "person", "organizationalPerson", "user"], {"sAMAccountName": STREAMER}
        )
    except ldap3.core.exceptions.LDAPEntryAlreadyExistsResult:
        return dn  # made and granted by another module of this session
    ad_server.samba_tool("user", "setpassword", STREAMER, f"--newpassword={STREAMER_PASSWORD}")
    ad_server.samba_tool("user", "enable", STREAMER)
    ad_server.samba_tool(
        "dsacl",
        "set",
        "--car=get-changes",
        "--action=allow",
        f"--objectdn={ad_server.base_dn}",
        f"--trusteedn={dn}",
    )
    grant_deleted_objects_read(ad_server, dn)
    return dn


def grant_deleted_objects_read(ad: AdServer, dn: str) -> None:
    """List Contents + Read Property on CN=Deleted Objects (KB 892806), as addata.py grants
    the reader: Samba's DirSync returns tombstones only to accounts that may read them."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[3]); from addata import "
        "_grant_deleted_objects_read as grant; from samba.param import LoadParm; "
        "from samba.samdb import SamDB; from samba.auth import system_session; "
        "lp = LoadParm(); lp.load(sys.argv[1]); "
        "grant(SamDB(url=lp.samdb_url(), session_info=system_session(), lp=lp), sys.argv[2])"
    )
    tool = Path(shutil.which("samba-tool") or "samba-tool")
    python = tool.read_text(errors="replace").splitlines()[0].removeprefix("#!").strip()
    subprocess.run(
        [*python.split(), "-c", code, ad.smb_conf, dn, str(SERVERS)],
        check=True,
        capture_output=True,
        timeout=60,
    )
