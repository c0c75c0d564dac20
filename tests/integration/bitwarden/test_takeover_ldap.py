"""Taking over from bwdc on OpenLDAP: bwdc keyed members and groups on their DN.

The Bitwarden test server is seeded exactly as bwdc leaves it (tests/emulators/bwdc:
bwdc's rules read from the same slapd, its import bodies and largeImport batches),
then an administrator runs import-bwdc on bwdc's data.json, plan, sync, plan.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.emulators import bwdc
from tests.emulators.bitwarden.org import ADMIN, CUSTOM, INVITED, STAGED, USER
from tests.emulators.bitwarden.server import BitwardenServer
from tests.integration.ldap.conftest import ldapdata, running_slapd
from tests.integration.takeover import Takeover, applied, import_bwdc

pytestmark = pytest.mark.integration

USERS, GROUPS = 2300, 20       # bwdc batches more than 2,000 objects (largeImport)
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SYNC: dict[str, Any] = {
    "groups": True, "userPath": "ou=people", "userObjectClass": "inetOrgPerson",
    "userEmailAttribute": "mail", "groupPath": "ou=groups", "groupObjectClass": "groupOfNames",
    "groupNameAttribute": "cn", "memberAttribute": "member", "largeImport": True,
    "removeDisabled": False, "overwriteExisting": False}
COLLECTIONS = [{"id": "c0ffee00-0000-4000-8000-000000000001", "readOnly": True,
                "hidePasswords": False, "manage": False},
               {"id": "c0ffee00-0000-4000-8000-000000000002", "readOnly": False,
                "hidePasswords": False, "manage": True}]
PERMISSIONS = {"accessEventLogs": True, "accessImportExport": False, "accessReports": True,
               "createNewCollections": False, "editAnyCollection": False,
               "deleteAnyCollection": False, "manageGroups": True, "managePolicies": False,
               "manageSso": False, "manageUsers": False, "manageResetPassword": False,
               "manageScim": False}


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with running_slapd(tmp_path_factory.mktemp("takeover-slapd"), USERS, GROUPS) as env:
        yield env


def bwdc_server(slapd: dict[str, str], invite: bool = False,
                **sync: Any) -> tuple[BitwardenServer, dict[str, Any]]:
    """A Bitwarden server after bwdc's sync of this slapd, and bwdc's data.json for it."""
    server = BitwardenServer()
    server.start()
    server.add_owner("owner@example.com")            # the admin who set bwdc up
    options = {**SYNC, "inviteUsersAfterProvisioning": invite, **sync}
    groups, users = bwdc.ldap_entries(slapd["SLAPD_URL"], slapd["SLAPD_READER_DN"],
                                      slapd["SLAPD_READER_PASSWORD"], slapd["SLAPD_BASE_DN"],
                                      options, ad=False)
    bodies = bwdc.bwdc_requests(groups, users, options)
    assert len(bodies) == 3 and all(b["largeImport"] for b in bodies)   # 2 x members, groups
    bwdc.seed(server, bodies)
    host, port = slapd["SLAPD_URL"].removeprefix("ldap://").split(":")
    data = bwdc.data_json(server, 0, "directoryLdap", {
        "hostname": host, "port": int(port), "ssl": False, "startTls": False,
        "rootPath": slapd["SLAPD_BASE_DN"], "username": slapd["SLAPD_READER_DN"], "ad": False,
        "pagedSearch": True}, options)
    return server, data


def takeover(tmp_path: Path, slapd: dict[str, str], server: BitwardenServer,
             data: dict[str, Any], **extra: str) -> Takeover:
    return import_bwdc(tmp_path, data, {"LDAP_BIND_PASSWORD": slapd["SLAPD_READER_PASSWORD"],
                                        "BW_CLIENTSECRET": server.client_secret}, **extra)


def decorate(server: BitwardenServer) -> dict[str, tuple[int, Any, Any]]:
    """What an administrator did in the web vault after bwdc's sync: roles, custom
    permissions, collections on members and a group. Returns email -> (type, perms, colls)."""
    chosen = {ldapdata.email(1): CUSTOM, ldapdata.email(2): ADMIN, ldapdata.email(4): USER}
    for email, kind in chosen.items():
        m = server.member(email)
        assert m is not None
        m.type = kind
        m.collections = [dict(c) for c in COLLECTIONS]
        if kind == CUSTOM:
            m.permissions = dict(PERMISSIONS)
    group = server.group_by_external_id(f"cn={ldapdata.dept(1)},{ldapdata.GROUPS}")
    assert group is not None
    group.collections = [dict(COLLECTIONS[1])]
    out = {}
    for email in chosen:
        m = server.member(email)
        assert m is not None
        out[email] = (m.type, m.permissions, m.collections)
    return out


@pytest.mark.parametrize("invite", [False, True], ids=["staged", "invited"])
def test_takeover_converges(slapd: dict[str, str], tmp_path: Path, invite: bool) -> None:
    """import-bwdc, plan, sync, plan: every member and group relinked, 0 failed, nobody
    invited again, roles, permissions and collections kept, and the last plan empty."""
    server, data = bwdc_server(slapd, invite)
    try:
        status = STAGED if not invite else INVITED
        assert {m.status for m in server.org.members.values() if m.type != 0} == {status}
        kept = decorate(server)
        members_before = {m.id: m.email for m in server.org.members.values()}
        groups_before = {g.id: (g.name, set(g.member_ids)) for g in server.org.groups.values()}
        t = takeover(tmp_path, slapd, server, data)
        assert 'takeover_from = "bwdc"' in t.text()
        assert t.run("config", "validate").exit_code == 0

        plan = t.run("plan")
        assert plan.exit_code == 0, plan.output
        assert "Takeover from bwdc" in plan.output
        dn = f"uid={ldapdata.uid(0)},{ldapdata.PEOPLE}"
        assert re.search(rf'> relink {ldapdata.email(0)}: "{dn}" → [0-9a-f-]{{36}}', plan.output)
        relinked = len(members_before) - 1                       # all but the owner
        assert f"{relinked} member(s) and {len(groups_before)} group(s) recognised" in plan.output
        assert "0 directory user(s) without a member" in plan.output

        server.clear_log()
        sync = t.run("sync")
        assert sync.exit_code == 0, sync.output[-3000:]
        ok, total, failed = applied(sync.output)
        assert failed == 0 and ok == total
        new_members = [m for body in server.imports() for m in body["members"]]
        assert new_members == []                                   # nobody created, invited
        assert server.calls("POST", "/reinvite") == []
        assert {m.id: m.email for m in server.org.members.values()} == members_before
        assert all(UUID.match(m.external_id or "") for m in server.org.members.values()
                   if m.type != 0)
        assert all(UUID.match(g.external_id or "") for g in server.org.groups.values())
        for email, before in kept.items():
            m = server.member(email)
            assert m is not None and (m.type, m.permissions, m.collections) == before
        group = next(g for g in server.org.groups.values() if g.name == ldapdata.dept(1))
        assert group.collections == [COLLECTIONS[1]]
        for gid, (name, members) in groups_before.items():   # memberships only grew
            assert server.org.groups[gid].name == name
            assert members <= server.org.groups[gid].member_ids

        again = t.run("plan")
        assert again.exit_code == 0, again.output
        assert "No changes. The server matches the directory." in again.output
        assert "0 member(s) and 0 group(s) whose key" not in again.output
    finally:
        server.stop()


def test_differences_from_bwdc_are_reported(slapd: dict[str, str], tmp_path: Path) -> None:
    """What bwdc left differently (a member spelt in another case bwdc could not match, so
    missing from a group and the group nesting it) is counted in the report and applied."""
    server, data = bwdc_server(slapd)
    try:
        smith = server.member("john.smith@example.com")
        rnd = server.group_by_external_id(f"cn=R&D\\2C Europe,{ldapdata.GROUPS}")
        assert smith is not None and rnd is not None and smith.id not in rnd.member_ids
        t = takeover(tmp_path, slapd, server, data)
        plan = t.run("plan")
        assert "differ from what bwdc left: 2 group membership(s) to add" in plan.output
        assert "add to group R&D, Europe: +john.smith@example.com" in plan.output
        assert "add to group Research: +john.smith@example.com" in plan.output
        assert t.run("sync").exit_code == 0
        assert smith.id in rnd.member_ids
    finally:
        server.stop()


def test_other_spellings_of_a_dn_are_relinked(slapd: dict[str, str], tmp_path: Path) -> None:
    """A DN stored in another case, spacing or escaping is the same key: relinked."""
    server, data = bwdc_server(slapd)
    try:
        spellings = {
            ldapdata.email(5): f"UID={ldapdata.uid(5)}, OU=People, DC=Example, DC=Com",
            "john.smith@example.com": "cn=Smith\\, John,ou=people,dc=example,dc=com",
            "plus.user@example.com": "uid=plus+cn=Multi Valued,ou=people,dc=example,dc=com",
        }
        for email, spelt in spellings.items():
            m = server.member(email)
            assert m is not None
            m.external_id = spelt
        t = takeover(tmp_path, slapd, server, data)
        plan = t.run("plan")
        for email, spelt in spellings.items():
            assert f'> relink {email}: "{spelt}" →' in plan.output
        sync = t.run("sync")
        assert sync.exit_code == 0 and applied(sync.output)[2] == 0
        assert all(UUID.match(server.member(e).external_id or "")  # type: ignore[union-attr]
                   for e in spellings)
        assert "No changes." in t.run("plan").output
    finally:
        server.stop()


def test_unmatched_keys_are_listed_and_left_alone(slapd: dict[str, str],
                                                  tmp_path: Path) -> None:
    """Members whose bwdc key matches no entry are listed, not linked by email, not removed;
    the directory user holding such an email is not created; the sync has no failure."""
    server, data = bwdc_server(slapd, removeDisabled=False)
    try:
        renamed = server.member(ldapdata.email(6))
        assert renamed is not None
        renamed.external_id = f"uid=old-name,{ldapdata.PEOPLE}"     # renamed since bwdc ran
        gone = server.add_member("left@example.com",
                                 external_id=f"uid=left,{ldapdata.PEOPLE}", status=STAGED)
        t = takeover(tmp_path, slapd, server, data, sync_extra='manage = "external_id"')
        t.profile.write_text(t.text().replace("remove_missing = false", "remove_missing = true"))
        plan = t.run("plan")
        assert plan.exit_code == 0, plan.output
        assert f"user {ldapdata.email(6)} ('uid=old-name,{ldapdata.PEOPLE}')" in plan.output
        assert "neither linked nor created" in plan.output
        assert "revoke user left@example.com (no longer in the directory)" in plan.output
        assert f"create user {ldapdata.email(6)}" not in plan.output
        sync = t.run("sync")
        assert sync.exit_code == 0 and applied(sync.output)[2] == 0
        assert renamed.external_id == f"uid=old-name,{ldapdata.PEOPLE}"   # untouched
        assert renamed.status == STAGED and gone.status == -1
        again = t.run("plan")
        assert "No changes." in again.output and "old-name" in again.output
    finally:
        server.stop()


def test_guard_says_removals_are_bwdc_leftovers(slapd: dict[str, str], tmp_path: Path) -> None:
    """Locked users bwdc sent as active: revoking them all at once is refused, and the
    refusal says these are what bwdc left; nothing is changed."""
    server, data = bwdc_server(slapd)
    try:
        t = takeover(tmp_path, slapd, server, data,
                     source_extra='disabled_filter = "(pwdAccountLockedTime=*)"',
                     sync_extra="")
        t.profile.write_text(t.text().replace("remove_disabled = false",
                                              "remove_disabled = true"))
        before = {m.id: (m.external_id, m.status) for m in server.org.members.values()}
        sync = t.run("sync")
        assert sync.exit_code == 3, sync.output
        assert "first plan of a takeover from bwdc" in sync.output
        assert "disabled in the directory but active on the server" in sync.output
        assert {m.id: (m.external_id, m.status) for m in server.org.members.values()} == before
    finally:
        server.stop()


def _journal(state: Path) -> list[tuple[str, str]]:
    try:
        with sqlite3.connect(state) as db:
            return list(db.execute("SELECT kind, status FROM journal"))
    except sqlite3.OperationalError:
        return []


def test_relink_killed_half_way_resumes(slapd: dict[str, str], tmp_path: Path) -> None:
    """kill -9 in the middle of the relinks: the journal names only relinks that landed,
    and a rerun relinks the rest and converges."""
    server, data = bwdc_server(slapd)
    try:
        t = takeover(tmp_path, slapd, server, data)
        server.clear_log()
        server.latency = 0.01
        exe = Path(sys.executable).parent / "dirconnector"
        proc = subprocess.Popen([str(exe), "--config", str(t.profile), "sync"], env={**os.environ, **t.env},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        state = tmp_path / "state.db"
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if sum(1 for kind, _ in _journal(state) if kind == "relink_user") >= 50:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        server.latency = 0.0
        done = [m for m in server.org.members.values() if UUID.match(m.external_id or "")]
        journalled = sum(1 for kind, status in _journal(state)
                         if kind == "relink_user" and status == "ok")
        assert 50 <= journalled <= len(done) < USERS - 100   # cut half-way, no false row
        rerun = t.run("sync")
        assert rerun.exit_code == 0, rerun.output[-2000:]
        assert applied(rerun.output)[2] == 0
        assert "No changes." in t.run("plan").output
        assert [m for body in server.imports() for m in body["members"]] == []
    finally:
        server.stop()


def test_posix_and_unique_groups_bwdc_never_synced(slapd: dict[str, str],
                                                   tmp_path: Path) -> None:
    """A profile reading more group classes than bwdc did: the extra groups are reported
    as groups bwdc never synced and created with their members."""
    server, data = bwdc_server(slapd)
    try:
        t = takeover(tmp_path, slapd, server, data)
        t.profile.write_text(t.text().replace(
            'group_object_class = "groupOfNames"',
            'group_object_class = ["groupOfNames", "groupOfUniqueNames", "posixGroup"]').replace(
            'member_attribute = "member"\n', ""))
        plan = t.run("plan")
        assert "2 group(s) bwdc never synced (+ create)" in plan.output
        assert t.run("sync").exit_code == 0
        names = {g.name for g in server.org.groups.values()}
        assert {"unique-team", "posix-devs"} <= names
        assert "No changes." in t.run("plan").output
    finally:
        server.stop()

