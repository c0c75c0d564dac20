"""Every loss of access is guarded: a real slapd to the Bitwarden test server and to
scim2-server, through the CLI, in the lived-in states of issue 17.

Each test starts from a good full sync of the same 300-person directory to a fresh
server, changes the directory the way an administrator or an accident would, and
checks what `dirconnector sync` does: exit code, message, and the server's state,
compared as a whole (a refused run leaves it byte-for-byte as it was).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from dirconnector import cli
from tests.emulators.bitwarden.server import BitwardenServer
from tests.integration.ldap.conftest import ldapdata, ldapmodify, running_slapd
from tests.integration.scim.conftest import TOKEN, ScimServer
from tests.integration.scim.conftest import scim_process as scim_process  # shared fixture

pytestmark = pytest.mark.integration
USERS, GROUPS = 300, 10
D = ldapdata


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One slapd for the module; each test puts back what it changed."""
    with running_slapd(tmp_path_factory.mktemp("safety-slapd"), USERS, GROUPS) as env:
        yield env


@dataclass
class Side:
    """A profile from the slapd to one kind of server, and a view of what that server holds."""

    kind: str
    config: Path
    env: dict[str, str] = field(repr=False)   # holds secrets: never in a failure report
    state: Callable[[], Any] = field(repr=False)
    """The server's users and groups, every field, in a stable order."""

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(cli.main, ["--config", str(self.config), *args],
                                  env=self.env, catch_exceptions=False)

    def synced(self) -> Any:
        first = self.run("sync")
        assert first.exit_code == 0, first.output
        return self.state()


def _config(tmp: Path, slapd: dict[str, str], target: str, **sync: object) -> Path:
    config = tmp / "dirconnector.toml"
    extra = "\n".join(f"{k} = {json.dumps(v)}" for k, v in sync.items())
    config.write_text(f"""
profile = "safety"
[source]
type = "ldap"
url = "{slapd['SLAPD_URL']}"
bind_dn = "{slapd['SLAPD_READER_DN']}"
password_env = "LDAP_PASSWORD"
disabled_filter = "(pwdAccountLockedTime=*)"
{target}
[sync]
{extra}
[state]
path = "{tmp / 'state.db'}"
""")
    config.chmod(0o600)
    return config


@pytest.fixture(params=["bitwarden", "scim"])
def side(request: pytest.FixtureRequest, tmp_path: Path, slapd: dict[str, str],
         scim_process: ScimServer) -> Iterator[Side]:
    """The slapd profile against a fresh Bitwarden organization or SCIM tenant."""
    env = {"LDAP_PASSWORD": slapd["SLAPD_READER_PASSWORD"]}
    if request.param == "bitwarden":
        with BitwardenServer() as bw:
            target = (f'[target]\ntype = "bitwarden"\nserver_url = "{bw.url}"\n'
                      f'client_id = "{bw.client_id}"\nclient_secret_env = "BW_SECRET"')
            env["BW_SECRET"] = bw.client_secret

            def bw_state() -> Any:
                with bw.org.lock:
                    members = sorted((m.id, m.email, m.external_id, m.status, m.type)
                                     for m in bw.org.members.values())
                    groups = sorted((g.id, g.name, g.external_id, sorted(g.member_ids))
                                    for g in bw.org.groups.values())
                return members, groups

            yield Side("bitwarden", _config(tmp_path, slapd, target), env, bw_state)
        return
    server = ScimServer(scim_process.port, scim_process.process, f"s{uuid.uuid4().hex[:12]}")
    target = f'[target]\ntype = "scim"\nurl = "{server.url}"\ntoken_env = "SCIM_TOKEN"'
    env["SCIM_TOKEN"] = TOKEN

    def scim_state() -> Any:
        return (sorted(server.all("Users"), key=lambda r: str(r["id"])),
                sorted(server.all("Groups"), key=lambda r: str(r["id"])))

    yield Side("scim", _config(tmp_path, slapd, target), env, scim_state)


def _memberships(state: Any, kind: str) -> int:
    if kind == "bitwarden":
        return sum(len(g[3]) for g in state[1])
    return sum(len(g.get("members") or []) for g in state[1])


def _active_with_mail(skip: int = 0) -> int:
    """A user that has mail, is not disabled and sits in a dept group."""
    return next(i for i in range(100 + skip, USERS) if D.has_mail(i) and not D.is_disabled(i))


# ---------------------------------------------------------------- slapd ACL


def _restart(slapd: dict[str, str], conf_text: str) -> None:
    """Restart the module's slapd on the same database and ports with ``conf_text``."""
    run_dir = Path(slapd["SLAPD_RUN_DIR"])
    conf = run_dir / "slapd.conf"
    pid = int((run_dir / "slapd.pid").read_text().strip())
    os.kill(pid, signal.SIGTERM)
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.05)
    conf.write_text(conf_text)
    urls = f"{slapd['SLAPD_URL']}/ {slapd['SLAPD_LDAPS_URL']}/"
    subprocess.run([os.environ.get("SLAPD", "/usr/sbin/slapd"), "-f", str(conf), "-h", urls],
                   check=True, capture_output=True)
    port = int(slapd["SLAPD_URL"].rsplit(":", 1)[1])
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "slapd did not come back"
            time.sleep(0.05)


@pytest.fixture
def hide_mail(slapd: dict[str, str]) -> Iterator[Callable[[], None]]:
    """Call to make `mail` unreadable by the sync account (an ACL change); undone after."""
    conf = Path(slapd["SLAPD_RUN_DIR"]) / "slapd.conf"
    original = conf.read_text()
    rule = f'access to * by dn.exact="{D.READER_DN}" read'
    assert rule in original
    hidden = original.replace(rule, f'access to attrs=mail by dn.exact="{D.READER_DN}" none '
                                    f'by users read by * none\n{rule}')
    changed: list[bool] = []

    def hide() -> None:
        _restart(slapd, hidden)
        changed.append(True)

    yield hide
    if changed:
        _restart(slapd, original)


def test_unreadable_emails_are_refused_and_change_nothing(side: Side,
                                                          hide_mail: Callable[[], None]) -> None:
    """ACL hides mail: sync exits 3 naming the cause, the server is untouched; --force
    then keeps every person as they are, group memberships included."""
    before = side.synced()
    assert _memberships(before, side.kind) > 250
    hide_mail()
    refused = side.run("sync", "--full")
    assert refused.exit_code == 3, refused.output
    text = " ".join(refused.output.split())
    assert "unhealthy directory read:" in text
    assert "users read have no email: is the email attribute readable by the sync account" in text
    assert side.state() == before
    forced = side.run("sync", "--full", "--force")
    assert forced.exit_code == 0, forced.output
    assert "No changes to make." in forced.output and "Kept as is (" in forced.output
    assert side.state() == before


def test_one_user_losing_mail_keeps_their_groups(side: Side, slapd: dict[str, str]) -> None:
    """One user's mail removed: exit 0, listed as kept, not one membership changes."""
    before = side.synced()
    i = _active_with_mail()
    ldapmodify(slapd, f"dn: {D.user_dn(i)}\nchangetype: modify\ndelete: mail\n")
    try:
        result = side.run("sync")
        assert result.exit_code == 0, result.output
        assert f"= {D.email(i)}: no email" in result.output
        assert side.state() == before
        (run,) = json.loads(side.run("history", "--limit", "1", "--format", "json").stdout)
        assert run["status"] == "no-changes" and run["counts"]["kept"] == 1
        (row,) = json.loads(side.run("history", "--run", run["id"], "--format", "json").stdout)
        assert (row["kind"], row["subject"], row["status"]) == ("kept", D.email(i), "kept")
    finally:
        ldapmodify(slapd, f"dn: {D.user_dn(i)}\nchangetype: modify\nadd: mail\n"
                          f"mail: {D.email(i)}\n")


def test_an_address_taken_by_another_entry_moves_nobody(side: Side,
                                                        slapd: dict[str, str]) -> None:
    """A's mail removed and B given A's address: neither changes; the message names both."""
    before = side.synced()
    a, b = _active_with_mail(), _active_with_mail(skip=20)
    ldapmodify(slapd, f"dn: {D.user_dn(a)}\nchangetype: modify\ndelete: mail\n")
    ldapmodify(slapd, f"dn: {D.user_dn(b)}\nchangetype: modify\nreplace: mail\n"
                      f"mail: {D.email(a)}\n")
    try:
        result = side.run("sync")
        assert result.exit_code == 0, result.output
        text = " ".join(result.output.split())
        assert f"= {D.email(a)}: no email" in text
        assert f"= {D.email(b)}: email held by a kept account ({D.email(a)} is the account of " \
               f"{D.user_dn(a)} (no email)" in text
        assert side.state() == before
    finally:
        ldapmodify(slapd, f"dn: {D.user_dn(b)}\nchangetype: modify\nreplace: mail\n"
                          f"mail: {D.email(b)}\n")
        ldapmodify(slapd, f"dn: {D.user_dn(a)}\nchangetype: modify\nadd: mail\n"
                          f"mail: {D.email(a)}\n")


def test_email_change_the_server_cannot_make_is_a_note(side: Side,
                                                       slapd: dict[str, str]) -> None:
    """Bitwarden: a changed mail is a note, exit 0, and the next run is 'unchanged';
    generic SCIM applies the same change."""
    side.synced()
    i = _active_with_mail()
    new = f"renamed.{D.uid(i)}@example.com"
    ldapmodify(slapd, f"dn: {D.user_dn(i)}\nchangetype: modify\nreplace: mail\nmail: {new}\n")
    try:
        result = side.run("sync")
        assert result.exit_code == 0, result.output
        text = " ".join(result.output.split())
        if side.kind == "bitwarden":
            assert (f"= {new}: email change not possible through the import (Bitwarden members "
                    f"own their email): {D.email(i)} → {new}") in text
            assert "failed" not in text and "partial" not in text
            again = side.run("sync")
            assert again.exit_code == 0 and "The directory is unchanged" in again.output
            runs = json.loads(side.run("history", "--limit", "2", "--format", "json").stdout)
            assert [r["status"] for r in runs] == ["unchanged", "no-changes"]
            (row,) = json.loads(side.run("history", "--run", runs[1]["id"], "--format",
                                         "json").stdout)
            assert row["status"] == "kept" and "email change not possible" in row["error"]
        else:
            assert "update user" in text and "Applied 1 of 1" in text
    finally:
        ldapmodify(slapd, f"dn: {D.user_dn(i)}\nchangetype: modify\nreplace: mail\n"
                          f"mail: {D.email(i)}\n")


def test_reordered_mail_values_change_nobody(side: Side, slapd: dict[str, str]) -> None:
    """Two mail values, then the same two in the other order: no change either time."""
    before = side.synced()
    i = _active_with_mail()
    alias = f"aaa.alias.{i}@example.com"     # sorts first: only the uid rule keeps the address
    ldapmodify(slapd, f"dn: {D.user_dn(i)}\nchangetype: modify\nreplace: mail\n"
                      f"mail: {D.email(i)}\nmail: {alias}\n")
    try:
        assert "No changes" in side.run("sync").output
        ldapmodify(slapd, f"dn: {D.user_dn(i)}\nchangetype: modify\nreplace: mail\n"
                          f"mail: {alias}\nmail: {D.email(i)}\n")
        result = side.run("sync")
        assert result.exit_code == 0 and "No changes" in result.output, result.output
        assert side.state() == before
    finally:
        ldapmodify(slapd, f"dn: {D.user_dn(i)}\nchangetype: modify\nreplace: mail\n"
                          f"mail: {D.email(i)}\n")


def test_emptied_groups_are_refused_then_forced_exactly(side: Side,
                                                        slapd: dict[str, str]) -> None:
    """Three dept groups emptied: refused with both figures; --force removes exactly those."""
    before = side.synced()
    emptied = [D.dept(k) for k in range(3)]
    saved = {cn: [D.user_dn(i) for i in range(k, USERS, GROUPS)]
             for k, cn in enumerate(emptied)}
    for cn in emptied:
        # groupOfNames needs one member: the reader account, which is nobody's account
        ldapmodify(slapd, f"dn: {D.group_dn(cn)}\nchangetype: modify\nreplace: member\n"
                          f"member: {D.READER_DN}\n")
    try:
        refused = side.run("sync")
        assert refused.exit_code == 3, refused.output
        text = " ".join(refused.output.split())
        assert "group membership(s)" in text and "memberships of the groups it manages" in text
        assert "max_membership_removal" in text
        assert side.state() == before
        forced = side.run("sync", "--force", "--format", "json")
        assert forced.exit_code == 0, forced.output
        changes = json.loads(forced.stdout)["plan"]["changes"]
        assert sorted(c["group_name"] for c in changes) == emptied
        assert {c["kind"] for c in changes} == {"remove_members"}
        after = side.state()
        assert after[0] == before[0]              # no account changed
        assert _memberships(after, side.kind) == _memberships(before, side.kind) - sum(
            1 for dns in saved.values() for dn in dns
            if D.has_mail(int(dn[5:11])) and not D.is_disabled(int(dn[5:11])))
    finally:
        for cn, dns in saved.items():
            ldapmodify(slapd, f"dn: {D.group_dn(cn)}\nchangetype: modify\nreplace: member\n"
                       + "".join(f"member: {dn}\n" for dn in dns))
