"""The scim target with flavor "bitwarden" against this test server's SCIM endpoint."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dirconnector.diff import Policy, diff
from dirconnector.model import Group, Snapshot, User
from dirconnector.outcome import Outcome
from dirconnector.targets.bitwarden.target import BitwardenSettings, members_provider
from dirconnector.targets.scim.target import ScimSettings, ScimTarget
from dirconnector.testing import check_writes_external_id, managed_refs
from tests.emulators.bitwarden.org import REVOKED
from tests.emulators.bitwarden.server import BitwardenServer

pytestmark = pytest.mark.integration

USERS = [User(f"u{i}", f"user{i}@example.com") for i in range(1, 5)]
GROUPS = [Group("g-eng", "Engineering", frozenset({"u1", "u2"}), frozenset({"g-ops"})),
          Group("g-ops", "Ops", frozenset({"u3"}))]


def scim_target(server: BitwardenServer, *, with_public_api: bool) -> ScimTarget:
    settings = ScimSettings(type="scim", url=server.scim_url, token=server.scim_key)
    provider = members_provider(BitwardenSettings(
        type="bitwarden", server_url=server.url, client_id=server.client_id,
        client_secret=server.client_secret)) if with_public_api else None
    return ScimTarget(settings, members_provider=provider)


def converge(target: ScimTarget, desired: Snapshot) -> list[Outcome]:
    plan = diff(desired, target.snapshot(), Policy(remove_missing=True), managed_refs(target))
    outcomes: list[Outcome] = []
    target.apply(plan, outcomes.append)
    return outcomes


def test_scim_flavor_converges_with_public_api_members(bw_server: BitwardenServer) -> None:
    """Users, nested groups, a revoke and a member removal converge over Bitwarden SCIM."""
    target = scim_target(bw_server, with_public_api=True)
    desired = Snapshot.build(USERS, GROUPS)
    outcomes = converge(target, desired)
    assert outcomes and all(o.status == "ok" for o in outcomes), outcomes[:3]
    eng = bw_server.group_by_external_id("g-eng")
    assert eng is not None and {bw_server.org.members[i].email for i in eng.member_ids} == {
        "user1@example.com", "user2@example.com", "user3@example.com"}
    assert diff(desired, target.snapshot(), Policy(remove_missing=True),
                managed_refs(target)).empty
    changed = Snapshot.build([replace(USERS[0], active=False), *USERS[1:]],
                             [replace(GROUPS[0], member_ids=frozenset({"u1"})), GROUPS[1]])
    outcomes = converge(target, changed)
    assert all(o.status == "ok" for o in outcomes), outcomes[:3]
    assert bw_server.member("user1@example.com").status == REVOKED  # type: ignore[union-attr]
    assert {bw_server.org.members[i].email for i in eng.member_ids} == {
        "user1@example.com", "user3@example.com"}
    assert diff(changed, target.snapshot(), Policy(remove_missing=True),
                managed_refs(target)).empty


def test_scim_flavor_detected_from_url(bw_server: BitwardenServer) -> None:
    """flavor auto picks bitwarden for /v2/<org id> and never asks for ServiceProviderConfig."""
    target = scim_target(bw_server, with_public_api=False)
    assert target.check().ok
    assert not bw_server.calls("GET", "ServiceProviderConfig")


@pytest.mark.parametrize("through", ["scim", "public_api"])
def test_writes_external_id_contract(bw_server: BitwardenServer, through: str) -> None:
    """The scim target on Bitwarden passes the WritesExternalId contract: SCIM PATCH replace
    (a clear is replace with "", stored as null), or the Public API's PUT with
    [target.public_api], the path its relinks take."""
    bw_server.add_owner("owner@example.com")
    public_api = BitwardenSettings(type="bitwarden", server_url=bw_server.url,
                                   client_id=bw_server.client_id,
                                   client_secret=bw_server.client_secret)
    target = ScimTarget(ScimSettings(type="scim", url=bw_server.scim_url,
                                     token=bw_server.scim_key,
                                     public_api=public_api if through == "public_api" else None))
    converge(target, Snapshot.build(USERS, GROUPS))
    bw_server.clear_log()
    check_writes_external_id(target)
    patches = bw_server.calls("PATCH", "/v2/")
    puts = bw_server.calls("PUT", "/public/")
    if through == "scim":
        assert patches and not puts
        assert all(op["op"] == "replace" for p in patches for op in p.body["Operations"])
    else:
        assert puts and not patches
