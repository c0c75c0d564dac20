"""Both credentials work; bad ones fail with one clear line that never shows the secret."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError

from dirconnector.connectors.okta.auth import ServiceApp
from dirconnector.connectors.okta.connector import OktaConnector, OktaSettings
from dirconnector.errors import SourceError
from dirconnector.state_space import ConnectorState
from tests.emulators.okta import OAuthClient

from .conftest import CLIENT_ID, SCOPES, TOKEN, Org

pytestmark = pytest.mark.integration

Make = Callable[..., OktaConnector]


def test_api_token_is_sent_as_ssws(org: Org, make: Make) -> None:
    """An API token reads the org (the emulator accepts only 'SSWS <token>')."""
    assert len(make().fetch(ConnectorState()).users) == 8


def test_service_app_private_key_jwt(org: Org, make: Make,
                                     rsa_key: tuple[Path, bytes]) -> None:
    """client_id + private_key_file get a token once (signature checked) and read the org."""
    connector = make(client_id=CLIENT_ID, private_key_file=str(rsa_key[0]))
    snap = connector.fetch(ConnectorState())
    assert len(snap.users) == 8 and len(snap.groups) == 4
    token_calls = [p for m, p in org.state.requests if p == "/oauth2/v1/token"]
    assert len(token_calls) == 1
    assert len(org.state.used_jti) == 1
    assert str(rsa_key[0]) not in repr(connector) and "BEGIN" not in repr(connector)


def test_service_app_with_ec_jwk_and_key_id(org: Org, make: Make, tmp_path: Path) -> None:
    """A private JWK (EC P-256, ES256) with its kid works; the kid is sent and checked."""
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key))
    jwk["kid"] = "key-2026"
    path = tmp_path / "key.jwk"
    path.write_text(json.dumps(jwk))
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    org.state.clients["0oaEC"] = OAuthClient("0oaEC", public, SCOPES, kid="key-2026")
    snap = make(client_id="0oaEC", private_key_file=str(path)).fetch(ConnectorState())
    assert len(snap.users) == 8


def test_wrong_private_key_is_refused_with_a_hint(org: Org, make: Make, tmp_path: Path) -> None:
    """A key that does not match the registered one fails: invalid_client, one line, a hint."""
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "other.pem"
    path.write_bytes(other.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.TraditionalOpenSSL,
                                         serialization.NoEncryption()))
    with pytest.raises(SourceError) as info:
        make(client_id=CLIENT_ID, private_key_file=str(path)).fetch(ConnectorState())
    assert "invalid_client" in str(info.value) and "signature" in str(info.value)
    assert "\n" not in str(info.value) and "private_key" in info.value.hint


def test_missing_scope_grant_is_named(org: Org, make: Make,
                                      rsa_key: tuple[Path, bytes]) -> None:
    """An app without okta.groups.read is refused with invalid_scope and told what to grant."""
    org.state.clients[CLIENT_ID].scopes = frozenset({"okta.users.read"})
    with pytest.raises(SourceError) as info:
        make(client_id=CLIENT_ID, private_key_file=str(rsa_key[0])).fetch(ConnectorState())
    assert "invalid_scope" in str(info.value) and "okta.groups.read" in str(info.value)
    assert "Okta API Scopes" in info.value.hint


def test_bad_token_fails_with_one_clear_line(org: Org, make: Make) -> None:
    """A wrong API token: SourceError naming 401 and Okta's words, without the token."""
    with pytest.raises(SourceError) as info:
        make(token="wrong-token-value").fetch(ConnectorState())
    message = str(info.value)
    assert "401" in message and "Invalid token provided" in message
    assert "\n" not in message and "wrong-token-value" not in message


def test_check_reports_a_bad_token_without_raising(org: Org, make: Make) -> None:
    """check() returns a failed item for a rejected token instead of raising."""
    report = make(token="wrong-token-value").check()
    assert not report.ok
    assert "401" in report.items[0].detail


def test_forbidden_token_reports_403(org: Org, make: Make) -> None:
    """A token whose admin lacks rights (403 E0000006) fails the read with Okta's words."""
    org.state.forbidden = True
    with pytest.raises(SourceError, match=r"403 E0000006.*permission"):
        make().fetch(ConnectorState())


@pytest.mark.parametrize(("options", "words"), [
    ({"token": TOKEN, "client_id": "x", "private_key": "k"}, "not both"),
    ({}, "token: required"),
    ({"client_id": "x"}, "private_key: required"),
    ({"token": TOKEN, "org_url": "https://acme-admin.okta.com"}, "Admin Console"),
    ({"token": TOKEN, "org_url": "http://acme.okta.com"}, "https"),
    ({"token": TOKEN, "page_size": 201}, "200"),
    ({"token": TOKEN, "user_filter": "only:a@b.c"}, "user_filter"),
])
def test_settings_refuse_bad_options(options: dict[str, object], words: str) -> None:
    """Invalid option combinations are refused with the field named."""
    data = {"type": "okta", "org_url": "https://acme.okta.com", **options}
    with pytest.raises(ValidationError, match=words):
        OktaSettings.model_validate(data)


def test_settings_repr_hides_the_token() -> None:
    """The token never shows in the settings repr."""
    settings = OktaSettings.model_validate({"type": "okta", "org_url": "https://acme.okta.com",
                                            "token": "super-secret-ssws"})
    assert "super-secret-ssws" not in repr(settings)


def test_service_app_requiring_dpop(org: Org, make: Make, rsa_key: tuple[Path, bytes]) -> None:
    """An app with Require DPoP (console default): proofs, the nonce round, DPoP-bound calls."""
    org.state.clients[CLIENT_ID].dpop = True
    connector = make(client_id=CLIENT_ID, private_key_file=str(rsa_key[0]))
    snap = connector.fetch(ConnectorState())
    assert len(snap.users) == 8 and len(snap.groups) == 4
    posts = [p for m, p in org.state.requests if m == "POST"]
    assert len(posts) == 3  # no proof -> invalid_dpop_proof; no nonce -> use_dpop_nonce; ok
    assert len(org.state.dpop_bound) == 1
    assert len(org.state.dpop_jti) == len(org.state.api_requests()) + 1  # one proof per call


def test_dpop_nonce_demanded_by_the_api(org: Org, make: Make,
                                        rsa_key: tuple[Path, bytes]) -> None:
    """When the API answers 401 use_dpop_nonce, the call is repeated once with the nonce."""
    org.state.clients[CLIENT_ID].dpop = True
    org.state.resource_nonce_required = True
    snap = make(client_id=CLIENT_ID, private_key_file=str(rsa_key[0])).fetch(ConnectorState())
    assert len(snap.users) == 8
    calls = org.state.api_requests()
    assert calls[0] == calls[1]  # refused for the missing nonce, then repeated with it
    assert len(org.state.dpop_jti) == len(calls)  # token proof + every call but the refused


def test_revoked_access_token_is_replaced(org: Org, make: Make,
                                          rsa_key: tuple[Path, bytes]) -> None:
    """A cached token the org no longer accepts (401 invalid_token) is fetched anew once."""
    connector = make(client_id=CLIENT_ID, private_key_file=str(rsa_key[0]))
    connector.fetch(ConnectorState())
    org.state.access_tokens.clear()
    assert len(connector.fetch(ConnectorState()).users) == 8
    assert isinstance(connector.auth, ServiceApp) and connector.auth.tokens_fetched == 2
