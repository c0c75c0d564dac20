"""Credentials for the Okta Management API: an API token, or OAuth 2.0 for a service app.

Both expose ``sign(method, url)`` (headers for one attempt, HttpClient's ``sign`` hook)
and ``challenged(resp)`` (after a 401: is one more try worth it?).

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

from ...errors import ConfigError, SourceError
from ...http import HttpClient, Response, error_detail
from .dpop import DpopProver

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


class ApiToken:
    """An API token: ``Authorization: SSWS <token>``."""

    description = "API token"
    hint = ("the API token is wrong, revoked, or expired (Okta expires tokens unused for 30 "
            "days); create one under Security > API > Tokens")

    def __init__(self, token: str) -> None:
        self._header = {"Authorization": f"SSWS {token}"}

    def __repr__(self) -> str:
        return "ApiToken(********)"

    def sign(self, method: str, url: str) -> Mapping[str, str]:
        return self._header

    def challenged(self, resp: Response) -> bool:
        """Nothing to renew: a refused token stays refused."""
        return False


class ServiceApp:
    """A scoped access token for an Okta API service app, fetched, cached and renewed.

    Bearer by default; switches to DPoP (dpop.py) when the token endpoint says the
    app requires it, so the Admin Console's default needs no extra option.
    """

    hint = "the access token was refused; check that the service app is active"

    def __init__(self, org_url: str, client_id: str, key: SigningKey, scopes: tuple[str, ...],
                 *, verify: bool | str, timeout: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.token_url = f"{org_url}/oauth2/v1/token"
        self.client_id = client_id
        self.scopes = scopes
        self.description = f"service app {client_id}"
        self._key = key
        self._clock = clock
        self._lock = threading.Lock()
        self._token = ""
        self._renew_at = 0.0
        self.dpop: DpopProver | None = None
        """Set once the org asks for DPoP; proofs are then sent with every call."""
        self.tokens_fetched = 0
        self._http = HttpClient(org_url, side="source", label="okta token endpoint",
                                verify=verify, timeout=timeout)

    def __repr__(self) -> str:  # never show the key or the token
        return f"ServiceApp(client_id={self.client_id!r}, scopes={self.scopes!r})"

    def sign(self, method: str, url: str) -> Mapping[str, str]:
        """Headers for one attempt, fetching a new token when the cached one is due."""
        with self._lock:
            if not self._token or self._clock() >= self._renew_at:
                self._fetch()
            if self.dpop is None:
                return {"Authorization": f"Bearer {self._token}"}
            return {"Authorization": f"DPoP {self._token}",
                    "DPoP": self.dpop.proof(method, url, nonce=self.dpop.resource_nonce,
                                            access_token=self._token)}

    def challenged(self, resp: Response) -> bool:
        """After a 401: True when one more try can succeed (a DPoP nonce, a dead token)."""
        challenge = resp.headers.get("WWW-Authenticate", "")
        with self._lock:
            nonce = resp.headers.get("DPoP-Nonce")
            if self.dpop is not None and "use_dpop_nonce" in challenge and nonce:
                self.dpop.resource_nonce = nonce
                return True
            if "invalid_token" in challenge and self._token:
                self._token = ""     # revoked or expired early: fetch a fresh one
                return True
        return False

    def assertion(self) -> str:
        """A fresh signed client assertion (RFC 7523 3)."""
        now = int(self._clock())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": self.token_url,
                  "iat": now, "exp": now + ASSERTION_LIFETIME, "jti": uuid.uuid4().hex}
        headers = {"kid": self._key.kid} if self._key.kid else None
        return jwt.encode(claims, self._key.key, algorithm=self._key.algorithm, headers=headers)

    def _fetch(self) -> None:
        for _ in range(3):
            resp, body = self._request_token()
            error = str(body.get("error", "")) if isinstance(body, dict) else ""
            described = str(body.get("error_description", "")) if isinstance(body, dict) else ""
            if resp.status == 400 and self.dpop is None and (
                    error == "invalid_dpop_proof" or "dpop" in described.lower()):
                log.info("okta: service app %s requires DPoP; sending DPoP proofs",
                         self.client_id)
                self.dpop = DpopProver(self._clock)
                continue
            nonce = resp.headers.get("DPoP-Nonce")
            if resp.status == 400 and error == "use_dpop_nonce" and self.dpop and nonce:
                self.dpop.token_nonce = nonce
                continue
            break
        if resp.status != 200 or not isinstance(body, dict) or not body.get("access_token"):
            raise _token_error(resp.status, body, error_detail(resp))
        kind = str(body.get("token_type", "")).lower()
        if kind not in ("bearer", "dpop") or (kind == "dpop") != (self.dpop is not None):
            raise SourceError(f"okta token endpoint: unexpected token_type "
                              f"{body.get('token_type')!r}", hint=_DPOP_HINT)
        self._token = str(body["access_token"])
        self.tokens_fetched += 1
        lifetime = float(body.get("expires_in") or 3600)
        self._renew_at = self._clock() + max(lifetime - RENEW_BEFORE, lifetime / 2)
        log.debug("okta: %s token obtained for %s, valid %.0fs", kind, self.client_id, lifetime)

    def _request_token(self) -> tuple[Response, Any]:
        form = {"grant_type": "client_credentials", "scope": " ".join(self.scopes),
                "client_assertion_type": ASSERTION_TYPE, "client_assertion": self.assertion()}
        headers = {"Accept": "application/json"}
        if self.dpop is not None:
            headers["DPoP"] = self.dpop.proof("POST", self.token_url,
                                              nonce=self.dpop.token_nonce)
        resp = self._http.request("POST", "oauth2/v1/token", data=form, headers=headers,
                                  ok=(200, 400, 401))
        try:
            return resp, resp.json()
        except ValueError:
            return resp, None


_DPOP_HINT = ("the token endpoint's DPoP exchange failed; as a workaround clear 'Require "
              "Demonstrating Proof of Possession (DPoP) header in token requests' on the app's "
              "General tab")


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
