"""slapd -> scim2-server with ``[target.group_mapping]``: groups land under the mapped
displayName and externalId, a rename is one PATCH of displayName, members follow."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dirconnector import settings as config
from dirconnector.state import open_store
from dirconnector.sync import Runner
from tests.integration.groupmap import (  # noqa: F401  # recording_wire: the wire fixture
    assert_converged,
    by_name,
    mapping_changes,
    members,
    recording_wire,
    user_ids,
    writes,
)
from tests.integration.scim import conftest as scim
from tests.integration.scim.conftest import TOKEN, ScimServer
from tests.integration.scim.proxy import FaultProxy

from .conftest import ldapdata, ldapmodify, ldapsearch_value

pytestmark = pytest.mark.integration
scim_process, scim_server = scim.scim_process, scim.scim_server  # the SCIM server fixtures

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
GROUP_MAPPING = {"displayName": "dir-{name}", "externalId": "ldap-{id}"}
PEOPLE = (160, 161, 162, 164)  # with mail, enabled


@dataclass(frozen=True)
class Groups:
    """Two groups made for the test: ops holds user 162 and, nested, eng (160, 161)."""

    tag: str

    def cn(self, name: str) -> str:
        return f"gm-{self.tag}-{name}"

    def dn(self, name: str) -> str:
        return ldapdata.group_dn(self.cn(name))


@pytest.fixture
def groups(slapd: dict[str, str]) -> Iterator[Groups]:
    g = Groups(uuid.uuid4().hex[:6])
    ldapmodify(
        slapd,
        f"dn: {g.dn('eng')}\nchangetype: add\nobjectClass: groupOfNames\ncn: {g.cn('eng')}\n"
        f"member: {ldapdata.user_dn(160)}\nmember: {ldapdata.user_dn(161)}\n\n"
        f"dn: {g.dn('ops')}\nchangetype: add\nobjectClass: groupOfNames\ncn: {g.cn('ops')}\n"
        f"member: {ldapdata.user_dn(162)}\nmember: {g.dn('eng')}\n",
    )
    try:
        yield g
    finally:
        for name in ("ops", "eng", "platform"):
            delete_entry(slapd, g.dn(name))


def delete_entry(slapd: dict[str, str], dn: str) -> None:
    with contextlib.suppress(subprocess.CalledProcessError):  # renamed away, or never made
        ldapmodify(slapd, f"dn: {dn}\nchangetype: delete\n")


def runner(
    tmp_path: Path, slapd: dict[str, str], groups: Groups, url: str, group_mapping: dict[str, str]
) -> Runner:
    """Four people and the two groups, synced to ``url`` with ``group_mapping``."""
    data = {
        "source": {
            "type": "ldap",
            "url": slapd["SLAPD_URL"],
            "bind_dn": slapd["SLAPD_READER_DN"],
            "password": slapd["SLAPD_READER_PASSWORD"],
            "disabled_filter": "(pwdAccountLockedTime=*)",
            "user_filter": "(|" + "".join(f"(uid={ldapdata.uid(i)})" for i in PEOPLE) + ")",
            "group_filter": f"(cn=gm-{groups.tag}-*)",
        },
        "target": {"type": "scim", "url": url, "token": TOKEN, "group_mapping": group_mapping},
        # Two of five memberships removed is 40%: above the default ratio for a tiny org.
        "sync": {"remove_missing": True, "max_membership_removal_ratio": 1.0},
        "state": {"path": str(tmp_path / "state.db")},
    }
    profile = config.load(data=data)
    return Runner(profile, open_store(profile.settings.state))


@pytest.fixture
def synced(
    tmp_path: Path, slapd: dict[str, str], groups: Groups, wire: FaultProxy, scim_server: ScimServer
) -> Runner:
    """A full sync of four people and the two groups, with the group mapping."""
    run = runner(tmp_path, slapd, groups, wire.url + scim_server.path, GROUP_MAPPING)
    result = run.run("sync")
    assert result.status == "ok", result.error
    return run


def test_groups_land_with_the_mapped_display_name_and_external_id(
    synced: Runner, slapd: dict[str, str], groups: Groups, scim_server: ScimServer
) -> None:
    """Each group is on the server as dir-<cn>, externalId ldap-<entryUUID>, with its
    members flattened; the next plan is empty."""
    found = by_name(scim_server)
    assert set(found) == {f"dir-{groups.cn('eng')}", f"dir-{groups.cn('ops')}"}
    uid = user_ids(scim_server)
    eng, ops = found[f"dir-{groups.cn('eng')}"], found[f"dir-{groups.cn('ops')}"]
    assert eng["externalId"] == "ldap-" + ldapsearch_value(slapd, groups.dn("eng"), "entryUUID")
    assert ops["externalId"] == "ldap-" + ldapsearch_value(slapd, groups.dn("ops"), "entryUUID")
    assert members(eng) == {uid[ldapdata.email(160)], uid[ldapdata.email(161)]}
    assert members(ops) == {uid[ldapdata.email(i)] for i in (160, 161, 162)}
    assert_converged(synced)


def test_a_renamed_group_is_one_patch_of_display_name(
    synced: Runner, slapd: dict[str, str], groups: Groups, wire: FaultProxy, scim_server: ScimServer
) -> None:
    """A modrdn of ops in slapd (same entryUUID) is one PATCH replacing displayName with
    the mapped new name; nothing is created or deleted; then nothing."""
    before = by_name(scim_server)[f"dir-{groups.cn('ops')}"]
    ldapmodify(
        slapd,
        f"dn: {groups.dn('ops')}\nchangetype: modrdn\nnewrdn: cn={groups.cn('platform')}\n"
        "deleteoldrdn: 1\n",
    )
    wire.reset()
    result = synced.run("sync")
    assert result.status == "ok", result.error
    assert writes(wire) == [
        (
            "PATCH",
            "Groups",
            {
                "schemas": [PATCH_OP],
                "Operations": [
                    {
                        "op": "replace",
                        "path": "displayName",
                        "value": f"dir-{groups.cn('platform')}",
                    }
                ],
            },
        )
    ]
    after = by_name(scim_server)[f"dir-{groups.cn('platform')}"]
    assert (after["id"], after["externalId"]) == (before["id"], before["externalId"])
    assert members(after) == members(before)
    assert_converged(synced)


def test_members_added_and_removed_in_slapd_follow(
    synced: Runner, slapd: dict[str, str], groups: Groups, wire: FaultProxy, scim_server: ScimServer
) -> None:
    """A member added to eng and another removed are PATCHes of eng's and ops' members
    (ops holds eng); the groups keep their mapped names and the next plan is empty."""
    ldapmodify(
        slapd,
        f"dn: {groups.dn('eng')}\nchangetype: modify\nadd: member\n"
        f"member: {ldapdata.user_dn(164)}\n-\ndelete: member\nmember: {ldapdata.user_dn(161)}\n",
    )
    wire.reset()
    result = synced.run("sync")
    assert result.status == "ok", result.error
    assert {(m, kind) for m, kind, _ in writes(wire)} == {("PATCH", "Groups")}
    uid = user_ids(scim_server)
    found = by_name(scim_server)
    assert members(found[f"dir-{groups.cn('eng')}"]) == {
        uid[ldapdata.email(160)],
        uid[ldapdata.email(164)],
    }
    assert members(found[f"dir-{groups.cn('ops')}"]) == {
        uid[ldapdata.email(i)] for i in (160, 162, 164)
    }
    assert_converged(synced)


@pytest.mark.parametrize(
    ("first", "then"),
    mapping_changes(GROUP_MAPPING),
)
def test_a_changed_group_mapping_keeps_the_same_server_groups(
    first: dict[str, str],
    then: dict[str, str],
    tmp_path: Path,
    groups: Groups,
    slapd: dict[str, str],
    wire: FaultProxy,
    scim_server: ScimServer,
) -> None:
    """A profile whose group_mapping changes (externalId, displayName or both, added or
    removed) finds its groups by the key they had: the same server groups are relinked
    and renamed in place (PATCH only, nothing created or deleted); the next plan is empty."""
    url = wire.url + scim_server.path
    assert runner(tmp_path, slapd, groups, url, first).run("sync").status == "ok"
    uuid_of = {n: ldapsearch_value(slapd, groups.dn(n), "entryUUID") for n in ("eng", "ops")}

    def expected(mapping: dict[str, str], n: str) -> tuple[str, str]:
        name = mapping.get("displayName", "{name}").format(name=groups.cn(n), id=uuid_of[n])
        return name, mapping.get("externalId", "{id}").format(name=groups.cn(n), id=uuid_of[n])

    ids_before = {
        expected(first, n)[0]: g_id
        for n in ("eng", "ops")
        for g_id in [by_name(scim_server)[expected(first, n)[0]]["id"]]
    }
    run = runner(tmp_path, slapd, groups, url, then)
    wire.reset()
    result = run.run("sync")
    assert result.status == "ok", result.error
    assert {m for m, _, _ in writes(wire)} == {"PATCH"}
    after = {g["displayName"]: (g["id"], g["externalId"]) for g in scim_server.all("Groups")}
    assert after == {
        expected(then, n)[0]: (ids_before[expected(first, n)[0]], expected(then, n)[1])
        for n in ("eng", "ops")
    }
    assert_converged(run)
