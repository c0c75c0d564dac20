"""What the google connector reads: contract, mapping, paging, filters, member types."""

from __future__ import annotations

from typing import Any

import pytest

from dirconnector.model import flatten
from dirconnector.state_space import ConnectorState
from dirconnector.testing import check_connector

pytestmark = pytest.mark.integration


def test_contract_suite_passes(env: Any) -> None:
    """check() is ok and fetch() returns a complete, stable snapshot keyed by Google id."""
    snap = check_connector(env.connector())
    assert set(snap.users) == set(env.org.users.values())
    assert set(snap.groups) == set(env.org.groups.values())


def test_check_reports_each_step(env: Any) -> None:
    """check() verifies the token, users.list, groups.list and members.list in order, then
    names the change feed's Reports API scope (not delegated here: a note, not a failure)."""
    report = env.connector().check()
    assert [i.name.split(" ")[0] for i in report.items] == [
        "token", "users.list", "groups.list", "members.list", "Reports"]
    assert "admin.reports.audit.readonly" in report.items[-1].detail
    assert report.ok


def test_user_mapping_and_inactive_states(env: Any) -> None:
    """id -> external_id, primaryEmail -> email, name parts; suspended and archived inactive."""
    users = env.connector().fetch(ConnectorState()).users
    alice = users[env.org.users["alice"]]
    assert (alice.email, alice.display_name, alice.given_name, alice.family_name, alice.active) \
        == ("alice@example.com", "Alice Anders", "Alice", "Anders", True)
    assert not users[env.org.users["dave"]].active      # suspended
    assert not users[env.org.users["erin"]].active      # archived


def test_requests_use_bundled_discovery_and_documented_parameters(env: Any) -> None:
    """users.list gets customer=my_customer, maxResults, projection, fields; alt=json added."""
    env.connector(page_size=50).fetch(ConnectorState())
    params = next(p for op, p in env.directory.calls if op == "users.list")
    assert params["customer"] == "my_customer" and params["maxResults"] == "50"
    assert params["alt"] == "json" and params["projection"] == "basic"
    assert params["fields"].startswith("nextPageToken,users(")
    groups = next(p for op, p in env.directory.calls if op == "groups.list")
    assert groups["maxResults"] == "50"


def test_small_pages_read_everything(env: Any) -> None:
    """page_size=1 follows nextPageToken to the end: same snapshot, one request per item."""
    whole = env.connector().fetch(ConnectorState())
    env.directory.calls.clear()
    paged = env.connector(page_size=1).fetch(ConnectorState())
    assert paged.digest() == whole.digest()
    assert env.directory.count("users.list") == 6
    assert env.directory.count("groups.list") == 4
    # Sales has 4 members (3 users and an outsider): 4 pages.
    sales = [p for op, p in env.directory.calls if op == "members.list"
             and p.get("pageToken") is not None]
    assert len(sales) >= 3
    assert all(p["maxResults"] == "1" for _, p in env.directory.calls)


def test_page_size_above_200_is_capped_for_groups_and_members(env: Any) -> None:
    """page_size=500 asks users for 500 but groups and members for their maximum, 200."""
    env.connector(page_size=500).fetch(ConnectorState())
    sizes = {op: p["maxResults"] for op, p in env.directory.calls}
    assert sizes == {"users.list": "500", "groups.list": "200", "members.list": "200"}


def test_customer_member_means_every_user(env: Any) -> None:
    """A CUSTOMER member (the whole account) expands to every user read."""
    snap = env.connector().fetch(ConnectorState())
    everyone = snap.groups[env.org.groups["all"]]
    assert everyone.member_ids == set(snap.users)
    assert not everyone.subgroup_ids


def test_group_members_become_nested_groups(env: Any) -> None:
    """A GROUP member is a subgroup id; flattening puts bob into Engineering."""
    snap = env.connector().fetch(ConnectorState())
    eng, platform = env.org.groups["eng"], env.org.groups["platform"]
    assert snap.groups[eng].subgroup_ids == {platform}
    assert flatten(snap.groups)[eng] == {env.org.users["alice"], env.org.users["bob"]}


def test_external_member_is_skipped_with_reason(env: Any) -> None:
    """A member outside the account's users is reported 'external member' and not a member."""
    snap = env.connector().fetch(ConnectorState())
    ext = [s for s in snap.skipped if s.reason == "external member"]
    assert [(s.ref, s.detail) for s in ext] == [("partner@other.example",
                                                 "member of sales@example.com")]
    assert all(m in snap.users for g in snap.groups.values() for m in g.member_ids)


def test_nested_group_of_another_account_is_skipped(env: Any) -> None:
    """A GROUP member whose members.list answers 404 is reported external, not a failure."""
    gid = env.directory.add_external_group_member(env.org.groups["eng"], "team@partner.example")
    snap = env.connector().fetch(ConnectorState())
    assert [(s.ref, s.reason, s.external_id) for s in snap.skipped if s.kind == "group"] == [
        ("team@partner.example", "external member", gid)]
    assert gid not in snap.groups[env.org.groups["eng"]].subgroup_ids
    assert flatten(snap.groups)[env.org.groups["eng"]] == {env.org.users["alice"],
                                                           env.org.users["bob"]}


def test_user_filter_include_by_email(env: Any) -> None:
    """include: keeps the listed users; the others are skipped with their ids (never revoked)."""
    snap = env.connector(user_filter="include:Alice@example.com, bob@example.com").fetch(
        ConnectorState())
    assert {u.email for u in snap.users.values()} == {"alice@example.com", "bob@example.com"}
    assert env.org.users["carol"] in snap.skipped_ids
    assert snap.groups[env.org.groups["sales"]].member_ids == set()


def test_user_filter_native_query_goes_to_users_list(env: Any) -> None:
    """The part after | is Google's query: orgUnitPath=/Engineering keeps alice and bob."""
    snap = env.connector(user_filter="| orgUnitPath=/Engineering").fetch(ConnectorState())
    assert {u.email for u in snap.users.values()} == {"alice@example.com", "bob@example.com"}
    assert next(p for op, p in env.directory.calls if op == "users.list")["query"] == \
        "orgUnitPath=/Engineering"


def test_members_left_out_by_the_query_are_not_called_external(env: Any) -> None:
    """With a native query, unread members of the account's domain are 'filtered out'."""
    snap = env.connector(user_filter="| orgUnitPath=/Engineering").fetch(ConnectorState())
    reasons = {s.ref: s.reason for s in snap.skipped if s.kind == "user"}
    assert reasons["carol@example.com"] == "filtered out"
    assert reasons["partner@other.example"] == "external member"


def test_exclude_and_query_combine(env: Any) -> None:
    """exclude:bob | isSuspended=false leaves alice, admin and (archived) erin."""
    snap = env.connector(user_filter="exclude:bob@example.com | isSuspended=false").fetch(
        ConnectorState())
    assert {u.email for u in snap.users.values()} == {
        "admin@example.com", "alice@example.com", "carol@example.com", "erin@example.com"}


def test_include_archived_false_leaves_archived_users_out(env: Any) -> None:
    """include_archived=false: erin is not read, skipped with reason 'status' and her id."""
    snap = env.connector(include_archived=False).fetch(ConnectorState())
    assert env.org.users["erin"] not in snap.users
    skip = next(s for s in snap.skipped if s.external_id == env.org.users["erin"])
    assert skip.reason == "status"


def test_group_filter_by_name_folds_left_out_nested_groups(env: Any) -> None:
    """include:Engineering keeps one group; excluded Platform's bob still counts in it."""
    snap = env.connector(group_filter="include:engineering").fetch(ConnectorState())
    eng = snap.groups[env.org.groups["eng"]]
    assert list(snap.groups) == [env.org.groups["eng"]]
    assert eng.member_ids == {env.org.users["alice"], env.org.users["bob"]}
    assert not eng.subgroup_ids
    assert {s.ref for s in snap.skipped if s.kind == "group"} == {
        "platform@example.com", "sales@example.com", "everyone@example.com"}


def test_group_filter_by_email_and_native_query(env: Any) -> None:
    """exclude:everyone@… plus groups.list query name:Sales* -> only Sales."""
    snap = env.connector(group_filter="exclude:everyone@example.com | name:Sales*").fetch(
        ConnectorState())
    assert [g.name for g in snap.groups.values()] == ["Sales"]


def test_domain_instead_of_customer(env: Any) -> None:
    """domain= sends domain (and no customer) to users.list and groups.list."""
    env.connector(domain="example.com").fetch(ConnectorState())
    params = next(p for op, p in env.directory.calls if op == "users.list")
    assert params["domain"] == "example.com" and "customer" not in params


def test_key_from_environment_and_never_in_repr(env: Any, monkeypatch: Any) -> None:
    """credentials_env reads the JSON key from a variable; repr/str never show the key."""
    monkeypatch.setenv("GOOGLE_SA_KEY", env.key_file.read_text())
    settings = env.settings(credentials_file=None, credentials_env="GOOGLE_SA_KEY")
    assert settings.scope == {"customer": "my_customer"}
    assert "PRIVATE KEY" not in repr(settings) and "PRIVATE KEY" not in str(settings)
    assert env.connector(credentials_file=None, credentials_env="GOOGLE_SA_KEY").fetch(
        ConnectorState()).users


@pytest.mark.parametrize(("change", "needle"), [
    ({"credentials_file": None}, "credentials: required"),
    ({"admin_email": "not-an-address"}, "admin_email"),
    ({"user_filter": "only:a@x.com"}, "user_filter"),
    ({"page_size": 501}, "page_size"),
    ({"api_endpoint": "ftp://x"}, "api_endpoint"),
    ({"colour": "blue"}, "colour"),
])
def test_bad_settings_are_one_line_naming_the_field(env: Any, change: dict[str, Any],
                                                    needle: str) -> None:
    """Each invalid option fails validation with a message naming it."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        env.settings(**change)
    assert needle in str(info.value)


def test_bad_key_file_never_echoes_the_key(env: Any, tmp_path: Any) -> None:
    """A key file that is not a service-account key fails without printing its contents."""
    from pydantic import ValidationError

    from dirconnector.connectors.google.connector import GoogleSettings
    from dirconnector.settings import format_errors

    bad = tmp_path / "user-creds.json"
    bad.write_text('{"type": "authorized_user", "refresh_token": "SECRET-REFRESH"}')
    with pytest.raises(ValidationError) as info:
        GoogleSettings.model_validate({"type": "google", "credentials_file": str(bad),
                                       "admin_email": "admin@example.com"})
    text = format_errors(info.value, GoogleSettings, set(), prefix="source")
    assert "SECRET-REFRESH" not in text
    assert text.startswith("source.credentials: the JSON key lacks")
