"""DPoP proof checks (RFC 9449) for the emulated token endpoint and resource server.

Okta: "Configure OAuth 2.0 Demonstrating Proof-of-Possession". An API service app with
*Require DPoP* (the Admin Console default for new apps) must send a ``DPoP`` proof JWT
with its token request; the org answers ``400 use_dpop_nonce`` with a ``DPoP-Nonce``
header first, then a ``token_type: DPoP`` token bound to the proof key, which the
client presents as ``Authorization: DPoP <token>`` with a fresh proof carrying ``ath``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any
from urllib.parse import urlsplit

import jwt

ALGORITHMS = ["ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256"]
MAX_AGE = 60


class DpopError(Exception):
    """A refused proof: the RFC 6749 error code and Okta-like description."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256) of a public EC or RSA key."""
    members = ("crv", "kty", "x", "y") if jwk.get("kty") == "EC" else ("e", "kty", "n")
    canonical = json.dumps({k: jwk[k] for k in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def verify(proof: str | None, method: str, url: str, used: set[str], *,
           nonce: str | None = None, access_token: str | None = None) -> str:
    """Check one proof; returns the key's thumbprint. Raises DpopError."""
    if not proof:
        raise DpopError("invalid_dpop_proof", "The DPoP proof JWT header is missing.")
    try:
        header = jwt.get_unverified_header(proof)
        jwk = header.get("jwk")
        if header.get("typ") != "dpop+jwt" or not isinstance(jwk, dict) or "d" in jwk:
            raise DpopError("invalid_dpop_proof", "The DPoP proof header is invalid.")
        key = jwt.PyJWK(jwk).key
        claims = jwt.decode(proof, key, algorithms=ALGORITHMS,
                            options={"require": ["jti", "htm", "htu", "iat"],
                                     "verify_aud": False})
    except DpopError:
        raise
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise DpopError("invalid_dpop_proof", f"The DPoP proof is invalid: {exc}.") from exc
    target = urlsplit(url)
    if claims["htm"] != method or claims["htu"] != f"{target.scheme}://{target.netloc}" \
            f"{target.path}":
        raise DpopError("invalid_dpop_proof", "The DPoP proof htm or htu does not match "
                        "the request.")
    if abs(time.time() - float(claims["iat"])) > MAX_AGE:
        raise DpopError("invalid_dpop_proof", "The DPoP proof iat is too old or in the future.")
    if claims["jti"] in used:
        raise DpopError("invalid_dpop_proof", "The DPoP proof jti has already been used.")
    if access_token is not None and claims.get("ath") != b64url(
            hashlib.sha256(access_token.encode()).digest()):
        raise DpopError("invalid_dpop_proof", "The DPoP proof ath does not match the token.")
    if nonce is not None and claims.get("nonce") != nonce:
        raise DpopError("use_dpop_nonce", "Authorization server requires nonce in DPoP proof.")
    used.add(str(claims["jti"]))
    return thumbprint(jwk)
