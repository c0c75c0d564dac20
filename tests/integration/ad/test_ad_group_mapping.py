"""Samba AD -> scim2-server with ``[target.group_mapping]``: groups keyed by objectGUID land
under the mapped displayName and externalId with their members; a group renamed or moved
on the DC (new DN, same objectGUID) is one PATCH of displayName; a changed mapping adopts
the same server groups."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dirconnector import settings as config
from dirconnector.state import open_store
from dirconnector.sync import Runner
from tests.integration.ad.conftest import AdServer
from tests.integration.ad.streams import NORMAL, Admin
from tests.integration.groupmap import (  # noqa: F401  # recording_wire: the wire fixture
    assert_converged,
    by_name,
    mapping_changes,
    members,
    recording_wire,
    user_ids,
    writes,
)
from tests.integration.scim.conftest import TOKEN, ScimServer
from tests.integration.scim.proxy import FaultProxy

pytestmark = pytest.mark.integration

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
GROUP_MAPPING = {"displayName": "dir-{name}", "externalId": "ad-{id}"}
PEOPLE = ("ann", "bob", "cid", "dee")
TREE_DELETE = ("1.2.840.113556.1.4.805", True, None)  # LDAP_SERVER_TREE_DELETE_OID


@dataclass
class Directory:
    """An OU of its own on the DC: four people, and two groups: eng (ann, bob) and ops
    (cid and, nested, eng). ``groups`` holds each group's current DN (a rename moves it)."""

    ou: str
    tag: str
    people: dict[str, str]
    groups: dict[str, str]

    def cn(self, name: str) -> str:
        return f"gm-{name}-{self.tag}"

    def mail(self, person: str) -> str:
        return f"{self.cn(person)}@dirconn.test"


@pytest.fixture
def directory(ad_server: AdServer, admin: Admin) -> Iterator[Directory]:
    tag = uuid.uuid4().hex[:6]
    ou = f"OU=gmap-{tag},{ad_server.ou}"
    admin.conn.add(ou, ["top", "organizationalUnit"])
    d = Directory(ou, tag, {}, {})
    try:
        admin.conn.add(f"OU=moved,{ou}", ["top", "organizationalUnit"])
        for p in PEOPLE:
            d.people[p] = f"CN={d.cn(p)},{ou}"
            admin.conn.add(
                d.people[p],
                ["top", "person", "organizationalPerson", "user"],
                {
                    "sAMAccountName": d.cn(p),
                    "givenName": p.title(),
                    "sn": f"Gm{tag}",
                    "mail": d.mail(p),
                    "userAccountControl": str(NORMAL),
                },
            )
        for g, members in (("eng", ["ann", "bob"]), ("ops", ["cid"])):
            d.groups[g] = f"CN={d.cn(g)},{ou}"
            admin.conn.add(
                d.groups[g],
                ["top", "group"],
                {"sAMAccountName": d.cn(g), "groupType": str(-2147483646)},
            )
            admin.add_members(d.groups[g], *(d.people[p] for p in members))
        admin.add_members(d.groups["ops"], d.groups["eng"])
        yield d
    finally:
        admin.conn.delete(ou, controls=[TREE_DELETE])


def runner(
    tmp_path: Path, ad: AdServer, d: Directory, url: str, group_mapping: dict[str, str]
) -> Runner:
    """The OU's people and groups, synced to ``url`` with ``group_mapping``."""
    data = {
        "source": {
            "type": "ldap",
            "url": ad.url,
            "bind_dn": ad.bind_dn,
            "password": ad.password,
            "base_dn": d.ou,
            "backend": "python-ldap",
        },
        "target": {"type": "scim", "url": url, "token": TOKEN, "group_mapping": group_mapping},
        "sync": {"remove_missing": True, "max_membership_removal_ratio": 1.0},
        "state": {"path": str(tmp_path / "state.db")},
    }
    profile = config.load(data=data)
    return Runner(profile, open_store(profile.settings.state))


@pytest.fixture
def synced(
    tmp_path: Path,
    ad_server: AdServer,
    directory: Directory,
    wire: FaultProxy,
    scim_server: ScimServer,
) -> Runner:
    """A full sync of the OU with the group mapping, through the recording proxy."""
    run = runner(tmp_path, ad_server, directory, wire.url + scim_server.path, GROUP_MAPPING)
    result = run.run("sync")
    assert result.status == "ok", result.error
    return run


def test_ad_groups_land_with_the_mapped_name_and_object_guid_external_id(
    synced: Runner, ad_server: AdServer, directory: Directory, scim_server: ScimServer
) -> None:
    """Each group is on the server as dir-<cn>, externalId ad-<objectGUID as Samba prints
    it>, with its members flattened (ops holds eng's); the next full plan is empty."""
    d = directory
    found = by_name(scim_server)
    assert set(found) == {f"dir-{d.cn('eng')}", f"dir-{d.cn('ops')}"}
    eng, ops = found[f"dir-{d.cn('eng')}"], found[f"dir-{d.cn('ops')}"]
    assert eng["externalId"] == "ad-" + ad_server.guid(d.cn("eng"), "group")
    assert ops["externalId"] == "ad-" + ad_server.guid(d.cn("ops"), "group")
    uid = user_ids(scim_server)
    assert members(eng) == {uid[d.mail("ann")], uid[d.mail("bob")]}
    assert members(ops) == {uid[d.mail(p)] for p in ("ann", "bob", "cid")}
    assert_converged(synced)


def rename_over_ldap(ad: AdServer, admin: Admin, d: Directory, new: str) -> None:
    """What ADUC's Rename does: a modify DN of the RDN (cn and name change, sAMAccountName
    stays)."""
    d.groups["eng"] = admin.rename(d.groups["eng"], f"CN={d.cn(new)}")


def rename_with_samba_tool(ad: AdServer, admin: Admin, d: Directory, new: str) -> None:
    """samba-tool group rename on the DC: sAMAccountName and, with it, the CN."""
    ad.samba_tool("group", "rename", d.cn("eng"), f"--samaccountname={d.cn(new)}")
    d.groups["eng"] = f"CN={d.cn(new)},{d.ou}"


def move_and_rename(ad: AdServer, admin: Admin, d: Directory, new: str) -> None:
    """A modify DN to another OU under the base, with a new RDN."""
    d.groups["eng"] = admin.rename(d.groups["eng"], f"CN={d.cn(new)}", f"OU=moved,{d.ou}")


@pytest.mark.parametrize(
    "rename",
    [
        pytest.param(rename_over_ldap, id="ldap-modrdn"),
        pytest.param(rename_with_samba_tool, id="samba-tool"),
        pytest.param(move_and_rename, id="moved-to-another-ou"),
    ],
)
def test_a_group_renamed_on_the_dc_is_one_patch_of_display_name(
    rename: Any,
    synced: Runner,
    ad_server: AdServer,
    admin: Admin,
    directory: Directory,
    wire: FaultProxy,
    scim_server: ScimServer,
) -> None:
    """eng (nested in ops) renamed on the DC: its DN changes, its objectGUID does not. The
    sync is exactly one PATCH replacing eng's displayName; eng keeps its server id,
    externalId and members, and ops (whose member value AD rewrote to the new DN) keeps
    eng's members; then nothing."""
    d = directory
    guid = ad_server.guid(d.cn("eng"), "group")
    before = by_name(scim_server)
    rename(ad_server, admin, d, "platform")
    assert admin.guid(d.groups["eng"]) == guid
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
                    {"op": "replace", "path": "displayName", "value": f"dir-{d.cn('platform')}"}
                ],
            },
        )
    ]
    after = by_name(scim_server)
    old_eng, new_eng = before[f"dir-{d.cn('eng')}"], after[f"dir-{d.cn('platform')}"]
    assert set(after) == {f"dir-{d.cn('platform')}", f"dir-{d.cn('ops')}"}
    assert (new_eng["id"], new_eng["externalId"]) == (old_eng["id"], f"ad-{guid}")
    uid = user_ids(scim_server)
    assert members(new_eng) == members(old_eng) == {uid[d.mail("ann")], uid[d.mail("bob")]}
    ops = after[f"dir-{d.cn('ops')}"]
    assert members(ops) == {uid[d.mail(p)] for p in ("ann", "bob", "cid")}
    assert_converged(synced)


def test_members_changed_on_the_dc_follow_under_the_mapped_names(
    synced: Runner,
    admin: Admin,
    directory: Directory,
    wire: FaultProxy,
    scim_server: ScimServer,
) -> None:
    """dee added to eng and bob removed: PATCHes of groups only (eng's and the nesting
    ops's members), the mapped names and keys kept; then nothing."""
    d = directory
    admin.add_members(d.groups["eng"], d.people["dee"])
    admin.remove_members(d.groups["eng"], d.people["bob"])
    wire.reset()
    result = synced.run("sync")
    assert result.status == "ok", result.error
    assert {(m, kind) for m, kind, _ in writes(wire)} == {("PATCH", "Groups")}
    uid = user_ids(scim_server)
    found = by_name(scim_server)
    assert members(found[f"dir-{d.cn('eng')}"]) == {uid[d.mail("ann")], uid[d.mail("dee")]}
    assert members(found[f"dir-{d.cn('ops')}"]) == {uid[d.mail(p)] for p in ("ann", "cid", "dee")}
    assert_converged(synced)


@pytest.mark.parametrize(
    ("first", "then"),
    mapping_changes(GROUP_MAPPING),
)
def test_a_changed_group_mapping_adopts_the_same_ad_groups(
    first: dict[str, str],
    then: dict[str, str],
    tmp_path: Path,
    ad_server: AdServer,
    directory: Directory,
    wire: FaultProxy,
    scim_server: ScimServer,
) -> None:
    """A profile whose group_mapping changes finds its groups by the key they had (the
    objectGUID, or the key under the last good run's mapping): the same server groups are
    relinked and renamed in place (PATCH only, nothing created or deleted), with their
    members; the next full plan is empty."""
    d = directory
    url = wire.url + scim_server.path
    assert runner(tmp_path, ad_server, d, url, first).run("sync").status == "ok"
    guid = {g: ad_server.guid(d.cn(g), "group") for g in ("eng", "ops")}

    def expected(mapping: dict[str, str], g: str) -> tuple[str, str]:
        values = {"name": d.cn(g), "id": guid[g]}
        return (
            mapping.get("displayName", "{name}").format(**values),
            mapping.get("externalId", "{id}").format(**values),
        )

    before = by_name(scim_server)
    assert {n: g["externalId"] for n, g in before.items()} == dict(
        expected(first, g) for g in ("eng", "ops")
    )
    run = runner(tmp_path, ad_server, d, url, then)
    wire.reset()
    result = run.run("sync")
    assert result.status == "ok", result.error
    assert {m for m, _, _ in writes(wire)} == {"PATCH"}
    after = {
        g["displayName"]: (g["id"], g["externalId"], members(g)) for g in scim_server.all("Groups")
    }
    assert after == {
        expected(then, g)[0]: (
            before[expected(first, g)[0]]["id"],
            expected(then, g)[1],
            members(before[expected(first, g)[0]]),
        )
        for g in ("eng", "ops")
    }
    assert_converged(run)
