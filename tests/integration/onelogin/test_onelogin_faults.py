"""Failed pages: retried until they succeed; past the bound the fetch raises, so no plan is made."""

from __future__ import annotations

import pytest

from dirconnector.errors import DirconnectorError, IncompleteRead
from dirconnector.http import RetryPolicy
from dirconnector.state_space import ConnectorState
from dirconnector.testing import FakeTarget
from tests.emulators.onelogin import Account
from tests.emulators.onelogin.seed import ConnectorFactory, Seed, sync

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_failing_middle_user_page_recovers(make_connector: ConnectorFactory, account: Account,
                                           status: int) -> None:
    """Users page 3 of 5 failing twice (429/5xx) is retried and the read is complete."""
    fault = account.fail("/api/2/users", page=3, times=2, status=status)
    snap = make_connector().fetch(ConnectorState())
    assert fault.served == 2
    assert snap.complete and len(snap.users) == 43
    assert account.page_requests("/api/2/users") == 5 + 2


def test_429_honours_retry_after(make_connector: ConnectorFactory, account: Account) -> None:
    """A 429 with Retry-After waits that long (by the connector's sleep) before the retry."""
    waits: list[float] = []
    account.fail("/api/2/users", page=2, times=1, status=429, retry_after="0.25")
    connector = make_connector(sleep=waits.append, retry=RetryPolicy())   # production caps
    assert len(connector.fetch(ConnectorState()).users) == 43
    assert waits == [0.25]


def test_failing_middle_pages_of_roles_and_groups_recover(make_connector: ConnectorFactory,
                                                          account: Account, ids: Seed) -> None:
    """Role-member and v1 group pages that fail then recover still give complete groups."""
    rid = ids.roles["Engineering"]
    account.fail(f"/api/2/roles/{rid}/users", page=2, times=3, status=503)
    roles = make_connector().fetch(ConnectorState())
    assert len(roles.groups[str(rid)].member_ids) == 23      # 22 + the locked user
    account.fail("/api/1/groups", page=2, times=2, status=429)
    account.add_group("late")             # makes a second page at 4 per page
    groups = make_connector(groups_from="groups", page_size=4).fetch(ConnectorState())
    assert {g.name for g in groups.groups.values()} == {
        "employees", "contractors", "managers", "admins", "late"}


@pytest.mark.parametrize("path", ["/api/2/users", "roles", "/api/1/groups"])
def test_page_failing_beyond_the_bound_raises(make_connector: ConnectorFactory,
                                              account: Account, ids: Seed, path: str) -> None:
    """A middle page that keeps failing makes fetch() raise IncompleteRead, in one line."""
    groups_from = "groups" if path == "/api/1/groups" else "roles"
    if path == "roles":
        path = f"/api/2/roles/{ids.roles['Engineering']}/users"
    account.fail(path, page=2, times=100, status=503)
    connector = make_connector(groups_from=groups_from, page_size=3)
    with pytest.raises(IncompleteRead) as err:
        connector.fetch(ConnectorState())
    assert "(page 2)" in str(err.value) and "\n" not in str(err.value)
    assert account.page_requests(path) == 1 + 4          # page 1, then 4 tries of page 2


def test_failed_read_never_leads_to_revocations(make_connector: ConnectorFactory,
                                                account: Account) -> None:
    """After a good sync, a run whose middle users page keeps failing changes nothing."""
    connector = make_connector()
    target = FakeTarget()
    sync(connector, target)
    before = target.snapshot()
    account.fail("/api/2/users", page=2, times=100, status=502)
    with pytest.raises(DirconnectorError):
        sync(connector, target)              # raises before any plan exists
    assert target.snapshot() == before
    assert all(u.active for u in before.users.values())


def test_vanished_role_is_an_incomplete_read(make_connector: ConnectorFactory,
                                              account: Account) -> None:
    """A role that vanishes between the role list and its member list fails the read (404)."""
    connector = make_connector()
    rid = account.add_role("Doomed")
    original = connector.api.v2_pages

    def deleting(path, params, what):  # type: ignore[no-untyped-def]
        for page in original(path, params, what):
            if path == "/api/2/roles":
                with account.lock:
                    del account.roles[rid]
            yield page
    connector.api.v2_pages = deleting  # type: ignore[method-assign]
    with pytest.raises(IncompleteRead, match="404"):
        connector.fetch(ConnectorState())


def test_user_deleted_mid_read_is_read_again(make_connector: ConnectorFactory,
                                             account: Account, ids: Seed) -> None:
    """A deletion between pages shifts the offset pages; the changed Total-Count makes the
    connector read again, so nobody on later pages is missed."""
    account.on_request("/api/2/users", 2, lambda: account.delete_user(ids.users["u01"]))
    snap = make_connector().fetch(ConnectorState())
    assert str(ids.users["u01"]) not in snap.users
    assert len(snap.users) == 42 and str(ids.users["u11"]) in snap.users
    assert account.page_requests("/api/2/users") == 5 + 5


def test_list_that_keeps_moving_fails(make_connector: ConnectorFactory, account: Account) -> None:
    """If every read sees the user count change, fetch() raises instead of guessing."""
    for n in range(2, 40):
        account.on_request("/api/2/users", n,
                           lambda n=n: account.add_user(f"new{n}@example.com"))  # type: ignore[misc]
    with pytest.raises(IncompleteRead, match="kept changing"):
        make_connector().fetch(ConnectorState())
