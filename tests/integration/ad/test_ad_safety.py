"""Every loss of access is guarded, on Active Directory: the Samba DC to the Bitwarden test
server and to scim2-server, through the CLI (issue 17; the slapd cases are in
tests/integration/safety). AD's ``mail`` is single-valued, so the re-ordering case has no
AD counterpart.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ldap3
import pytest
from click.testing import CliRunner, Result

from dirconnector import cli
from tests.emulators.bitwarden.server import BitwardenServer
from tests.integration.ad.conftest import AdServer
from tests.integration.scim.conftest import TOKEN, ScimServer
from tests.integration.scim.conftest import scim_process as scim_process  # shared fixture

pytestmark = pytest.mark.integration
NAMED_ONLY = "(!(sAMAccountName=bulk*))"   # the ten named people: a quick full sync


@dataclass
class Side:
    """A profile from the DC to one kind of server, and a view of what that server holds."""

    kind: str
    config: Path
    source: dict[str, str]
    target: str
    env: dict[str, str] = field(repr=False)      # holds secrets
    state: Callable[[], Any] = field(repr=False)

    def write(self, **source: str) -> None:
        values = {**self.source, **source}
        lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items())
        self.config.write_text(f'profile = "ad-safety"\n[source]\ntype = "ldap"\n{lines}\n'
                               f'{self.target}\n[state]\npath = '
                               f'"{self.config.with_name("state.db")}"\n')
        self.config.chmod(0o600)

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(cli.main, ["--config", str(self.config), *args],
                                  env=self.env, catch_exceptions=False)

    def synced(self) -> Any:
        first = self.run("sync")
        assert first.exit_code == 0, first.output
        return self.state()


@pytest.fixture(params=["bitwarden", "scim"])
def side(request: pytest.FixtureRequest, tmp_path: Path, ad_server: AdServer,
         scim_process: ScimServer) -> Iterator[Side]:
    """The DC's named people against a fresh Bitwarden organization or SCIM tenant."""
    source = {"url": ad_server.url, "bind_dn": ad_server.bind_dn, "password_env": "AD_PASSWORD",
              "base_dn": ad_server.ou, "user_filter": NAMED_ONLY}
    env = {"AD_PASSWORD": ad_server.password}
    config = tmp_path / "dirconnector.toml"
    if request.param == "bitwarden":
        with BitwardenServer() as bw:
            env["BW_SECRET"] = bw.client_secret

            def bw_state() -> Any:
                with bw.org.lock:
                    return (sorted((m.id, m.email, m.external_id, m.status)
                                   for m in bw.org.members.values()),
                            sorted((g.id, g.name, g.external_id, sorted(g.member_ids))
                                   for g in bw.org.groups.values()))

            s = Side("bitwarden", config, source,
                     f'[target]\ntype = "bitwarden"\nserver_url = "{bw.url}"\n'
                     f'client_id = "{bw.client_id}"\nclient_secret_env = "BW_SECRET"',
                     env, bw_state)
            s.write()
            yield s
        return
    server = ScimServer(scim_process.port, scim_process.process, f"a{uuid.uuid4().hex[:12]}")
    env["SCIM_TOKEN"] = TOKEN
    s = Side("scim", config, source,
             f'[target]\ntype = "scim"\nurl = "{server.url}"\ntoken_env = "SCIM_TOKEN"', env,
             lambda: (sorted(server.all("Users"), key=lambda r: str(r["id"])),
                      sorted(server.all("Groups"), key=lambda r: str(r["id"]))))
    s.write()
    yield s


def set_mail(ad: AdServer, sam: str, mail: str | None) -> None:
    """Change a person's mail as an AD administrator would (None removes it)."""
    conn = ldap3.Connection(ldap3.Server(ad.url), ad.admin_dn, ad.admin_password,
                            auto_bind=True)
    try:
        conn.search(ad.base_dn, f"(sAMAccountName={sam})", attributes=["mail"])
        (entry,) = conn.entries
        change = (ldap3.MODIFY_REPLACE, [mail]) if mail else (ldap3.MODIFY_DELETE, [])
        assert conn.modify(entry.entry_dn, {"mail": [change]}), conn.result
    finally:
        conn.unbind()


def test_mistyped_email_attribute_is_refused_and_changes_nothing(side: Side) -> None:
    """email_attribute = "mial" on all 1,700+ people: exit 3 names the cause, nothing changes."""
    side.write(user_filter="(sAMAccountName=*)")
    before = side.synced()
    side.write(user_filter="(sAMAccountName=*)", email_attribute="mial")
    refused = side.run("sync")
    assert refused.exit_code == 3, refused.output
    text = " ".join(refused.output.split())
    assert "unhealthy directory read:" in text and "users read have no email" in text
    assert side.state() == before


def test_user_losing_mail_keeps_their_groups(side: Side, ad_server: AdServer) -> None:
    """zoe's mail removed in AD: exit 0, zoe kept as is, Sales / Sales EMEA / Sales UK keep her."""
    before = side.synced()
    set_mail(ad_server, "zoe", None)
    try:
        result = side.run("sync")
        assert result.exit_code == 0, result.output
        assert "= zoe@dirconn.test: no email" in " ".join(result.output.split())
        assert side.state() == before
    finally:
        set_mail(ad_server, "zoe", "zoe@dirconn.test")


def test_email_change_is_a_note_on_bitwarden(side: Side, ad_server: AdServer) -> None:
    """jose's mail changed in AD: a note on Bitwarden (exit 0, then 'unchanged'); SCIM updates."""
    side.synced()
    set_mail(ad_server, "jose", "jose.mueller@dirconn.test")
    try:
        result = side.run("sync")
        assert result.exit_code == 0, result.output
        text = " ".join(result.output.split())
        if side.kind == "bitwarden":
            assert ("jose.mueller@dirconn.test: email change not possible through the import "
                    "(Bitwarden members own their email): jose.muller@dirconn.test → "
                    "jose.mueller@dirconn.test") in text
            assert "The directory is unchanged" in side.run("sync").output
        else:
            assert "Applied 1 of 1" in text
    finally:
        set_mail(ad_server, "jose", "jose.muller@dirconn.test")
