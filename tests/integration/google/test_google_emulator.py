"""The emulator answers like the Directory API reference says (so the other tests mean something)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from dirconnector.connectors.google.api import SCOPES
from tests.emulators.google.auth import Grant

pytestmark = pytest.mark.integration

USERS = "admin/directory/v1/users"


def token(env: Any, subject: str | None = "admin@example.com",
          scopes: tuple[str, ...] = SCOPES) -> dict[str, str]:
    env.directory.oauth.tokens["t-" + str(subject)] = Grant(
        env.account.client_id, subject, frozenset(scopes), time.time() + 60)
    return {"Authorization": f"Bearer t-{subject}"}


def get(env: Any, path: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
    return requests.get(env.emulator.base_url + path, params=params, headers=headers,
                        verify=str(env.emulator.ca_file), timeout=5)


def test_no_token_is_401_unauthenticated(env: Any) -> None:
    """Without a bearer token: 401, status UNAUTHENTICATED, reason authError."""
    resp = get(env, USERS, customer="my_customer")
    err = resp.json()["error"]
    assert resp.status_code == 401 and err["status"] == "UNAUTHENTICATED"
    assert err["errors"][0]["reason"] == "authError"


def test_token_without_subject_cannot_read(env: Any) -> None:
    """A service account acting as itself (no sub) gets 403 Not Authorized."""
    resp = get(env, USERS, token(env, subject=None), customer="my_customer")
    assert resp.status_code == 403
    assert resp.json()["error"]["message"] == "Not Authorized to access this resource/api"


def test_wrong_scope_is_insufficient_permissions(env: Any) -> None:
    """A token with only the user scope cannot list groups: 403 insufficientPermissions."""
    resp = get(env, "admin/directory/v1/groups", token(env, scopes=SCOPES[:1]),
               customer="my_customer")
    assert resp.status_code == 403
    assert resp.json()["error"]["errors"][0]["reason"] == "insufficientPermissions"


def test_max_results_above_500_is_invalid(env: Any) -> None:
    """users.list maxResults is 1..500: 501 is 400 invalidParameter."""
    resp = get(env, USERS, token(env), customer="my_customer", maxResults=501)
    assert resp.status_code == 400
    assert resp.json()["error"]["errors"][0]["reason"] == "invalidParameter"


def test_customer_or_domain_is_required(env: Any) -> None:
    """users.list with neither customer nor domain is 400 Bad Request."""
    assert get(env, USERS, token(env)).status_code == 400


def test_pages_end_without_token_and_tokens_bind_the_query(env: Any) -> None:
    """The last page has no nextPageToken; a token reused with another query is refused."""
    auth = token(env)
    first = get(env, USERS, auth, customer="my_customer", maxResults=4).json()
    last = get(env, USERS, auth, customer="my_customer", maxResults=4,
               pageToken=first["nextPageToken"]).json()
    assert len(first["users"]) == 4 and len(last["users"]) == 2
    assert "nextPageToken" not in last
    other = get(env, USERS, auth, customer="my_customer", maxResults=4, query="isAdmin=true",
                pageToken=first["nextPageToken"])
    assert other.status_code == 400


def test_customer_member_has_customer_id_and_no_email(env: Any) -> None:
    """A CUSTOMER member carries the customer id and no email (members reference)."""
    path = f"admin/directory/v1/groups/{env.org.groups['all']}/members"
    member = get(env, path, token(env)).json()["members"][0]
    assert member["type"] == "CUSTOMER" and member["id"] == env.directory.customer_id
    assert "email" not in member


def test_group_direct_members_count_is_a_string(env: Any) -> None:
    """directMembersCount is an int64, so JSON carries it as a string."""
    groups = get(env, "admin/directory/v1/groups", token(env), customer="my_customer").json()
    assert all(isinstance(g["directMembersCount"], str) for g in groups["groups"])


def test_token_endpoint_rejects_other_grant_types(env: Any) -> None:
    """Only the JWT-bearer grant is served: others get 400 unsupported_grant_type."""
    resp = requests.post(env.emulator.token_uri, data={"grant_type": "client_credentials"},
                         verify=str(env.emulator.ca_file), timeout=5)
    assert resp.status_code == 400 and resp.json()["error"] == "unsupported_grant_type"


def test_partial_response_keeps_only_named_fields(env: Any) -> None:
    """fields=users(id) returns users holding only their id, and no kind/etag."""
    body = get(env, USERS, token(env), customer="my_customer", fields="users(id)").json()
    assert set(body) == {"users"} and all(set(u) == {"id"} for u in body["users"])
