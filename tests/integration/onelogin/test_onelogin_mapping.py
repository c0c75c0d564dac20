"""Filters, status lists and the email fallback, read through the emulator."""

from __future__ import annotations

import pytest

from dirconnector.state_space import ConnectorState
from tests.emulators.onelogin import Account
from tests.emulators.onelogin.seed import ConnectorFactory, Seed

pytestmark = pytest.mark.integration


def _skips(snap, reason):  # type: ignore[no-untyped-def]
    return {s.external_id: s for s in snap.skipped if s.reason == reason}


def test_default_statuses(make_connector: ConnectorFactory, ids: Seed) -> None:
    """Status 0 is skipped ("status"), 2 and 3 inactive, 4 active, by default."""
    snap = make_connector().fetch(ConnectorState())
    skipped = _skips(snap, "status")
    assert set(skipped) == {str(ids.users["unactivated"])}
    assert "unactivated" in skipped[str(ids.users["unactivated"])].detail
    assert str(ids.users["unactivated"]) in snap.skipped_ids       # so never revoked for it
    assert not snap.users[str(ids.users["suspended"])].active
    assert not snap.users[str(ids.users["locked"])].active
    assert snap.users[str(ids.users["pwexpired"])].active


def test_status_lists_are_configurable(make_connector: ConnectorFactory, ids: Seed) -> None:
    """Moving 4 to inactive, 3 to skipped and 0 to active changes the mapping accordingly."""
    snap = make_connector(active_statuses=[0, 1], inactive_statuses=[2, 4, 5, 7, 8],
                          skip_statuses=[3]).fetch(ConnectorState())
    assert snap.users[str(ids.users["unactivated"])].active
    assert not snap.users[str(ids.users["pwexpired"])].active
    assert set(_skips(snap, "status")) == {str(ids.users["locked"])}


def test_status_in_no_list_is_skipped(make_connector: ConnectorFactory, ids: Seed) -> None:
    """A status left out of every list is skipped with a detail naming the three options."""
    snap = make_connector(active_statuses=[1], inactive_statuses=[2, 3],
                          skip_statuses=[0]).fetch(ConnectorState())
    skip = _skips(snap, "status")[str(ids.users["pwexpired"])]
    assert "active_statuses, inactive_statuses or skip_statuses" in skip.detail


def test_include_filter_by_email(make_connector: ConnectorFactory, ids: Seed) -> None:
    """include: keeps only the listed emails (case-insensitive); the rest are "filtered out"."""
    snap = make_connector(user_filter="include:USER01@example.com, user02@example.com"
                          ).fetch(ConnectorState())
    assert {u.email for u in snap.users.values()} == {"user01@example.com",
                                                       "user02@example.com"}
    assert len(_skips(snap, "filtered out")) == 43
    assert snap.groups[str(ids.roles["Admins"])].member_ids >= {str(ids.users["u01"])}


def test_exclude_filter_and_native_query(make_connector: ConnectorFactory,
                                         account: Account) -> None:
    """exclude: drops listed users; the part after | goes to /api/2/users as query parameters."""
    account.add_user("a@sales.example.net", username="a")
    account.add_user("b@sales.example.net", username="b")
    snap = make_connector(user_filter="exclude:b@sales.example.net | email=*@sales.example.net"
                          ).fetch(ConnectorState())
    assert [u.email for u in snap.users.values()] == ["a@sales.example.net"]


def test_group_filter_by_role_name(make_connector: ConnectorFactory, account: Account,
                                   ids: Seed) -> None:
    """include: by role name reads only those roles' members; others are skipped groups."""
    snap = make_connector(group_filter="include:admins,SALES").fetch(ConnectorState())
    assert {g.name for g in snap.groups.values()} == {"Admins", "Sales"}
    assert account.page_requests(f"/api/2/roles/{ids.roles['Engineering']}/users") == 0
    assert {s.ref for s in snap.skipped if s.kind == "group"} == {"Engineering", "Empty"}


def test_group_filter_native_role_query(make_connector: ConnectorFactory) -> None:
    """The native part of group_filter filters /api/2/roles by name (with * wildcards)."""
    snap = make_connector(group_filter="| name=E*").fetch(ConnectorState())
    assert {g.name for g in snap.groups.values()} == {"Engineering", "Empty"}


def test_group_filter_in_groups_mode(make_connector: ConnectorFactory) -> None:
    """exclude: by OneLogin group name works with groups_from = "groups"."""
    snap = make_connector(groups_from="groups", group_filter="exclude:admins,managers"
                          ).fetch(ConnectorState())
    assert {g.name for g in snap.groups.values()} == {"employees", "contractors"}


def test_email_falls_back_to_username(make_connector: ConnectorFactory, account: Account,
                                      ids: Seed) -> None:
    """No email: an email-shaped username is used; else username@email_suffix; else skipped."""
    uid = account.add_user("", username="Mail.Name@Example.org")
    plain = make_connector().fetch(ConnectorState())
    assert plain.users[str(uid)].email == "mail.name@example.org"
    assert str(ids.users["noemail"]) in {s.external_id for s in plain.skipped
                                         if s.reason == "no email"}
    suffixed = make_connector(email_suffix="@corp.example.com").fetch(ConnectorState())
    assert suffixed.users[str(ids.users["noemail"])].email == "jdoe@corp.example.com"


def test_email_from_custom_attribute(make_connector: ConnectorFactory, account: Account,
                                     ids: Seed) -> None:
    """email_attribute = "custom_attributes.x" reads that attribute; without it, the username."""
    uid = account.add_user("private@example.com", username="cm",
                           custom={"work_mail": "Work@Corp.example.com"})
    snap = make_connector(email_attribute="custom_attributes.work_mail").fetch(ConnectorState())
    assert snap.users[str(uid)].email == "work@corp.example.com"
    u00 = str(ids.users["u00"])          # no work_mail and a username without @: no email
    assert u00 not in snap.users and u00 in {s.external_id for s in snap.skipped
                                             if s.reason == "no email"}


def test_duplicate_active_emails_are_both_skipped(make_connector: ConnectorFactory,
                                                  account: Account) -> None:
    """Two active OneLogin users with one email: neither is synced (no account swap)."""
    a = account.add_user("twin@example.com", username="twin1")
    b = account.add_user("TWIN@example.com", username="twin2")
    snap = make_connector().fetch(ConnectorState())
    assert str(a) not in snap.users and str(b) not in snap.users
    dupes = {s.external_id for s in snap.skipped if s.reason == "duplicate email"}
    assert {str(a), str(b)} <= dupes


def test_emulator_paging_headers(make_connector: ConnectorFactory, account: Account) -> None:
    """v2 pages carry Total-Count/Total-Pages/Current-Page/After-Cursor; the last has none."""
    api = make_connector(page_size=20).api
    first = api.get("/api/2/users", {"limit": 20}, "users")
    assert (first.headers["Total-Count"], first.headers["Total-Pages"],
            first.headers["Current-Page"]) == ("45", "3", "1")
    assert "Before-Cursor" not in first.headers
    last = api.get("/api/2/users", {"limit": 20, "cursor": first.headers["After-Cursor"]}, "u")
    last = api.get("/api/2/users", {"limit": 20, "cursor": last.headers["After-Cursor"]}, "u")
    assert last.headers["Current-Page"] == "3" and "After-Cursor" not in last.headers
    assert len(last.json()) == 5


def test_v1_groups_read_past_fifty(make_connector: ConnectorFactory, account: Account) -> None:
    """More than 50 OneLogin groups are all read by following next_link (the SDK cannot)."""
    for n in range(60):
        account.add_group(f"dept-{n:02d}")
    snap = make_connector(groups_from="groups", page_size=50).fetch(ConnectorState())
    assert len(snap.groups) == 64
    assert account.page_requests("/api/1/groups") == 2


def test_next_link_stays_on_the_configured_host(make_connector: ConnectorFactory) -> None:
    """A next_link naming another host is followed on our own host, so the token stays home."""
    api = make_connector().api
    moved = api._on_our_host("https://api.us.onelogin.com/api/1/groups?after_cursor=abc%3D")
    assert moved == f"{api.base_url}/api/1/groups?after_cursor=abc%3D"
