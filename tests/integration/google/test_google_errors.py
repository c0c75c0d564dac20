"""Failures: rate limits are survived, auth problems are one clear line, nothing partial."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trustme

from dirconnector.connectors.google.api import INNER_RETRIES, SCOPES
from dirconnector.errors import IncompleteRead, SourceError
from dirconnector.state_space import ConnectorState

pytestmark = pytest.mark.integration

MEMBER_SCOPE = "https://www.googleapis.com/auth/admin.directory.group.member.readonly"


def fetch_error(connector: Any) -> SourceError:
    with pytest.raises(SourceError) as info:
        connector.fetch(ConnectorState())
    assert "\n" not in str(info.value)
    return info.value


def test_429_with_retry_after_is_waited_out(env: Any) -> None:
    """429 rateLimitExceeded past num_retries: we wait Retry-After (7 s) and finish the read."""
    baseline = env.connector().fetch(ConnectorState()).digest()
    env.directory.fail("users.list", reason="rateLimitExceeded", times=INNER_RETRIES + 1,
                       retry_after="7")
    snap = env.connector().fetch(ConnectorState())
    assert snap.complete and snap.digest() == baseline
    assert 7.0 in env.sleeps
    assert len(env.sleeps) == INNER_RETRIES + 1      # library's three, then ours


def test_403_user_rate_limit_on_members_is_survived(env: Any) -> None:
    """403 userRateLimitExceeded is retried like a 429 (Directory API limits page)."""
    baseline = env.connector().fetch(ConnectorState()).digest()
    env.directory.fail("members.list", reason="userRateLimitExceeded", times=6)
    assert env.connector().fetch(ConnectorState()).digest() == baseline
    assert len(env.sleeps) == 6


def test_503_on_a_later_page_is_retried(env: Any) -> None:
    """A 503 backendError on page 2 of groups.list is retried; the read completes."""
    baseline = env.connector().fetch(ConnectorState()).digest()
    env.directory.calls.clear()
    connector = env.connector(page_size=1)
    original = env.directory.fault_for
    seen = {"n": 0}

    def second_page_fails(op: str) -> Any:
        if op == "groups.list":
            seen["n"] += 1
            if seen["n"] == 2:
                env.directory.fail("groups.list", 503)
        return original(op)

    env.directory.fault_for = second_page_fails  # type: ignore[method-assign]
    assert connector.fetch(ConnectorState()).digest() == baseline
    assert env.directory.count("groups.list") == 4 and seen["n"] == 5


def test_endless_rate_limit_raises_and_returns_nothing(env: Any) -> None:
    """A 429 that never ends raises IncompleteRead naming the call; no snapshot comes back."""
    env.directory.fail("members.list", reason="rateLimitExceeded", times=10_000)
    err = fetch_error(env.connector())
    assert isinstance(err, IncompleteRead)
    assert "members.list of" in str(err) and "429" in str(err)
    assert sum(env.sleeps) <= 180 + INNER_RETRIES * 2 ** INNER_RETRIES * 4


def test_missing_member_list_page_is_never_partial(env: Any) -> None:
    """A 404 for a listed group during members.list fails the read instead of dropping it."""
    env.directory.fail("members.list", 404, "notFound")
    err = fetch_error(env.connector())
    assert "members.list" in str(err) and "404" in str(err)


def test_missing_delegation_is_one_clear_line(env: Any) -> None:
    """No domain-wide delegation: one line naming the client id and where to fix it."""
    env.directory.oauth.revoke_delegation(env.account.client_id)
    err = fetch_error(env.connector())
    text = str(err)
    assert text.startswith("Google: domain-wide delegation is not set up for service account")
    assert env.account.client_id in text and "Manage Domain Wide Delegation" in text
    assert env.directory.calls == []


def test_missing_scope_names_the_scope(env: Any) -> None:
    """Delegation without group.member.readonly: the line names exactly that scope."""
    env.directory.oauth.delegate(env.account.client_id, [s for s in SCOPES if s != MEMBER_SCOPE])
    text = str(fetch_error(env.connector()))
    assert f"lacks scope(s) {MEMBER_SCOPE} " in text
    assert "user.readonly" not in text


def test_check_reports_missing_delegation_without_raising(env: Any) -> None:
    """check() turns the delegation failure into a failed item with the same line."""
    env.directory.oauth.revoke_delegation(env.account.client_id)
    report = env.connector().check()
    assert not report.ok
    assert "domain-wide delegation is not set up" in report.items[-1].detail


def test_admin_email_not_in_the_account(env: Any) -> None:
    """A delegation subject Google does not know: invalid_grant, said in one line."""
    err = fetch_error(env.connector(admin_email="ghost@example.com"))
    assert "admin_email ghost@example.com is not a user" in str(err)


def test_admin_email_without_admin_rights(env: Any) -> None:
    """Impersonating a non-admin gets 403 forbidden; the line says what role is needed."""
    err = fetch_error(env.connector(admin_email="alice@example.com"))
    assert "admin_email alice@example.com may not read the directory" in str(err)
    assert "403 forbidden" in str(err)


def test_deleted_key_is_reported(env: Any, tmp_path: Any) -> None:
    """A key Google no longer knows (signature fails) says to create a new key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    info = json.loads(env.key_file.read_text())
    info["private_key"] = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    key = tmp_path / "old-key.json"
    key.write_text(json.dumps(info))
    err = fetch_error(env.connector(credentials_file=str(key)))
    assert "Invalid JWT Signature" in str(err) and "create a new key" in str(err)
    assert "PRIVATE KEY" not in str(err)


def test_expired_token_is_refreshed(env: Any) -> None:
    """A token the API stops accepting (401) is refreshed once and the read goes on."""
    connector = env.connector()
    first = connector.fetch(ConnectorState())
    grants = len(env.directory.oauth.requests)
    env.directory.oauth.expire_tokens()
    assert connector.fetch(ConnectorState()).digest() == first.digest()
    assert len(env.directory.oauth.requests) == grants + 1


def test_assertion_carries_delegation_subject_and_three_scopes(env: Any) -> None:
    """The JWT the emulator verified has sub=admin_email and exactly the read-only scopes."""
    env.connector().fetch(ConnectorState())
    claims = env.directory.oauth.requests[0]
    assert claims["sub"] == "admin@example.com"
    assert sorted(claims["scope"].split()) == sorted(SCOPES)
    assert claims["iss"] == env.account.client_email


def test_unknown_ca_fails_with_a_line(env: Any, tmp_path: Any) -> None:
    """A server certificate the ca_file does not vouch for: one SourceError line."""
    wrong = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(wrong))
    err = fetch_error(env.connector(ca_file=str(wrong)))
    assert "certificate" in str(err).lower() or "ssl" in str(err).lower()


def test_invalid_native_query_is_reported(env: Any) -> None:
    """A query Google rejects (400 Invalid Input) names users.list and the answer."""
    err = fetch_error(env.connector(user_filter="| colour=blue"))
    assert "users.list" in str(err) and "400" in str(err) and "Invalid Input" in str(err)


def test_check_reports_a_rejected_query(env: Any) -> None:
    """check() sends the user_filter query, so a bad one fails the users.list item."""
    report = env.connector(user_filter="| colour=blue").check()
    assert not report.ok
    assert report.items[-1].name.startswith("users.list") and "400" in report.items[-1].detail
