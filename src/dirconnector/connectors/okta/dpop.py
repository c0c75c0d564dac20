"""DPoP proofs (RFC 9449) for an Okta API service app that requires them.

Okta's Admin Console turns on *Require Demonstrating Proof of Possession (DPoP) header
in token requests* for new API service apps. Such an app gets a token only when the
token request carries a ``DPoP`` proof JWT, and first answers ``400 use_dpop_nonce``
with a ``DPoP-Nonce`` to put in the next proof (RFC 9449 8). The token it then issues
(``token_type: DPoP``) is bound to the proof key and sent as ``Authorization: DPoP``,
each call with a fresh proof whose ``ath`` is the token's SHA-256 (RFC 9449 4.2, 7.1).
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class DpopProver:
    """An ephemeral P-256 key (one per process, never stored) and the nonces servers sent."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._jwk: dict[str, Any] = jwt.algorithms.ECAlgorithm.to_jwk(
            self._key.public_key(), as_dict=True)
        self._clock = clock
        self.token_nonce: str | None = None
        """Nonce demanded by the token endpoint."""
        self.resource_nonce: str | None = None
        """Nonce demanded by the API (resource server), if any."""

    def __repr__(self) -> str:
        return "DpopProver(ES256)"

    def proof(self, method: str, url: str, *, nonce: str | None = None,
              access_token: str | None = None) -> str:
        """A one-time proof for ``method url`` (htu without query and fragment)."""
        parts = urlsplit(url)
        claims: dict[str, Any] = {"jti": uuid.uuid4().hex, "htm": method.upper(),
                                  "htu": f"{parts.scheme}://{parts.netloc}{parts.path}",
                                  "iat": int(self._clock())}
        if nonce:
            claims["nonce"] = nonce
        if access_token is not None:
            claims["ath"] = _b64url(hashlib.sha256(access_token.encode()).digest())
        return jwt.encode(claims, self._key, algorithm="ES256",
                          headers={"typ": "dpop+jwt", "jwk": self._jwk})
