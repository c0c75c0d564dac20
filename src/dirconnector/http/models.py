"""What a transport trades: a Request in, a Response out, Headers on both.

A transport is any callable from Request to Response (``Transport``). HttpClient's
default is the urllib3 one (transport.py); a test passes a plain function, as httpx's
``MockTransport(handler)`` takes one::

    HttpClient(url, side="target", label="test",
               transport=lambda request: Response(200, json={"Resources": []}))

A transport that gets no answer (or not all of one) raises OSError: TransportError and
its subclasses here, or any OSError a fake raises (ConnectionResetError, TimeoutError).
HttpClient retries those and turns every failure into the project's errors.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol


class Headers(Mapping[str, str]):
    """HTTP headers: looked up in any letter case; a repeated header reads as its values
    joined by ", " (RFC 9110 5.3), and ``get_list`` keeps the repeats apart."""

    __slots__ = ("_index", "_items")

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        self._items = list(items.items()) if isinstance(items, Mapping) else list(items)
        """Every (name, value) as given, repeats included, in order."""
        self._index: dict[str, tuple[str, str]] | None = None
        """Lower-case name -> (the name as first given, the values joined); built on the
        first lookup (a request's headers are only ever sent, never looked up)."""

    def _joined(self) -> dict[str, tuple[str, str]]:
        if self._index is None:
            index: dict[str, tuple[str, str]] = {}
            for name, value in self._items:
                low = name.lower()
                have = index.get(low)
                index[low] = (name, value) if have is None else (have[0], f"{have[1]}, {value}")
            self._index = index
        return self._index

    def __getitem__(self, name: str) -> str:
        return self._joined()[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._joined()

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._joined().values())

    def __len__(self) -> int:
        return len(self._joined())

    def get_list(self, name: str) -> list[str]:
        """Every value of ``name``, one per header line (Okta sends Link twice)."""
        low = name.lower()
        return [value for have, value in self._items if have.lower() == low]

    def multi_items(self) -> list[tuple[str, str]]:
        """Every (name, value) as given, repeats included, in order."""
        return list(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class Request:
    """One HTTP request as it goes on the wire: what HttpClient hands a transport."""

    __slots__ = ("content", "headers", "method", "url")

    method: str
    """Upper-case method."""
    url: str
    """Absolute URL, query included."""
    headers: Headers
    """Every header sent, in order, with the letter case given."""
    content: bytes | None
    """The body; None sends none (and no Content-Length on a GET)."""

    def __init__(self, method: str, url: str,
                 headers: Headers | Mapping[str, str] | Iterable[tuple[str, str]] = (),
                 content: bytes | None = None) -> None:
        _set(self, "method", method)
        _set(self, "url", url)
        _set(self, "headers", headers if isinstance(headers, Headers) else Headers(headers))
        _set(self, "content", content)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Request is read-only ({name})")

    def json(self) -> Any:
        """The body parsed as JSON (for tests that check what was sent)."""
        return jsonlib.loads(self.content or b"")

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url}>"


class Response:
    """One HTTP answer, its body read in full: what a transport hands back."""

    __slots__ = ("content", "headers", "reason", "status", "url")

    status: int
    """The status code."""
    headers: Headers
    """The response headers."""
    content: bytes
    """The body, Content-Encoding (gzip, deflate) already undone."""
    url: str
    """The URL that was asked for (HttpClient fills it in when a transport leaves it empty)."""
    reason: str
    """The server's reason phrase, or ""."""

    def __init__(self, status: int, *,
                 headers: Headers | Mapping[str, str] | Iterable[tuple[str, str]] = (),
                 content: bytes = b"", json: Any = None, text: str | None = None,
                 url: str = "", reason: str = "") -> None:
        """``json`` or ``text`` make the body (and a Content-Type if none is given)."""
        if json is not None or text is not None:
            kind = "application/json" if json is not None else "text/plain; charset=utf-8"
            content = (jsonlib.dumps(json) if json is not None else str(text)).encode()
            given = headers if isinstance(headers, Headers) else Headers(headers)
            if "Content-Type" not in given:
                headers = [*given.multi_items(), ("Content-Type", kind)]
        _set(self, "status", status)
        _set(self, "headers", headers if isinstance(headers, Headers) else Headers(headers))
        _set(self, "content", content)
        _set(self, "url", url)
        _set(self, "reason", reason)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Response is read-only ({name})")

    def with_url(self, url: str) -> Response:
        """This answer with ``url`` as the URL asked for."""
        return Response(self.status, headers=self.headers, content=self.content, url=url,
                        reason=self.reason)

    def json(self) -> Any:
        """The body parsed as JSON (UTF-8, -16 or -32, RFC 8259 8.1); ValueError if it is not."""
        return jsonlib.loads(self.content)

    @property
    def text(self) -> str:
        """The body as text: the Content-Type charset, else UTF-8; undecodable bytes replaced."""
        charset = "utf-8"
        for param in self.headers.get("Content-Type", "").split(";")[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset" and value.strip():
                charset = value.strip().strip("\"'")
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.url}>"


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


class Transport(Protocol):
    """Sends one Request and returns its Response; raises OSError when no answer came."""

    def __call__(self, request: Request, /) -> Response: ...


class TransportError(OSError):
    """No answer, or not all of one: the connection failed, was refused or dropped."""


class TransportTimeout(TransportError, TimeoutError):
    """No answer within the timeout."""


class TlsError(TransportError):
    """The TLS handshake failed (an untrusted certificate, most often); not retried."""


class InvalidUrl(TransportError):
    """A URL that cannot be sent to; not retried."""
