"""The org authorization server's token endpoint for API service apps.

"Implement OAuth for Okta with a service app": ``POST /oauth2/v1/token`` with
``grant_type=client_credentials``, ``scope``, ``client_assertion_type=
urn:ietf:params:oauth:client-assertion-type:jwt-bearer`` and a ``client_assertion``
JWT signed with the app's private key: ``iss`` = ``sub`` = client id, ``aud`` = the
token URL, ``exp`` at most one hour ahead, ``jti`` single-use. Errors use RFC 6749
5.2 ``error`` / ``error_description``.
"""

from __future__ import annotations

from typing import Any

import jwt

from .dpop import DpopError, verify
from .state import OktaState

Answer = tuple[int, dict[str, Any], list[tuple[str, str]]]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"]


def _error(status: int, error: str, description: str,
           headers: list[tuple[str, str]] | None = None) -> Answer:
    return status, {"error": error, "error_description": description}, headers or []


def token_endpoint(state: OktaState, form: dict[str, str], token_url: str,
                   dpop_proof: str | None = None) -> Answer:
    """Validate a client-credentials request; (status, JSON body, extra headers)."""
    if form.get("grant_type") != "client_credentials":
        return _error(400, "unsupported_grant_type",
                      f"The authorization grant type is not supported: {form.get('grant_type')}.")
    assertion = form.get("client_assertion", "")
    if form.get("client_assertion_type") != ASSERTION_TYPE or not assertion:
        return _error(401, "invalid_client", "Client authentication failed. Either the client or "
                      "the client credentials are invalid.")
    try:
        unverified = jwt.decode(assertion, options={"verify_signature": False})
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        return _error(400, "invalid_client", "The client_assertion is not a valid JWT.")
    client_id = str(unverified.get("iss", ""))
    client = state.clients.get(client_id)
    if client is None or form.get("client_id", client_id) != client_id:
        return _error(401, "invalid_client", "The client_assertion token's iss claim does not "
                      "match a registered client.")
    if client.kid is not None and header.get("kid") not in (None, client.kid):
        return _error(401, "invalid_client", "The client_assertion kid is not registered.")
    try:
        claims = jwt.decode(assertion, client.public_key_pem, algorithms=ALGORITHMS,
                            audience=token_url,
                            options={"require": ["iss", "sub", "aud", "exp", "iat"]})
    except jwt.InvalidAudienceError:
        return _error(401, "invalid_client", "The audience claim for client_assertion must be "
                      "the endpoint invoked for the request.")
    except jwt.ExpiredSignatureError:
        return _error(401, "invalid_client", "The client_assertion token is expired.")
    except jwt.InvalidSignatureError:
        return _error(401, "invalid_client", "The client_assertion signature is invalid.")
    except jwt.PyJWTError as exc:
        return _error(401, "invalid_client", f"The client_assertion is invalid: {exc}.")
    if claims["sub"] != client_id:
        return _error(401, "invalid_client", "The client_assertion sub claim must equal iss.")
    if int(claims["exp"]) - int(claims["iat"]) > 3600:
        return _error(401, "invalid_client", "The client_assertion token has an expiration too "
                      "far into the future.")
    jti = claims.get("jti")
    with state.lock:
        if jti is not None:
            if jti in state.used_jti:
                return _error(401, "invalid_client",
                              "The client_assertion token has already been used.")
            state.used_jti.add(jti)
    requested = frozenset(form.get("scope", "").split())
    if not requested:
        return _error(400, "invalid_scope", "The authorization server requires a scope.")
    refused = sorted(requested - client.scopes)
    if refused:
        return _error(400, "invalid_scope", "The following scopes are not allowed: "
                      + ", ".join(refused))
    token_type = "Bearer"
    jkt = ""
    if client.dpop:
        try:
            with state.lock:
                jkt = verify(dpop_proof, "POST", token_url, state.dpop_jti,
                             nonce=state.dpop_nonce)
        except DpopError as exc:
            nonce = [("DPoP-Nonce", state.dpop_nonce)] if exc.error == "use_dpop_nonce" else []
            return _error(400, exc.error, exc.description, nonce)
        token_type = "DPoP"
    token = state.issue_token(requested)
    if jkt:
        with state.lock:
            state.dpop_bound[token] = jkt
    return 200, {"token_type": token_type, "expires_in": state.token_lifetime,
                 "access_token": token, "scope": " ".join(sorted(requested))}, []
