"""Google's JSON error envelope, as the Directory API and the OAuth token endpoint send it.

API errors (developers.google.com/workspace/admin/directory/v1/guides/troubleshoot-error-codes
and .../v1/limits): ``{"error": {"code", "message", "errors": [{"message", "domain",
"reason"}], "status"}}``. Token endpoint errors (RFC 6749 5.2, as Google sends them):
``{"error": "unauthorized_client", "error_description": "..."}``.
"""

from __future__ import annotations

from typing import Any

Body = dict[str, Any]

STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                503: "UNAVAILABLE"}


def api_error(code: int, message: str, reason: str, domain: str = "global",
              **extra: str) -> Body:
    """One error in the v1 JSON envelope googleapiclient's HttpError parses."""
    item: dict[str, str] = {"message": message, "domain": domain, "reason": reason, **extra}
    body: Body = {"code": code, "message": message, "errors": [item]}
    if code in STATUS_NAMES:
        body["status"] = STATUS_NAMES[code]
    return {"error": body}


def unauthenticated() -> Body:
    """401 for a missing, unknown or expired bearer token."""
    return api_error(
        401, "Request had invalid authentication credentials. Expected OAuth 2 access token, "
        "login cookie or other valid authentication credential. See "
        "https://developers.google.com/identity/sign-in/web/devconsole-project.",
        "authError", location="Authorization", locationType="header")


def insufficient_scopes() -> Body:
    """403 when the token lacks the scope the method requires."""
    body = api_error(403, "Request had insufficient authentication scopes.",
                     "insufficientPermissions")
    body["error"]["errors"][0]["message"] = "Insufficient Permission"
    return body


def not_authorized() -> Body:
    """403 when the impersonated user is not an administrator with read rights."""
    return api_error(403, "Not Authorized to access this resource/api", "forbidden")


def not_found(what: str) -> Body:
    return api_error(404, f"Resource Not Found: {what}", "notFound")


def bad_request(message: str = "Bad Request") -> Body:
    return api_error(400, message, "badRequest" if message == "Bad Request" else "invalid")


def rate_limited(reason: str) -> tuple[int, Body]:
    """The three quota answers of the limits page: 429 rateLimitExceeded, 403 user/quota."""
    if reason == "rateLimitExceeded":
        return 429, api_error(429, "Rate Limit Exceeded", reason, "usageLimits")
    if reason == "userRateLimitExceeded":
        return 403, api_error(403, "User Rate Limit Exceeded", reason, "usageLimits")
    if reason == "quotaExceeded":
        return 403, api_error(403, "Quota exceeded for the concurrent limit of this operation",
                              reason, "usageLimits")
    raise ValueError(f"unknown rate-limit reason {reason!r}")


def backend_error(code: int = 503) -> Body:
    if code == 500:
        return api_error(500, "Internal error encountered.", "backendError")
    return api_error(code, "The service is currently unavailable.", "backendError")


def token_error(error: str, description: str) -> Body:
    return {"error": error, "error_description": description}


UNAUTHORIZED_CLIENT = (
    "Client is unauthorized to retrieve access tokens using this method, or client not "
    "authorized for any of the scopes requested.")
