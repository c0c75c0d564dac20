"""The okta connector reads the emulated org correctly: contract, statuses, filters, paging."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dirconnector.connectors.okta.api import next_link
from dirconnector.connectors.okta.connector import OktaConnector
from dirconnector.errors import SourceError
from dirconnector.state_space import ConnectorState
from dirconnector.testing import check_connector

from .conftest import Org

pytestmark = pytest.mark.integration

Make = Callable[..., OktaConnector]


def test_contract_suite(org: Org, make: Make) -> None:
    """The okta connector passes the connector contract suite against the emulator."""
    check_connector(make())


def test_statuses_map_to_active_inactive_and_skipped(org: Org, make: Make) -> None:
    """Active-like statuses are active, SUSPENDED/DEPROVISIONED inactive, STAGED skipped."""
    snap = make().fetch(ConnectorState())
    active = {n for n, uid in org.users.items() if uid in snap.users and snap.users[uid].active}
    inactive = {n for n, uid in org.users.items()
                if uid in snap.users and not snap.users[uid].active}
    assert active == {"alice", "bob", "carol", "dave", "erin", "frank"}
    assert inactive == {"hank", "ivan"}
    (skip,) = snap.skipped
    assert (skip.external_id, skip.reason, skip.detail) == (org.users["gina"], "status", "STAGED")


def test_deprovisioned_users_are_read_by_an_explicit_query(org: Org, make: Make) -> None:
    """DEPROVISIONED users are absent from a plain listing and fetched with a status filter."""
    snap = make().fetch(ConnectorState())
    assert org.users["ivan"] in snap.users
    assert any("filter=status+eq+%22DEPROVISIONED%22" in p for p in org.state.api_requests())


def test_sync_staged_makes_staged_users_active(org: Org, make: Make) -> None:
    """With sync_staged = true a STAGED user is synced as active."""
    snap = make(sync_staged=True).fetch(ConnectorState())
    assert snap.users[org.users["gina"]].active
    assert not snap.skipped


def test_user_fields_and_group_members(org: Org, make: Make) -> None:
    """Okta id is the external id; email is normalised; groups carry direct member ids."""
    snap = make().fetch(ConnectorState())
    alice = snap.users[org.users["alice"]]
    assert (alice.email, alice.given_name, alice.family_name, alice.display_name) == (
        "alice@example.com", "Alice", "Tester", "Alice Tester")
    eng = snap.groups[org.groups["eng"]]
    assert eng.name == "Engineering"
    assert eng.member_ids == {org.users["alice"], org.users["bob"], org.users["hank"]}


def test_email_attribute_picks_another_profile_field(org: Org, make: Make) -> None:
    """email_attribute = profile.secondEmail reads the address from that attribute."""
    org.state.update_profile(org.users["alice"], secondEmail="a.alt@example.org")
    snap = make(email_attribute="profile.secondEmail").fetch(ConnectorState())
    assert snap.users[org.users["alice"]].email == "a.alt@example.org"
    assert org.users["bob"] not in snap.users  # no secondEmail: skipped as "no email"
    assert any(s.reason == "no email" and s.external_id == org.users["bob"]
               for s in snap.skipped)


def test_user_filter_include_and_native_search(org: Org, make: Make) -> None:
    """include: keeps listed emails; the part after | goes to Okta as the search parameter."""
    snap = make(user_filter="include:alice@example.com,HANK@example.com").fetch(ConnectorState())
    assert set(snap.users) == {org.users["alice"], org.users["hank"]}
    snap = make(user_filter='| profile.email sw "a"').fetch(ConnectorState())
    assert set(snap.users) == {org.users["alice"]}
    assert any("search=" in p for p in org.state.api_requests())


def test_user_filter_exclude_drops_without_protecting(org: Org, make: Make) -> None:
    """exclude: drops a user and records it as filtered out (no external id, so not protected)."""
    snap = make(user_filter="exclude:bob@example.com").fetch(ConnectorState())
    assert org.users["bob"] not in snap.users
    assert any(s.reason == "filtered out" and s.ref == "bob@example.com" and not s.external_id
               for s in snap.skipped)


def test_group_filter_type_expression_and_names(org: Org, make: Make) -> None:
    """group_filter passes type eq "OKTA_GROUP" to Okta and applies include: by name."""
    snap = make(group_filter='| type eq "OKTA_GROUP"').fetch(ConnectorState())
    assert {g.name for g in snap.groups.values()} == {"Engineering", "Sales"}
    snap = make(group_filter='include:sales | type eq "OKTA_GROUP"').fetch(ConnectorState())
    assert {g.name for g in snap.groups.values()} == {"Sales"}
    assert any(s.kind == "group" and s.ref == "Engineering" for s in snap.skipped)


@pytest.mark.parametrize("mode", ["separate", "separate-next-first", "single",
                                  "single-next-first"])
def test_paging_follows_link_headers_in_every_form(org: Org, make: Make, mode: str) -> None:
    """Pages of 2 (users, groups, members) are all read in every Link header form and order."""
    org.state.link_mode = mode  # type: ignore[assignment]
    snap = make(page_size=2).fetch(ConnectorState())
    assert len(snap.users) == 8
    assert len(snap.groups[org.groups["everyone"]].member_ids) == 9
    follow_ups = [p for p in org.state.api_requests() if "after=" in p]
    users = [p for p in follow_ups if p.startswith("/api/v1/users")]
    groups = [p for p in follow_ups if p.startswith("/api/v1/groups?")]
    everyone = [p for p in follow_ups if org.groups["everyone"] in p]
    # 8 listed users, 4 groups and 9 members of Everyone, in pages of 2.
    assert (len(users), len(groups), len(everyone)) == (3, 1, 4)


def test_empty_trailing_page_ends_the_list(org: Org, make: Make) -> None:
    """A rel=next that leads to an empty page ends the read cleanly (okta-sdk-python#435)."""
    org.state.trailing_empty_page = True
    snap = make(page_size=4).fetch(ConnectorState())
    assert len(snap.users) == 8


@pytest.mark.parametrize("values", [
    ['<https://o/api/v1/users?limit=2>; rel="self"',
     '<https://o/api/v1/users?after=X&limit=2>; rel="next"'],
    ['<https://o/api/v1/users?after=X&limit=2>; rel="next", <https://o/api/v1/users>; rel="self"'],
    ['<https://o/api/v1/users>; rel=self, <https://o/api/v1/users?after=X&limit=2>; rel=next'],
    ['<https://o/api/v1/users?after=X&limit=2>; type="a,b"; rel="prefetch next"'],
])
def test_next_link_parser(values: list[str]) -> None:
    """next_link finds rel=next in separate or joined values, quoted or not, multi-valued rel."""
    assert next_link(values) == "https://o/api/v1/users?after=X&limit=2"


def test_no_next_link_means_last_page() -> None:
    """A Link header with only rel=self has no next page."""
    assert next_link(['<https://o/api/v1/users>; rel="self"']) is None


def test_bad_native_search_names_the_option(org: Org, make: Make) -> None:
    """Okta's 400 E0000031 for a bad search expression comes back naming user_filter."""
    with pytest.raises(SourceError) as info:
        make(user_filter='| profile.email zz "a"').fetch(ConnectorState())
    assert "E0000031" in str(info.value) and "user_filter" in str(info.value)
    assert "\n" not in str(info.value)
