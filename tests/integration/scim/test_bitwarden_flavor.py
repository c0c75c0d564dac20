"""flavor = "bitwarden": Bitwarden's SCIM routes and refusals (shared/reference/bitwarden.md 3).

scim2-server is dressed up by the proxy as Bitwarden's endpoint: the base URL is
/v2/<organization id>, routes are lower-case, and group reads carry no members.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

import pytest

from dirconnector.diff import diff
from dirconnector.model import Group, Snapshot
from dirconnector.outcome import Outcome
from dirconnector.plan import UpdateUser
from dirconnector.targets.scim.target import ScimSettings, ScimTarget

from .conftest import TOKEN, ScimServer, directory
from .proxy import FaultProxy
from .test_sync import POLICY, next_plan, sync

pytestmark = pytest.mark.integration

ORG = str(uuid.UUID(int=0x1234))


@pytest.fixture
def bitwarden(scim_server: ScimServer, proxy: FaultProxy) -> FaultProxy:
    """The proxy maps /v2/<org>/users|groups onto the server and strips group members."""
    routes = re.compile(rf"^/v2/{ORG}/(users|groups)")

    def rewrite(target: str) -> str:
        return routes.sub(lambda m: f"{scim_server.path}/{m.group(1).capitalize()}", target)

    def no_members(method: str, path: str, body: bytes) -> bytes:
        if method != "GET" or "/Groups" not in path:
            return body
        data = json.loads(body)
        for res in data.get("Resources", [data]):
            res.pop("members", None)
        return json.dumps(data).encode()

    proxy.rewrite = rewrite
    proxy.filter_response = no_members
    return proxy


def bw_target(proxy: FaultProxy, **kw: object) -> ScimTarget:
    settings = ScimSettings(type="scim", url=f"{proxy.url}/v2/{ORG}", token=TOKEN)
    return ScimTarget(settings, **kw)  # type: ignore[arg-type]


def test_flavor_detected_from_url(bitwarden: FaultProxy) -> None:
    """A /v2/<guid> URL is Bitwarden: no ServiceProviderConfig, no Bulk, lower-case routes."""
    target = bw_target(bitwarden)
    report = target.check()
    assert report.ok and "bitwarden" in report.items[0].detail
    users, groups = directory(10)
    _, outcomes = sync(target, users, groups)
    assert all(o.status == "ok" for o in outcomes)
    paths = [p for _, p, _ in bitwarden.log]
    assert not any("ServiceProviderConfig" in p or "Bulk" in p for p in paths)
    assert bitwarden.count("POST", "Users") == 10


def test_members_unknown_never_removed(bitwarden: FaultProxy) -> None:
    """Without a members provider, group members are marked unknown and never removed."""
    target = bw_target(bitwarden)
    users, groups = directory(10)
    sync(target, users, groups)
    snap = target.snapshot()
    assert snap.info["group_members"] == "unknown"
    assert all(not g.member_ids for g in snap.groups.values())
    fewer = [replace(g, member_ids=frozenset()) for g in groups]
    plan = diff(Snapshot.build(users, fewer), snap, POLICY)
    assert plan.counts()["remove_members"] == 0


def test_members_provider_supplies_membership(bitwarden: FaultProxy,
                                              scim_server: ScimServer) -> None:
    """A members_provider hook fills member_ids, so removals and an empty second plan work."""
    def provider(groups: Sequence[Group]) -> Mapping[str, Iterable[str]]:
        # Stands in for the Public API (GET /public/groups/{id}/member-ids).
        found: dict[str, list[str]] = {}
        for g in scim_server.all("Groups"):
            members = g.get("members")
            found[str(g["id"])] = [str(m["value"]) for m in members
                                   ] if isinstance(members, list) else []
        return found

    target = bw_target(bitwarden, members_provider=provider)
    users, groups = directory(10)
    sync(target, users, groups)
    assert target.snapshot().info["group_members"] == "provider"
    assert next_plan(target, users, groups).empty


def test_email_change_refused_name_change_skipped(bitwarden: FaultProxy) -> None:
    """An email UpdateUser is a limitation (a plan note); applied anyway it fails with a clear
    message, and a name-only update is skipped, not sent."""
    target = bw_target(bitwarden)
    users, groups = directory(4)
    sync(target, users, groups)
    users[1] = replace(users[1], email="renamed@example.org")
    users[2] = replace(users[2], display_name="New Name")
    snap = target.snapshot()
    assert snap.info["unreadable_user_fields"] == "given_name,family_name"
    plan = diff(Snapshot.build(users, groups), snap, POLICY)
    updates = [c for c in plan.changes if isinstance(c, UpdateUser)]
    assert {c.user.email for c in updates} >= {"renamed@example.org"}
    bitwarden.reset()
    outcomes: list[Outcome] = []
    target.apply(plan, outcomes.append)
    by_email = {o.change.user.email: o for o in outcomes  # type: ignore[union-attr]
                if o.change.kind == "update_user"}
    refused = by_email["renamed@example.org"]
    assert refused.status == "failed"
    assert "cannot change an email" in refused.error and "user001@example.org" in refused.error
    assert by_email["user002@example.org"].status == "skipped"
    assert "ignores" in by_email["user002@example.org"].error
    assert bitwarden.count("PATCH", "Users") == 0
    # The runner never sends them: both are limitations, listed as kept with the reason.
    limits = {c.user.email: why for c, why in target.limitations(plan)}  # type: ignore[union-attr]
    assert limits["renamed@example.org"].startswith(
        "email change not possible through Bitwarden's SCIM endpoint (Bitwarden members own "
        "their email): user001@example.org → renamed@example.org")


def test_revoke_is_one_active_patch(bitwarden: FaultProxy,
                                               scim_server: ScimServer) -> None:
    """Revocation is one PATCH replace active=false, which Bitwarden honours."""
    target = bw_target(bitwarden)
    users, groups = directory(4)
    sync(target, users, groups)
    disabled = [replace(u, active=False) if u.external_id == "ext-003" else u for u in users]
    bitwarden.reset()
    plan, outcomes = sync(target, disabled, groups)
    # Members are unknown without a provider, so the plan re-adds them (Bitwarden treats an
    # add of an existing member as a no-op, reference 3.3); the user side is one revoke.
    assert [c.kind for c in plan.changes if c.kind != "add_members"] == ["revoke_user"]
    assert all(o.status == "ok" for o in outcomes)
    assert bitwarden.count("PATCH", "Users") == 1
    assert scim_server.find_user("ext-003")["active"] is False


def test_flavor_detected_from_behaviour(scim_server: ScimServer, proxy: FaultProxy) -> None:
    """No ServiceProviderConfig plus Bitwarden's paging (itemsPerPage echoes count) is Bitwarden."""
    proxy.rewrite = lambda target: (target.replace("/ServiceProviderConfig", "/NoSuchThing")
                                    .replace("/users", "/Users").replace("/groups", "/Groups"))

    def echo_count(method: str, path: str, body: bytes) -> bytes:
        data = json.loads(body)
        if "itemsPerPage" in data and not data.get("Resources"):
            data["itemsPerPage"] = 7  # what Bitwarden answers to count=7 past the end
        return json.dumps(data).encode()

    proxy.filter_response = echo_count
    target = ScimTarget(ScimSettings(type="scim", url=proxy.url + scim_server.path, token=TOKEN))
    assert target.capabilities().flavor == "bitwarden"
    proxy.filter_response = None
    plain = ScimTarget(ScimSettings(type="scim", url=proxy.url + scim_server.path, token=TOKEN))
    assert plain.capabilities().flavor == "generic"
    assert not plain.capabilities().advertised
