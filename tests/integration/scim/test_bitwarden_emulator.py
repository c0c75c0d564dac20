"""The scim target against the Bitwarden-compatible test server's SCIM v2 endpoint (issue 8).

tests/emulators/bitwarden serves /v2/<org>/users|groups with Bitwarden's quirks
(shared/reference/bitwarden.md 3): no ServiceProviderConfig, 409 that never links,
PATCH of active/externalId only, groups without members.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from urllib.parse import urlsplit

import pytest

from dirconnector.diff import diff
from dirconnector.model import Group, Snapshot, User
from dirconnector.outcome import Outcome
from dirconnector.targets.scim.target import ScimSettings, ScimTarget
from tests.emulators.bitwarden.server import BitwardenServer

from .conftest import directory
from .proxy import Fault, FaultProxy
from .test_sync import POLICY, next_plan, sync

pytestmark = pytest.mark.integration


@pytest.fixture
def bw() -> Iterator[BitwardenServer]:
    with BitwardenServer() as server:
        server.add_owner("owner@example.org")
        yield server


def plain_names(n: int) -> tuple[list[User], list[Group]]:
    """The test directory without first/last names (Bitwarden cannot read those back)."""
    users, groups = directory(n)
    return [replace(u, given_name="", family_name="") for u in users], groups


def provider_for(server: BitwardenServer) -> object:
    """Group members from the server's own state: what a Public API reader would return."""
    def provider(groups: Sequence[Group]) -> Mapping[str, Iterable[str]]:
        return {g.id: set(g.member_ids) for g in server.org.groups.values()}
    return provider


def target_for(url: str, server: BitwardenServer, **kw: object) -> ScimTarget:
    return ScimTarget(ScimSettings(type="scim", url=url, token=server.scim_key),
                      **kw)  # type: ignore[arg-type]


def test_converges_with_members_provider(bw: BitwardenServer) -> None:
    """Users (first/last names too), groups and flattened members converge: second plan empty."""
    target = target_for(bw.scim_url, bw, members_provider=provider_for(bw))
    assert target.check().ok
    assert target.user_fields == ("email",)
    users, groups = directory(15)
    _, outcomes = sync(target, users, groups)
    assert [o for o in outcomes if o.status != "ok"] == []
    assert next_plan(target, users, groups).empty
    eng = bw.group_by_external_id("grp-eng")
    assert eng is not None and len(eng.member_ids) == 15  # ids 0..14 all under Engineering
    assert bw.calls("GET", "ServiceProviderConfig") == []


def test_unknown_members_only_add(bw: BitwardenServer) -> None:
    """Without a provider the plan re-adds members each run and never removes one."""
    target = target_for(bw.scim_url, bw)
    users, groups = plain_names(8)
    sync(target, users, groups)
    emptied = [replace(g, member_ids=frozenset(), subgroup_ids=frozenset()) for g in groups]
    plan = next_plan(target, users, emptied)
    assert plan.empty
    plan = next_plan(target, users, groups)
    assert set(plan.counts()) == {"add_members"}
    _, outcomes = sync(target, users, groups)
    assert all(o.status == "ok" for o in outcomes)
    eng = bw.group_by_external_id("grp-eng")
    assert eng is not None and len(eng.member_ids) == 8  # no duplicates, nothing lost


def test_revoke_and_restore(bw: BitwardenServer) -> None:
    """Disable revokes the member (PATCH active=false); enable restores it."""
    target = target_for(bw.scim_url, bw, members_provider=provider_for(bw))
    users, groups = plain_names(5)
    sync(target, users, groups)
    disabled = [replace(u, active=False) if u.external_id == "ext-002" else u for u in users]
    plan, outcomes = sync(target, disabled, groups)
    assert [c.kind for c in plan.changes] == ["revoke_user"]
    assert [o.status for o in outcomes] == ["ok"]
    member = bw.member("user002@example.org")
    assert member is not None and member.status_name.lower() == "revoked"
    plan, _ = sync(target, users, groups)
    assert [c.kind for c in plan.changes] == ["restore_user"]
    member = bw.member("user002@example.org")
    assert member is not None and member.status_name.lower() != "revoked"


def test_email_change_refused(bw: BitwardenServer) -> None:
    """An email change fails with Bitwarden's limitation spelled out; the member is unchanged."""
    target = target_for(bw.scim_url, bw, members_provider=provider_for(bw))
    users, groups = plain_names(3)
    sync(target, users, groups)
    users[0] = replace(users[0], email="new-address@example.org")
    plan = diff(Snapshot.build(users, groups), target.snapshot(), POLICY)
    outcomes: list[Outcome] = []
    target.apply(plan, outcomes.append)
    bad = [o for o in outcomes if o.status == "failed"]
    assert len(bad) == 1 and "cannot change an email" in bad[0].error
    assert bw.member("user000@example.org") is not None
    assert bw.member("new-address@example.org") is None


def test_lost_answers_recover_without_duplicates(bw: BitwardenServer) -> None:
    """A create whose answer is lost (502 after the server acted, dropped socket) is found, not doubled."""
    proxy = FaultProxy(urlsplit(bw.url).port or 0).start()
    try:
        base = proxy.url + urlsplit(bw.scim_url).path
        target = target_for(base, bw, members_provider=provider_for(bw))
        users, groups = plain_names(6)
        prefix = urlsplit(bw.scim_url).path
        proxy.inject("POST", prefix + "/users", Fault.status_after(502))  # retry meets 409
        proxy.inject("POST", prefix + "/users", Fault.drop_after())
        proxy.inject("POST", prefix + "/groups", Fault.status_after(502))
        _, outcomes = sync(target, users, groups)
        assert [o for o in outcomes if o.status != "ok"] == []
        assert len(bw.org.members) == 6 + 1  # the owner and six members, once each
        assert len(bw.org.groups) == len(groups)
        assert 409 in [s for m, _, s in proxy.log if m == "POST"]
        assert next_plan(target, users, groups).empty
    finally:
        proxy.stop()


def test_public_api_members_provider(bw: BitwardenServer) -> None:
    """The bitwarden target's Public API members_provider makes the SCIM flavor converge."""
    from dirconnector.targets.bitwarden.target import BitwardenSettings, members_provider
    api = BitwardenSettings.model_validate({"type": "bitwarden", "server_url": bw.url,
                                            "client_id": bw.client_id,
                                            "client_secret": bw.client_secret})
    target = target_for(bw.scim_url, bw, members_provider=members_provider(api))
    users, groups = directory(12)
    _, outcomes = sync(target, users, groups)
    assert [o for o in outcomes if o.status != "ok"] == []
    assert target.snapshot().info["group_members"] == "provider"
    assert next_plan(target, users, groups).empty
    smaller = [replace(g, member_ids=g.member_ids - {"ext-001"}) for g in groups]
    plan, outcomes = sync(target, users, smaller)
    assert set(plan.counts()) == {"remove_members"} and all(o.status == "ok" for o in outcomes)
    eng = bw.group_by_external_id("grp-eng")
    assert eng is not None and bw.member("user001@example.org").id not in eng.member_ids  # type: ignore[union-attr]
