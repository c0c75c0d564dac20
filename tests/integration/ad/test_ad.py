"""The ldap connector against a real Samba Active Directory domain controller.

Data: scripts/servers/addata.py. The default connection goes through
maxvalrange.MaxValRangeProxy so multi-valued attributes come back capped at 1,500
values the way Windows AD sends them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from dirconnector.diff import Policy, diff
from dirconnector.errors import SourceError
from dirconnector.model import Snapshot, User, flatten
from dirconnector.plan import AddMembers, Plan, RemoveMembers, RestoreUser, RevokeUser, UpdateUser
from dirconnector.state_space import ConnectorState
from dirconnector.testing import FakeTarget, check_connector, managed_refs
from tests.integration.ad.conftest import AdServer
from tests.integration.ad.maxvalrange import MaxValRangeProxy

pytestmark = pytest.mark.integration

DEFAULT = Policy()
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
BULK_USERS = 1700       # addata.BULK_USERS


def connector(settings: Any) -> Any:
    from dirconnector.connectors.ldap.connector import LdapConnector

    return LdapConnector(settings)


def fetch(settings: Any, state: ConnectorState | None = None) -> Snapshot:
    """One read; a given ``state`` is committed afterwards, as the runner does after a run."""
    snap: Snapshot = connector(settings).fetch(state if state is not None else ConnectorState())
    if state is not None:
        state.commit()
    return snap


def by_login(snap: Snapshot, name: str) -> User:
    return next(u for u in snap.users.values() if u.user_name.lower() == name)


def group(snap: Snapshot, name: str) -> Any:
    return next(g for g in snap.groups.values() if g.name == name)


def sync(settings: Any, target: FakeTarget, policy: Policy = DEFAULT,
         state: ConnectorState | None = None) -> Plan:
    """One run of the pipeline: read, diff against the target, apply; returns the plan."""
    plan = diff(fetch(settings, state), target.snapshot(), policy, managed_refs(target))
    outcomes: list[Any] = []
    target.apply(plan, outcomes.append)
    assert all(o.status == "ok" for o in outcomes), outcomes[:3]
    return plan


def synced_id(target: FakeTarget, name: str) -> str:
    """The external id the target holds for the user ``name`` (no extra directory read)."""
    return next(u.external_id for u in target.snapshot().users.values() if u.user_name == name)


def converged(settings: Any, policy: Policy = DEFAULT,
              state: ConnectorState | None = None) -> FakeTarget:
    """A FakeTarget after a first full sync (test_full_sync_converges shows it converges)."""
    target = FakeTarget()
    assert sync(settings, target, policy, state).changes
    return target


@pytest.fixture(scope="module")
def snap(ad_settings: Callable[..., Any]) -> Snapshot:
    return fetch(ad_settings())


def test_contract(ad_settings: Callable[..., Any]) -> None:
    """The connector passes the shared connector contract against Samba AD."""
    check_connector(connector(ad_settings()))


def test_full_sync_converges(ad_settings: Callable[..., Any]) -> None:
    """A full sync from AD creates the active users and groups; the second plan is empty."""
    settings = ad_settings()
    target = FakeTarget()
    plan = sync(settings, target)
    counts = plan.counts()
    assert counts["create_user"] == len([u for u in fetch(settings).users.values() if u.active])
    assert counts["create_group"] == 9
    again = diff(fetch(settings), target.snapshot(), DEFAULT, managed_refs(target))
    assert again.empty, again.changes[:5]


def test_check_reports_counts(ad_settings: Callable[..., Any]) -> None:
    """check() binds as the read-only account and counts the users and groups selected."""
    report = connector(ad_settings()).check()
    assert report.ok, report.items
    # every user the filter selects (bulk + named + the svc account), 20 of them without mail
    assert report.counts["users"] + report.counts["no_email"] == BULK_USERS + 10 + 1
    assert report.counts["no_email"] == 20
    assert report.counts["groups"] == 9


def test_active_directory_autodetected(snap: Snapshot) -> None:
    """With active_directory = auto the root DSE makes AD defaults apply (sAMAccountName)."""
    alice = by_login(snap, "alice")
    assert alice.user_name == "alice"
    assert all(GUID.match(u.external_id) for u in snap.users.values())


def test_external_id_is_canonical_objectguid(snap: Snapshot, ad_server: AdServer) -> None:
    """A user's external id is objectGUID as the canonical GUID string Samba itself prints."""
    zoe = by_login(snap, "zoe").external_id
    assert zoe == ad_server.guid("zoe")
    assert GUID.match(zoe)


def test_group_external_id_is_objectguid(snap: Snapshot, ad_server: AdServer) -> None:
    """Groups are keyed by their objectGUID too."""
    assert group(snap, "Sales").external_id == ad_server.guid("Sales", "group")


def test_disabled_users_are_inactive(snap: Snapshot) -> None:
    """userAccountControl bit 0x2 makes a user inactive; others stay active."""
    assert not by_login(snap, "bob").active
    assert by_login(snap, "alice").active
    bulk = [u for u in snap.users.values() if u.user_name.startswith("bulk")]
    inactive = {u.user_name for u in bulk if not u.active}
    assert inactive == {f"bulk{i:04d}" for i in range(BULK_USERS) if i % 50 == 49}


def test_users_without_mail_are_skipped(snap: Snapshot) -> None:
    """Users without mail are reported as skipped ("no email"), not synced."""
    no_mail = {s.ref.lower() for s in snap.skipped if s.reason == "no email"}
    assert any("carol" in r for r in no_mail), snap.skipped[:5]
    assert not any(u.user_name == "carol" for u in snap.users.values())
    assert len([s for s in snap.skipped if s.reason == "no email"]) == 2 + 17 + 1


def test_non_ascii_names(snap: Snapshot) -> None:
    """Non-ASCII names survive the read unchanged (UTF-8, NFC)."""
    zoe = by_login(snap, "zoe")
    assert (zoe.given_name, zoe.family_name) == ("Zoë", "Ångström-Łukasz")
    assert zoe.display_name == "Zoë Ångström-Łukasz"
    assert by_login(snap, "jose").email == "jose.muller@dirconn.test"


def test_large_group_read_with_ranged_retrieval(ad_settings: Callable[..., Any],
                                                ad_proxy: MaxValRangeProxy) -> None:
    """A 1,700-member group is read completely although AD sends 1,500 values at a time."""
    cuts = ad_proxy.cuts
    snap = fetch(ad_settings())
    assert ad_proxy.cuts > cuts, "the server never capped member; test did not exercise ranges"
    staff = group(snap, "All Staff")
    assert len(staff.member_ids) == BULK_USERS
    assert staff.member_ids <= set(snap.users) | snap.skipped_ids


def test_nested_groups_are_direct_and_flattened(snap: Snapshot) -> None:
    """Subgroups are kept as subgroup ids; flatten gives transitive members."""
    sales, emea, uk = group(snap, "Sales"), group(snap, "Sales EMEA"), group(snap, "Sales UK")
    assert sales.subgroup_ids == {emea.external_id}
    assert emea.subgroup_ids == {uk.external_id}
    flat = flatten(snap.groups)
    names = {by_login(snap, n).external_id for n in ("alice", "jose", "zoe")}
    assert flat[sales.external_id] == names


def test_group_cycle_survives(snap: Snapshot) -> None:
    """A -> B -> C -> A is read as-is and every group of the cycle holds all three users."""
    a, b, c = (group(snap, f"Cycle {x}") for x in "ABC")
    assert (a.subgroup_ids, b.subgroup_ids, c.subgroup_ids) == (
        {b.external_id}, {c.external_id}, {a.external_id})
    flat = flatten(snap.groups)
    want = {by_login(snap, n).external_id for n in ("alice", "dave", "grace")}
    assert flat[a.external_id] == flat[b.external_id] == flat[c.external_id] == want


def test_disable_in_ad_revokes_exactly_one(ad_settings: Callable[..., Any],
                                           ad_server: AdServer) -> None:
    """`samba-tool user disable dave` makes the next run one RevokeUser; enable restores."""
    settings = ad_settings()
    target = converged(settings)
    dave = synced_id(target, "dave")
    ad_server.samba_tool("user", "disable", "dave")
    plan = sync(settings, target)
    assert [type(c) for c in plan.changes] == [RevokeUser]
    assert plan.changes[0].external_id == dave  # type: ignore[union-attr]
    ad_server.samba_tool("user", "enable", "dave")
    plan = sync(settings, target)
    assert [type(c) for c in plan.changes] == [RestoreUser]
    assert plan.changes[0].user.external_id == dave  # type: ignore[union-attr]
    assert diff(fetch(settings), target.snapshot(), Policy(), managed_refs(target)).empty


def test_rename_and_move_keep_the_account(ad_settings: Callable[..., Any],
                                         ad_server: AdServer) -> None:
    """Moving grace to another OU and renaming her is one UpdateUser (objectGUID is stable)."""
    settings = ad_settings()
    target = converged(settings)
    grace = synced_id(target, "grace")
    ad_server.samba_tool("user", "move", "grace", "OU=Service Accounts,OU=dirconnector")
    ad_server.samba_tool("user", "rename", "grace", "--surname=Murray",
                         "--display-name=Grace Murray", "--force-new-cn=Grace Murray")
    plan = sync(settings, target)
    assert [type(c) for c in plan.changes] == [UpdateUser]
    change = plan.changes[0]
    assert change.user.external_id == grace  # type: ignore[union-attr]
    assert set(change.fields) == {"display_name", "family_name"}  # type: ignore[union-attr]
    assert diff(fetch(settings), target.snapshot(), Policy(), managed_refs(target)).empty


def test_move_into_nested_group_updates_flat_membership(ad_settings: Callable[..., Any],
                                                        ad_server: AdServer) -> None:
    """Moving erin from Support into Sales UK adds her to Sales UK, Sales EMEA and Sales."""
    settings = ad_settings()
    target = converged(settings)
    erin = synced_id(target, "erin")
    ad_server.samba_tool("group", "removemembers", "Support", "erin")
    ad_server.samba_tool("group", "addmembers", "Sales UK", "erin")
    plan = sync(settings, target)
    adds = {c.group_name: [m.external_id for m in c.members]
            for c in plan.changes if isinstance(c, AddMembers)}
    removes = {c.group_name: [m.external_id for m in c.members]
               for c in plan.changes if isinstance(c, RemoveMembers)}
    assert adds == {"Sales": [erin], "Sales EMEA": [erin], "Sales UK": [erin]}
    assert removes == {"Support": [erin]}
    assert len(plan.changes) == 4
    assert diff(fetch(settings), target.snapshot(), Policy(), managed_refs(target)).empty


def test_computers_are_not_users(snap: Snapshot) -> None:
    """A computer account (objectClass=user, with mail) is not read as a user."""
    assert not [u for u in snap.users.values() if u.email == "ws01@dirconn.test"]
    assert not [s for s in snap.skipped if "WS01" in s.ref]


def test_user_filter_transitive_membership(ad_settings: Callable[..., Any],
                                           ad_server: AdServer) -> None:
    """user_filter with LDAP_MATCHING_RULE_IN_CHAIN selects the members of a nested cycle."""
    in_chain = f"(memberOf:1.2.840.113556.1.4.1941:=CN=Cycle A,OU=Groups,{ad_server.ou})"
    snap = fetch(ad_settings(user_filter=in_chain))
    assert sorted(u.user_name for u in snap.users.values()) == ["alice", "dave", "grace"]


def test_group_filter_security_groups_only(ad_settings: Callable[..., Any],
                                           snap: Snapshot) -> None:
    """group_filter on groupType's security bit leaves the distribution group out."""
    security = "(groupType:1.2.840.113556.1.4.803:=2147483648)"
    names = {g.name for g in fetch(ad_settings(group_filter=security)).groups.values()}
    assert "Newsletter" in {g.name for g in snap.groups.values()}
    assert names == {g.name for g in snap.groups.values()} - {"Newsletter"}


@pytest.mark.parametrize("backend", ["python-ldap", "ldap3"])
def test_domain_root_skips_referrals(ad_settings: Callable[..., Any], backend: str) -> None:
    """base_dn unset: the defaultNamingContext is read; its referrals are not chased."""
    snap = fetch(ad_settings(base_dn=None, backend=backend))
    names = {g.name for g in snap.groups.values()}
    assert {"Sales", "Domain Admins", "Domain Users"} <= names
    assert by_login(snap, "alice").active
    assert not any(u.user_name.lower() == "administrator" for u in snap.users.values())


def test_ldaps_with_samba_ca(ad_settings: Callable[..., Any], ad_server: AdServer) -> None:
    """ldaps:// with the DC's CA as ca_file reads the same users as plain LDAP."""
    tls = fetch(ad_settings(url=ad_server.ldaps_url, ca_file=ad_server.ca_file))
    assert tls.digest() == fetch(ad_settings()).digest()


def test_start_tls_with_samba_ca(ad_settings: Callable[..., Any], ad_server: AdServer) -> None:
    """StartTLS on ldap:// with ca_file binds and reads."""
    report = connector(ad_settings(url=ad_server.url, start_tls=True,
                                   ca_file=ad_server.ca_file)).check()
    assert report.ok, report.items


def test_ldaps_untrusted_certificate_is_refused(ad_settings: Callable[..., Any],
                                                ad_server: AdServer) -> None:
    """Without the test CA the self-signed chain is refused with a SourceError."""
    with pytest.raises(SourceError) as err:
        connector(ad_settings(url=ad_server.ldaps_url)).fetch(ConnectorState())
    assert ad_server.password not in str(err.value)


def test_wrong_password_is_a_clear_error(ad_settings: Callable[..., Any],
                                         ad_server: AdServer) -> None:
    """A rejected bind raises SourceError that does not echo the password."""
    with pytest.raises(SourceError) as err:
        connector(ad_settings(password="Wrong-Passw0rd!")).fetch(ConnectorState())
    assert "Wrong-Passw0rd!" not in str(err.value)


def test_ldap3_backend_reads_the_same(ad_settings: Callable[..., Any],
                                      ad_proxy: MaxValRangeProxy) -> None:
    """The pure-Python ldap3 wire returns the same snapshot as python-ldap, ranges included."""
    cuts = ad_proxy.cuts
    fast = fetch(ad_settings(backend="python-ldap"))
    portable = fetch(ad_settings(backend="ldap3"))
    assert ad_proxy.cuts >= cuts + 2, "both reads must have met a capped member list"
    assert portable.digest() == fast.digest()
    assert len(group(portable, "All Staff").member_ids) == BULK_USERS


def test_deleted_user_revoked_with_include_deleted(ad_settings: Callable[..., Any],
                                                   ad_server: AdServer) -> None:
    """include_deleted: `samba-tool user delete frank` revokes frank on every later run."""
    settings = ad_settings(include_deleted=True)
    policy = Policy(remove_missing=False)      # not a forced/overwrite run
    state = ConnectorState()                   # kept across runs, as the state store does
    target = converged(settings, policy, state)
    frank = synced_id(target, "frank")
    ad_server.samba_tool("user", "delete", "frank")
    plan = sync(settings, target, policy, state)
    revokes = [c for c in plan.changes if isinstance(c, RevokeUser)]
    assert [c.external_id for c in revokes] == [frank]
    again = diff(fetch(settings, state), target.snapshot(), policy, managed_refs(target))
    assert again.empty, again.changes[:5]
    # Someone re-activates the account on the server by hand: the next run revokes it
    # again, because the tombstone (no mail) is still named from the connector's state.
    ref = next(u.key for u in target.state.users.values() if u.external_id == frank)
    users = dict(target.state.users)
    users[ref] = replace(users[ref], active=True)
    target.state = Snapshot(users, target.state.groups)
    plan = sync(settings, target, policy, state)
    revokes = [c for c in plan.changes if isinstance(c, RevokeUser)]
    assert len(plan.changes) == 1 and [c.external_id for c in revokes] == [frank]


def test_change_marker_is_highest_committed_usn(ad_settings: Callable[..., Any],
                                                ad_server: AdServer) -> None:
    """The marker holds the DC's identity and USN, and moves with any write to the domain."""
    conn = connector(ad_settings())
    before = conn.change_marker()
    assert before is not None and before.startswith("ad:CN=NTDS Settings,")
    assert conn.change_marker() == before
    ad_server.samba_tool("user", "disable", "dave")
    try:
        after = conn.change_marker()
        assert after != before
        assert int(after.rsplit(":", 1)[1]) > int(before.rsplit(":", 1)[1])
    finally:
        ad_server.samba_tool("user", "enable", "dave")
