"""HTTP for every REST source and target: one client, one transport seam, one back-off.

- client.py    HttpClient: base URL, headers, retries, errors translated once
- models.py    Request, Response, Headers, the Transport protocol and its errors
- prepare.py   params, forms and JSON encoded into a Request, as requests did
- transport.py Urllib3Transport, the default: proxies, TLS trust, redirects
- retry.py     RetryPolicy, Backoff and ``pause``, the one sleep ``set_testing`` stops

A test replaces the network with a function::

    HttpClient(url, side="target", label="test",
               transport=lambda request: Response(200, json={"id": "1"}))
"""

from .client import HttpClient, Side, error_detail
from .models import (
    Headers,
    InvalidUrl,
    Request,
    Response,
    TlsError,
    Transport,
    TransportError,
    TransportTimeout,
)
from .retry import (
    DEFAULT_POLICY,
    READ_BACK,
    RETRY_STATUSES,
    Backoff,
    RetryPolicy,
    is_testing,
    parse_retry_after,
    pause,
    set_testing,
)
from .transport import Urllib3Transport, tls_verify

__all__ = [
    "DEFAULT_POLICY",
    "READ_BACK",
    "RETRY_STATUSES",
    "Backoff",
    "Headers",
    "HttpClient",
    "InvalidUrl",
    "Request",
    "Response",
    "RetryPolicy",
    "Side",
    "TlsError",
    "Transport",
    "TransportError",
    "TransportTimeout",
    "Urllib3Transport",
    "error_detail",
    "is_testing",
    "parse_retry_after",
    "pause",
    "set_testing",
    "tls_verify",
]
