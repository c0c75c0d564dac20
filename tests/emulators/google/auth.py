"""The emulator's OAuth side: service-account keys, domain-wide delegation, the token endpoint.

The JWT-bearer grant (RFC 7523 2.1) as Google runs it for service accounts
(developers.google.com/identity/protocols/oauth2/service-account, "Preparing to make an
authorized API call"): the client POSTs ``grant_type=urn:ietf:params:oauth:grant-type:
jwt-bearer&assertion=<RS256 JWT>`` whose claims are ``iss`` (client_email), ``scope``
(space-separated), ``aud``, ``iat``/``exp`` (at most one hour apart) and, for domain-wide
delegation, ``sub`` (the user impersonated). Google answers 401 ``unauthorized_client``
when the client id is not authorised in the Admin console for *every* requested scope,
and 400 ``invalid_grant`` for a bad signature, a bad time window or an unknown ``sub``.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .errors import UNAUTHORIZED_CLIENT, Body, token_error

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth always sends this audience, whatever token_uri says (service_account.py).
AUDIENCES = frozenset({"https://oauth2.googleapis.com/token",
                       "https://www.googleapis.com/oauth2/v4/token"})
SCOPE_PREFIX = "https://www.googleapis.com/auth/"


@dataclass
class ServiceAccount:
    """A service account and one of its keys (a freshly generated RSA key)."""

    client_email: str
    client_id: str
    key_id: str
    private_key: rsa.RSAPrivateKey

    def key_file(self, token_uri: str, project_id: str = "dirconnector-test") -> dict[str, str]:
        """The JSON key file the Cloud console would download for this key."""
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode()
        return {
            "type": "service_account", "project_id": project_id,
            "private_key_id": self.key_id, "private_key": pem,
            "client_email": self.client_email, "client_id": self.client_id,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
                                    + self.client_email.replace("@", "%40"),
            "universe_domain": "googleapis.com",
        }


@dataclass(frozen=True)
class Grant:
    """What an access token stands for."""

    client_id: str
    subject: str | None
    scopes: frozenset[str]
    expires_at: float


@dataclass
class OAuth:
    """Service accounts, delegation grants and issued tokens; all changeable by tests."""

    accounts: dict[str, ServiceAccount] = field(default_factory=dict)
    delegation: dict[str, set[str]] = field(default_factory=dict)
    """client id -> scopes authorised under Admin console > Domain-wide delegation."""
    tokens: dict[str, Grant] = field(default_factory=dict)
    token_lifetime: int = 3599
    requests: list[dict[str, Any]] = field(default_factory=list)
    """Claims of every assertion received, for assertions in tests."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def create_service_account(self, name: str = "dirconnector",
                               project: str = "dirconnector-test",
                               private_key: rsa.RSAPrivateKey | None = None) -> ServiceAccount:
        """A service account with one key (``private_key`` reuses one; making one is slow)."""
        key = private_key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        n = len(self.accounts) + 1
        sa = ServiceAccount(f"{name}@{project}.iam.gserviceaccount.com",
                            f"1{n:020d}", secrets.token_hex(20), key)
        self.accounts[sa.client_email] = sa
        return sa

    def delegate(self, client_id: str, scopes: set[str] | list[str]) -> None:
        """Authorise (replace) the scopes of a client id for domain-wide delegation."""
        self.delegation[client_id] = {_full(s) for s in scopes}

    def revoke_delegation(self, client_id: str) -> None:
        self.delegation.pop(client_id, None)

    def expire_tokens(self) -> None:
        """Make every issued token invalid (the API answers 401, the client refreshes)."""
        with self.lock:
            self.tokens.clear()

    def grant_for(self, header: str | None) -> Grant | None:
        if not header or not header.startswith("Bearer "):
            return None
        with self.lock:
            grant = self.tokens.get(header[7:].strip())
        if grant is None or grant.expires_at < time.time():
            return None
        return grant

    def token(self, form: dict[str, str], user_exists: Any) -> tuple[int, Body]:
        """Answer one POST to the token endpoint; ``user_exists(email)`` checks ``sub``."""
        if form.get("grant_type") != JWT_BEARER:
            return 400, token_error("unsupported_grant_type",
                                    f"Invalid grant_type: {form.get('grant_type', '')}")
        try:
            header, claims, signing_input, signature = _split(form.get("assertion", ""))
        except ValueError:
            return 400, token_error("invalid_grant", "Invalid JWT: malformed assertion.")
        self.requests.append(claims)
        sa = self.accounts.get(str(claims.get("iss", "")))
        if sa is None:
            return 400, token_error("invalid_grant", "Invalid grant: account not found")
        if header.get("alg") != "RS256" or header.get("kid") not in (None, sa.key_id):
            return 400, token_error("invalid_grant", "Invalid JWT Signature.")
        try:
            sa.private_key.public_key().verify(signature, signing_input, padding.PKCS1v15(),
                                               hashes.SHA256())
        except InvalidSignature:
            return 400, token_error("invalid_grant", "Invalid JWT Signature.")
        if claims.get("aud") not in AUDIENCES:
            return 400, token_error("invalid_grant", "Invalid JWT: Failed audience check.")
        now = time.time()
        iat, exp = claims.get("iat"), claims.get("exp")
        if (not isinstance(iat, int) or not isinstance(exp, int) or exp - iat > 3600
                or exp < now - 300 or iat > now + 300):
            return 400, token_error(
                "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) "
                "and in a reasonable timeframe. Check your iat and exp values in the JWT claim.")
        scopes = frozenset(str(claims.get("scope", "")).split())
        if not scopes:
            return 400, token_error("invalid_scope",
                                    "Invalid OAuth scope or ID token audience provided.")
        subject = claims.get("sub")
        if subject is not None:
            if not user_exists(str(subject)):
                return 400, token_error("invalid_grant", "Invalid email or User ID")
            if not scopes <= self.delegation.get(sa.client_id, set()):
                return 401, token_error("unauthorized_client", UNAUTHORIZED_CLIENT)
        token = "ya29.emu-" + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = Grant(sa.client_id, None if subject is None else str(subject),
                                       scopes, now + self.token_lifetime)
        return 200, {"access_token": token, "expires_in": self.token_lifetime,
                     "token_type": "Bearer"}


def _full(scope: str) -> str:
    return scope if scope.startswith("https://") else SCOPE_PREFIX + scope


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _split(assertion: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    parts = assertion.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWS compact serialization")
    header = json.loads(_b64(parts[0]))
    claims = json.loads(_b64(parts[1]))
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("header or claims not an object")
    return header, claims, f"{parts[0]}.{parts[1]}".encode(), _b64(parts[2])
