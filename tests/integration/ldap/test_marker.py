"""The change marker (contextCSN through syncprov) and the runner skipping unchanged reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from dirconnector import settings
from dirconnector.connectors.ldap.connector import LdapConnector
from dirconnector.state import SqliteStore
from dirconnector.sync import Runner
from dirconnector.testing import FakeTarget

from .conftest import MakeSettings, ldapdata, ldapmodify

pytestmark = pytest.mark.integration
RENAMED = 102          # active, has mail


def _rename(slapd: dict[str, str], name: str) -> None:
    ldapmodify(slapd, f"dn: {ldapdata.user_dn(RENAMED)}\nchangetype: modify\n"
                      f"replace: displayName\ndisplayName: {name}\n")


def test_marker_moves_with_every_kind_of_write(make_settings: MakeSettings,
                                               slapd: dict[str, str]) -> None:
    connector = LdapConnector(make_settings())
    first = connector.change_marker()
    assert first is not None and first.startswith("openldap:")
    assert connector.change_marker() == first                 # no write, no move
    seen = {first}
    dn = f"uid=marker-probe,ou=people,{ldapdata.BASE}"
    for ldif in (f"dn: {dn}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: marker-probe\n"
                 f"cn: Probe\nsn: Probe\nmail: probe@example.com\n",
                 f"dn: {dn}\nchangetype: modify\nreplace: mail\nmail: probe2@example.com\n",
                 f"dn: {dn}\nchangetype: delete\n"):
        ldapmodify(slapd, ldif)
        marker = connector.change_marker()
        assert marker not in seen, ldif.splitlines()[1]
        seen.add(marker)


def test_runner_skips_the_read_until_the_directory_changes(
        make_settings: MakeSettings, slapd: dict[str, str], tmp_path: Path) -> None:
    backend = make_settings().backend
    source = {"type": "ldap", "url": slapd["SLAPD_URL"], "bind_dn": slapd["SLAPD_READER_DN"],
              "password": slapd["SLAPD_READER_PASSWORD"], "backend": backend}
    profile = settings.load(data={
        "source": source, "target": {"type": "scim", "url": "http://127.0.0.1:9", "token": "t"},
        "sync": {"max_revocations": 10**6, "max_revocation_ratio": 1.0},
        "state": {"path": str(tmp_path / "s.db")}})
    connector = LdapConnector(profile.source)  # type: ignore[arg-type]
    reads = []
    fetch = connector.fetch
    connector.fetch = lambda state: reads.append(1) or fetch(state)  # type: ignore[method-assign]
    target = FakeTarget()
    store = SqliteStore(tmp_path / "s.db")
    runner = Runner(profile, store, connector=connector, target=target)
    assert runner.run("sync").status == "ok"
    assert runner.run("sync").status == "unchanged" and len(reads) == 1
    _rename(slapd, "Renamed By Marker Test")
    try:
        result = runner.run("sync")
        assert len(reads) == 2
        assert [c.kind for c in result.plan.changes] == ["update_user"]  # type: ignore[union-attr]
        assert runner.run("sync").status == "unchanged" and len(reads) == 2
    finally:
        _rename(slapd, f"User {RENAMED}")
