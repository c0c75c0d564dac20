"""Pieces of the okta connector that need no server: keys, rate gauge, link safety."""

from __future__ import annotations

import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dirconnector.connectors.okta.api import OktaApi, RateGauge
from dirconnector.connectors.okta.auth import ApiToken, load_signing_key
from dirconnector.errors import ConfigError, IncompleteRead
from dirconnector.http import Response


def response(**headers: str) -> Response:
    return Response(200, headers=headers)


def test_encrypted_pem_is_refused_with_the_reason() -> None:
    """An encrypted private key is a ConfigError that says so."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.BestAvailableEncryption(b"pw")).decode()
    with pytest.raises(ConfigError, match="encrypted"):
        load_signing_key(pem)


@pytest.mark.parametrize("text", ["not a key", "-----BEGIN PRIVATE KEY-----\nAAAA\n"])
def test_garbage_key_is_refused(text: str) -> None:
    """Text that is neither PEM nor JWK is a ConfigError naming private_key."""
    with pytest.raises(ConfigError, match="private_key"):
        load_signing_key(text)


def test_public_jwk_is_refused() -> None:
    """A JWK without the private part is refused: it cannot sign."""
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(public)
    with pytest.raises(ConfigError, match="public key only"):
        load_signing_key(jwk)


def test_key_algorithms_follow_the_key() -> None:
    """RSA PEM signs RS256, an EC P-384 PEM ES384; key_id becomes the kid."""
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()).decode()
    ec_pem = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    assert load_signing_key(rsa_pem, "k1").algorithm == "RS256"
    assert load_signing_key(rsa_pem, "k1").kid == "k1"
    assert load_signing_key(ec_pem).algorithm == "ES384"


def test_jwks_with_one_key_is_accepted() -> None:
    """A JWKS document holding one private key works and keeps its kid."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key, as_dict=True)
    jwk["kid"] = "k9"
    loaded = load_signing_key(json.dumps({"keys": [jwk]}))
    assert (loaded.algorithm, loaded.kid) == ("RS256", "k9")


def test_gauge_pauses_at_the_reserve_until_the_servers_reset() -> None:
    """Remaining at 10% of Limit schedules a pause of Reset minus the server's Date."""
    now = 1_800_000_000.0
    gauge = RateGauge(0.1, 90, clock=lambda: now)
    date = "Fri, 15 Jan 2027 08:00:00 GMT"  # 1_800_000_000 in RFC 9110 form
    gauge.observe(response(**{"X-Rate-Limit-Limit": "100", "X-Rate-Limit-Remaining": "11",
                              "X-Rate-Limit-Reset": str(int(now) + 30), "Date": date}))
    assert gauge.resume_at == 0.0
    gauge.observe(response(**{"X-Rate-Limit-Limit": "100", "X-Rate-Limit-Remaining": "10",
                              "X-Rate-Limit-Reset": str(int(now) + 30), "Date": date}))
    assert gauge.resume_at == pytest.approx(now + 30)
    slept: list[float] = []
    gauge.pause(slept.append)
    assert slept == [pytest.approx(30)] and gauge.waited == pytest.approx(30)


def test_gauge_ignores_the_concurrency_signal_and_caps_waits() -> None:
    """Limit 0 / Remaining 0 (concurrent limit) schedules nothing; a far reset is capped."""
    gauge = RateGauge(0.1, 5, clock=lambda: 1000.0)
    gauge.observe(response(**{"X-Rate-Limit-Limit": "0", "X-Rate-Limit-Remaining": "0",
                              "X-Rate-Limit-Reset": "99999"}))
    assert gauge.resume_at == 0.0
    assert gauge.until_reset(response(**{"X-Rate-Limit-Reset": "99999"})) == 5
    assert gauge.until_reset(response()) is None


def test_next_link_outside_the_api_stops_the_read() -> None:
    """A next link that leaves /api/ is refused rather than followed with the credential."""
    api = OktaApi("https://acme.okta.com", ApiToken("t"), verify=True, timeout=5,
                  reserve_ratio=0.1, max_wait=5)
    assert api._relative("https://evil.example/api/v1/users?after=x") == "api/v1/users?after=x"
    with pytest.raises(IncompleteRead):
        api._relative("https://evil.example/steal")
