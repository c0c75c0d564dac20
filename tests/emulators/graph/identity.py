"""The Microsoft identity platform endpoints msal calls: OpenID discovery and the v2 token endpoint.

Wire facts (shared/reference/graph.md section 6-7; v2-oauth2-client-creds-grant-flow.md):
discovery is ``GET /{tenant}/v2.0/.well-known/openid-configuration``; the token request is a
form POST with ``grant_type=client_credentials``, ``client_id``, ``scope={resource}/.default``
and either ``client_secret`` or a signed ``client_assertion`` (certificate credentials,
certificate-credentials.md: a JWT with ``aud`` = token endpoint, ``iss`` = ``sub`` = client id,
header ``x5t#S256`` or ``x5t``). Errors are ``{"error", "error_description", "error_codes", ...}``
with AADSTS codes, 400 or 401 as Entra ID answers them.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes


@dataclass
class App:
    """An app registration with its credentials and granted application permissions."""

    client_id: str
    secret: str | None = None
    certificate_pem: bytes | None = None
    roles: set[str] = field(default_factory=set)


@dataclass
class Token:
    client_id: str
    roles: frozenset[str]
    expires: float


def openid_configuration(origin: str, tenant: str) -> dict[str, Any]:
    """The discovery document, shaped like login.microsoftonline.com's."""
    base = f"{origin}/{tenant}"
    return {
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                  "client_secret_basic"],
        "jwks_uri": f"{origin}/{tenant}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"{origin}/oidc/userinfo",
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid"],
        "kerberos_endpoint": f"{base}/kerberos",
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }


def aad_error(status: int, error: str, code: int, text: str) -> tuple[int, dict[str, Any]]:
    """An Entra ID token error body (multi-line description with trace ids, as sent)."""
    trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    return status, {
        "error": error,
        "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {trace}\r\n"
                             f"Correlation ID: {corr}\r\nTimestamp: {stamp}",
        "error_codes": [code], "timestamp": stamp, "trace_id": trace, "correlation_id": corr,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }


class TokenIssuer:
    """Validates client-credentials requests and hands out opaque bearer tokens."""

    def __init__(self, tenant: str, resource: str) -> None:
        self.tenant = tenant
        self.resource = resource          # e.g. https://127.0.0.1:PORT (the Graph origin)
        self.apps: dict[str, App] = {}
        self.tokens: dict[str, Token] = {}
        self.lifetime = 3599
        self.issued = 0

    def token(self, tenant: str, form: dict[str, str], endpoint: str,
              ) -> tuple[int, dict[str, Any]]:
        if tenant != self.tenant:
            return aad_error(400, "invalid_request", 90002,
                             f"Tenant '{tenant}' not found. Check to make sure you have the "
                             "correct tenant ID and are signing into the correct cloud.")
        if form.get("grant_type") != "client_credentials":
            return aad_error(400, "unsupported_grant_type", 70003,
                             "The app requested an unsupported grant type.")
        client_id = form.get("client_id", "")
        app = self.apps.get(client_id)
        if app is None:
            return aad_error(400, "unauthorized_client", 700016,
                             f"Application with identifier '{client_id}' was not found in the "
                             f"directory '{tenant}'.")
        scope = form.get("scope", "")
        scopes = set(scope.split())
        if not scopes or any(not s.endswith("/.default") for s in scopes):
            return aad_error(400, "invalid_scope", 1002012,
                             f"The provided value for scope {scope} is not valid. Client "
                             "credential flows must have a scope value with /.default suffixed "
                             "to the resource identifier (application ID URI).")
        if scopes != {self.resource + "/.default"}:
            return aad_error(400, "invalid_resource", 500011,
                             f"The resource principal named {scope.removesuffix('/.default')} "
                             f"was not found in the tenant named {tenant}.")
        problem = self._authenticate(app, form, endpoint)
        if problem is not None:
            return problem
        access = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(48)
        self.tokens[access] = Token(client_id, frozenset(app.roles), time.time() + self.lifetime)
        self.issued += 1
        return 200, {"token_type": "Bearer", "expires_in": self.lifetime,
                     "ext_expires_in": self.lifetime, "access_token": access}

    def _authenticate(self, app: App, form: dict[str, str], endpoint: str,
                      ) -> tuple[int, dict[str, Any]] | None:
        if "client_secret" in form:
            if app.secret is None or not secrets.compare_digest(form["client_secret"],
                                                                app.secret):
                return aad_error(401, "invalid_client", 7000215,
                                 "Invalid client secret provided. Ensure the secret being sent "
                                 "in the request is the client secret value, not the client "
                                 f"secret ID, for a secret added to app '{app.client_id}'.")
            return None
        assertion = form.get("client_assertion")
        if not assertion or form.get("client_assertion_type") != (
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"):
            return aad_error(401, "invalid_client", 7000218,
                             "The request body must contain the following parameter: "
                             "'client_assertion' or 'client_secret'.")
        if app.certificate_pem is None:
            return aad_error(401, "invalid_client", 700027,
                             "The certificate with identifier used to sign the client assertion"
                             " is not registered on application.")
        cert = x509.load_pem_x509_certificate(app.certificate_pem)
        header = jwt.get_unverified_header(assertion)
        want256 = _b64(cert.fingerprint(hashes.SHA256()))
        want1 = _b64(cert.fingerprint(hashes.SHA1()))  # x5t is SHA-1 (RFC 7515 4.1.7)
        # msal pads the base64url thumbprint with "=", RFC 7515 does not: accept both.
        got256 = str(header.get("x5t#S256", "")).rstrip("=")
        got1 = str(header.get("x5t", "")).rstrip("=")
        if got256 != want256 and got1 != want1:
            return aad_error(401, "invalid_client", 700027,
                             "The certificate with identifier used to sign the client assertion"
                             " is not registered on application.")
        try:
            claims = jwt.decode(assertion, cert.public_key(),  # type: ignore[arg-type]
                                algorithms=["PS256", "RS256"], audience=endpoint,
                                issuer=app.client_id)
        except jwt.PyJWTError as exc:
            return aad_error(401, "invalid_client", 700027,
                             f"Client assertion failed signature validation. ({exc})")
        if claims.get("sub") != app.client_id:
            return aad_error(401, "invalid_client", 700023,
                             "Client assertion audience claim does not match Realm issuer.")
        return None

    def lookup(self, bearer: str) -> Token | None:
        tok = self.tokens.get(bearer)
        if tok is None or tok.expires < time.time():
            return None
        return tok


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def form_to_dict(body: bytes) -> dict[str, str]:
    from urllib.parse import parse_qs

    return {k: v[-1] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()
