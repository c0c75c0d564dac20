"""The Directory API client the ``google`` connector uses: auth, paging, retries, errors.

Authentication is a service account with domain-wide delegation: google-auth signs a
JWT-bearer assertion (RFC 7523) with the key and trades it at the key file's
``token_uri`` for a token acting as ``admin_email``
(developers.google.com/identity/protocols/oauth2/service-account#delegatingauthority).
Transport is httplib2 (what google-api-python-client speaks), given ``ca_file`` /
``verify_tls`` / ``timeout``; the same Http object carries token requests, so a
private CA covers both. The discovery document bundled with the library is used
(``static_discovery=True``): building the client needs no network.

Retries: ``execute(num_retries=N)`` retries 5xx, 429 and 403 rate-limit reasons with its
own jittered sleeps but ignores Retry-After (googleapiclient/http.py); past those we
retry a few more times with the project's backoff, honouring Retry-After when Google
sends one (developers.google.com/workspace/admin/directory/v1/limits: "use exponential
backoff"). Every failure leaves as one SourceError line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from ...errors import ConfigError, IncompleteRead, SourceError
from ...http import Backoff, RetryPolicy, parse_retry_after, pause

log = logging.getLogger(__name__)

SCOPES = (
    "https://www.googleapis.com/auth/admin.directory.user.readonly",
    "https://www.googleapis.com/auth/admin.directory.group.readonly",
    "https://www.googleapis.com/auth/admin.directory.group.member.readonly",
)
REPORTS_SCOPE = "https://www.googleapis.com/auth/admin.reports.audit.readonly"
"""What the change feed adds: Reports API activities.list (admin.reports_v1 discovery)."""
DEFAULT_ENDPOINT = "https://admin.googleapis.com/"
RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"})
DWD_CONSOLE = ("Admin console > Security > Access and data control > API controls > "
               "Manage Domain Wide Delegation")
INNER_RETRIES = 3
"""``num_retries`` handed to googleapiclient (its sleeps: random() * 2**n seconds)."""
OUTER_RETRY = RetryPolicy(attempts=4, base_delay=2.0, max_delay=60.0, max_total_wait=180.0)
"""Our own tries on top, honouring Retry-After."""


class ApiError(SourceError):
    """The Directory API answered an error; status and reason kept for callers that care."""

    def __init__(self, message: str, *, status: int, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class ApiIncomplete(IncompleteRead):
    """A call still failing with a retryable error after every retry."""


class DirectoryClient:
    """One authorised Directory API service; builds nothing on the network until used."""

    def __init__(
        self,
        key_info: dict[str, Any],
        admin_email: str,
        *,
        api_endpoint: str | None,
        ca_file: str | None,
        verify_tls: bool,
        timeout: float,
        sleep: Callable[[float], None] = pause,
        retry: RetryPolicy = OUTER_RETRY,
        num_retries: int = INNER_RETRIES,
    ) -> None:
        try:
            import google_auth_httplib2
            import httplib2
            from google.oauth2 import service_account
            from googleapiclient.discovery import build
            from googleapiclient.http import HttpRequest
        except ImportError as exc:
            raise ConfigError(f"source.type = \"google\" needs google-api-python-client and "
                              f"google-auth ({exc.name} is missing)",
                              hint="pip install 'dirconnector[google]'") from exc

        self.admin_email = admin_email
        self.client_id = str(key_info.get("client_id", ""))
        self.client_email = str(key_info.get("client_email", ""))
        self.token_uri = str(key_info.get("token_uri", ""))
        self.endpoint = api_endpoint or DEFAULT_ENDPOINT
        self.retry = retry
        self.num_retries = num_retries
        self.requests_sent = 0
        self.before_request: Callable[[], None] | None = None
        """Called before every request (the change feed keeps its rate share with it)."""
        self._sleep = sleep
        self._api_endpoint = api_endpoint
        self._request_class: Any = None
        self._reports: Any = None
        try:
            self.credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]  # google-auth is partly typed
                key_info, scopes=list(SCOPES), subject=admin_email)
        except (ValueError, KeyError) as exc:
            # The message may quote the key; name only what is wrong with it.
            raise SourceError(f"Google: the service-account key of {self.client_email or '?'} "
                              f"cannot be loaded ({type(exc).__name__})") from None
        def new_http() -> Any:
            return httplib2.Http(ca_certs=ca_file, timeout=timeout,
                                 disable_ssl_certificate_validation=not verify_tls)

        self._new_http: Callable[[], Any] = new_http
        self.http = new_http()
        if not verify_tls:
            log.warning("google: TLS certificate verification is OFF (verify_tls = false)")
        self._transport = google_auth_httplib2.Request(self.http)
        authed = google_auth_httplib2.AuthorizedHttp(self.credentials, http=self.http)

        class _Request(HttpRequest):  # type: ignore[misc]  # untyped library base
            """googleapiclient's request, sleeping through our (injectable) clock."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self._sleep = sleep  # the attribute _retry_request sleeps with

        self.service = build(
            "admin", "directory_v1", http=authed, requestBuilder=_Request,
            client_options={"api_endpoint": api_endpoint} if api_endpoint else None,
            static_discovery=True, cache_discovery=False)
        self._request_class = _Request

    @property
    def reports(self) -> Any:
        """The Reports API (admin reports_v1), with its own token that adds REPORTS_SCOPE.

        Only the change feed uses it, so a deployment without the feed never asks for the
        scope (Google refuses a token when *any* requested scope is not delegated).
        """
        if self._reports is None:
            import google_auth_httplib2
            from googleapiclient.discovery import build

            creds = self.credentials.with_scopes([*SCOPES, REPORTS_SCOPE])
            authed = google_auth_httplib2.AuthorizedHttp(creds, http=self.http)
            self._reports = build(
                "admin", "reports_v1", http=authed, requestBuilder=self._request_class,
                client_options={"api_endpoint": self._api_endpoint} if self._api_endpoint
                else None, static_discovery=True, cache_discovery=False)
        return self._reports

    def activities(self, what: str, **params: Any) -> Iterator[list[dict[str, Any]]]:
        """Every page of Reports ``activities.list`` (items, until no nextPageToken)."""
        res = self.reports.activities()
        request = res.list(**params)
        while request is not None:
            body = self.execute(request, what)
            yield list(body.get("items") or [])
            request = res.list_next(request, body)

    def get_one(self, resource: str, what: str, **params: Any) -> dict[str, Any] | None:
        """``<resource>.get``; None when Google answers 404 (deleted, or never there)."""
        request = getattr(self.service, resource)().get(**params)
        try:
            return self.execute(request, what)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def reports_scope_missing(self) -> bool | None:
        """True when delegation lacks REPORTS_SCOPE; None when the probe fails otherwise."""
        import google_auth_httplib2
        from google.auth.exceptions import GoogleAuthError, RefreshError

        try:
            # A connection of its own: httplib2.Http is not thread-safe, and `check`, status
            # or a test may ask for the stream mode while the reads run on self.http (two
            # threads on one socket read each other's answers and both time out).
            probe = google_auth_httplib2.Request(self._new_http())
            self.credentials.with_scopes([REPORTS_SCOPE]).refresh(probe)
        except RefreshError as exc:
            data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
            return True if data.get("error") == "unauthorized_client" else None
        except GoogleAuthError:
            return None
        return False

    # ------------------------------------------------------------------ reading

    def pages(self, resource: str, items: str, what: str, **params: Any,
              ) -> Iterator[list[dict[str, Any]]]:
        """Every page of ``<resource>.list(**params)`` until ``nextPageToken`` is absent."""
        res = getattr(self.service, resource)()
        request = res.list(**params)
        seen: set[str] = set()
        while request is not None:
            body = self.execute(request, what)
            yield list(body.get(items) or [])
            token = body.get("nextPageToken")
            if token and token in seen:
                raise IncompleteRead(f"Google: {what}: the server repeated page token "
                                     f"{token[:12]}...; stopping rather than looping")
            if token:
                seen.add(token)
            request = res.list_next(request, body)

    def execute(self, request: Any, what: str) -> dict[str, Any]:
        """Run one request with retries; any failure becomes one SourceError line.

        The loop is our own, not HttpClient's: the request is the client library's (its
        transport is httplib2, its inner retries ignore Retry-After). The waiting is the
        shared Backoff's, with this client's sleep.
        """
        from google.auth.exceptions import RefreshError, TransportError
        from googleapiclient.errors import HttpError

        waits = Backoff(self.retry, sleep=self._sleep)
        attempt = 0
        while True:
            attempt += 1
            if self.before_request is not None:
                self.before_request()
            self.requests_sent += 1
            try:
                body = request.execute(num_retries=self.num_retries)
            except HttpError as exc:
                status, reason, message = _error_parts(exc)
                if _retryable(status, reason) and not waits.gives_up(attempt):
                    delay = waits.delay(attempt, parse_retry_after(exc.resp.get("retry-after")))
                    if waits.fits(delay):
                        log.warning("google: %s: %s %s; retrying in %.1fs (try %d of %d)",
                                    what, status, reason or message, delay, attempt + 1,
                                    self.retry.attempts)
                        waits.wait(delay)
                        continue
                raise self._api_error(what, status, reason, message, attempt) from exc
            except RefreshError as exc:
                raise self._token_error(exc) from exc
            except (TransportError, OSError) as exc:
                raise self._unreachable(what, exc) from exc
            except Exception as exc:
                import httplib2

                if isinstance(exc, httplib2.HttpLib2Error):
                    raise self._unreachable(what, exc) from exc
                raise
            if not isinstance(body, dict):
                raise SourceError(f"Google: {what}: the answer is not a JSON object")
            return body

    def fetch_token(self) -> None:
        """Get an access token now (``check`` uses it to test delegation on its own)."""
        from google.auth.exceptions import RefreshError, TransportError

        try:
            self.credentials.refresh(self._transport)
        except RefreshError as exc:
            raise self._token_error(exc) from exc
        except TransportError as exc:
            raise SourceError(f"Google: token endpoint {_host(self.token_uri)} unreachable: "
                              f"{_short(exc)}") from exc

    # ------------------------------------------------------------------ errors

    def _unreachable(self, what: str, exc: BaseException) -> SourceError:
        text = _short(exc)
        hint = ""
        if "CERTIFICATE_VERIFY_FAILED" in text:
            hint = ("; set ca_file to the CA that signed the server's certificate (a "
                    "TLS-inspecting proxy's CA, for instance)")
        return SourceError(f"Google: {what}: cannot reach {_host(self.endpoint)}: {text}{hint}")

    def _api_error(self, what: str, status: int, reason: str, message: str,
                   attempts: int) -> SourceError:
        head = f"Google: {what}: HTTP {status} {reason or ''}".rstrip()
        if _retryable(status, reason):
            return ApiIncomplete(f"{head}: {message} (still failing after {attempts} tries "
                                 f"of up to {self.num_retries + 1} requests each)")
        if status == 403 and reason in ("forbidden", ""):
            text = (f"{head}: {message}: admin_email {self.admin_email} may not read the "
                    "directory; impersonate a super admin or an admin whose role grants "
                    "Users > Read and Groups > Read")
        elif status == 403 and reason == "insufficientPermissions":
            text = (f"{head}: {message}: the token lacks a scope this call needs; authorise "
                    f"all of {', '.join(SCOPES)} for client id {self.client_id} in the "
                    f"{DWD_CONSOLE}")
        elif status == 401:
            text = (f"{head}: the Directory API rejected the access token even after a "
                    f"refresh: {message}")
        else:
            text = f"{head}: {message}"
        return ApiError(text, status=status, reason=reason)

    def _token_error(self, exc: Exception) -> SourceError:
        data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
        error = str(data.get("error", ""))
        desc = str(data.get("error_description", ""))
        if error == "unauthorized_client":
            missing = self.missing_scopes()
            sa = f"service account {self.client_email} (client id {self.client_id})"
            if missing is not None and 0 < len(missing) < len(SCOPES):
                return SourceError(
                    f"Google: domain-wide delegation of {sa} lacks scope(s) "
                    f"{', '.join(missing)} for admin_email {self.admin_email}; add them in the "
                    f"{DWD_CONSOLE}")
            return SourceError(
                f"Google: domain-wide delegation is not set up for {sa} (token endpoint: "
                f"unauthorized_client); add the client id with scopes {','.join(SCOPES)} "
                f"in the {DWD_CONSOLE}")
        if error == "invalid_grant" and "email or user id" in desc.lower():
            return SourceError(f"Google: admin_email {self.admin_email} is not a user of this "
                               f"Google Workspace account (token endpoint: invalid_grant: {desc})")
        if error == "invalid_grant" and "signature" in desc.lower():
            return SourceError(f"Google: the key of service account {self.client_email} was "
                               f"refused ({desc}); it may have been deleted: create a new key")
        detail = f"{error}: {desc}" if error else _short(exc)
        return SourceError(f"Google: token request to {self.token_uri} failed: {detail}")

    def missing_scopes(self) -> list[str] | None:
        """Which of the three scopes delegation does not grant (one token request each).

        Google answers ``unauthorized_client`` when *any* requested scope is not
        authorised, so asking per scope is the only way to name the missing one.
        None when the probes fail for another reason.
        """
        from google.auth.exceptions import GoogleAuthError, RefreshError

        missing = []
        for scope in SCOPES:
            try:
                self.credentials.with_scopes([scope]).refresh(self._transport)
            except RefreshError as exc:
                data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
                if data.get("error") != "unauthorized_client":
                    return None
                missing.append(scope)
            except GoogleAuthError:
                return None
        return missing


def _error_parts(exc: Any) -> tuple[int, str, str]:
    """Status, first ``errors[].reason`` (else ``status``) and message of an HttpError."""
    status = int(getattr(exc, "status_code", 0) or exc.resp.status)
    reason = ""
    message = str(getattr(exc, "reason", "") or "")
    try:
        err = json.loads(exc.content.decode("utf-8")).get("error", {})
    except (ValueError, AttributeError, UnicodeDecodeError):
        err = {}
    if isinstance(err, dict):
        items = err.get("errors") or []
        if items and isinstance(items[0], dict):
            reason = str(items[0].get("reason", ""))
        reason = reason or str(err.get("status", ""))
        message = str(err.get("message") or message)
    return status, reason, _short(message)


def _retryable(status: int, reason: str) -> bool:
    return status == 429 or status >= 500 or (status == 403 and reason in RATE_REASONS)


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


def _short(value: object, limit: int = 200) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
