"""Watch from a real slapd to the Bitwarden test server (Public API import)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dirconnector import settings
from dirconnector.targets import ReadsSome
from dirconnector.targets.bitwarden.target import BitwardenTarget
from tests.emulators.bitwarden.org import REVOKED
from tests.emulators.bitwarden.server import BitwardenServer
from tests.integration.ldap.conftest import ldapmodify

from .conftest import Running, ldapdata
from .test_watch_ldap import until

pytestmark = pytest.mark.integration


@pytest.fixture
def bw_server() -> Iterator[BitwardenServer]:
    server = BitwardenServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_changes_reach_bitwarden(
    tmp_path: Path, slapd_rw: dict[str, str], bw_server: BitwardenServer
) -> None:
    """A lock revokes the member; a new user joins a group; both through watch batches."""
    profile = settings.load(
        data={
            "source": {
                "type": "ldap",
                "url": slapd_rw["SLAPD_URL"],
                "bind_dn": slapd_rw["SLAPD_ADMIN_DN"],
                "password": slapd_rw["SLAPD_ADMIN_PASSWORD"],
                "backend": "python-ldap",
                "disabled_filter": "(pwdAccountLockedTime=*)",
            },
            "target": {
                "type": "bitwarden",
                "server_url": bw_server.url,
                "client_id": bw_server.client_id,
                "client_secret": bw_server.client_secret,
            },
            "sync": {"remove_missing": True, "batch_window": "0.2s"},
            "state": {"path": str(tmp_path / "state.db")},
        }
    )
    with Running(profile) as run:
        until(lambda: run.watcher.full_syncs >= 1 and bool(run.watcher.position), 60)
        assert isinstance(run.watcher.target, BitwardenTarget)
        assert isinstance(run.watcher.target, ReadsSome)
        email = ldapdata.email(40)
        ldapmodify(
            slapd_rw,
            f"dn: {ldapdata.user_dn(40)}\nchangetype: modify\n"
            f"add: pwdAccountLockedTime\npwdAccountLockedTime: "
            f"{ldapdata.LOCKED}\n",
        )
        until(lambda: (m := bw_server.member(email)) is not None and m.status == REVOKED, 15)
        people = ldapdata.PEOPLE
        dept = ldapdata.dept(1)
        ldapmodify(
            slapd_rw,
            f"dn: uid=bwnew,{people}\nchangetype: add\n"
            f"objectClass: inetOrgPerson\nuid: bwnew\ncn: Bw New\nsn: New\n"
            f"mail: bwnew@example.com\n\n"
            f"dn: {ldapdata.group_dn(dept)}\nchangetype: modify\n"
            f"add: member\nmember: uid=bwnew,{people}\n",
        )

        def joined() -> bool:
            m = bw_server.member("bwnew@example.com")
            g = next((g for g in bw_server.org.groups.values() if g.name == dept), None)
            return m is not None and g is not None and m.id in g.member_ids

        until(joined, 15)
        until(lambda: run.watcher.batches >= 2, 15)  # counted once the batch is saved
    assert run.error is None, run.error
