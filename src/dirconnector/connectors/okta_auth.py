"""Credentials for the Okta Management API: an API token, or OAuth 2.0 for a service app.

API token: ``Authorization: SSWS {token}`` (Okta API reference, securityScheme apiToken).

Service app ("Implement OAuth for Okta with a service app"): the client-credentials
grant against the org authorization server, ``POST {org}/oauth2/v1/token``, the client
authenticated by a JWT signed with its private key (RFC 7523 2.2, ``private_key_jwt``):
``iss`` = ``sub`` = client id, ``aud`` = the token URL, short ``exp``, single-use
``jti``. The answer's bearer token is cached and renewed before it expires.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from ..errors import ConfigError, SourceError
from ..http import HttpClient, error_detail

log = logging.getLogger(__name__)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 300
"""Seconds a client assertion is valid; Okta refuses more than one hour."""
RENEW_BEFORE = 300
"""Renew the access token this many seconds before it expires (the SDK's default offset)."""

_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A loaded private key, the JWS algorithm it signs with, and its key id if known."""

    key: Any
    algorithm: str
    kid: str | None


def load_signing_key(text: str, key_id: str | None = None) -> SigningKey:
    """A PEM (PKCS#1 or PKCS#8) or JWK private key; RSA signs RS256, EC by its curve."""
    text = text.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
            # The Admin Console offers the generated key as a JWK; a JWKS with one key too.
            if isinstance(data, dict) and isinstance(data.get("keys"), list) and data["keys"]:
                data = data["keys"][0]
            jwk = jwt.PyJWK(data)
        except (ValueError, jwt.PyJWTError) as exc:
            raise ConfigError(f"source.private_key: not a usable private JWK ({exc})") from exc
        if not isinstance(jwk.key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ConfigError("source.private_key: the JWK holds a public key only; give the "
                              "private key (it has a 'd' member)")
        return SigningKey(jwk.key, jwk.algorithm_name, key_id or data.get("kid"))
    try:
        key = load_pem_private_key(text.encode(), password=None)
    except TypeError as exc:
        raise ConfigError("source.private_key: the PEM key is encrypted; give an unencrypted "
                          "key file readable only by this service") from exc
    except ValueError as exc:
        raise ConfigError("source.private_key: not a PEM or JWK private key") from exc
    if isinstance(key, rsa.RSAPrivateKey):
        return SigningKey(key, "RS256", key_id)
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _EC_ALGORITHMS:
        return SigningKey(key, _EC_ALGORITHMS[key.curve.name], key_id)
    raise ConfigError("source.private_key: Okta accepts RSA or EC (P-256/384/521) keys only")


def ssws(token: str) -> Callable[[], Mapping[str, str]]:
    """Headers for an API token."""
    header = {"Authorization": f"SSWS {token}"}
    return lambda: header


class ServiceAppToken:
    """Fetches and caches a scoped access token for an Okta API service app."""

    def __init__(self, org_url: str, client_id: str, key: SigningKey, scopes: tuple[str, ...],
                 *, verify: bool | str, timeout: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.token_url = f"{org_url}/oauth2/v1/token"
        self.client_id = client_id
        self.scopes = scopes
        self._key = key
        self._clock = clock
        self._lock = threading.Lock()
        self._token = ""
        self._renew_at = 0.0
        self._http = HttpClient(org_url, side="source", label="okta token endpoint",
                                verify=verify, timeout=timeout)

    def __repr__(self) -> str:  # never show the key or the token
        return f"ServiceAppToken(client_id={self.client_id!r}, scopes={self.scopes!r})"

    def headers(self) -> Mapping[str, str]:
        """The Authorization header, fetching a new token when the cached one is due."""
        with self._lock:
            if not self._token or self._clock() >= self._renew_at:
                self._fetch()
            return {"Authorization": f"Bearer {self._token}"}

    def assertion(self) -> str:
        """A fresh signed client assertion (RFC 7523 3)."""
        now = int(self._clock())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": self.token_url,
                  "iat": now, "exp": now + ASSERTION_LIFETIME, "jti": uuid.uuid4().hex}
        headers = {"kid": self._key.kid} if self._key.kid else None
        return jwt.encode(claims, self._key.key, algorithm=self._key.algorithm, headers=headers)

    def _fetch(self) -> None:
        form = {"grant_type": "client_credentials", "scope": " ".join(self.scopes),
                "client_assertion_type": ASSERTION_TYPE, "client_assertion": self.assertion()}
        resp = self._http.request("POST", "oauth2/v1/token", data=form,
                                  headers={"Accept": "application/json"}, ok=(200, 400, 401))
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
            raise _token_error(resp.status_code, body, error_detail(resp))
        if str(body.get("token_type", "")).lower() != "bearer":
            # A DPoP-bound token needs a proof on every call, which this connector does not send.
            raise SourceError(f"okta token endpoint: got a {body.get('token_type')} token, "
                              "not Bearer", hint=_DPOP_HINT)
        self._token = str(body["access_token"])
        lifetime = float(body.get("expires_in") or 3600)
        self._renew_at = self._clock() + max(lifetime - RENEW_BEFORE, lifetime / 2)
        log.debug("okta: access token obtained for %s, valid %.0fs", self.client_id, lifetime)


_DPOP_HINT = ("in the Admin Console, open the API service app > General > General Settings and "
              "clear 'Require Demonstrating Proof of Possession (DPoP) header in token requests'")


def _token_error(status: int, body: Any, detail: str) -> SourceError:
    error = body.get("error", "") if isinstance(body, dict) else ""
    what = f"okta token endpoint answered {status}" + (f" {error}" if error else "")
    described = body.get("error_description", "") if isinstance(body, dict) else ""
    message = f"{what}: {described or detail}".rstrip(": ")
    if "dpop" in f"{error} {described}".lower():
        return SourceError(message, hint=_DPOP_HINT)
    if error == "invalid_scope":
        return SourceError(message, hint="grant okta.users.read and okta.groups.read on the "
                           "app's 'Okta API Scopes' tab")
    if error == "invalid_client":
        return SourceError(message, hint="check client_id, that private_key matches the public "
                           "key registered on the app, and key_id if the app has several keys")
    return SourceError(message)
